
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON of the TSB front (tsb_front.c): client bodies checked, TSB answers
 * re-emitted, the import helper's body, and the "did the gateway change a
 * signed request" comparison.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_front.h"
#include "tap.h"


#define S(s)  (const unsigned char *) (s), strlen(s)


typedef struct {
    const char  *in;
    const char  *out;          /* NULL: refused */
} reemit_case_t;


static const reemit_case_t  reemits[] = {
    { "{}", "{}" },
    { " { \"a\" : 1 , \"b\" : [ true , false , null ] } ",
      "{\"a\":1,\"b\":[true,false,null]}" },
    { "{\"n\":12345678901234567890123}",
      "{\"n\":12345678901234567890123}" },
    { "{\"n\":-1.50e+10}", "{\"n\":-1.50e+10}" },
    { "{\"s\":\"caf\\u00e9 \\\"q\\\" \\n\"}",
      "{\"s\":\"caf\xc3\xa9 \\\"q\\\" \\n\"}" },
    { "{\"s\":\"</script>\"}", "{\"s\":\"</script>\"}" },
    { "[1,2,3]", "[1,2,3]" },
    { "\"just a string\"", "\"just a string\"" },
    { "{\"dup\":1,\"dup\":2}", "{\"dup\":1,\"dup\":2}" },
    { "", NULL },
    { "   ", NULL },
    { "{", NULL },
    { "{\"a\":1}x", NULL },
    { "{\"a\":1} {\"b\":2}", NULL },
    { "/* c */ {}", NULL },
    { "{'a':1}", NULL },
    { "{\"s\":\"\xff\"}", NULL },
    { "<html>502 Bad Gateway</html>", NULL },
    { NULL, NULL }
};


static void
test_reemit(void)
{
    int          i, rc;
    char         deep[256];
    tsb_buf_t    out;
    tsb_error_t  err;

    for (i = 0; reemits[i].in; i++) {
        rc = tsb_json_reemit(S(reemits[i].in), &out, &err);

        if (reemits[i].out) {
            ok(rc == 0, "reemit %s: accepted", reemits[i].in);
            is_str(rc == 0 ? (char *) out.data : NULL, reemits[i].out,
                   "reemit %s: output", reemits[i].in);

        } else {
            ok(rc != 0, "reemit %s: refused", reemits[i].in);
            is_int(err.status, 502, "... as 502");
            is_str(err.reason, "upstream.response", "... upstream.response");
        }

        tsb_buf_free(&out);
    }

    /* depth: 32 levels pass, 33 do not */

    memset(deep, 0, sizeof(deep));
    memset(deep, '[', TSB_FRONT_MAX_DEPTH);
    memset(deep + TSB_FRONT_MAX_DEPTH, ']', TSB_FRONT_MAX_DEPTH);
    ok(tsb_json_reemit(S(deep), &out, &err) == 0, "32 levels re-emitted");
    tsb_buf_free(&out);

    memset(deep, 0, sizeof(deep));
    memset(deep, '[', TSB_FRONT_MAX_DEPTH + 1);
    memset(deep + TSB_FRONT_MAX_DEPTH + 1, ']', TSB_FRONT_MAX_DEPTH + 1);
    ok(tsb_json_reemit(S(deep), &out, &err) != 0, "33 levels refused");
    tsb_buf_free(&out);
}


