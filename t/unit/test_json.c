
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Unit tests of the JSON codecs (tsb_json.c).
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "tsb_json.h"
#include "tsb_front.h"
#include "tap.h"
#include "fixture.h"


#define JS(s)  (const unsigned char *) (s), strlen(s)


static int
is_zeroed(const void *p, size_t n)
{
    const unsigned char  *c = p;

    while (n--) {
        if (*c++) {
            return 0;
        }
    }

    return 1;
}


/* parses buf, expects a refusal with 400 and reason; req must be zeroed */
static void
refused(const char *name, const unsigned char *buf, size_t len,
    const char *reason)
{
    int             rc;
    tsb_error_t     err;
    tsb_sign_req_t  req;

    memset(&err, 0, sizeof(err));

    rc = tsb_sign_req_parse(buf, len, &req, &err);

    ok(rc == -1 && err.status == 400 && err.reason
       && strcmp(err.reason, reason) == 0 && is_zeroed(&req, sizeof(req)),
       "%s: 400 %s", name, reason);

    printf("#   got rc %d, %d %s: %s\n", rc, err.status,
           err.reason ? err.reason : "(null)", err.detail);

    if (rc == 0) {
        tsb_sign_req_free(&req);
    }
}


static void
refused_str(const char *name, const char *json, const char *reason)
{
    refused(name, (const unsigned char *) json, strlen(json), reason);
}


/* wraps fields into a request with a CSR */
static void
refused_fields(const char *name, const char *fields, const char *reason)
{
    char  buf[4096];

    snprintf(buf, sizeof(buf),
             "{\"signCertificateRequest\": {%s%s"
             "\"certificateSigningRequest\": \"csr\"}}",
             fields, fields[0] ? ", " : "");

    refused_str(name, buf, reason);
}


static int
parse_ok(const char *json, tsb_sign_req_t *req)
{
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));

    if (tsb_sign_req_parse((const unsigned char *) json, strlen(json), req,
                           &err)
        != 0)
    {
        printf("#   refused: %d %s: %s\n", err.status, err.reason,
               err.detail);
        return 0;
    }

    return 1;
}


static void
test_documented_fixture(void)
{
    char            *p, *fixed;
    size_t           len;
    tsb_error_t      err;
    unsigned char   *buf;
    tsb_sign_req_t   req;

    buf = read_fixture("tsb-sign-request-as-documented.txt", &len);
    ok(buf != NULL, "read the documented sign request fixture");
    if (buf == NULL) {
        return;
    }

    memset(&err, 0, sizeof(err));

    ok(tsb_sign_req_parse(buf, len, &req, &err) == -1,
       "documented request (missing comma) refused");
    is_int(err.status, 400, "status 400");
    is_str(err.reason, "json.syntax", "reason json.syntax");
    printf("# detail: %s\n", err.detail);

    /*
     * Lines count from 1, as in editors: the comma is missing at the end
     * of line 8 and the parser trips over the "keyUsage" key on line 9.
     */
    ok(strstr(err.detail, "at line 9, column 1 ") != NULL,
       "detail points at the start of the \"keyUsage\" token on line 9");
    ok(strstr(err.detail, "(byte 267)") != NULL, "detail names the byte");
    ok(strstr(err.detail, "after line 8, column 56") != NULL,
       "detail names the end of line 8, where the comma is missing");
    ok(strstr(err.detail, "expect ',' or '}'") != NULL,
       "detail carries yajl's short error text");
    ok(strstr(err.detail, "keyUsage") == NULL
       && strstr(err.detail, "replace-me") == NULL
       && strstr(err.detail, "right here") == NULL,
       "detail echoes no input");
    ok(is_zeroed(&req, sizeof(req)), "request left zeroed");

    /* with the comma, the documented request is what clients send */
    fixed = malloc(len + 2);
    p = strstr((char *) buf, "replace-me_with_csr_value\"");
    p += sizeof("replace-me_with_csr_value\"") - 1;
    memcpy(fixed, buf, p - (char *) buf);
    fixed[p - (char *) buf] = ',';
    strcpy(fixed + (p - (char *) buf) + 1, p);

    ok(parse_ok(fixed, &req), "documented request with the comma parses");
    is_str(req.sign_key_name, "CA.approver.securosys.com", "signKeyName");
    ok(req.key_password_present && req.key_password == NULL,
       "keyPassword present and null");
    is_str(req.signature_algorithm, "SHA256_WITH_RSA", "signatureAlgorithm");
    is_str(req.common_name, "Approver-Intermediate-SUB", "commonName");
    is_int(req.certificate_authority, 0, "certificateAuthority false");
    is_str(req.csr, "replace-me_with_csr_value", "certificateSigningRequest");
    is_int(req.csr_len, 25, "csr_len");
    ok(req.key_usage_present && req.key_usage == TSB_KU_DIGITAL_SIGNATURE,
       "keyUsage DIGITAL_SIGNATURE");
    ok(req.ext_key_usage_present && req.ext_key_usage == TSB_EKU_ANY,
       "extendedKeyUsage ANY_EXTENDED_KEY_USAGE");
    is_int(req.validity, -1, "validity absent");
    ok(req.meta_data == NULL && !req.has_request_signature,
       "no metaData, no requestSignature");

    tsb_sign_req_free(&req);
    ok(is_zeroed(&req, sizeof(req)), "free leaves the request zeroed");

    free(fixed);
    free(buf);
}


