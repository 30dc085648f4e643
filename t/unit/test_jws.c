
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JWS and ACME codecs (tsb_jws.c, tsb_acme.c): keys made here with
 * OpenSSL for every algorithm, requests signed the way ACME clients sign
 * them, then verified, tampered with, and refused for each header rule.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "tsb_jws.h"
#include "tsb_acme.h"
#include "tap.h"


static char *
b64(const void *p, size_t len)
{
    tsb_buf_t  b;

    if (tsb_b64url_encode(p, len, &b) != 0 || b.data == NULL) {
        abort();
    }

    return (char *) b.data;
}


static char *
b64s(const char *s)
{
    return b64(s, strlen(s));
}


static EVP_PKEY *
keygen(const char *type, const char *param)
{
    EVP_PKEY      *k = NULL;
    EVP_PKEY_CTX  *c;

    c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (c == NULL || EVP_PKEY_keygen_init(c) <= 0) {
        abort();
    }

    if (strcmp(type, "EC") == 0) {
        EVP_PKEY_CTX_set_group_name(c, param);

    } else if (strcmp(type, "RSA") == 0) {
        EVP_PKEY_CTX_set_rsa_keygen_bits(c, atoi(param));
    }

    if (EVP_PKEY_keygen(c, &k) <= 0) {
        abort();
    }

    EVP_PKEY_CTX_free(c);

    return k;
}


/* the JWK of a key, as a client writes it (members in its own order) */
static char *
jwk_of(EVP_PKEY *k)
{
    char           *out, *x, *y, *n, *e;
    size_t          len, flen;
    BIGNUM         *bn = NULL, *be = NULL;
    unsigned char   buf[1024], nb[1024];

    out = malloc(4096);

    switch (EVP_PKEY_get_base_id(k)) {

    case EVP_PKEY_EC:
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                        buf, sizeof(buf), &len);
        flen = (len - 1) / 2;
        x = b64(buf + 1, flen);
        y = b64(buf + 1 + flen, flen);
        snprintf(out, 4096, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\","
                 "\"y\":\"%s\"}",
                 flen == 32 ? "P-256" : flen == 48 ? "P-384" : "P-521", x, y);
        free(x);
        free(y);
        break;

    case EVP_PKEY_RSA:
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn);
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &be);
        len = (size_t) BN_bn2bin(bn, nb);
        n = b64(nb, len);
        len = (size_t) BN_bn2bin(be, nb);
        e = b64(nb, len);
        snprintf(out, 4096, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
                 e, n);
        free(n);
        free(e);
        BN_free(bn);
        BN_free(be);
        break;

    default:
        len = sizeof(buf);
        EVP_PKEY_get_raw_public_key(k, buf, &len);
        x = b64(buf, len);
        snprintf(out, 4096, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\","
                 "\"x\":\"%s\"}", x);
        free(x);
    }

    return out;
}


/* signs "prot.payload" as alg wants: raw r||s for ECDSA */
static char *
sign(EVP_PKEY *k, const char *alg, const char *input)
{
    char           *out;
    size_t          len, flen;
    EVP_MD_CTX     *md;
    ECDSA_SIG      *es;
    const BIGNUM   *r, *s;
    const EVP_MD   *h = NULL;
    unsigned char   sig[1024], raw[200];
    const unsigned char  *p;

    if (strcmp(alg, "ES256") == 0 || strcmp(alg, "RS256") == 0) {
        h = EVP_sha256();

    } else if (strcmp(alg, "ES384") == 0) {
        h = EVP_sha384();

    } else if (strcmp(alg, "ES512") == 0) {
        h = EVP_sha512();
    }

    md = EVP_MD_CTX_new();
    len = sizeof(sig);

    if (EVP_DigestSignInit(md, NULL, h, NULL, k) != 1
        || EVP_DigestSign(md, sig, &len, (const unsigned char *) input,
                          strlen(input)) != 1)
    {
        abort();
    }

    EVP_MD_CTX_free(md);

    if (alg[0] != 'E' || alg[1] != 'S') {
        return b64(sig, len);
    }

    flen = strcmp(alg, "ES256") == 0 ? 32 : strcmp(alg, "ES384") == 0
                                            ? 48 : 66;
    p = sig;
    es = d2i_ECDSA_SIG(NULL, &p, (long) len);
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, raw, (int) flen);
    BN_bn2binpad(s, raw + flen, (int) flen);
    ECDSA_SIG_free(es);

    out = b64(raw, 2 * flen);

    return out;
}


