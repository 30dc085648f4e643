
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * CSR intake.  The PEM framing is parsed here rather than by PEM_read_bio:
 * we need to tell "two blocks", "trailing bytes" and "wrong label" apart
 * to answer the client precisely, and PEM_read_bio silently skips whatever
 * precedes or follows the block it wants.
 */


/*
 * d2i_RSAPublicKey() is deprecated in OpenSSL 3; it is what OpenSSL's own
 * SubjectPublicKeyInfo decoder runs for an RSA key, so the fast path uses
 * it to accept exactly the keys the provider decoder accepts.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsb_csr.h"


#define TSB_PEM_BEGIN      "-----BEGIN "
#define TSB_PEM_END        "-----END "
#define TSB_PEM_DASHES     "-----"
#define TSB_PEM_LABEL_MAX  40


static int tsb_csr_is_space(unsigned char c);
static const unsigned char *tsb_csr_skip_space(const unsigned char *p,
    const unsigned char *end);
static int tsb_csr_all_space(const unsigned char *p,
    const unsigned char *end);
static const unsigned char *tsb_csr_find(const unsigned char *p,
    const unsigned char *end, const char *s);
static int tsb_csr_base64(const unsigned char *p, const unsigned char *end,
    tsb_buf_t *out, tsb_error_t *err);
static int tsb_csr_der_length(const unsigned char *p, size_t len,
    size_t *total, tsb_error_t *err);
static int tsb_csr_der_exact(tsb_buf_t *der, tsb_error_t *err);
static int tsb_csr_decode_pem(const unsigned char *p,
    const unsigned char *end, tsb_buf_t *der, tsb_error_t *err);
static int tsb_csr_label_sane(const unsigned char *p, size_t len);
static void tsb_csr_quiet_init(void);
static EVP_PKEY *tsb_csr_fast_key(X509_REQ *req);
static int tsb_csr_facts_name(tsb_csr_t *csr, X509_REQ *req,
    tsb_error_t *err);
static int tsb_csr_facts_subject(tsb_csr_t *csr, X509_REQ *req,
    tsb_error_t *err);
static int tsb_csr_facts_key(tsb_csr_t *csr, X509_REQ *req, EVP_PKEY *pkey,
    tsb_error_t *err);
static int tsb_csr_facts_sig(tsb_csr_t *csr, X509_REQ *req);
static int tsb_csr_facts_ext(tsb_csr_t *csr, X509_REQ *req,
    tsb_error_t *err);
static int tsb_csr_ext_one(tsb_csr_t *csr, X509_EXTENSION *ext,
    tsb_error_t *err);
static int tsb_csr_ext_ku(tsb_csr_t *csr, ASN1_BIT_STRING *ku,
    tsb_error_t *err);
static int tsb_csr_ext_eku(tsb_csr_t *csr, EXTENDED_KEY_USAGE *eku);
static int tsb_csr_ext_bc(tsb_csr_t *csr, BASIC_CONSTRAINTS *bc,
    tsb_error_t *err);
static int tsb_csr_ext_san(tsb_csr_t *csr, GENERAL_NAMES *gens,
    tsb_error_t *err);
static int tsb_csr_ia5(const ASN1_STRING *s, char **out, tsb_error_t *err);
static int tsb_csr_ext_other(tsb_csr_t *csr, X509_EXTENSION *ext, int nid,
    int readable, tsb_error_t *err);
static void tsb_csr_facts_rsa_exponent(tsb_csr_t *csr, EVP_PKEY *pkey);


/* X.509 KeyUsage bit positions, in order, as TSB_KU_* bits */
static const unsigned  tsb_csr_ku_bits[] = {
    TSB_KU_DIGITAL_SIGNATURE,
    TSB_KU_CONTENT_COMMITMENT,
    TSB_KU_KEY_ENCIPHERMENT,
    TSB_KU_DATA_ENCIPHERMENT,
    TSB_KU_KEY_AGREEMENT,
    TSB_KU_KEY_CERT_SIGN,
    TSB_KU_CRL_SIGN,
    TSB_KU_ENCIPHER_ONLY,
    TSB_KU_DECIPHER_ONLY
};


int
tsb_csr_decode(const unsigned char *in, size_t len, tsb_buf_t *der,
    tsb_error_t *err)
{
    size_t                total;
    const unsigned char  *p, *end;

    der->data = NULL;
    der->len = 0;

    if (in == NULL || len == 0) {
        tsb_error_set(err, 400, "csr.empty", "the request holds no CSR");
        return -1;
    }

    end = in + len;
    p = tsb_csr_skip_space(in, end);

    if (p == end) {
        tsb_error_set(err, 400, "csr.empty", "the request holds no CSR");
        return -1;
    }

    if ((size_t) (end - p) >= sizeof(TSB_PEM_BEGIN) - 1
        && memcmp(p, TSB_PEM_BEGIN, sizeof(TSB_PEM_BEGIN) - 1) == 0)
    {
        return tsb_csr_decode_pem(p, end, der, err);
    }

    if (*p == 0x30) {

        /*
         * Binary DER: trailing whitespace cannot be trimmed before the
         * length is known, since the DER itself may end in such a byte.
         */

        if (tsb_csr_der_length(p, end - p, &total, err) != 0) {
            return -1;
        }

        if (!tsb_csr_all_space(p + total, end)) {
            tsb_error_set(err, 400, "csr.trailing_data",
                          "%zu byte%s after the DER CSR",
                          (size_t) (end - p - total),
                          (end - p - total) == 1 ? "" : "s");
            return -1;
        }

        der->data = malloc(total);
        if (der->data == NULL) {
            tsb_error_set(err, 500, "internal.memory", "out of memory");
            return -1;
        }

        memcpy(der->data, p, total);
        der->len = total;

        return 0;
    }

    /* bare base64 of DER */

    if (tsb_csr_base64(p, end, der, err) != 0) {

        if (tsb_csr_find(p, end, TSB_PEM_BEGIN) != NULL) {
            tsb_error_set(err, 400, "csr.encoding",
                          "data precedes the PEM BEGIN line");
        }

        return -1;
    }

    return tsb_csr_der_exact(der, err);
}