static void
test_check(void)
{
    tsb_error_t  err;

    ok(tsb_json_check(S("{\"a\":{\"b\":[1,{\"c\":null}]}}"), &err) == 0,
       "check: nested JSON accepted");
    ok(tsb_json_check(S("{\"a\":1,\"a\":2}"), &err) != 0,
       "check: duplicate key refused");
    is_str(err.reason, "json.duplicate_key", "... json.duplicate_key");
    is_int(err.status, 400, "... 400");
    ok(tsb_json_check(S("{\"a\":{\"k\":1},\"b\":{\"k\":1}}"), &err) == 0,
       "check: the same key in two objects is fine");
    ok(tsb_json_check(S("{\"a\":{\"k\":1,\"k\":1}}"), &err) != 0,
       "check: duplicate key in a nested object refused");
    ok(tsb_json_check(S("{\"a\":1"), &err) != 0, "check: truncated refused");
    is_str(err.reason, "json.syntax", "... json.syntax");
    ok(strstr(err.detail, "byte") != NULL, "... names the byte: %s",
       err.detail);
    ok(tsb_json_check(S("{\"a\":\"\xc3\"}"), &err) != 0,
       "check: invalid UTF-8 refused");
    ok(tsb_json_check(S("{\"secret-looking\":1,}"), &err) != 0
       && strstr(err.detail, "secret") == NULL,
       "check: the detail never quotes the input");
}


/* tsb_pass never passes a key operation on a certificate key */