/* a flattened JWS; hdr is the protected header's JSON */
static char *
jws_make(EVP_PKEY *k, const char *alg, const char *hdr, const char *payload)
{
    char   *prot, *pl, *input, *sig, *out;
    size_t  n;

    prot = b64s(hdr);
    pl = b64s(payload);

    n = strlen(prot) + strlen(pl) + 2;
    input = malloc(n);
    if (input == NULL || prot == NULL || pl == NULL) {
        abort();
    }

    snprintf(input, n, "%s.%s", prot, pl);

    sig = sign(k, alg, input);

    n = strlen(prot) + strlen(pl) + strlen(sig) + 64;
    out = malloc(n);
    snprintf(out, n, "{\"protected\":\"%s\",\"payload\":\"%s\","
             "\"signature\":\"%s\"}", prot, pl, sig);

    free(prot);
    free(pl);
    free(input);
    free(sig);

    return out;
}


static char *
hdr_jwk(const char *alg, const char *jwk)
{
    char  *h = malloc(8192);

    snprintf(h, 8192, "{\"alg\":\"%s\",\"jwk\":%s,\"nonce\":\"abc\","
             "\"url\":\"https://ca.example/acme/new-account\"}", alg, jwk);

    return h;
}


static int
parse_verify(const char *body, tsb_error_t *err)
{
    int        rc;
    tsb_jws_t  jws;

    memset(err, 0, sizeof(tsb_error_t));

    if (tsb_jws_parse((const unsigned char *) body, strlen(body),
                      TSB_JWS_ACME, &jws, err) != 0)
    {
        return -1;
    }

    rc = tsb_jws_verify(&jws, NULL, err);
    tsb_jws_free(&jws);

    return rc;
}


static void
test_algorithms(void)
{
    int          i;
    char        *jwk, *hdr, *body;
    EVP_PKEY    *k;
    tsb_error_t  err;

    static const struct {
        const char  *type, *param, *alg;
    } keys[] = {
        { "EC", "P-256", "ES256" },
        { "EC", "P-384", "ES384" },
        { "EC", "P-521", "ES512" },
        { "RSA", "2048", "RS256" },
        { "ED25519", NULL, "EdDSA" },
    };

    for (i = 0; i < 5; i++) {
        k = keygen(keys[i].type, keys[i].param);
        jwk = jwk_of(k);
        hdr = hdr_jwk(keys[i].alg, jwk);

        body = jws_make(k, keys[i].alg, hdr, "{\"contact\":[]}");
        is_int(parse_verify(body, &err), 0, "%s verifies", keys[i].alg);

        /* one changed byte of the payload */
        body[strlen("{\"protected\":\"") + strlen(hdr) * 4 / 3 + 4] ^= 1;
        ok(parse_verify(body, &err) != 0, "%s: a changed body does not "
           "verify", keys[i].alg);
        free(body);

        /* POST-as-GET: an empty payload */
        body = jws_make(k, keys[i].alg, hdr, "");
        is_int(parse_verify(body, &err), 0, "%s: POST-as-GET verifies",
               keys[i].alg);
        free(body);

        free(hdr);
        free(jwk);
        EVP_PKEY_free(k);
    }
}