static void
test_sign_req_errors(void)
{
    size_t          i;
    char           *big;
    tsb_error_t     err;
    tsb_sign_req_t  req;

    /* syntax */

    refused_str("empty body", "", "json.syntax");
    refused_str("whitespace only", " \r\n\t ", "json.syntax");
    refused("NULL body", NULL, 0, "json.syntax");
    refused_str("truncated", "{\"signCertificateRequest\": {",
                "json.syntax");
    refused_str("trailing garbage",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}} x",
                "json.syntax");
    refused_str("second top-level value",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}} {}",
                "json.syntax");
    refused_str("comment refused",
                "{\"signCertificateRequest\": /* c */ "
                "{\"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("line comment refused",
                "// c\n{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("invalid UTF-8 byte",
                "{\"signCertificateRequest\": {\"commonName\": \"a\xff\", "
                "\"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("overlong UTF-8 (hidden NUL)",
                "{\"signCertificateRequest\": {\"commonName\": \"a\xc0\x80\","
                " \"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("UTF-8 encoded surrogate",
                "{\"signCertificateRequest\": {\"commonName\": "
                "\"\xed\xa0\x80\", \"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("raw control character in a string",
                "{\"signCertificateRequest\": {\"commonName\": \"a\x01\","
                " \"certificateSigningRequest\": \"x\"}}",
                "json.syntax");
    refused_str("single quotes", "{'signCertificateRequest': {}}",
                "json.syntax");
    refused_str("BOM", "\xef\xbb\xbf{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", "json.syntax");

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\n  \"signCertificateRequest\" 1}"), &req,
                       &err);
    ok(strstr(err.detail, "line 2, column ") != NULL
       && strstr(err.detail, "invalid JSON at") == err.detail,
       "syntax detail names line and column: %s", err.detail);

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"a\":\"b\xff\"}"), &req, &err);
    ok(strchr(err.detail, '\xff') == NULL && strstr(err.detail, "b") == NULL,
       "invalid UTF-8 not echoed: %s", err.detail);

    /* types */

    refused_str("top-level array", "[]", "json.type");
    refused_str("top-level string", "\"x\"", "json.type");
    refused_str("top-level number", "42", "json.type");
    refused_str("top-level null", "null", "json.type");
    refused_str("signCertificateRequest is a string",
                "{\"signCertificateRequest\": \"x\"}", "json.type");
    refused_str("signCertificateRequest is an array",
                "{\"signCertificateRequest\": []}", "json.type");
    refused_str("signCertificateRequest is null",
                "{\"signCertificateRequest\": null}", "json.type");

    refused_fields("certificateAuthority \"true\"",
                   "\"certificateAuthority\": \"true\"", "json.type");
    refused_fields("certificateAuthority 1",
                   "\"certificateAuthority\": 1", "json.type");
    refused_fields("certificateAuthority null",
                   "\"certificateAuthority\": null", "json.type");
    refused_fields("commonName number", "\"commonName\": 5", "json.type");
    refused_fields("commonName object", "\"commonName\": {}", "json.type");
    refused_fields("signKeyName array", "\"signKeyName\": [\"a\"]",
                   "json.type");
    refused_fields("keyUsage string", "\"keyUsage\": \"DIGITAL_SIGNATURE\"",
                   "json.type");
    refused_fields("keyUsage null", "\"keyUsage\": null", "json.type");
    refused_fields("keyUsage number item", "\"keyUsage\": [1]", "json.type");
    refused_fields("keyUsage nested array",
                   "\"keyUsage\": [[\"DIGITAL_SIGNATURE\"]]", "json.type");
    refused_fields("extendedKeyUsage null item",
                   "\"extendedKeyUsage\": [null]", "json.type");
    refused_fields("validity string", "\"validity\": \"30\"", "json.type");
    refused_fields("validity fraction", "\"validity\": 30.5", "json.type");
    refused_fields("validity 30.0", "\"validity\": 30.0", "json.type");
    refused_fields("validity exponent", "\"validity\": 3e1", "json.type");
    refused_fields("validity true", "\"validity\": true", "json.type");
    refused_fields("keyPassword number", "\"keyPassword\": 1234",
                   "json.type");
    refused_fields("keyPassword two-character item",
                   "\"keyPassword\": [\"p\", \"ab\"]", "json.type");
    refused_fields("keyPassword empty item",
                   "\"keyPassword\": [\"p\", \"\"]", "json.type");
    refused_fields("keyPassword null item",
                   "\"keyPassword\": [\"p\", null]", "json.type");
    refused_fields("keyPassword object", "\"keyPassword\": {}", "json.type");
    refused_fields("metaData number", "\"metaData\": 1", "json.type");
    refused_str("certificateSigningRequest number",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": 1}}", "json.type");

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"signCertificateRequest\": "
                          "{\"certificateAuthority\": \"true\"}}"), &req,
                       &err);
    ok(strstr(err.detail, "certificateAuthority") != NULL
       && strstr(err.detail, "boolean") != NULL,
       "type detail names the field: %s", err.detail);

    /* ranges */

    refused_fields("validity 0", "\"validity\": 0", "request.validity");
    refused_fields("validity -1", "\"validity\": -1", "request.validity");
    refused_fields("validity 36501", "\"validity\": 36501",
                   "request.validity");
    refused_fields("validity huge",
                   "\"validity\": 99999999999999999999999999999",
                   "request.validity");

    /* missing */

    refused_str("no signCertificateRequest", "{}", "json.missing");
    refused_str("only requestSignature",
                "{\"requestSignature\": {}}", "json.missing");
    refused_str("no certificateSigningRequest",
                "{\"signCertificateRequest\": {\"commonName\": \"x\"}}",
                "json.missing");
    refused_str("null certificateSigningRequest",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": null}}", "json.missing");

    /* unknown fields and duplicates */

    refused_fields("unknown field", "\"colour\": \"blue\"",
                   "json.unknown_field");
    refused_str("unknown top-level field",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}, \"extra\": 1}",
                "json.unknown_field");
    refused_fields("field name is case-sensitive", "\"CommonName\": \"x\"",
                   "json.unknown_field");

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"signCertificateRequest\": {\"colour\": 1}}"),
                       &req, &err);
    ok(strstr(err.detail, "\"colour\"") != NULL,
       "unknown field named: %s", err.detail);

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"signCertificateRequest\": "
                          "{\"col\\nour\": 1}}"), &req, &err);
    is_str(err.reason, "json.unknown_field", "unprintable unknown field");
    ok(strstr(err.detail, "col") == NULL && strchr(err.detail, '\n') == NULL,
       "unprintable unknown field not echoed: %s", err.detail);

    refused_fields("duplicate field",
                   "\"commonName\": \"a\", \"commonName\": \"b\"",
                   "json.duplicate_key");
    refused_str("duplicate certificateSigningRequest",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\", "
                "\"certificateSigningRequest\": \"y\"}}",
                "json.duplicate_key");
    refused_str("duplicate signCertificateRequest",
                "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}, "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"y\"}}",
                "json.duplicate_key");
    refused_str("duplicate requestSignature",
                "{\"requestSignature\": 1, \"requestSignature\": 2, "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}",
                "json.duplicate_key");
    refused_fields("duplicate null keyPassword",
                   "\"keyPassword\": null, \"keyPassword\": \"x\"",
                   "json.duplicate_key");

    /* usage names */

    refused_fields("unknown keyUsage", "\"keyUsage\": [\"SIGN_ALL\"]",
                   "request.key_usage");
    refused_fields("keyUsage is case-sensitive",
                   "\"keyUsage\": [\"digital_signature\"]",
                   "request.key_usage");
    refused_fields("EKU name in keyUsage", "\"keyUsage\": [\"SERVER_AUTH\"]",
                   "request.key_usage");
    refused_fields("unknown extendedKeyUsage",
                   "\"extendedKeyUsage\": [\"SERVER_AUTH\", \"TLS_ALL\"]",
                   "request.extended_key_usage");

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"signCertificateRequest\": {\"extendedKeyUsage\": "
                          "[\"TLS_ALL\"]}}"), &req, &err);
    ok(strstr(err.detail, "\"TLS_ALL\"") != NULL,
       "unknown EKU named: %s", err.detail);

    memset(&err, 0, sizeof(err));
    tsb_sign_req_parse(JS("{\"signCertificateRequest\": {\"keyUsage\": "
                          "[\"\xc3\xa9t\xc3\xa9\"]}}"), &req, &err);
    is_str(err.reason, "request.key_usage", "non-ASCII keyUsage name");
    ok(strchr(err.detail, '\xc3') == NULL,
       "non-ASCII keyUsage name not echoed: %s", err.detail);

    /* strings */

    refused_fields("NUL in commonName", "\"commonName\": \"a\\u0000b\"",
                   "json.string");
    refused_fields("NUL in keyPassword", "\"keyPassword\": \"\\u0000\"",
                   "json.string");
    refused_fields("NUL in a key", "\"a\\u0000\": 1", "json.string");
    refused_str("NUL inside requestSignature",
                "{\"requestSignature\": {\"s\": \"\\u0000\"}, "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", "json.string");

    big = malloc(70000 + 200);
    strcpy(big, "{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"");
    i = strlen(big);
    memset(big + i, 'A', 65537);
    strcpy(big + i + 65537, "\"}}");
    refused_str("string over 64 KiB", big, "json.size");

    /* exactly 64 KiB is fine */
    memset(big + i, 'A', 65536);
    strcpy(big + i + 65536, "\"}}");
    ok(parse_ok(big, &req) && req.csr_len == 65536, "64 KiB string accepted");
    tsb_sign_req_free(&req);
    free(big);
}


static void
test_depth(void)
{
    size_t          i, n;
    char           *buf, *p;
    tsb_sign_req_t  req;

    /* 10000 '[' inside requestSignature: refused early, no recursion */
    n = 10000;
    buf = malloc(n + 200);
    p = buf + sprintf(buf, "{\"requestSignature\": ");
    memset(p, '[', n);
    strcpy(p + n, "");
    refused_str("10000 '[' in requestSignature (unterminated)", buf,
                "json.depth");
    free(buf);

    buf = malloc(2 * n + 200);
    p = buf + sprintf(buf, "{\"requestSignature\": ");
    memset(p, '[', n);
    p += n;
    memset(p, ']', n);
    p += n;
    strcpy(p, ", \"signCertificateRequest\": "
              "{\"certificateSigningRequest\": \"x\"}}");
    refused_str("10000 balanced '[' in requestSignature", buf,
                "json.depth");
    free(buf);

    buf = malloc(n + 10);
    memset(buf, '[', n);
    buf[n] = '\0';
    refused_str("10000 '[' at the top", buf, "json.type");

    for (i = 0; i < n; i++) {
        buf[i] = (i % 5 == 0) ? '{' : ' ';
    }

    refused_str("10000 '{' at the top", buf, "json.syntax");
    free(buf);

    /* depth 8 in total is fine: object, requestSignature + 6 levels */
    ok(parse_ok("{\"requestSignature\": [[[[[[{\"a\": 1}]]]]]], "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", &req)
       && req.has_request_signature,
       "requestSignature nested to depth 8 accepted");
    tsb_sign_req_free(&req);

    refused_str("depth 9 refused",
                "{\"requestSignature\": [[[[[[[{\"a\": 1}]]]]]]], "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", "json.depth");
}


static void
test_sign_req_values(void)
{
    tsb_sign_req_t  req;

    /* keyPassword as the TSB's official clients send it: a char array */
    ok(parse_ok("{\"signCertificateRequest\": {\"keyPassword\": "
                "[\"p\", \"a\", \"\\u00df\", \"\xf0\x9f\x94\x91\", \"\\\"\"],"
                " \"certificateSigningRequest\": \"x\"}}", &req),
       "keyPassword as array of characters");
    ok(req.key_password_present, "keyPassword present");
    is_str(req.key_password, "pa\xc3\x9f\xf0\x9f\x94\x91\"",
           "characters joined (multi-byte ones too)");
    is_int(req.key_password_len, 9, "joined length in bytes");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"signCertificateRequest\": {"
                "\"keyPassword\": \"s3cr\\u00e9t\", "
                "\"certificateSigningRequest\": \"x\"}}", &req),
       "keyPassword as a string");
    is_str(req.key_password, "s3cr\xc3\xa9t", "keyPassword string decoded");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"signCertificateRequest\": {\"keyPassword\": [],"
                " \"certificateSigningRequest\": \"x\"}}", &req),
       "keyPassword empty array");
    ok(req.key_password_present && req.key_password != NULL
       && req.key_password[0] == '\0' && req.key_password_len == 0,
       "empty array is an empty password");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"signCertificateRequest\": {\"keyPassword\": null,"
                " \"certificateSigningRequest\": \"x\"}}", &req),
       "keyPassword null");
    ok(req.key_password_present && req.key_password == NULL,
       "null: present, no password");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", &req),
       "keyPassword absent");
    ok(!req.key_password_present && req.key_password == NULL,
       "absent: not present");
    is_int(req.certificate_authority, -1, "certificateAuthority absent");
    ok(!req.key_usage_present && !req.ext_key_usage_present,
       "usages absent");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"requestSignature\": {\"signature\": \"abc\", "
                "\"digestAlgorithm\": \"SHA-256\", \"publicKey\": null, "
                "\"n\": [1, 2.5, true, {\"x\": []}]}, "
                "\"signCertificateRequest\": {"
                "\"signKeyName\": null, \"signatureAlgorithm\": null, "
                "\"commonName\": \"caf\\u00e9\", "
                "\"certificateAuthority\": true, "
                "\"certificateSigningRequest\": \"x\", "
                "\"keyUsage\": [\"KEY_CERT_SIGN\", \"CRL_SIGN\", "
                "\"KEY_CERT_SIGN\"], \"extendedKeyUsage\": [], "
                "\"validity\": 36500, \"metaData\": \"m\", "
                "\"metaDataSignature\": null}}", &req),
       "every field, requestSignature object skipped");
    ok(req.has_request_signature, "has_request_signature");
    ok(req.sign_key_name == NULL && req.signature_algorithm == NULL,
       "nulls are NULL");
    is_str(req.common_name, "caf\xc3\xa9", "commonName UTF-8");
    is_int(req.certificate_authority, 1, "certificateAuthority true");
    is_int(req.key_usage, TSB_KU_KEY_CERT_SIGN | TSB_KU_CRL_SIGN,
           "keyUsage bits");
    ok(req.ext_key_usage_present && req.ext_key_usage == 0,
       "empty extendedKeyUsage present");
    is_int(req.validity, 36500, "validity");
    is_str(req.meta_data, "m", "metaData");
    ok(req.meta_data_signature == NULL, "metaDataSignature null");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"requestSignature\": \"sig\", "
                "\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\", \"validity\": 1}}",
                &req)
       && req.has_request_signature && req.validity == 1,
       "scalar requestSignature, validity 1");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\", \"validity\": null}}",
                &req)
       && req.validity == -1,
       "validity null is absent");
    tsb_sign_req_free(&req);
}