static int
tsb_csr_decode_pem(const unsigned char *p, const unsigned char *end,
    tsb_buf_t *der, tsb_error_t *err)
{
    size_t                llen;
    const unsigned char  *label, *q, *body, *body_end, *tail;

    label = p + sizeof(TSB_PEM_BEGIN) - 1;

    for (q = label; q < end && *q != '\n' && *q != '\r'; q++) {
        if (end - q >= 5 && memcmp(q, TSB_PEM_DASHES, 5) == 0) {
            break;
        }
    }

    if (q == end || *q != '-') {
        tsb_error_set(err, 400, "csr.encoding",
                      "the PEM BEGIN line is malformed");
        return -1;
    }

    llen = q - label;

    if (!(llen == sizeof("CERTIFICATE REQUEST") - 1
          && memcmp(label, "CERTIFICATE REQUEST", llen) == 0)
        && !(llen == sizeof("NEW CERTIFICATE REQUEST") - 1
             && memcmp(label, "NEW CERTIFICATE REQUEST", llen) == 0))
    {
        if (tsb_csr_label_sane(label, llen)) {
            tsb_error_set(err, 400, "csr.encoding",
                          "expected a CERTIFICATE REQUEST, got a PEM block "
                          "labelled %.*s", (int) llen, (const char *) label);

        } else {
            tsb_error_set(err, 400, "csr.encoding",
                          "expected a CERTIFICATE REQUEST, got a PEM block "
                          "with another label");
        }

        return -1;
    }

    /* the rest of the BEGIN line: blanks, then the end of the line */

    q += 5;

    while (q < end && (*q == ' ' || *q == '\t')) {
        q++;
    }

    if (q < end && *q == '\r') {
        q++;
    }

    if (q == end || *q != '\n') {
        tsb_error_set(err, 400, "csr.encoding",
                      "the PEM BEGIN line is malformed");
        return -1;
    }

    body = q + 1;

    /* the END line starts a line of its own */

    body_end = NULL;

    for (q = body; q < end; q++) {
        q = tsb_csr_find(q, end, TSB_PEM_END);
        if (q == NULL) {
            break;
        }

        if (q[-1] == '\n') {
            body_end = q;
            break;
        }
    }

    if (body_end == NULL) {
        tsb_error_set(err, 400, "csr.encoding",
                      "the PEM block has no END line");
        return -1;
    }

    q = body_end + sizeof(TSB_PEM_END) - 1;

    if ((size_t) (end - q) < llen + 5
        || memcmp(q, label, llen) != 0
        || memcmp(q + llen, TSB_PEM_DASHES, 5) != 0)
    {
        tsb_error_set(err, 400, "csr.encoding",
                      "the PEM END line does not match the BEGIN line");
        return -1;
    }

    tail = q + llen + 5;

    if (!tsb_csr_all_space(tail, end)) {
        if (tsb_csr_find(tail, end, TSB_PEM_BEGIN) != NULL) {
            tsb_error_set(err, 400, "csr.multiple",
                          "the request holds more than one PEM block; "
                          "send exactly one CSR");

        } else {
            tsb_error_set(err, 400, "csr.trailing_data",
                          "data follows the PEM END line");
        }

        return -1;
    }

    if (tsb_csr_base64(body, body_end, der, err) != 0) {
        return -1;
    }

    return tsb_csr_der_exact(der, err);
}


static int
tsb_csr_label_sane(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > TSB_PEM_LABEL_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9')
              || p[i] == ' ' || p[i] == '-' || p[i] == '_'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Strict base64: the alphabet, whitespace anywhere, '=' padding only at the
 * end and only to a multiple of four.  EVP_DecodeBlock() counts padding as
 * zero bytes, so the padding is taken off its result.
 */

static int
tsb_csr_base64(const unsigned char *p, const unsigned char *end,
    tsb_buf_t *out, tsb_error_t *err)
{
    int             n;
    size_t          clen, pad;
    unsigned char  *chars, *dec, c;

    out->data = NULL;
    out->len = 0;

    if (end - p > INT_MAX) {
        tsb_error_set(err, 400, "csr.encoding", "the CSR is too large");
        return -1;
    }

    chars = malloc(end - p + 1);
    if (chars == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    clen = 0;
    pad = 0;

    for ( /* void */ ; p < end; p++) {
        c = *p;

        if (tsb_csr_is_space(c)) {
            continue;
        }

        if (c == '=') {
            pad++;

        } else if (pad > 0
                   || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                        || (c >= '0' && c <= '9') || c == '+' || c == '/'))
        {
            free(chars);
            tsb_error_set(err, 400, "csr.encoding",
                          "the CSR is not valid base64");
            return -1;
        }

        chars[clen++] = c;
    }

    if (clen == 0 || clen % 4 != 0 || pad > 2) {
        free(chars);
        tsb_error_set(err, 400, "csr.encoding",
                      clen == 0 ? "the PEM block is empty"
                                : "the CSR is not valid base64");
        return -1;
    }

    dec = malloc(clen / 4 * 3 + 1);
    if (dec == NULL) {
        free(chars);
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    n = EVP_DecodeBlock(dec, chars, (int) clen);

    free(chars);

    if (n < 0 || (size_t) n < pad) {
        free(dec);
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.encoding",
                      "the CSR is not valid base64");
        return -1;
    }

    out->data = dec;
    out->len = n - pad;

    return 0;
}


/* the length of the outer SEQUENCE, definite length, within len bytes */

static int
tsb_csr_der_length(const unsigned char *p, size_t len, size_t *total,
    tsb_error_t *err)
{
    int                   rc, tag, xclass;
    long                  olen;
    const unsigned char  *q;

    if (len > LONG_MAX) {
        tsb_error_set(err, 400, "csr.encoding", "the CSR is too large");
        return -1;
    }

    q = p;
    rc = ASN1_get_object(&q, &olen, &tag, &xclass, (long) len);

    if (rc & 0x80) {
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.encoding",
                      "the CSR is not valid DER (bad or truncated length)");
        return -1;
    }

    if (rc != V_ASN1_CONSTRUCTED || tag != V_ASN1_SEQUENCE
        || xclass != V_ASN1_UNIVERSAL)
    {
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.encoding",
                      "the CSR is not a DER SEQUENCE of definite length");
        return -1;
    }

    *total = (size_t) (q - p) + (size_t) olen;

    return 0;
}