static void
test_header_rules(void)
{
    char        *jwk, *body, *other_jwk;
    char         hdr[8192];
    EVP_PKEY    *k, *other;
    tsb_jws_t    jws;
    tsb_error_t  err;

    k = keygen("EC", "P-256");
    other = keygen("EC", "P-256");
    jwk = jwk_of(k);
    other_jwk = jwk_of(other);

#define REFUSED(h, want, what)                                                \
    do {                                                                      \
        body = jws_make(k, "ES256", h, "{}");                                 \
        ok(parse_verify(body, &err) != 0 && err.reason                        \
           && strcmp(err.reason, want) == 0, what " (%s)",                    \
           err.reason ? err.reason : "accepted");                             \
        free(body);                                                           \
    } while (0)

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"nonce\":\"n\","
             "\"url\":\"u\"}");
    REFUSED(hdr, "malformed", "neither jwk nor kid");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"jwk\":%s,\"kid\":\"k\","
             "\"nonce\":\"n\",\"url\":\"u\"}", jwk);
    REFUSED(hdr, "malformed", "jwk and kid");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"jwk\":%s,"
             "\"url\":\"u\"}", jwk);
    REFUSED(hdr, "badNonce", "no nonce");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"jwk\":%s,"
             "\"nonce\":\"n\"}", jwk);
    REFUSED(hdr, "malformed", "no url");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"jwk\":%s,"
             "\"nonce\":\"n\",\"url\":\"u\"}", jwk);
    REFUSED(hdr, "badSignatureAlgorithm", "alg none");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"jwk\":%s,"
             "\"nonce\":\"n\",\"url\":\"u\"}", jwk);
    REFUSED(hdr, "badSignatureAlgorithm", "a MAC on an ACME request");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES384\",\"jwk\":%s,"
             "\"nonce\":\"n\",\"url\":\"u\"}", jwk);
    REFUSED(hdr, "badSignatureAlgorithm", "ES384 with a P-256 key");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"alg\":\"ES256\","
             "\"jwk\":%s,\"nonce\":\"n\",\"url\":\"u\"}", jwk);
    REFUSED(hdr, "malformed", "a duplicate header member");

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"jwk\":%s,"
             "\"nonce\":\"n\",\"url\":\"u\",\"crit\":[\"x\"]}", jwk);
    REFUSED(hdr, "malformed", "crit");

    /* signed by another key than the header's jwk */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"jwk\":%s,"
             "\"nonce\":\"n\",\"url\":\"u\"}", other_jwk);
    REFUSED(hdr, "unauthorized", "signed by another key");

    /* the outer object */
    memset(&err, 0, sizeof(err));
    ok(tsb_jws_parse((const unsigned char *) "{\"protected\":\"e30\","
                     "\"payload\":\"\",\"signature\":\"\",\"header\":{}}",
                     68, TSB_JWS_ACME, &jws, &err) != 0,
       "an unprotected header is refused");
    ok(tsb_jws_parse((const unsigned char *) "{\"protected\":\"e30=\","
                     "\"payload\":\"\",\"signature\":\"\"}", 50,
                     TSB_JWS_ACME, &jws, &err) != 0,
       "base64 padding is refused");
    ok(tsb_jws_parse((const unsigned char *) "[1]", 3, TSB_JWS_ACME, &jws,
                     &err) != 0, "an array is refused");

    /* a kid request: parsed, verified with the account's key */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"https://x/"
             "acct/1\",\"nonce\":\"n\",\"url\":\"u\"}");
    body = jws_make(k, "ES256", hdr, "{}");
    is_int(tsb_jws_parse((const unsigned char *) body, strlen(body),
                         TSB_JWS_ACME, &jws, &err), 0, "kid request parses");
    ok(jws.kid && strcmp(jws.kid, "https://x/acct/1") == 0, "kid kept");
    {
        tsb_jwk_t  acct;

        is_int(tsb_jwk_parse((const unsigned char *) jwk, strlen(jwk), &acct,
                             &err), 0, "account key parses");
        is_int(tsb_jws_verify(&jws, &acct, &err), 0,
               "verified with the account's key");
        tsb_jwk_free(&acct);

        is_int(tsb_jwk_parse((const unsigned char *) other_jwk,
                             strlen(other_jwk), &acct, &err), 0,
               "other key parses");
        ok(tsb_jws_verify(&jws, &acct, &err) != 0,
           "not verified with another account's key");
        tsb_jwk_free(&acct);
    }
    tsb_jws_free(&jws);
    free(body);

    free(jwk);
    free(other_jwk);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}