static int
build_is(const tsb_sign_req_t *req, const char *want, const char *name)
{
    int        eq;
    tsb_buf_t  out;

    if (tsb_sign_req_build(req, &out) != 0) {
        ok(0, "%s: build", name);
        return 0;
    }

    eq = strcmp((char *) out.data, want) == 0;
    ok(eq, "%s", name);

    if (!eq) {
        printf("#   got  %s\n#   want %s\n", out.data, want);
    }

    tsb_secure_zero(out.data, out.len);
    tsb_buf_free(&out);

    return eq;
}


static void
test_sign_req_build(void)
{
    char            *s1, *s2;
    tsb_buf_t        out, out2;
    tsb_sign_req_t   req, req2;

    memset(&req, 0, sizeof(req));
    req.certificate_authority = -1;
    req.validity = -1;
    req.csr = "csr";
    req.csr_len = 3;

    build_is(&req, "{\"signCertificateRequest\":{"
             "\"certificateAuthority\":false,"
             "\"certificateSigningRequest\":\"csr\"}}",
             "minimal build: CA false when absent, keyPassword omitted");

    req.key_password_present = 1;
    build_is(&req, "{\"signCertificateRequest\":{"
             "\"keyPassword\":null,"
             "\"certificateAuthority\":false,"
             "\"certificateSigningRequest\":\"csr\"}}",
             "keyPassword present but NULL: null");

    req.sign_key_name = "CA-Key";
    req.key_password = "pw\"1";
    req.key_password_len = 4;
    req.signature_algorithm = "SHA256_WITH_RSA";
    req.common_name = "caf\xc3\xa9";
    req.certificate_authority = 1;
    req.key_usage = TSB_KU_KEY_ENCIPHERMENT | TSB_KU_DIGITAL_SIGNATURE;
    req.ext_key_usage = TSB_EKU_CLIENT_AUTH | TSB_EKU_SERVER_AUTH;
    req.ext_key_usage_present = 1;
    req.validity = 30;
    req.meta_data = "m";
    req.meta_data_signature = "s";

    build_is(&req, "{\"signCertificateRequest\":{"
             "\"signKeyName\":\"CA-Key\","
             "\"keyPassword\":\"pw\\\"1\","
             "\"signatureAlgorithm\":\"SHA256_WITH_RSA\","
             "\"commonName\":\"caf\xc3\xa9\","
             "\"certificateAuthority\":true,"
             "\"certificateSigningRequest\":\"csr\","
             "\"keyUsage\":[\"DIGITAL_SIGNATURE\",\"KEY_ENCIPHERMENT\"],"
             "\"extendedKeyUsage\":[\"SERVER_AUTH\",\"CLIENT_AUTH\"],"
             "\"validity\":30,"
             "\"metaData\":\"m\","
             "\"metaDataSignature\":\"s\"}}",
             "full build, usages in bit order");

    req.common_name = "bad\xff";
    ok(tsb_sign_req_build(&req, &out) == -1 && out.data == NULL,
       "build refuses invalid UTF-8");
    req.common_name = NULL;

    req.key_usage = 0x8000;
    ok(tsb_sign_req_build(&req, &out) == -1 && out.data == NULL,
       "build refuses a keyUsage bit without a name");

    /* round trip: parse -> build -> parse -> build */
    ok(parse_ok("{\"requestSignature\": {}, \"signCertificateRequest\": {"
                "\"signKeyName\": \"k\", \"keyPassword\": [\"a\", \"b\"], "
                "\"signatureAlgorithm\": \"SHA384_WITH_ECDSA\", "
                "\"commonName\": \"\\u65e5\\u672c\", "
                "\"certificateAuthority\": false, "
                "\"certificateSigningRequest\": \"-----BEGIN CERTIFICATE "
                "REQUEST-----\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n\","
                " \"keyUsage\": [\"CRL_SIGN\", \"DIGITAL_SIGNATURE\"], "
                "\"extendedKeyUsage\": [\"OCSP_SIGNING\"], "
                "\"validity\": 365, \"metaData\": \"e30=\"}}", &req),
       "round trip: parse");
    ok(tsb_sign_req_build(&req, &out) == 0, "round trip: build");
    s1 = (char *) out.data;
    ok(parse_ok(s1, &req2), "round trip: parse the build");
    is_str(req2.key_password, "ab", "round trip keyPassword (now a string)");
    is_str(req2.common_name, req.common_name, "round trip commonName");
    is_str(req2.csr, req.csr, "round trip CSR");
    is_int(req2.key_usage, req.key_usage, "round trip keyUsage");
    is_int(req2.ext_key_usage, req.ext_key_usage,
           "round trip extendedKeyUsage");
    is_int(req2.validity, 365, "round trip validity");
    is_int(req2.certificate_authority, 0, "round trip CA");
    is_str(req2.meta_data, "e30=", "round trip metaData");
    ok(tsb_sign_req_build(&req2, &out2) == 0, "round trip: build again");
    s2 = (char *) out2.data;
    is_str(s2, s1, "second build equals the first");
    printf("# %s\n", s1);

    tsb_secure_zero(out.data, out.len);
    tsb_buf_free(&out);
    tsb_secure_zero(out2.data, out2.len);
    tsb_buf_free(&out2);
    tsb_sign_req_free(&req);
    tsb_sign_req_free(&req2);
}