/* decoded base64 must be one SEQUENCE and nothing else */

static int
tsb_csr_der_exact(tsb_buf_t *der, tsb_error_t *err)
{
    size_t  total;

    if (der->len == 0 || der->data[0] != 0x30) {
        tsb_error_set(err, 400, "csr.encoding",
                      "the base64 does not hold a DER CSR");
        tsb_buf_free(der);
        return -1;
    }

    if (tsb_csr_der_length(der->data, der->len, &total, err) != 0) {
        tsb_buf_free(der);
        return -1;
    }

    if (total != der->len) {
        tsb_error_set(err, 400, "csr.trailing_data",
                      "%zu byte%s after the DER CSR", der->len - total,
                      der->len - total == 1 ? "" : "s");
        tsb_buf_free(der);
        return -1;
    }

    return 0;
}


/*
 * The fast path.  OpenSSL 3.0's d2i_X509_REQ() builds a provider decoder
 * context for the public key, OSSL_DECODER_CTX_new_for_pkey(), on every
 * call: about 150 us, ten times the rest of the intake together.  Here
 * the request is parsed by the same ASN.1 template (ASN1_item_d2i_ex) but
 * in a library context that holds only the "null" provider, so that
 * decoder finds nothing at once and leaves the key undecoded; the key is
 * then built from its SubjectPublicKeyInfo fields the way OpenSSL's own
 * decoders read them, as a provider key of the default library context,
 * and everything else (signature check, facts) is the reference code on
 * the same X509_REQ.
 *
 * It takes RSA (rsaEncryption), EC on P-256/P-384/P-521 with a named
 * curve and an uncompressed point, and Ed25519, and succeeds only: any
 * other key, any refusal or error returns TSB_CSR_FALLBACK with nothing
 * set, and tsb_csr_parse() runs the reference path, which decides.
 */

static OSSL_LIB_CTX   *tsb_csr_quiet_libctx;
static OSSL_PROVIDER  *tsb_csr_quiet_null;
static CRYPTO_ONCE     tsb_csr_quiet_once = CRYPTO_ONCE_STATIC_INIT;


static void
tsb_csr_quiet_init(void)
{
    OSSL_LIB_CTX   *ctx;
    OSSL_PROVIDER  *prov;

    ctx = OSSL_LIB_CTX_new();
    if (ctx == NULL) {
        ERR_clear_error();
        return;
    }

    /* a provider loaded explicitly keeps the default one from loading */

    prov = OSSL_PROVIDER_load(ctx, "null");
    if (prov == NULL) {
        OSSL_LIB_CTX_free(ctx);
        ERR_clear_error();
        return;
    }

    tsb_csr_quiet_null = prov;
    tsb_csr_quiet_libctx = ctx;
}


void
tsb_csr_cleanup(void)
{
    /* the once does not run again: later parses take the reference path */

    if (tsb_csr_quiet_libctx != NULL) {
        (void) OSSL_PROVIDER_unload(tsb_csr_quiet_null);
        OSSL_LIB_CTX_free(tsb_csr_quiet_libctx);
        tsb_csr_quiet_null = NULL;
        tsb_csr_quiet_libctx = NULL;
    }
}


int
tsb_csr_parse_fast(const unsigned char *der, size_t len, tsb_csr_t **out,
    tsb_error_t *err)
{
    X509_REQ             *req;
    EVP_PKEY             *pkey;
    tsb_csr_t            *csr;
    tsb_error_t           ferr;
    const unsigned char  *p;

    (void) err;

    *out = NULL;

    if (der == NULL || len == 0 || len > LONG_MAX) {
        return TSB_CSR_FALLBACK;
    }

    if (CRYPTO_THREAD_run_once(&tsb_csr_quiet_once, tsb_csr_quiet_init)
        != 1
        || tsb_csr_quiet_libctx == NULL)
    {
        ERR_clear_error();
        return TSB_CSR_FALLBACK;
    }

    p = der;
    req = (X509_REQ *) ASN1_item_d2i_ex(NULL, &p, (long) len,
                                        ASN1_ITEM_rptr(X509_REQ),
                                        tsb_csr_quiet_libctx, NULL);

    if (req == NULL || (size_t) (p - der) != len
        || X509_REQ_get_version(req) != 0)
    {
        X509_REQ_free(req);
        ERR_clear_error();
        return TSB_CSR_FALLBACK;
    }

    pkey = tsb_csr_fast_key(req);

    if (pkey == NULL) {
        X509_REQ_free(req);
        ERR_clear_error();
        return TSB_CSR_FALLBACK;
    }

    /* what X509_REQ_verify() does with a request d2i_X509_REQ() made */

    if (X509_REQ_verify_ex(req, pkey, NULL, NULL) != 1) {
        EVP_PKEY_free(pkey);
        X509_REQ_free(req);
        ERR_clear_error();
        return TSB_CSR_FALLBACK;
    }

    csr = calloc(1, sizeof(tsb_csr_t));
    if (csr == NULL) {
        EVP_PKEY_free(pkey);
        X509_REQ_free(req);
        return TSB_CSR_FALLBACK;
    }

    csr->req = req;
    csr->basic_pathlen = -1;

    csr->der.data = malloc(len);
    if (csr->der.data == NULL) {
        goto fallback;
    }

    memcpy(csr->der.data, der, len);
    csr->der.len = len;

    memset(&ferr, 0, sizeof(tsb_error_t));

    if (tsb_csr_facts_key(csr, req, pkey, &ferr) != 0
        || tsb_csr_facts_sig(csr, req) != 0
        || tsb_csr_facts_name(csr, req, &ferr) != 0
        || tsb_csr_facts_subject(csr, req, &ferr) != 0
        || tsb_csr_facts_ext(csr, req, &ferr) != 0)
    {
        goto fallback;
    }

    EVP_PKEY_free(pkey);
    *out = csr;

    return 0;

fallback:

    EVP_PKEY_free(pkey);
    ERR_clear_error();
    tsb_csr_free(csr);

    return TSB_CSR_FALLBACK;
}