static void
test_thumbprint(void)
{
    tsb_jwk_t    key;
    tsb_error_t  err;

    /* RFC 7638 section 3.1 */
    static const char  rfc[] =
        "{\"kty\":\"RSA\",\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbW"
        "hM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
        "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qv"
        "zqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
        "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-cs"
        "FCur-kEgU8awapJzKnqDKgw\",\"e\":\"AQAB\",\"alg\":\"RS256\","
        "\"kid\":\"2011-04-29\"}";

    is_int(tsb_jwk_parse((const unsigned char *) rfc, sizeof(rfc) - 1, &key,
                         &err), 0, "RFC 7638 key parses");
    ok(strcmp(key.thumb, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs") == 0,
       "RFC 7638 thumbprint (%s)", key.thumb);
    ok(strncmp((char *) key.canon.data, "{\"e\":\"AQAB\",\"kty\":\"RSA\","
               "\"n\":\"0vx7", 29) == 0, "canonical member order");
    tsb_jwk_free(&key);

    ok(tsb_jwk_parse((const unsigned char *) "{\"kty\":\"EC\","
                     "\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}", 48,
                     &key, &err) != 0
       && strcmp(err.reason, "badPublicKey") == 0, "a short EC point");
    ok(tsb_jwk_parse((const unsigned char *) "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
                     26, &key, &err) != 0, "a symmetric key");
}


static void
test_eab(void)
{
    char          *jwk, *prot, *pl, *input, *body, *sig;
    char           hdr[512], buf[8192];
    size_t         n;
    EVP_PKEY      *k;
    tsb_jwk_t      inner;
    tsb_error_t    err;
    unsigned int   mdlen;
    unsigned char  md[64];
    tsb_acme_account_req_t  req;

    static const unsigned char  secret[] = "0123456789abcdef0123456789abcdef";

    k = keygen("EC", "P-256");
    jwk = jwk_of(k);

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"team-a\","
             "\"url\":\"https://ca.example/acme/new-account\"}");
    prot = b64s(hdr);
    pl = b64s(jwk);
    n = strlen(prot) + strlen(pl) + 2;
    input = malloc(n);
    snprintf(input, n, "%s.%s", prot, pl);
    HMAC(EVP_sha256(), secret, 32, (unsigned char *) input, strlen(input),
         md, &mdlen);
    sig = b64(md, mdlen);

    snprintf(buf, sizeof(buf), "{\"termsOfServiceAgreed\":true,"
             "\"contact\":[\"mailto:a@example.com\"],"
             "\"externalAccountBinding\":{\"protected\":\"%s\","
             "\"payload\":\"%s\",\"signature\":\"%s\"}}", prot, pl, sig);

    body = buf;
    is_int(tsb_acme_account_req_parse((unsigned char *) body, strlen(body),
                                      TSB_ACME_NEW_ACCOUNT, &req, &err), 0,
           "newAccount with EAB parses");
    ok(req.has_eab && strcmp(req.eab.kid, "team-a") == 0, "EAB kid");
    ok(req.tos_agreed == 1 && req.n_contact == 1, "tos and contact");
    is_int(tsb_jws_verify_hmac(&req.eab, secret, 32, &err), 0,
           "EAB MAC verifies");
    ok(tsb_jws_verify_hmac(&req.eab, (unsigned char *) "wrong", 5, &err)
       != 0 && strcmp(err.reason, "unauthorized") == 0,
       "EAB with another key does not");
    is_int(tsb_jwk_parse(req.eab.payload.data, req.eab.payload.len, &inner,
                         &err), 0, "EAB payload is a JWK");
    tsb_jwk_free(&inner);
    tsb_acme_account_req_free(&req);

    snprintf(buf, sizeof(buf), "{\"contact\":[\"tel:+123\"]}");
    ok(tsb_acme_account_req_parse((unsigned char *) buf, strlen(buf),
                                  TSB_ACME_NEW_ACCOUNT, &req, &err) != 0
       && strcmp(err.reason, "unsupportedContact") == 0, "tel: contact");

    snprintf(buf, sizeof(buf), "{\"termsOfServiceAgreed\":\"yes\"}");
    ok(tsb_acme_account_req_parse((unsigned char *) buf, strlen(buf),
                                  TSB_ACME_NEW_ACCOUNT, &req, &err) != 0,
       "a string for a boolean");

    free(prot);
    free(pl);
    free(input);
    free(sig);
    free(jwk);
    EVP_PKEY_free(k);
}