static void
test_sign_resp(void)
{
    char         *id;
    tsb_buf_t     out;
    tsb_error_t   err;

#define SIGN_RESP(s, want)                                                    \
    do {                                                                      \
        int  rc_;                                                             \
        memset(&err, 0, sizeof(err));                                         \
        id = (char *) 1;                                                      \
        rc_ = tsb_sign_resp_parse(JS(s), &id, &err);                          \
        if (want) {                                                           \
            ok(rc_ == 0 && id != NULL, "sign answer %s accepted", s);         \
        } else {                                                              \
            ok(rc_ == -1 && id == NULL && err.status == 502                   \
               && strcmp(err.reason, "upstream.response") == 0,               \
               "sign answer %s refused: %s", s, err.detail);                  \
        }                                                                     \
        free(id);                                                             \
    } while (0)

    memset(&err, 0, sizeof(err));
    ok(tsb_sign_resp_parse(JS("{\"signRequestId\": "
                              "\"9dd448e1-6d34-4b98-a05b-3ec006d99fef\", "
                              "\"extra\": {\"a\": [1, {}]}}"), &id, &err)
       == 0, "sign answer with extra fields");
    is_str(id, "9dd448e1-6d34-4b98-a05b-3ec006d99fef", "signRequestId");
    free(id);

    SIGN_RESP("{\"signRequestId\": \"abc-123\"}", 1);
    SIGN_RESP("{\"signRequestId\": \"\"}", 0);
    SIGN_RESP("{\"signRequestId\": \"../../etc\"}", 0);
    SIGN_RESP("{\"signRequestId\": \"a b\"}", 0);
    SIGN_RESP("{\"signRequestId\": \"a\\r\\nX-Injected: 1\"}", 0);
    SIGN_RESP("{\"signRequestId\": "
              "\"00000000000000000000000000000000000000000000000000000000000"
              "000000\"}", 0);
    SIGN_RESP("{\"signRequestId\": null}", 0);
    SIGN_RESP("{\"signRequestId\": 12}", 0);
    SIGN_RESP("{\"signRequestId\": \"a\", \"signRequestId\": \"b\"}", 0);
    SIGN_RESP("{}", 0);
    SIGN_RESP("[]", 0);
    SIGN_RESP("\"abc\"", 0);
    SIGN_RESP("", 0);
    SIGN_RESP("<html>502 Bad Gateway</html>", 0);
    SIGN_RESP("{\"signRequestId\": \"abc\"} x", 0);
    SIGN_RESP("{\"signRequestId\": \"abc\"", 0);

    memset(&err, 0, sizeof(err));
    tsb_sign_resp_parse(JS("<html>secret</html>"), &id, &err);
    ok(strstr(err.detail, "secret") == NULL && strstr(err.detail, "html")
       == NULL, "upstream bytes not echoed: %s", err.detail);

    ok(tsb_sign_resp_build("abc-1", 5, &out) == 0, "sign answer build");
    is_str((char *) out.data, "{\"signRequestId\":\"abc-1\"}",
           "sign answer body");
    tsb_buf_free(&out);
}