static void
test_key_check(void)
{
    size_t               i;
    tsb_error_t          err;
    static const char   *keys[] = { "CA-Key", "Other-CA" };

    static const struct {
        const char  *body;
        int          status;             /* 0: passed */
        const char  *reason;
        const char  *name;
    } cases[] = {
        { "{\"signRequest\":{\"payload\":\"AA==\",\"signKeyName\":"
          "\"Payload-Key\"},\"requestSignature\":null}", 0, NULL,
          "a payload key passes" },
        { "{\"signRequest\":{\"payload\":\"AA==\",\"signKeyName\":"
          "\"CA-Key\"}}", 403, "policy.key_operation",
          "sign with a certificate key" },
        { "{\"signRequest\":{\"signKeyName\":\"ca-KEY\"}}", 403,
          "policy.key_operation", "... in another case" },
        { "{\"signRequest\":{\"signKeyName\":\"CA\\u002dKey\"}}", 403,
          "policy.key_operation", "... written with a \\u escape" },
        { "{\"signRequest\":{\"SIGNKEYNAME\":\"Other-CA\"}}", 403,
          "policy.key_operation", "... the member name in another case" },
        { "{\"blockRequest\":{\"blockKeyName\":\"CA-Key\"}}", 403,
          "policy.key_operation", "block a certificate key" },
        { "{\"modifyRequest\":{\"modifyKeyName\":\"CA-Key\","
          "\"policy\":{}}}", 403, "policy.key_operation",
          "modify a certificate key's policy" },
        { "{\"label\":\"CA-Key\",\"algorithm\":\"EC\"}", 403,
          "policy.key_operation", "a label that names a certificate key" },
        { "{\"a\":[{\"b\":{\"decryptKeyName\":\"CA-Key\"}}]}", 403,
          "policy.key_operation", "at any depth" },
        { "{\"signRequest\":{\"signKeyName\":[\"CA-Key\"]}}", 400,
          "request.key_name", "a key name in an array" },
        { "{\"signRequest\":{\"signKeyName\":{\"x\":1}}}", 400,
          "request.key_name", "a key name as an object" },
        { "{\"signRequest\":{\"signKeyName\":7}}", 400,
          "request.key_name", "a key name as a number" },
        { "{\"signRequest\":{\"signKeyName\":null}}", 0, NULL,
          "a null key name passes" },
        { "{\"signRequest\":{\"payload\":\"CA-Key\"}}", 0, NULL,
          "the name elsewhere than a key member passes" },
        { "{\"signRequest\":{\"signKeyName\":\"CA-Key2\"}}", 0, NULL,
          "a longer name passes" },
        { "{\"signRequest\":{\"signKeyName\":\"P\",\"signKeyName\":"
          "\"CA-Key\"}}", 400, "json.duplicate_key",
          "a duplicate member is refused before its value" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = tsb_front_key_check((const unsigned char *) cases[i].body,
                                     strlen(cases[i].body), keys, 2, &err);

        if (cases[i].status == 0) {
            ok(rc == 0 && err.reason == NULL, "key check: %s",
               cases[i].name);

        } else {
            ok(rc == -1 && err.status == cases[i].status
               && strcmp(err.reason ? err.reason : "", cases[i].reason) == 0,
               "key check: %s: %d %s", cases[i].name, err.status,
               err.reason ? err.reason : "(none)");
            ok(err.detail[0] && strstr(err.detail, "CA-Key") == NULL,
               "... the detail does not quote the name");
        }
    }

    ok(tsb_front_key_check(S("{\"signKeyName\":\"CA-Key\"}"), NULL, 0,
                           &err) == 0,
       "key check: no certificate keys configured: passes");

    ok(tsb_front_path_names_key(S("/v1/key/CA-Key"), keys, 2),
       "path: /v1/key/CA-Key names a certificate key");
    ok(tsb_front_path_names_key(S("/v1/key/ca-key/attributes"), keys, 2),
       "path: in another case, not the last segment");
    ok(tsb_front_path_names_key(S("/Other-CA"), keys, 2),
       "path: the first segment");
    ok(!tsb_front_path_names_key(S("/v1/key/CA-Key2"), keys, 2),
       "path: a longer name does not");
    ok(!tsb_front_path_names_key(S("/v1/key/CA"), keys, 2),
       "path: a shorter name does not");
    ok(!tsb_front_path_names_key(S("/v1/request/CA-Key-x"), keys, 2),
       "path: a segment only starting with it does not");
}


static void
test_import(void)
{
    tsb_buf_t         out;
    tsb_error_t       err;
    tsb_import_req_t  req;

    ok(tsb_import_req_parse(S("{\"label\":\"my-cert\",\"certificate\":"
                              "\"MIIB\"}"), &req, &err) == 0,
       "import: label and certificate");
    is_str(req.label, "my-cert", "... label");
    is_str(req.certificate, "MIIB", "... certificate");
    is_int(req.certificate_len, 4, "... certificate length");
    tsb_import_req_free(&req);

    ok(tsb_import_req_parse(S("{\"certificate\":\"-----BEGIN CERTIFICATE"
                              "-----\\nAA\\n-----END CERTIFICATE-----\\n\","
                              "\"label\":\"x\"}"), &req, &err) == 0,
       "import: PEM with escaped newlines, keys in any order");
    ok(req.certificate && strchr(req.certificate, '\n') != NULL,
       "... newlines decoded");
    tsb_import_req_free(&req);

    ok(tsb_import_req_parse(S("{\"label\":\"x\"}"), &req, &err) != 0,
       "import: no certificate refused");
    is_str(err.reason, "json.missing", "... json.missing");

    ok(tsb_import_req_parse(S("{\"certificate\":\"x\"}"), &req, &err) != 0,
       "import: no label refused");

    ok(tsb_import_req_parse(S("{\"label\":\"x\",\"certificate\":\"y\","
                              "\"password\":\"z\"}"), &req, &err) != 0,
       "import: an unknown field refused");
    is_str(err.reason, "json.unknown_field", "... json.unknown_field");

    ok(tsb_import_req_parse(S("{\"label\":\"x\",\"label\":\"y\","
                              "\"certificate\":\"z\"}"), &req, &err) != 0,
       "import: a duplicate key refused");
    is_str(err.reason, "json.duplicate_key", "... json.duplicate_key");

    ok(tsb_import_req_parse(S("{\"label\":1,\"certificate\":\"z\"}"), &req,
                            &err) != 0, "import: a number label refused");
    is_str(err.reason, "json.type", "... json.type");

    ok(tsb_import_req_parse(S("{\"label\":\"x\",\"certificate\":[\"z\"]}"),
                            &req, &err) != 0,
       "import: an array certificate refused");

    ok(tsb_import_req_parse(S("[\"label\"]"), &req, &err) != 0,
       "import: not an object refused");

    ok(tsb_import_req_parse(S("{\"label\":\"\",\"certificate\":\"z\"}"),
                            &req, &err) != 0, "import: empty label refused");

    ok(tsb_import_req_parse(S("{\"label\":\"a\\nb\",\"certificate\":\"z\"}"),
                            &req, &err) != 0,
       "import: a control character in the label refused");

    ok(tsb_import_req_parse(S("{\"label\":\"a\",\"certificate\":\"z\"} x"),
                            &req, &err) != 0,
       "import: trailing garbage refused");
    is_str(err.reason, "json.syntax", "... json.syntax");

    ok(tsb_import_req_build("l\"x", "TUlJQg==", 8, &out) == 0,
       "import: body built");
    is_str((char *) out.data, "{\"label\":\"l\\\"x\",\"certificate\":"
           "\"TUlJQg==\"}", "... escaped by yajl_gen");
    tsb_buf_free(&out);
}


static void
test_changed(void)
{
    tsb_sign_req_t  a, b;

    memset(&a, 0, sizeof(a));
    a.certificate_authority = -1;
    a.validity = -1;
    a.sign_key_name = "CA-Key";
    a.common_name = "a.svc.example";
    a.signature_algorithm = "SHA256_WITH_RSA";
    a.key_usage_present = 1;
    a.key_usage = 1;
    a.ext_key_usage_present = 1;
    a.ext_key_usage = 2;
    a.certificate_authority = 0;
    a.has_request_signature = 1;

    ok(tsb_sign_req_signed(&a), "requestSignature: signed");

    b = a;
    is_str(tsb_sign_req_changed(&a, &b), NULL, "the same request");

    b.csr = "another encoding of the CSR";
    is_str(tsb_sign_req_changed(&a, &b), NULL, "the CSR text is not judged");

    b = a;
    b.sign_key_name = "Other-Key";
    is_str(tsb_sign_req_changed(&a, &b), "signKeyName", "signKeyName");

    b = a;
    a.signature_algorithm = NULL;
    is_str(tsb_sign_req_changed(&a, &b), "signatureAlgorithm",
           "a default signatureAlgorithm filled in");
    a.signature_algorithm = "SHA256_WITH_RSA";

    b = a;
    a.key_usage_present = 0;
    a.key_usage = 0;
    is_str(tsb_sign_req_changed(&a, &b), "keyUsage",
           "a default keyUsage filled in");
    a.key_usage_present = 1;
    a.key_usage = 1;

    b = a;
    b.key_password_present = 1;
    b.key_password = "injected";
    b.key_password_len = 8;
    is_str(tsb_sign_req_changed(&a, &b), "keyPassword",
           "a gateway key password injected");

    b = a;
    a.certificate_authority = -1;
    is_str(tsb_sign_req_changed(&a, &b), "certificateAuthority",
           "certificateAuthority filled in");
    a.certificate_authority = 0;

    b = a;
    b.meta_data = "x";
    is_str(tsb_sign_req_changed(&a, &b), "metaData", "metaData");

    a.has_request_signature = 0;
    ok(!tsb_sign_req_signed(&a), "no signature: not signed");
    a.meta_data_signature = "sig";
    ok(tsb_sign_req_signed(&a), "metaDataSignature: signed");
}


/* the duplicate-key check is quadratic: objects are capped */
static void
test_many_keys(void)
{
    int           rc;
    char         *buf, *p;
    size_t        i, n;
    tsb_error_t   err;

    for (n = 128; n <= 129; n++) {
        buf = malloc(16 * n + 16);
        p = buf;
        *p++ = '{';

        for (i = 0; i < n; i++) {
            p += sprintf(p, "%s\"k%zu\":1", i ? "," : "", i);
        }

        *p++ = '}';

        rc = tsb_json_check((unsigned char *) buf, (size_t) (p - buf), &err);

        if (n == 128) {
            is_int(rc, 0, "an object of 128 keys passes");

        } else {
            is_int(rc, -1, "an object of 129 keys is refused");
            is_str(err.reason, "json.size", "as json.size");
        }

        free(buf);
    }
}


int
main(void)
{
    test_reemit();
    test_check();
    test_key_check();
    test_import();
    test_changed();

    test_many_keys();

    return done_testing();
}