/*
 * The request's public key as a provider key, or NULL for "not here".
 * Each case reads the fields OpenSSL's SubjectPublicKeyInfo decoder for
 * the type reads (rsa_pub_decode, eckey_pub_decode, ecx_pub_decode) and
 * hands them to the same key management import the decoder ends in, so
 * the key, and with it the signature check and the key facts, are the
 * reference path's.
 */

static EVP_PKEY *
tsb_csr_fast_key(X509_REQ *req)
{
    int                   nid, cnid, ptype, pklen;
    RSA                  *rsa;
    EVP_PKEY             *pkey;
    OSSL_PARAM           *params;
    const void           *pval;
    X509_ALGOR           *palg;
    ASN1_OBJECT          *aobj;
    const char           *type, *group;
    EVP_PKEY_CTX         *pctx;
    X509_PUBKEY          *xpk;
    const BIGNUM         *n, *e;
    OSSL_PARAM_BLD       *bld;
    const unsigned char  *pk, *q;

    xpk = X509_REQ_get_X509_PUBKEY(req);

    if (xpk == NULL
        || X509_PUBKEY_get0_param(&aobj, &pk, &pklen, &palg, xpk) != 1
        || palg == NULL || pk == NULL || pklen <= 0)
    {
        return NULL;
    }

    X509_ALGOR_get0(NULL, &ptype, &pval, palg);

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        return NULL;
    }

    rsa = NULL;
    params = NULL;
    pctx = NULL;
    pkey = NULL;
    type = NULL;

    nid = OBJ_obj2nid(aobj);

    switch (nid) {

    case NID_rsaEncryption:

        /* rsaEncryption's parameters are not looked at by OpenSSL */

        q = pk;
        rsa = d2i_RSAPublicKey(NULL, &q, pklen);

        if (rsa == NULL) {
            goto done;
        }

        RSA_get0_key(rsa, &n, &e, NULL);

        if (n == NULL || e == NULL
            || BN_is_negative(n) || BN_is_negative(e)
            || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1
            || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
        {
            goto done;
        }

        type = "RSA";
        break;

    case NID_X9_62_id_ecPublicKey:

        /* a named curve we know, an uncompressed point of its size */

        if (ptype != V_ASN1_OBJECT || pval == NULL) {
            goto done;
        }

        cnid = OBJ_obj2nid(pval);

        if (!(cnid == NID_X9_62_prime256v1 && pklen == 1 + 2 * 32)
            && !(cnid == NID_secp384r1 && pklen == 1 + 2 * 48)
            && !(cnid == NID_secp521r1 && pklen == 1 + 2 * 66))
        {
            goto done;
        }

        group = OBJ_nid2sn(cnid);

        if (pk[0] != 0x04 || group == NULL
            || OSSL_PARAM_BLD_push_utf8_string(bld,
                   OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1
            || OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                   pk, (size_t) pklen) != 1)
        {
            goto done;
        }

        type = "EC";
        break;

    case NID_ED25519:

        /* RFC 8410: no parameters, the 32-byte key */

        if (ptype != V_ASN1_UNDEF || pklen != 32
            || OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                   pk, (size_t) pklen) != 1)
        {
            goto done;
        }

        type = "ED25519";
        break;

    default:
        goto done;
    }

    params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL) {
        goto done;
    }

    pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (pctx == NULL
        || EVP_PKEY_fromdata_init(pctx) != 1
        || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

done:

    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    RSA_free(rsa);

    return pkey;
}


int
tsb_csr_parse(const unsigned char *der, size_t len, tsb_csr_t **out,
    tsb_error_t *err)
{
    if (tsb_csr_parse_fast(der, len, out, err) == 0) {
        return 0;
    }

    return tsb_csr_parse_reference(der, len, out, err);
}


/*
 * The reference path: d2i_X509_REQ() with the provider decoder,
 * X509_REQ_verify(), the facts.  It decides every refusal and every key
 * the fast path does not take.
 */

int
tsb_csr_parse_reference(const unsigned char *der, size_t len,
    tsb_csr_t **out, tsb_error_t *err)
{
    int                   rc;
    X509_REQ             *req;
    EVP_PKEY             *pkey;
    tsb_csr_t            *csr;
    const unsigned char  *p;

    *out = NULL;

    if (der == NULL || len == 0) {
        tsb_error_set(err, 400, "csr.empty", "the request holds no CSR");
        return -1;
    }

    if (len > LONG_MAX) {
        tsb_error_set(err, 400, "csr.parse", "the CSR is too large");
        return -1;
    }

    p = der;
    req = d2i_X509_REQ(NULL, &p, (long) len);

    if (req == NULL) {
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.parse",
                      "the CSR is not a valid PKCS#10 request");
        return -1;
    }

    if ((size_t) (p - der) != len) {
        X509_REQ_free(req);
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.trailing_data",
                      "%zu byte%s after the DER CSR",
                      len - (size_t) (p - der),
                      len - (size_t) (p - der) == 1 ? "" : "s");
        return -1;
    }

    csr = calloc(1, sizeof(tsb_csr_t));
    if (csr == NULL) {
        X509_REQ_free(req);
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    csr->req = req;
    csr->basic_pathlen = -1;

    csr->der.data = malloc(len);
    if (csr->der.data == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        goto failed;
    }

    memcpy(csr->der.data, der, len);
    csr->der.len = len;

    /* PKCS#10 knows only version 1 (0) */

    if (X509_REQ_get_version(req) != 0) {
        tsb_error_set(err, 400, "csr.parse",
                      "the CSR has an unknown version");
        goto failed;
    }

    pkey = X509_REQ_get0_pubkey(req);

    if (pkey == NULL) {
        tsb_error_set(err, 400, "csr.key",
                      "the CSR's public key cannot be decoded");
        goto failed;
    }

    rc = X509_REQ_verify(req, pkey);

    if (rc != 1) {
        tsb_error_set(err, 400, "csr.signature",
                      "the CSR's self-signature does not verify");
        goto failed;
    }

    if (tsb_csr_facts_key(csr, req, pkey, err) != 0
        || tsb_csr_facts_sig(csr, req) != 0
        || tsb_csr_facts_name(csr, req, err) != 0
        || tsb_csr_facts_subject(csr, req, err) != 0
        || tsb_csr_facts_ext(csr, req, err) != 0)
    {
        goto failed;
    }

    *out = csr;

    return 0;

failed:

    ERR_clear_error();
    tsb_csr_free(csr);

    return -1;
}