static void
test_orders(void)
{
    char                  buf[2048];
    tsb_buf_t             out;
    tsb_error_t           err;
    tsb_acme_order_t      o, o2;
    tsb_acme_order_req_t  req;

    snprintf(buf, sizeof(buf), "{\"identifiers\":[{\"type\":\"dns\","
             "\"value\":\"WWW.Svc.Example.\"},{\"type\":\"dns\","
             "\"value\":\"www.svc.example\"},{\"type\":\"dns\","
             "\"value\":\"*.svc.example\"}]}");
    is_int(tsb_acme_order_req_parse((unsigned char *) buf, strlen(buf), &req,
                                    &err), 0, "newOrder parses");
    is_int(req.n, 2, "duplicates merged");
    ok(strcmp(req.idents[0].value, "www.svc.example") == 0,
       "lower case, no trailing dot");

    memset(&o, 0, sizeof(o));
    o.account = strdup("acct1");
    o.status = TSB_ACME_READY;
    o.expires = 1800000000;
    o.n = req.n;
    memcpy(o.idents, req.idents, sizeof(req.idents));
    req.n = 0;

    is_int(tsb_acme_order_build(&o, "https://ca/acme/", "o1", &out), 0,
           "order object");
    ok(strstr((char *) out.data, "\"status\":\"ready\"")
       && strstr((char *) out.data, "\"https://ca/acme/authz/o1-1\"")
       && strstr((char *) out.data, "\"finalize\":\"https://ca/acme/"
                                    "finalize/o1\"")
       && strstr((char *) out.data, "2027-01-15T08:00:00Z")
       && !strstr((char *) out.data, "certificate"),
       "order fields: %s", out.data);
    tsb_buf_free(&out);

    is_int(tsb_acme_authz_build(&o, 1, "https://ca/acme/", "o1", &out), 0,
           "authz object");
    ok(strstr((char *) out.data, "\"value\":\"svc.example\"")
       && strstr((char *) out.data, "\"wildcard\":true")
       && strstr((char *) out.data, "\"status\":\"valid\""),
       "wildcard authz: %s", out.data);
    tsb_buf_free(&out);

    o.status = TSB_ACME_INVALID;
    o.request = strdup("1234");
    tsb_acme_order_set_error(&o, "unauthorized", "REJECTED by approvers");

    is_int(tsb_acme_order_encode(&o, &out), 0, "order record");
    is_int(tsb_acme_order_decode(out.data, out.len, &o2, &err), 0,
           "order record decodes");
    ok(o2.status == TSB_ACME_INVALID && o2.n == 2
       && strcmp(o2.request, "1234") == 0
       && strcmp(o2.error_type, "unauthorized") == 0
       && o2.expires == 1800000000, "order record round trip");
    tsb_buf_free(&out);

    is_int(tsb_acme_order_build(&o2, "https://ca/acme/", "o1", &out), 0,
           "invalid order object");
    ok(strstr((char *) out.data, "\"error\":{\"type\":\"urn:ietf:params:"
                                 "acme:error:unauthorized\""),
       "invalid order has its problem: %s", out.data);
    tsb_buf_free(&out);

    tsb_acme_order_free(&o);
    tsb_acme_order_free(&o2);

    /* http-01: a random token, authorizations with their own status */
    {
        char  tok[TSB_ACME_TOKEN_MAX];

        memset(&o, 0, sizeof(o));
        o.account = strdup("acct");
        o.status = TSB_ACME_PENDING;
        o.expires = 1800000000;
        o.n = 2;
        o.idents[0].value = strdup("a.example");
        o.idents[0].len = 9;
        o.idents[1].value = strdup("b.example");
        o.idents[1].len = 9;
        o.token = strdup("AAAAAAAAAAAAAAAAAAAAAA");
        o.has_authz = 1;
        o.authz[0] = TSB_ACME_VALID;
        o.authz[1] = TSB_ACME_INVALID;
        tsb_acme_order_set_error(&o, "incorrectResponse", "not the key");

        is_int(tsb_acme_order_encode(&o, &out), 0, "http-01 order record");
        is_int(tsb_acme_order_decode(out.data, out.len, &o2, &err), 0,
               "http-01 order record decodes");
        ok(o2.has_authz && o2.authz[0] == TSB_ACME_VALID
           && o2.authz[1] == TSB_ACME_INVALID
           && strcmp(o2.token, o.token) == 0, "http-01 order round trip");
        tsb_buf_free(&out);

        is_int(tsb_acme_challenge_token(&o2, 1, "o1", tok, sizeof(tok)), 0,
               "challenge token");
        is_str(tok, "AAAAAAAAAAAAAAAAAAAAAA-1", "token from the order's");

        is_int(tsb_acme_authz_build(&o2, 0, "https://ca/acme/", "o1", &out),
               0, "authz 0");
        ok(strstr((char *) out.data, "\"status\":\"valid\"") != NULL,
           "a validated authz: %s", out.data);
        tsb_buf_free(&out);

        is_int(tsb_acme_authz_build(&o2, 1, "https://ca/acme/", "o1", &out),
               0, "authz 1");
        ok(strstr((char *) out.data, "{\"status\":\"invalid\"") != NULL
           && strstr((char *) out.data, "\"token\":\"AAAAAAAAAAAAAAAAAAAAAA"
                                        "-1\"")
           && strstr((char *) out.data, "acme:error:incorrectResponse"),
           "a failed authz, its challenge with the problem: %s", out.data);
        tsb_buf_free(&out);

        tsb_acme_order_free(&o2);

        o.authz[1] = TSB_ACME_PENDING;
        is_int(tsb_acme_challenge_build(&o, 1, "https://ca/acme/", "o1",
                                        &out), 0, "pending challenge");
        ok(strstr((char *) out.data, "\"status\":\"pending\"")
           && !strstr((char *) out.data, "error"),
           "pending challenge: %s", out.data);
        tsb_buf_free(&out);

        /* a damaged authz list */
        snprintf(buf, sizeof(buf), "{\"account\":\"a\",\"status\":"
                 "\"pending\",\"expires\":1,\"identifiers\":[{\"type\":"
                 "\"dns\",\"value\":\"a.example\"}],\"authz\":[\"valid\","
                 "\"valid\"]}");
        ok(tsb_acme_order_decode((unsigned char *) buf, strlen(buf), &o2,
                                 &err) != 0, "authz of another length");

        tsb_acme_order_free(&o);

#define H01(s) (const unsigned char *) (s), strlen(s)
        is_int(tsb_acme_http01_check(H01("tok.thumb"), "tok", "thumb", &err),
               0, "http-01: the key authorization");
        is_int(tsb_acme_http01_check(H01("tok.thumb \r\n"), "tok", "thumb",
                                     &err), 0, "trailing whitespace");
        ok(tsb_acme_http01_check(H01("tok.thumbx"), "tok", "thumb", &err)
           != 0 && strcmp(err.reason, "incorrectResponse") == 0
           && err.status == 403, "http-01: another answer");
        ok(tsb_acme_http01_check(H01(" tok.thumb"), "tok", "thumb", &err)
           != 0, "leading whitespace is not ignored");
        ok(tsb_acme_http01_check(H01(""), "tok", "thumb", &err) != 0
           && strstr(err.detail, "empty"), "an empty answer");
        ok(tsb_acme_http01_check(H01("tok"), "tok", "thumb", &err) != 0,
           "the token alone");
#undef H01
    }

    snprintf(buf, sizeof(buf), "{\"identifiers\":[{\"type\":\"ip\","
             "\"value\":\"10.0.0.1\"}]}");
    ok(tsb_acme_order_req_parse((unsigned char *) buf, strlen(buf), &req,
                                &err) != 0
       && strcmp(err.reason, "unsupportedIdentifier") == 0, "ip identifier");

    snprintf(buf, sizeof(buf), "{\"identifiers\":[{\"type\":\"dns\","
             "\"value\":\"bad_name.example\"}]}");
    ok(tsb_acme_order_req_parse((unsigned char *) buf, strlen(buf), &req,
                                &err) != 0
       && strcmp(err.reason, "rejectedIdentifier") == 0, "not a DNS name");

    snprintf(buf, sizeof(buf), "{\"identifiers\":[]}");
    ok(tsb_acme_order_req_parse((unsigned char *) buf, strlen(buf), &req,
                                &err) != 0, "no identifiers");

    is_int(tsb_acme_problem_build("badNonce", "use a fresh nonce", 400, NULL,
                                  &out), 0, "problem document");
    ok(strcmp((char *) out.data, "{\"type\":\"urn:ietf:params:acme:error:"
              "badNonce\",\"detail\":\"use a fresh nonce\",\"status\":400}")
       == 0, "problem: %s", out.data);
    tsb_buf_free(&out);
}