static void
test_sync_sign_resp(void)
{
    char         *label, *cert;
    tsb_error_t   err;

    memset(&err, 0, sizeof(err));
    ok(tsb_sync_sign_resp_parse(JS("{\"label\": \"l1\", \"certificate\": "
                                   "\"-----BEGIN CERTIFICATE-----\\nMII\", "
                                   "\"x\": null}"), &label, &cert, &err)
       == 0, "synchronous sign answer");
    is_str(label, "l1", "label");
    is_str(cert, "-----BEGIN CERTIFICATE-----\nMII", "certificate");
    free(label);
    free(cert);

    memset(&err, 0, sizeof(err));
    ok(tsb_sync_sign_resp_parse(JS("{\"label\": \"l1\"}"), &label, &cert,
                                &err) == -1
       && label == NULL && cert == NULL && err.status == 502,
       "synchronous sign answer without certificate: %s", err.detail);

    memset(&err, 0, sizeof(err));
    ok(tsb_sync_sign_resp_parse(JS("{\"label\": \"l1\", \"certificate\": 5}"),
                                &label, &cert, &err) == -1
       && label == NULL && cert == NULL,
       "synchronous sign answer with a number certificate");
}


static int
status_refused(const char *json)
{
    int           rc;
    tsb_error_t   err;
    tsb_status_t  st;

    memset(&err, 0, sizeof(err));

    rc = tsb_status_parse((const unsigned char *) json, strlen(json), &st,
                          &err);

    if (rc == 0) {
        tsb_status_free(&st);
        return 0;
    }

    printf("# %s\n", err.detail);

    return err.status == 502 && strcmp(err.reason, "upstream.response") == 0
           && is_zeroed(&st, sizeof(st));
}