int
tsb_csr_load(const unsigned char *in, size_t len, tsb_csr_t **out,
    tsb_error_t *err)
{
    int        rc;
    tsb_buf_t  der;

    *out = NULL;

    if (tsb_csr_decode(in, len, &der, err) != 0) {
        return -1;
    }

    rc = tsb_csr_parse(der.data, der.len, out, err);

    tsb_buf_free(&der);

    return rc;
}


void
tsb_csr_free(tsb_csr_t *csr)
{
    size_t  i;

    if (csr == NULL) {
        return;
    }

    X509_REQ_free(csr->req);
    tsb_buf_free(&csr->der);

    for (i = 0; i < csr->n_common_names; i++) {
        free(csr->common_names[i]);
    }

    free(csr->common_names);
    free(csr->common_name_lens);

    for (i = 0; i < csr->n_subject_attrs; i++) {
        free(csr->subject_attrs[i].value);
    }

    free(csr->subject_attrs);

    for (i = 0; i < csr->n_sans; i++) {
        free(csr->sans[i].value);
    }

    free(csr->sans);
    free(csr->exts);
    free(csr);
}


/*
 * What PEM_write_bio_X509_REQ() writes (the request encoded again, 48
 * bytes to a line of 64 characters, the standard label), written straight
 * into the one buffer it is returned in rather than through a memory BIO.
 */

#define TSB_PEM_CSR_BEGIN  "-----BEGIN CERTIFICATE REQUEST-----\n"
#define TSB_PEM_CSR_END    "-----END CERTIFICATE REQUEST-----\n"

int
tsb_csr_to_pem(const tsb_csr_t *csr, tsb_buf_t *pem)
{
    int             n, chunk;
    size_t          lines, size;
    unsigned char  *der, *in, *p;

    pem->data = NULL;
    pem->len = 0;

    der = NULL;
    n = i2d_X509_REQ(csr->req, &der);

    if (n <= 0 || der == NULL) {
        OPENSSL_free(der);
        ERR_clear_error();
        return -1;
    }

    lines = ((size_t) n + 47) / 48;
    size = sizeof(TSB_PEM_CSR_BEGIN) - 1 + lines * 65
           + sizeof(TSB_PEM_CSR_END) - 1;

    pem->data = malloc(size + 1);
    if (pem->data == NULL) {
        OPENSSL_free(der);
        return -1;
    }

    p = pem->data;
    memcpy(p, TSB_PEM_CSR_BEGIN, sizeof(TSB_PEM_CSR_BEGIN) - 1);
    p += sizeof(TSB_PEM_CSR_BEGIN) - 1;

    for (in = der; n > 0; in += chunk, n -= chunk) {
        chunk = n < 48 ? n : 48;
        p += EVP_EncodeBlock(p, in, chunk);
        *p++ = '\n';
    }

    memcpy(p, TSB_PEM_CSR_END, sizeof(TSB_PEM_CSR_END) - 1);
    p += sizeof(TSB_PEM_CSR_END) - 1;
    *p = '\0';

    pem->len = (size_t) (p - pem->data);

    OPENSSL_free(der);

    return 0;
}


/*
 * Every subject commonName, converted to UTF-8 with its raw length kept:
 * a NUL inside a CN must stay visible to the policy, not truncate it.
 */

static int
tsb_csr_facts_name(tsb_csr_t *csr, X509_REQ *req, tsb_error_t *err)
{
    int               i, n, idx;
    char             *cn;
    size_t            count;
    unsigned char    *utf8;
    const X509_NAME  *name;
    X509_NAME_ENTRY  *ne;

    name = X509_REQ_get_subject_name(req);
    if (name == NULL) {
        return 0;
    }

    count = 0;
    idx = -1;

    while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx))
           >= 0)
    {
        count++;
    }

    if (count == 0) {
        return 0;
    }

    csr->common_names = calloc(count, sizeof(char *));
    csr->common_name_lens = calloc(count, sizeof(size_t));

    if (csr->common_names == NULL || csr->common_name_lens == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    idx = -1;

    for (i = 0; i < (int) count; i++) {
        idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx);
        ne = X509_NAME_get_entry(name, idx);

        utf8 = NULL;
        n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ne));

        if (n < 0) {
            tsb_error_set(err, 400, "csr.common_name",
                          "a commonName of the CSR is not valid text");
            return -1;
        }

        cn = malloc((size_t) n + 1);
        if (cn == NULL) {
            OPENSSL_free(utf8);
            tsb_error_set(err, 500, "internal.memory", "out of memory");
            return -1;
        }

        memcpy(cn, utf8, (size_t) n);
        cn[n] = '\0';
        OPENSSL_free(utf8);

        if (memchr(cn, '\0', (size_t) n) != NULL) {
            csr->cn_has_nul = 1;
        }

        csr->common_names[i] = cn;
        csr->common_name_lens[i] = (size_t) n;
        csr->n_common_names++;
    }

    return 0;
}


/*
 * Every subject attribute other than commonName, as the policy judges
 * them: its OID, its value in UTF-8.  A value that is no string is kept
 * as NULL for the policy to refuse, not a parse error: a CSR is
 * well-formed with it, only not acceptable.
 */