static void
test_records(void)
{
    tsb_buf_t           out;
    tsb_error_t         err;
    tsb_acme_account_t  a, b;

    memset(&a, 0, sizeof(a));
    a.key = strdup("{\"crv\":\"P-256\"}");
    a.status = TSB_ACME_VALID;
    a.contact[0] = strdup("mailto:x@example.com");
    a.n_contact = 1;
    a.binding = strdup("team-a");
    a.created = 1700000000;

    is_int(tsb_acme_account_encode(&a, &out), 0, "account record");
    is_int(tsb_acme_account_decode(out.data, out.len, &b, &err), 0,
           "account record decodes");
    ok(strcmp(b.key, a.key) == 0 && b.n_contact == 1
       && strcmp(b.binding, "team-a") == 0 && b.created == 1700000000,
       "account round trip");
    tsb_buf_free(&out);
    tsb_acme_account_free(&b);

    is_int(tsb_acme_account_build(&a, "https://ca/acme/", "ID", &out), 0,
           "account object");
    ok(strcmp((char *) out.data, "{\"status\":\"valid\",\"contact\":"
              "[\"mailto:x@example.com\"],\"orders\":\"https://ca/acme/"
              "orders/ID\"}") == 0, "account object: %s", out.data);
    tsb_buf_free(&out);
    tsb_acme_account_free(&a);

    is_int(tsb_acme_directory_build("https://ca/acme/", NULL, 1, &out), 0,
           "directory");
    ok(strstr((char *) out.data, "\"newNonce\":\"https://ca/acme/new-nonce\"")
       && strstr((char *) out.data, "\"externalAccountRequired\":true"),
       "directory: %s", out.data);
    tsb_buf_free(&out);

    is_int(tsb_acme_orders_build("https://ca/acme/", NULL, 0, &out), 0,
           "orders list");
    ok(strcmp((char *) out.data, "{\"orders\":[]}") == 0,
       "orders list: %s", out.data);
    tsb_buf_free(&out);

    {
        char  *ids[2] = { "o1", "o-2_" };

        is_int(tsb_acme_orders_build("https://ca/acme/", ids, 2, &out), 0,
               "orders list of two");
        ok(strcmp((char *) out.data, "{\"orders\":["
                  "\"https://ca/acme/order/o1\","
                  "\"https://ca/acme/order/o-2_\"]}") == 0,
           "orders list of two: %s", out.data);
        tsb_buf_free(&out);
    }
}


static void
test_json_limits(void)
{
    int          i;
    char         deep[64];
    tsb_jv_t    *v;
    tsb_error_t  err;

    for (i = 0; i < 20; i++) {
        deep[i] = '[';
    }

    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);

    ok(tsb_jv_parse((unsigned char *) "{\"a\":[[[[[[[[[[1]]]]]]]]]]}", 27,
                    &v, &err) != 0, "too deep");
    ok(tsb_jv_parse((unsigned char *) "{\"a\":\"\\u0000\"}", 14, &v, &err)
       != 0, "NUL in a string");
    ok(tsb_jv_parse((unsigned char *) "{\"a\":1}/**/", 11, &v, &err) != 0,
       "comments");
    ok(tsb_jv_parse((unsigned char *) "{\"a\":1} {}", 10, &v, &err) != 0,
       "two values");
    is_int(tsb_jv_parse((unsigned char *) "{\"a\":[1,true,null,\"x\"]}", 23,
                        &v, &err), 0, "a plain object");
    tsb_jv_free(v);
}


int
main(void)
{
    test_algorithms();
    test_header_rules();
    test_thumbprint();
    test_eab();
    test_orders();
    test_records();
    test_json_limits();

    return done_testing();
}