static void
test_status(void)
{
    char          *deep, *p;
    size_t         len, i;
    tsb_buf_t      out;
    tsb_error_t    err;
    tsb_status_t   st, st2;
    unsigned char *buf;

    buf = read_fixture("tsb-status-executed.json", &len);
    ok(buf != NULL, "read the status fixture");
    if (buf == NULL) {
        return;
    }

    memset(&err, 0, sizeof(err));
    ok(tsb_status_parse(buf, len, &st, &err) == 0, "status fixture parses");
    is_str(st.id, "9dd448e1-6d34-4b98-a05b-3ec006d99fef", "id");
    is_int(st.status, TSB_STATUS_EXECUTED, "status EXECUTED");
    is_str(st.execution_time, "2024-01-23T11:43:43Z", "executionTime");
    is_int(st.n_approved_by, 1, "one approver");
    ok(st.n_approved_by == 1 && strncmp(st.approved_by[0], "MIIBIjAN", 8)
       == 0, "approver key");
    ok(st.n_not_yet_approved_by == 0 && st.n_rejected_by == 0,
       "no pending or rejecting approvers");
    ok(st.result != NULL
       && strncmp(st.result, "-----BEGIN CERTIFICATE-----\n", 28) == 0,
       "result is PEM with real newlines");
    ok(st.result != NULL && strstr(st.result, "\n-----END CERTIFICATE-----")
       != NULL, "result ends with the END line");

    ok(tsb_status_build(&st, &out) == 0, "status build");
    memset(&err, 0, sizeof(err));
    ok(tsb_status_parse(out.data, out.len, &st2, &err) == 0,
       "status build reparses");
    is_str(st2.id, st.id, "reparsed id");
    is_int(st2.status, st.status, "reparsed status");
    is_str(st2.execution_time, st.execution_time, "reparsed executionTime");
    ok(st2.n_approved_by == 1
       && strcmp(st2.approved_by[0], st.approved_by[0]) == 0,
       "reparsed approvedBy");
    is_str(st2.result, st.result, "reparsed result");
    ok(strstr((char *) out.data, "\"notYetApprovedBy\":[]") != NULL
       && strstr((char *) out.data, "\"rejectedBy\":[]") != NULL,
       "empty lists are arrays");
    tsb_status_free(&st2);
    tsb_buf_free(&out);
    tsb_status_free(&st);
    ok(is_zeroed(&st, sizeof(st)), "status free zeroes");
    free(buf);

    /* pending, nulls */

    memset(&st, 0, sizeof(st));
    st.id = "abc";
    st.status = TSB_STATUS_PENDING;
    ok(tsb_status_build(&st, &out) == 0, "build with nulls");
    is_str((char *) out.data,
           "{\"id\":\"abc\",\"status\":\"PENDING\",\"executionTime\":null,"
           "\"approvedBy\":[],\"notYetApprovedBy\":[],\"rejectedBy\":[],"
           "\"result\":null}", "nulls and empty arrays");
    memset(&err, 0, sizeof(err));
    ok(tsb_status_parse(out.data, out.len, &st2, &err) == 0
       && st2.status == TSB_STATUS_PENDING && st2.result == NULL
       && st2.execution_time == NULL && st2.approved_by == NULL,
       "nulls reparse");
    tsb_status_free(&st2);
    tsb_buf_free(&out);

    /* the split the status cache relies on: the lists, exactly */

    {
        size_t   pos, len;
        char    *keys[] = { "key-A", "key-B" };

        st.approved_by = keys;
        st.n_approved_by = 2;
        pos = len = 0;
        ok(tsb_status_build_split(&st, &out, &pos, &len) == 0,
           "split build");
        ok(pos + len <= out.len
           && len == sizeof(",\"approvedBy\":[\"key-A\",\"key-B\"],"
                            "\"notYetApprovedBy\":[],\"rejectedBy\":[]") - 1
           && memcmp(out.data + pos, ",\"approvedBy\":[\"key-A\",\"key-B\"],"
                     "\"notYetApprovedBy\":[],\"rejectedBy\":[]", len) == 0,
           "split: the lists from the comma to rejectedBy's array");
        ok(pos == sizeof("{\"id\":\"abc\",\"status\":\"PENDING\","
                         "\"executionTime\":null") - 1
           && memcmp(out.data, "{\"id\":\"abc\",\"status\":\"PENDING\","
                     "\"executionTime\":null", pos) == 0
           && strcmp((char *) out.data + pos + len, ",\"result\":null}") == 0,
           "split: head and tail around them");
        tsb_buf_free(&out);
        st.approved_by = NULL;
        st.n_approved_by = 0;
    }

    st.status = TSB_STATUS_UNKNOWN;
    ok(tsb_status_build(&st, &out) == -1, "build refuses unknown status");

    memset(&err, 0, sizeof(err));
    ok(tsb_status_parse(JS("{\"id\": \"a\", \"status\": \"REJECTED\", "
                           "\"approvedBy\": null, \"rejectedBy\": [\"k1\", "
                           "\"k2\", \"k3\", \"k4\", \"k5\"], "
                           "\"new\": {\"deep\": [[[[{\"x\": [true]}]]]]}, "
                           "\"n\": 1.5e3}"), &st, &err) == 0,
       "unknown nested fields ignored: %s", err.detail);
    ok(st.status == TSB_STATUS_REJECTED && st.n_rejected_by == 5
       && strcmp(st.rejected_by[4], "k5") == 0, "rejectedBy list");
    tsb_status_free(&st);

    ok(status_refused("{\"id\": \"a\", \"status\": \"DONE\"}"),
       "unknown status refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"executed\"}"),
       "status is case-sensitive");
    ok(status_refused("{\"status\": \"PENDING\"}"), "missing id refused");
    ok(status_refused("{\"id\": \"a\"}"), "missing status refused");
    ok(status_refused("{\"id\": \"a\", \"status\": null}"),
       "null status refused");
    ok(status_refused("{\"id\": 5, \"status\": \"PENDING\"}"),
       "number id refused");
    ok(status_refused("{\"id\": \"a/b\", \"status\": \"PENDING\"}"),
       "implausible id refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"approvedBy\": \"k\"}"),
       "string approvedBy refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"approvedBy\": [1]}"),
       "number in approvedBy refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"approvedBy\": [[\"k\"]]}"),
       "nested array in approvedBy refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"result\": {}}"),
       "object result refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"result\": \"a\\u0000\"}"),
       "NUL in result refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\", "
                      "\"status\": \"EXECUTED\"}"),
       "duplicate status refused");
    ok(status_refused("[]"), "array refused");
    ok(status_refused("{\"id\": \"a\", \"status\": \"PENDING\"} []"),
       "trailing value refused");

    deep = malloc(20000 + 100);
    p = deep + sprintf(deep, "{\"id\": \"a\", \"status\": \"PENDING\", "
                             "\"x\": ");
    for (i = 0; i < 10000; i++) {
        *p++ = '[';
    }

    for (i = 0; i < 10000; i++) {
        *p++ = ']';
    }

    strcpy(p, "}");
    ok(status_refused(deep), "10000 nested unknown arrays refused");
    free(deep);

    is_str(tsb_status_name(TSB_STATUS_CANCELLED), "CANCELLED",
           "status name");
    ok(tsb_status_name(TSB_STATUS_UNKNOWN) == NULL
       && tsb_status_name(99) == NULL, "no name for unknown status");
    is_int(tsb_status_from_name("APPROVED", 8), TSB_STATUS_APPROVED,
           "status from name");
    is_int(tsb_status_from_name("APPROVEDX", 8), TSB_STATUS_APPROVED,
           "status from name uses len");
    is_int(tsb_status_from_name("APPROVE", 7), TSB_STATUS_UNKNOWN,
           "prefix is unknown");
    ok(!tsb_status_is_terminal(TSB_STATUS_PENDING)
       && !tsb_status_is_terminal(TSB_STATUS_APPROVED)
       && !tsb_status_is_terminal(TSB_STATUS_UNKNOWN)
       && tsb_status_is_terminal(TSB_STATUS_EXECUTED)
       && tsb_status_is_terminal(TSB_STATUS_FAILED)
       && tsb_status_is_terminal(TSB_STATUS_EXPIRED)
       && tsb_status_is_terminal(TSB_STATUS_REJECTED)
       && tsb_status_is_terminal(TSB_STATUS_CANCELLED),
       "terminal statuses");
}


static void
test_upstream_error(void)
{
    int     rc;
    char   *reason, *message, *big;
    size_t  i;

    rc = tsb_upstream_error_parse(JS("{\"errorCode\": 631, \"reason\": "
                                     "\"res.error.key.not.found\", "
                                     "\"message\": \"Key not found\"}"),
                                  &reason, &message);
    ok(rc == 0, "TSB error body");
    is_str(reason, "res.error.key.not.found", "reason");
    is_str(message, "Key not found", "message");
    free(reason);
    free(message);

    rc = tsb_upstream_error_parse(JS("{\"reason\": 5, \"message\": [\"a\"], "
                                     "\"x\": {\"y\": [1]}, "
                                     "\"message\": \"m\"}"),
                                  &reason, &message);
    ok(rc == 0 && reason == NULL && message != NULL
       && strcmp(message, "m") == 0,
       "wrong types skipped, later string taken");
    free(reason);
    free(message);

    rc = tsb_upstream_error_parse(JS("{\"reason\": \"a\", \"reason\": \"b\"}"),
                                  &reason, &message);
    ok(rc == 0 && reason && strcmp(reason, "a") == 0 && message == NULL,
       "duplicate: first kept");
    free(reason);
    free(message);

    rc = tsb_upstream_error_parse(JS("{\"reason\": \"a\\u0000b\"}"),
                                  &reason, &message);
    ok(rc == 0 && reason && strcmp(reason, "a") == 0,
       "NUL cuts the text");
    free(reason);
    free(message);

    rc = tsb_upstream_error_parse(JS("[1]"), &reason, &message);
    ok(rc == -1 && reason == NULL && message == NULL, "array: -1");

    rc = tsb_upstream_error_parse(JS("<html>Bad gateway</html>"),
                                  &reason, &message);
    ok(rc == -1 && reason == NULL && message == NULL, "HTML: -1");

    rc = tsb_upstream_error_parse(JS("{\"reason\": \"a\""), &reason, &message);
    ok(rc == -1 && reason == NULL && message == NULL, "truncated: -1");

    rc = tsb_upstream_error_parse(JS(""), &reason, &message);
    ok(rc == -1 && reason == NULL && message == NULL, "empty: -1");

    rc = tsb_upstream_error_parse(JS("{}"), &reason, &message);
    ok(rc == 0 && reason == NULL && message == NULL, "{}: 0, nothing");

    /* deep nesting is tolerated: yajl itself does not recurse */
    big = malloc(40000);
    strcpy(big, "{\"x\": ");
    for (i = 0; i < 10000; i++) {
        strcat(big + 6 + i, "[");
    }
    for (i = 0; i < 10000; i++) {
        big[6 + 10000 + i] = ']';
    }
    strcpy(big + 6 + 20000, ", \"message\": \"deep\"}");
    rc = tsb_upstream_error_parse((unsigned char *) big, strlen(big),
                                  &reason, &message);
    ok(rc == 0 && message && strcmp(message, "deep") == 0,
       "deeply nested extra field skipped");
    free(reason);
    free(message);

    /* long texts are cut at a character boundary */
    strcpy(big, "{\"message\": \"");
    for (i = 0; i < 2000; i++) {
        strcat(big + 13 + 2 * i, "\xc3\xa9");
    }
    strcat(big, "\"}");
    rc = tsb_upstream_error_parse((unsigned char *) big, strlen(big),
                                  &reason, &message);
    ok(rc == 0 && message && strlen(message) == 1024,
       "long message cut to 1024 bytes on a character boundary");
    free(reason);
    free(message);
    free(big);
}