static int
tsb_csr_facts_subject(tsb_csr_t *csr, X509_REQ *req, tsb_error_t *err)
{
    int                  i, n, count, set, last_set, len;
    size_t               k;
    unsigned char       *utf8;
    const X509_NAME     *name;
    X509_NAME_ENTRY     *ne;
    const ASN1_OBJECT   *obj;
    tsb_subject_attr_t  *a;

    name = X509_REQ_get_subject_name(req);
    if (name == NULL) {
        return 0;
    }

    count = X509_NAME_entry_count(name);
    last_set = -1;
    k = 0;

    for (i = 0; i < count; i++) {
        ne = X509_NAME_get_entry(name, i);
        set = X509_NAME_ENTRY_set(ne);

        if (set == last_set) {
            csr->subject_multi_rdn = 1;
        }

        last_set = set;

        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(ne)) != NID_commonName) {
            k++;
        }
    }

    if (k == 0) {
        return 0;
    }

    csr->subject_attrs = calloc(k, sizeof(tsb_subject_attr_t));
    if (csr->subject_attrs == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    for (i = 0; i < count; i++) {
        ne = X509_NAME_get_entry(name, i);
        obj = X509_NAME_ENTRY_get_object(ne);

        if (OBJ_obj2nid(obj) == NID_commonName) {
            continue;
        }

        a = &csr->subject_attrs[csr->n_subject_attrs++];

        len = OBJ_obj2txt(a->oid, sizeof(a->oid), obj, 1);

        if (len <= 0 || len >= (int) sizeof(a->oid)) {
            a->oid[0] = '\0';
        }

        a->name = (OBJ_obj2nid(obj) != NID_undef)
                  ? OBJ_nid2sn(OBJ_obj2nid(obj)) : NULL;

        utf8 = NULL;
        n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ne));

        if (n < 0) {
            ERR_clear_error();
            continue;
        }

        a->value = malloc((size_t) n + 1);
        if (a->value == NULL) {
            OPENSSL_free(utf8);
            tsb_error_set(err, 500, "internal.memory", "out of memory");
            return -1;
        }

        memcpy(a->value, utf8, (size_t) n);
        a->value[n] = '\0';
        a->value_len = (size_t) n;
        OPENSSL_free(utf8);
    }

    return 0;
}


static int
tsb_csr_facts_key(tsb_csr_t *csr, X509_REQ *req, EVP_PKEY *pkey,
    tsb_error_t *err)
{
    int             n, nid, explicit_params;
    char            group[80];
    size_t          glen;
    unsigned char  *spki;

    /*
     * What the issued certificate's key is checked against, hashed the
     * way tsb_cert.c hashes the certificate's: the SPKI as the CSR
     * carries it.  i2d_PUBKEY(pkey) would give the same bytes, but
     * OpenSSL 3 makes it run the provider encoder, which cost as much as
     * verifying the signature (docs/benchmarks.md).
     */

    spki = NULL;
    n = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);

    if (n <= 0
        || EVP_Digest(spki, (size_t) n, csr->spki_sha256, NULL,
                      EVP_sha256(), NULL) != 1)
    {
        OPENSSL_free(spki);
        tsb_error_set(err, 500, "internal.openssl",
                      "cannot hash the CSR's public key");
        return -1;
    }

    OPENSSL_free(spki);

    csr->key_bits = EVP_PKEY_get_bits(pkey);

    switch (EVP_PKEY_get_base_id(pkey)) {

    case EVP_PKEY_RSA:
        csr->key_type = TSB_KEY_RSA;
        tsb_csr_facts_rsa_exponent(csr, pkey);
        break;

    case EVP_PKEY_EC:
        csr->key_type = TSB_KEY_EC;

        /*
         * A key with explicit curve parameters is left without a curve
         * name even when the parameters happen to match a named curve:
         * the policy accepts named curves only.
         */

        explicit_params = 0;

        if (EVP_PKEY_get_int_param(pkey,
                OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS,
                &explicit_params) != 1)
        {
            explicit_params = 0;
        }

        if (explicit_params
            || EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen)
               != 1)
        {
            ERR_clear_error();
            break;
        }

        nid = OBJ_sn2nid(group);

        if (nid == NID_X9_62_prime256v1) {
            csr->key_curve = "P-256";

        } else if (nid == NID_secp384r1) {
            csr->key_curve = "P-384";

        } else if (nid == NID_secp521r1) {
            csr->key_curve = "P-521";

        } else if (nid != NID_undef) {
            csr->key_curve = OBJ_nid2sn(nid);
        }

        break;

    case EVP_PKEY_ED25519:
        csr->key_type = TSB_KEY_ED25519;
        break;

    case EVP_PKEY_ED448:
        csr->key_type = TSB_KEY_ED448;
        break;

    case EVP_PKEY_DSA:
        csr->key_type = TSB_KEY_DSA;
        break;

    default:
        /* RSA-PSS restricted keys, SM2, ...: the policy refuses them */
        csr->key_type = TSB_KEY_UNKNOWN;
        break;
    }

    return 0;
}


/* the public exponent, or 0 when it does not fit an unsigned long */

static void
tsb_csr_facts_rsa_exponent(tsb_csr_t *csr, EVP_PKEY *pkey)
{
    BIGNUM  *e;

    e = NULL;
    csr->key_rsa_exponent = 0;

    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
        ERR_clear_error();
        return;
    }

    if (BN_num_bits(e) <= (int) (sizeof(unsigned long) * 8)) {
        csr->key_rsa_exponent = BN_get_word(e);
    }

    BN_free(e);
}


/*
 * The signature algorithm and its digest.  RSASSA-PSS carries the digest
 * in its parameters, SHA-1 when they name none (RFC 4055); a digest we
 * cannot determine is left NID_undef, which the policy refuses for all
 * but EdDSA keys.
 */

static int
tsb_csr_facts_sig(tsb_csr_t *csr, X509_REQ *req)
{
    int                       md, pk, ptype;
    const void               *pval;
    const ASN1_STRING        *seq;
    const X509_ALGOR         *alg;
    RSA_PSS_PARAMS           *pss;
    const ASN1_OBJECT        *obj;
    const ASN1_BIT_STRING    *sig;
    const unsigned char      *p;

    csr->sig_nid = X509_REQ_get_signature_nid(req);
    csr->sig_md_nid = NID_undef;

    if (csr->sig_nid == NID_rsassaPss) {
        X509_REQ_get0_signature(req, &sig, &alg);
        X509_ALGOR_get0(&obj, &ptype, &pval, alg);

        if (ptype != V_ASN1_SEQUENCE || pval == NULL) {
            return 0;
        }

        seq = pval;
        p = ASN1_STRING_get0_data(seq);
        pss = d2i_RSA_PSS_PARAMS(NULL, &p, ASN1_STRING_length(seq));

        if (pss == NULL) {
            ERR_clear_error();
            return 0;
        }

        csr->sig_md_nid = (pss->hashAlgorithm == NULL)
                          ? NID_sha1
                          : OBJ_obj2nid(pss->hashAlgorithm->algorithm);

        RSA_PSS_PARAMS_free(pss);

        return 0;
    }

    if (OBJ_find_sigid_algs(csr->sig_nid, &md, &pk) == 1) {
        csr->sig_md_nid = md;
    }

    return 0;
}