static int
strict_json(const char *s)
{
    char      errbuf[256];
    yajl_val  v;

    v = yajl_tree_parse(s, errbuf, sizeof(errbuf));
    if (v == NULL) {
        return 0;
    }

    yajl_tree_free(v);

    return 1;
}


static void
test_error_build(void)
{
    tsb_buf_t  out;

    ok(tsb_error_build("Bad Request", "json.syntax",
                       "invalid JSON at line 1, column 2 (byte 1): x",
                       &out) == 0, "error build");
    is_str((char *) out.data,
           "{\"error\":\"Bad Request\",\"reason\":\"json.syntax\","
           "\"detail\":\"invalid JSON at line 1, column 2 (byte 1): x\"}",
           "error body");
    tsb_buf_free(&out);

    ok(tsb_error_build("Forbidden", "policy.common_name", NULL, &out) == 0,
       "error build with NULL detail");
    is_str((char *) out.data,
           "{\"error\":\"Forbidden\",\"reason\":\"policy.common_name\","
           "\"detail\":\"\"}", "NULL detail is empty");
    tsb_buf_free(&out);

    ok(tsb_error_build("Bad Request", "csr.subject",
                       "CN \"caf\xe9\" has \xff\xfe bytes \xc3\xa9 \xc0\x80"
                       " \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82",
                       &out) == 0,
       "error build with invalid UTF-8 detail");
    is_str((char *) out.data,
           "{\"error\":\"Bad Request\",\"reason\":\"csr.subject\","
           "\"detail\":\"CN \\\"caf?\\\" has ?? bytes \xc3\xa9 ?? ??? ????"
           " ??\"}",
           "invalid bytes became '?', valid ones kept");
    ok(out.data && strict_json((char *) out.data), "body is valid JSON");
    tsb_buf_free(&out);

    ok(tsb_error_build("Bad Request", "x", "tab\there\nnl \x01", &out) == 0
       && strcmp((char *) out.data,
                 "{\"error\":\"Bad Request\",\"reason\":\"x\","
                 "\"detail\":\"tab\\there\\nnl \\u0001\"}") == 0,
       "control characters escaped");
    tsb_buf_free(&out);
}


static void
test_error_build_tsb(void)
{
    tsb_buf_t  out;

    ok(tsb_error_build_tsb("not_found", "request.id", "no such id", 404,
                           &out) == 0, "TSB-shaped error build");
    is_str((char *) out.data,
           "{\"errorCode\":404,\"reason\":\"request.id\","
           "\"message\":\"no such id\",\"error\":\"not_found\","
           "\"detail\":\"no such id\"}",
           "errorCode, reason, message, then error and detail");
    ok(out.data && strict_json((char *) out.data), "body is valid JSON");
    tsb_buf_free(&out);

    ok(tsb_error_build_tsb("unauthorized", "request.unauthorized",
                           "bad \xff", 401, &out) == 0
       && strcmp((char *) out.data,
                 "{\"errorCode\":401,\"reason\":\"request.unauthorized\","
                 "\"message\":\"bad ?\",\"error\":\"unauthorized\","
                 "\"detail\":\"bad ?\"}") == 0,
       "invalid UTF-8 in both message and detail becomes '?'");
    tsb_buf_free(&out);

    ok(tsb_error_build_tsb("x", "y", "z", 0, &out) == 0
       && strcmp((char *) out.data,
                 "{\"error\":\"x\",\"reason\":\"y\",\"detail\":\"z\"}")
          == 0, "code 0: the gateway's shape");
    tsb_buf_free(&out);
}


/* yajl turns a lone surrogate escape into '?': refused before it can */
static void
test_surrogate_escapes(void)
{
    size_t           i;
    tsb_error_t      err;
    tsb_sign_req_t   req;
    char             body[256];

    static const struct {
        const char  *value;
        int          ok;
    } cases[] = {
        { "a\\ud800b", 0 },
        { "a\\udc00b", 0 },
        { "\\ud800\\u0041", 0 },
        { "\\ud800", 0 },
        { "\\ud83d\\ude00", 1 },
        { "a\\\\ud800", 1 },          /* an escaped backslash, then text */
        { "\\u00e9", 1 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"signCertificateRequest\": {\"keyPassword\": \"%s\", "
                 "\"certificateSigningRequest\": \"x\"}}", cases[i].value);

        memset(&err, 0, sizeof(err));

        if (cases[i].ok) {
            ok(tsb_sign_req_parse((unsigned char *) body, strlen(body), &req,
                                  &err) == 0,
               "keyPassword \"%s\" parses", cases[i].value);
            tsb_sign_req_free(&req);

        } else {
            ok(tsb_sign_req_parse((unsigned char *) body, strlen(body), &req,
                                  &err) == -1
               && err.status == 400 && strcmp(err.reason, "json.string") == 0,
               "keyPassword \"%s\" is refused as json.string",
               cases[i].value);
        }
    }
}


/* the shapes Securosys' own clients (tsb-client-go, the Vault plugin) send */

static int
same_build(const char *a, const char *b, const char *name)
{
    int             eq;
    tsb_buf_t       oa, ob;
    tsb_sign_req_t  ra, rb;

    eq = 0;

    if (!parse_ok(a, &ra)) {
        ok(0, "%s: parse the first", name);
        return 0;
    }

    if (!parse_ok(b, &rb)) {
        tsb_sign_req_free(&ra);
        ok(0, "%s: parse the second", name);
        return 0;
    }

    if (tsb_sign_req_build(&ra, &oa) == 0) {
        if (tsb_sign_req_build(&rb, &ob) == 0) {
            eq = oa.len == ob.len && memcmp(oa.data, ob.data, oa.len) == 0;

            if (!eq) {
                printf("#   %s\n#   %s\n", oa.data, ob.data);
            }

            tsb_buf_free(&ob);
        }

        tsb_buf_free(&oa);
    }

    ok(eq && ra.key_usage == rb.key_usage
       && ra.key_usage_present == rb.key_usage_present
       && ra.ext_key_usage == rb.ext_key_usage
       && ra.ext_key_usage_present == rb.ext_key_usage_present, "%s", name);

    tsb_sign_req_free(&ra);
    tsb_sign_req_free(&rb);

    return eq;
}