static int
tsb_csr_facts_ext(tsb_csr_t *csr, X509_REQ *req, tsb_error_t *err)
{
    int                         i, j, n, attrs, idx;
    X509_EXTENSION             *ext, *prev;
    STACK_OF(X509_EXTENSION)   *exts;
    static const int            ext_nids[] = { NID_ext_req, NID_ms_ext_req };

    /*
     * X509_REQ_get_extensions() looks at the first extension request
     * attribute only; more than one, or one with several values, would
     * let the CSR say two things, so such a CSR is refused.
     */

    attrs = 0;

    for (i = 0; i < 2; i++) {
        idx = -1;

        while ((idx = X509_REQ_get_attr_by_NID(req, ext_nids[i], idx)) >= 0) {
            attrs++;

            if (X509_ATTRIBUTE_count(X509_REQ_get_attr(req, idx)) != 1) {
                attrs = 2;
            }
        }
    }

    if (attrs == 0) {
        return 0;
    }

    if (attrs > 1) {
        tsb_error_set(err, 400, "csr.extensions",
                      "the CSR has more than one extension request");
        return -1;
    }

    exts = X509_REQ_get_extensions(req);

    if (exts == NULL) {
        tsb_error_set(err, 400, "csr.extensions",
                      "the CSR's extension request is malformed");
        return -1;
    }

    n = sk_X509_EXTENSION_num(exts);

    /* each one is judged, and so is the issued certificate against them */

    if (n > TSB_CSR_MAX_EXTS) {
        tsb_error_set(err, 400, "csr.extensions",
                      "the CSR requests %d extensions; at most %d are "
                      "read", n, TSB_CSR_MAX_EXTS);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        return -1;
    }

    for (i = 0; i < n; i++) {
        ext = sk_X509_EXTENSION_value(exts, i);

        /* a repeated extension would be read one way here, another there */

        for (j = 0; j < i; j++) {
            prev = sk_X509_EXTENSION_value(exts, j);

            if (OBJ_cmp(X509_EXTENSION_get_object(ext),
                        X509_EXTENSION_get_object(prev)) == 0)
            {
                tsb_error_set(err, 400, "csr.extensions",
                              "the CSR requests an extension twice");
                sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
                return -1;
            }
        }

        if (tsb_csr_ext_one(csr, ext, err) != 0) {
            sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
            return -1;
        }
    }

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    return 0;
}


static int
tsb_csr_ext_one(tsb_csr_t *csr, X509_EXTENSION *ext, tsb_error_t *err)
{
    int                          nid, rc;
    void                        *v;
    const char                  *sn;
    const X509V3_EXT_METHOD     *method;

    nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    method = X509V3_EXT_get(ext);

    /* one OpenSSL cannot read is kept for the policy, which decides */

    if (nid == NID_undef || method == NULL) {
        return tsb_csr_ext_other(csr, ext, nid, 0, err);
    }

    v = X509V3_EXT_d2i(ext);

    if (v == NULL) {
        sn = OBJ_nid2sn(nid);
        tsb_error_set(err, 400, "csr.extensions",
                      "the CSR's %s extension is malformed",
                      sn ? sn : "requested");
        return -1;
    }

    switch (nid) {

    case NID_key_usage:
        rc = tsb_csr_ext_ku(csr, v, err);
        ASN1_BIT_STRING_free(v);
        return rc;

    case NID_ext_key_usage:
        rc = tsb_csr_ext_eku(csr, v);
        EXTENDED_KEY_USAGE_free(v);
        return rc;

    case NID_basic_constraints:
        rc = tsb_csr_ext_bc(csr, v, err);
        BASIC_CONSTRAINTS_free(v);
        return rc;

    case NID_subject_alt_name:
        rc = tsb_csr_ext_san(csr, v, err);
        GENERAL_NAMES_free(v);
        return rc;

    default:
        /* only the decodability is checked; the policy judges the OID */

        if (method->it) {
            ASN1_item_free(v, ASN1_ITEM_ptr(method->it));

        } else if (method->ext_free) {
            method->ext_free(v);
        }

        return tsb_csr_ext_other(csr, ext, nid, 1, err);
    }
}


/*
 * An extension beyond the four the policy has facts for: its OID, its
 * criticality and whether OpenSSL could read it, so that the policy can
 * hold it against the location's allow-list (nothing is passed over).
 */

static int
tsb_csr_ext_other(tsb_csr_t *csr, X509_EXTENSION *ext, int nid,
    int readable, tsb_error_t *err)
{
    int             n;
    tsb_csr_ext_t  *exts, *e;

    exts = realloc(csr->exts, (csr->n_exts + 1) * sizeof(tsb_csr_ext_t));
    if (exts == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    csr->exts = exts;
    e = &exts[csr->n_exts];

    n = OBJ_obj2txt(e->oid, sizeof(e->oid), X509_EXTENSION_get_object(ext),
                    1);

    if (n <= 0 || (size_t) n >= sizeof(e->oid)) {
        ERR_clear_error();
        tsb_error_set(err, 400, "csr.extensions",
                      "the CSR requests an extension whose OID is "
                      "malformed or too long");
        return -1;
    }

    e->nid = nid;
    e->critical = X509_EXTENSION_get_critical(ext) ? 1 : 0;
    e->readable = readable;

    csr->n_exts++;

    return 0;
}


static int
tsb_csr_ext_ku(tsb_csr_t *csr, ASN1_BIT_STRING *ku, tsb_error_t *err)
{
    int       i, nbits;
    unsigned  bits;

    bits = 0;
    nbits = ASN1_STRING_length(ku) * 8;

    for (i = 0; i < nbits; i++) {
        if (!ASN1_BIT_STRING_get_bit(ku, i)) {
            continue;
        }

        if (i >= (int) (sizeof(tsb_csr_ku_bits) / sizeof(unsigned))) {
            tsb_error_set(err, 400, "csr.extensions",
                          "the CSR's keyUsage sets an unknown bit");
            return -1;
        }

        bits |= tsb_csr_ku_bits[i];
    }

    csr->key_usage = bits;
    csr->has_key_usage = 1;

    return 0;
}


static int
tsb_csr_ext_eku(tsb_csr_t *csr, EXTENDED_KEY_USAGE *eku)
{
    int       i, n;
    unsigned  bit;

    n = sk_ASN1_OBJECT_num(eku);

    for (i = 0; i < n; i++) {
        bit = tsb_ext_key_usage_from_nid(
                  OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)));

        if (bit == 0) {
            csr->has_unknown_eku = 1;
            continue;
        }

        csr->ext_key_usage |= bit;
    }

    csr->has_ext_key_usage = 1;

    return 0;
}