#define SR(fields, top)                                                       \
    "{\"signCertificateRequest\": {\"certificateSigningRequest\": \"x\""      \
    fields "}" top "}"


static void
test_vendor_shapes(void)
{
    tsb_sign_req_t  req;

    /* requestSignature: null is not a signature (issue 13, point 4) */

    ok(parse_ok(SR("", ", \"requestSignature\": null"), &req)
       && !req.has_request_signature && !tsb_sign_req_signed(&req),
       "requestSignature null: not signed");
    tsb_sign_req_free(&req);

    ok(parse_ok("{\"requestSignature\": null, \"signCertificateRequest\": "
                "{\"certificateSigningRequest\": \"x\"}}", &req)
       && !req.has_request_signature,
       "requestSignature null before the request: not signed");
    tsb_sign_req_free(&req);

    ok(parse_ok(SR(", \"metaData\": \"bQ==\", \"metaDataSignature\": null",
                   ", \"requestSignature\": null"), &req)
       && !tsb_sign_req_signed(&req),
       "both signatures null (the Go client without a key pair)");
    tsb_sign_req_free(&req);

    ok(parse_ok(SR("", ", \"requestSignature\": {\"signature\": null}"),
                &req)
       && req.has_request_signature && tsb_sign_req_signed(&req),
       "requestSignature object (even with a null inside): signed");
    tsb_sign_req_free(&req);

    ok(parse_ok(SR("", ", \"requestSignature\": [null]"), &req)
       && req.has_request_signature,
       "requestSignature [null]: signed (not the null the clients send)");
    tsb_sign_req_free(&req);

    refused_str("requestSignature null twice",
                SR("", ", \"requestSignature\": null, "
                   "\"requestSignature\": null"), "json.duplicate_key");

    /* keyUsage joined by commas, "" for none (point 5) */

    {
        size_t       bad_len;
        const char  *bad;

        is_int(tsb_key_usage_element("", 0, NULL, NULL), 0,
               "element \"\": no usage");
        is_int(tsb_key_usage_element("DIGITAL_SIGNATURE,KEY_AGREEMENT", 31,
                                     NULL, NULL),
               TSB_KU_DIGITAL_SIGNATURE | TSB_KU_KEY_AGREEMENT,
               "element with two names");
        bad = NULL;
        ok(tsb_key_usage_element("DIGITAL_SIGNATURE,,CRL_SIGN", 27, &bad,
                                 &bad_len) == -1
           && bad_len == 0, "an empty piece is refused");
        ok(tsb_ext_key_usage_element("SERVER_AUTH,NOPE", 16, &bad, &bad_len)
           == -1 && bad_len == 4 && strncmp(bad, "NOPE", 4) == 0,
           "the unknown piece is pointed at");
        is_int(tsb_ext_key_usage_element("CLIENT_AUTH", 11, NULL, NULL),
               TSB_EKU_CLIENT_AUTH, "one name is one name");
    }

    ok(parse_ok(SR(", \"keyUsage\": "
                   "[\"DIGITAL_SIGNATURE,KEY_ENCIPHERMENT\"]", ""), &req)
       && req.key_usage_present
       && req.key_usage == (TSB_KU_DIGITAL_SIGNATURE
                            | TSB_KU_KEY_ENCIPHERMENT),
       "keyUsage joined by a comma: both bits");
    tsb_sign_req_free(&req);

    ok(parse_ok(SR(", \"keyUsage\": [\"\"], \"extendedKeyUsage\": [\"\"]",
                   ""), &req)
       && req.key_usage_present && req.key_usage == 0
       && req.ext_key_usage_present && req.ext_key_usage == 0,
       "[\"\"]: present, no usage (as [])");
    tsb_sign_req_free(&req);

    ok(parse_ok(SR(", \"extendedKeyUsage\": "
                   "[\"SERVER_AUTH,CLIENT_AUTH\", \"CODE_SIGNING\"]", ""),
                &req)
       && req.ext_key_usage == (TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH
                                | TSB_EKU_CODE_SIGNING),
       "extendedKeyUsage: joined and separate elements add up");
    tsb_sign_req_free(&req);

    same_build(SR(", \"keyUsage\": [\"DIGITAL_SIGNATURE,KEY_ENCIPHERMENT\"]",
                  ""),
               SR(", \"keyUsage\": [\"DIGITAL_SIGNATURE\", "
                  "\"KEY_ENCIPHERMENT\"]", ""),
               "joined keyUsage forwarded as the array that was judged");
    same_build(SR(", \"keyUsage\": [\"\"], \"extendedKeyUsage\": [\"\"]", ""),
               SR(", \"keyUsage\": [], \"extendedKeyUsage\": []", ""),
               "[\"\"] forwarded as []");
    same_build(SR(", \"extendedKeyUsage\": [\"SERVER_AUTH,SERVER_AUTH\"]",
                  ""),
               SR(", \"extendedKeyUsage\": [\"SERVER_AUTH\"]", ""),
               "a name twice in one element is the name once");

    refused_fields("keyUsage with a trailing comma",
                   "\"keyUsage\": [\"DIGITAL_SIGNATURE,\"]",
                   "request.key_usage");
    refused_fields("keyUsage with an empty piece",
                   "\"keyUsage\": [\"DIGITAL_SIGNATURE,,KEY_AGREEMENT\"]",
                   "request.key_usage");
    refused_fields("keyUsage that is a lone comma", "\"keyUsage\": [\",\"]",
                   "request.key_usage");
    refused_fields("keyUsage joined with a space",
                   "\"keyUsage\": [\"DIGITAL_SIGNATURE, KEY_ENCIPHERMENT\"]",
                   "request.key_usage");
    refused_fields("keyUsage with an unknown joined name",
                   "\"keyUsage\": [\"DIGITAL_SIGNATURE,KEY_CERT_SIGNS\"]",
                   "request.key_usage");
    refused_fields("extendedKeyUsage with an unknown joined name",
                   "\"extendedKeyUsage\": [\"SERVER_AUTH,ANY\"]",
                   "request.extended_key_usage");
}


int
main(void)
{
    test_documented_fixture();
    test_sign_req_errors();
    test_depth();
    test_sign_req_values();
    test_sign_req_build();
    test_sign_resp();
    test_sync_sign_resp();
    test_status();
    test_upstream_error();
    test_error_build();
    test_vendor_shapes();
    test_error_build_tsb();

    test_surrogate_escapes();

    return done_testing();
}