static int
tsb_csr_ext_bc(tsb_csr_t *csr, BASIC_CONSTRAINTS *bc, tsb_error_t *err)
{
    int64_t  v;

    csr->has_basic_constraints = 1;
    csr->basic_ca = bc->ca ? 1 : 0;
    csr->basic_pathlen = -1;

    if (bc->pathlen != NULL) {
        if (ASN1_INTEGER_get_int64(&v, bc->pathlen) != 1
            || v < 0 || v > INT_MAX)
        {
            ERR_clear_error();
            tsb_error_set(err, 400, "csr.extensions",
                          "the CSR's basicConstraints pathLenConstraint is "
                          "out of range");
            return -1;
        }

        csr->basic_pathlen = (long) v;
    }

    return 0;
}


static int
tsb_csr_ext_san(tsb_csr_t *csr, GENERAL_NAMES *gens, tsb_error_t *err)
{
    int                   i, n, type, af;
    char                 *value, ip[INET6_ADDRSTRLEN];
    size_t                total;
    tsb_san_t            *sans;
    GENERAL_NAME         *gen;
    const char           *other;
    const ASN1_STRING    *s;

    n = sk_GENERAL_NAME_num(gens);

    if (n <= 0) {
        return 0;
    }

    total = csr->n_sans + (size_t) n;

    sans = realloc(csr->sans, total * sizeof(tsb_san_t));
    if (sans == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    csr->sans = sans;

    for (i = 0; i < n; i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        value = NULL;
        other = NULL;

        switch (gen->type) {

        case GEN_DNS:
            type = TSB_SAN_DNS;

            if (tsb_csr_ia5(gen->d.dNSName, &value, err) != 0) {
                return -1;
            }

            break;

        case GEN_EMAIL:
            type = TSB_SAN_EMAIL;

            if (tsb_csr_ia5(gen->d.rfc822Name, &value, err) != 0) {
                return -1;
            }

            break;

        case GEN_URI:
            type = TSB_SAN_URI;

            if (tsb_csr_ia5(gen->d.uniformResourceIdentifier, &value, err)
                != 0)
            {
                return -1;
            }

            break;

        case GEN_IPADD:
            type = TSB_SAN_IP;
            s = gen->d.iPAddress;

            if (ASN1_STRING_length(s) == 4) {
                af = AF_INET;

            } else if (ASN1_STRING_length(s) == 16) {
                af = AF_INET6;

            } else {
                tsb_error_set(err, 400, "csr.san",
                              "an IP address subjectAltName has %d bytes",
                              ASN1_STRING_length(s));
                return -1;
            }

            if (inet_ntop(af, ASN1_STRING_get0_data(s), ip, sizeof(ip))
                == NULL)
            {
                tsb_error_set(err, 500, "internal.error",
                              "cannot format an IP address");
                return -1;
            }

            value = strdup(ip);
            if (value == NULL) {
                tsb_error_set(err, 500, "internal.memory", "out of memory");
                return -1;
            }

            break;

        default:
            type = TSB_SAN_OTHER;

            switch (gen->type) {
            case GEN_OTHERNAME:
                other = "otherName";
                break;
            case GEN_X400:
                other = "x400Address";
                break;
            case GEN_DIRNAME:
                other = "directoryName";
                break;
            case GEN_EDIPARTY:
                other = "ediPartyName";
                break;
            case GEN_RID:
                other = "registeredID";
                break;
            default:
                other = "unknown";
                break;
            }

            value = strdup(other);
            if (value == NULL) {
                tsb_error_set(err, 500, "internal.memory", "out of memory");
                return -1;
            }

            break;
        }

        csr->sans[csr->n_sans].type = type;
        csr->sans[csr->n_sans].value = value;
        csr->n_sans++;
    }

    return 0;
}


/*
 * A printable ASCII copy of an IA5String.  NUL, control and non-ASCII
 * bytes are refused: "a.example\0.evil" must not pass as its prefix.
 */

static int
tsb_csr_ia5(const ASN1_STRING *s, char **out, tsb_error_t *err)
{
    int                   i, n;
    char                 *v;
    const unsigned char  *d;

    *out = NULL;

    n = (s == NULL) ? 0 : ASN1_STRING_length(s);
    d = (s == NULL) ? NULL : ASN1_STRING_get0_data(s);

    for (i = 0; i < n; i++) {
        if (d[i] < 0x20 || d[i] >= 0x7f) {
            tsb_error_set(err, 400, "csr.san",
                          "a subjectAltName holds a NUL, control or "
                          "non-ASCII character");
            return -1;
        }
    }

    v = malloc((size_t) n + 1);
    if (v == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    if (n > 0) {
        memcpy(v, d, (size_t) n);
    }

    v[n] = '\0';
    *out = v;

    return 0;
}


static int
tsb_csr_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'
           || c == '\v';
}


static const unsigned char *
tsb_csr_skip_space(const unsigned char *p, const unsigned char *end)
{
    while (p < end && tsb_csr_is_space(*p)) {
        p++;
    }

    return p;
}


static int
tsb_csr_all_space(const unsigned char *p, const unsigned char *end)
{
    return tsb_csr_skip_space(p, end) == end;
}


static const unsigned char *
tsb_csr_find(const unsigned char *p, const unsigned char *end,
    const char *s)
{
    size_t  n;

    n = strlen(s);

    for ( /* void */ ; (size_t) (end - p) >= n; p++) {
        if (*p == (unsigned char) s[0] && memcmp(p, s, n) == 0) {
            return p;
        }
    }

    return NULL;
}
