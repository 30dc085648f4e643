
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JWS for ACME (tsb_jws.h): a strict JSON tree through yajl's callback
 * parser, base64url, JWK keys through OpenSSL 3's EVP_PKEY_fromdata(),
 * RFC 7638 thumbprints written with yajl_gen, and signature checks.
 */


#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "tsb_jws.h"


/* ------------------------------------------------------ the JSON tree */

typedef struct {
    tsb_jv_t      *root;
    tsb_jv_t      *stack[TSB_JV_MAX_DEPTH + 1];
    int            depth;
    size_t         nodes;
    char          *key;           /* the pending member name */
    size_t         key_len;
    const char    *why;           /* why a callback stopped the parse */
} tsb_jv_ctx_t;


static char *
tsb_jv_strndup(const unsigned char *s, size_t len)
{
    char  *p;

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    if (len) {
        memcpy(p, s, len);
    }

    p[len] = '\0';

    return p;
}


static tsb_jv_t *
tsb_jv_add(tsb_jv_ctx_t *ctx, int type)
{
    tsb_jv_t  *v, *parent;

    if (++ctx->nodes > TSB_JV_MAX_NODES) {
        ctx->why = "too many JSON values";
        return NULL;
    }

    v = calloc(1, sizeof(tsb_jv_t));
    if (v == NULL) {
        ctx->why = "out of memory";
        return NULL;
    }

    v->type = type;

    if (ctx->depth == 0) {
        if (ctx->root != NULL) {
            free(v);
            ctx->why = "more than one JSON value";
            return NULL;
        }

        ctx->root = v;
        return v;
    }

    parent = ctx->stack[ctx->depth - 1];

    if (parent->type == TSB_JV_OBJECT) {
        /* the member name was checked for duplicates in map_key */
        v->key = ctx->key;
        v->key_len = ctx->key_len;
        ctx->key = NULL;
    }

    if (parent->last) {
        parent->last->next = v;

    } else {
        parent->child = v;
    }

    parent->last = v;
    parent->n++;

    return v;
}


static int
tsb_jv_null(void *data)
{
    return tsb_jv_add(data, TSB_JV_NULL) != NULL;
}


static int
tsb_jv_boolean(void *data, int b)
{
    tsb_jv_t  *v;

    v = tsb_jv_add(data, TSB_JV_BOOL);
    if (v == NULL) {
        return 0;
    }

    v->boolean = b ? 1 : 0;

    return 1;
}


static int
tsb_jv_number(void *data, const char *s, size_t len)
{
    tsb_jv_t  *v;

    v = tsb_jv_add(data, TSB_JV_NUMBER);
    if (v == NULL) {
        return 0;
    }

    v->str = tsb_jv_strndup((const unsigned char *) s, len);
    v->len = len;

    if (v->str == NULL) {
        ((tsb_jv_ctx_t *) data)->why = "out of memory";
        return 0;
    }

    return 1;
}


static int
tsb_jv_string(void *data, const unsigned char *s, size_t len)
{
    tsb_jv_t      *v;
    tsb_jv_ctx_t  *ctx = data;

    if (memchr(s, '\0', len) != NULL) {
        ctx->why = "a JSON string holds a NUL character";
        return 0;
    }

    v = tsb_jv_add(ctx, TSB_JV_STRING);
    if (v == NULL) {
        return 0;
    }

    v->str = tsb_jv_strndup(s, len);
    v->len = len;

    if (v->str == NULL) {
        ctx->why = "out of memory";
        return 0;
    }

    return 1;
}


static int
tsb_jv_open(tsb_jv_ctx_t *ctx, int type)
{
    tsb_jv_t  *v;

    if (ctx->depth >= TSB_JV_MAX_DEPTH) {
        ctx->why = "the JSON is nested too deeply";
        return 0;
    }

    v = tsb_jv_add(ctx, type);
    if (v == NULL) {
        return 0;
    }

    ctx->stack[ctx->depth++] = v;

    return 1;
}


static int
tsb_jv_start_map(void *data)
{
    return tsb_jv_open(data, TSB_JV_OBJECT);
}


static int
tsb_jv_start_array(void *data)
{
    return tsb_jv_open(data, TSB_JV_ARRAY);
}


static int
tsb_jv_close(void *data)
{
    tsb_jv_ctx_t  *ctx = data;

    ctx->depth--;

    return 1;
}


static int
tsb_jv_map_key(void *data, const unsigned char *s, size_t len)
{
    tsb_jv_t      *m, *obj;
    tsb_jv_ctx_t  *ctx = data;

    if (memchr(s, '\0', len) != NULL) {
        ctx->why = "a JSON member name holds a NUL character";
        return 0;
    }

    obj = ctx->stack[ctx->depth - 1];

    for (m = obj->child; m; m = m->next) {
        if (m->key_len == len && memcmp(m->key, s, len) == 0) {
            ctx->why = "a JSON object has a member twice";
            return 0;
        }
    }

    free(ctx->key);

    ctx->key = tsb_jv_strndup(s, len);
    ctx->key_len = len;

    if (ctx->key == NULL) {
        ctx->why = "out of memory";
        return 0;
    }

    return 1;
}


static yajl_callbacks  tsb_jv_callbacks = {
    tsb_jv_null,
    tsb_jv_boolean,
    NULL,
    NULL,
    tsb_jv_number,
    tsb_jv_string,
    tsb_jv_start_map,
    tsb_jv_map_key,
    tsb_jv_close,
    tsb_jv_start_array,
    tsb_jv_close
};


int
tsb_jv_parse(const unsigned char *buf, size_t len, tsb_jv_t **out,
    tsb_error_t *err)
{
    yajl_status    st;
    yajl_handle    h;
    tsb_jv_ctx_t   ctx;

    *out = NULL;
    memset(&ctx, 0, sizeof(tsb_jv_ctx_t));

    if (len > TSB_JWS_MAX) {
        tsb_error_set(err, 413, "malformed",
                      "the JSON is larger than %d bytes", TSB_JWS_MAX);
        return -1;
    }

    h = yajl_alloc(&tsb_jv_callbacks, NULL, &ctx);
    if (h == NULL) {
        tsb_error_set(err, 500, "serverInternal", "out of memory");
        return -1;
    }

    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    st = yajl_parse(h, buf, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);
    free(ctx.key);

    if (st != yajl_status_ok || ctx.root == NULL) {
        /* yajl's own message echoes input: say only where it stopped */
        tsb_error_set(err, 400, "malformed", "%s",
                      ctx.why ? ctx.why : "the body is not valid JSON");
        tsb_jv_free(ctx.root);
        return -1;
    }

    if (ctx.root->type != TSB_JV_OBJECT) {
        tsb_error_set(err, 400, "malformed", "the JSON is not an object");
        tsb_jv_free(ctx.root);
        return -1;
    }

    *out = ctx.root;

    return 0;
}


void
tsb_jv_free(tsb_jv_t *v)
{
    tsb_jv_t  *c, *next;

    if (v == NULL) {
        return;
    }

    for (c = v->child; c; c = next) {
        next = c->next;
        tsb_jv_free(c);
    }

    free(v->key);
    free(v->str);
    free(v);
}


const tsb_jv_t *
tsb_jv_get(const tsb_jv_t *obj, const char *key)
{
    size_t     len;
    tsb_jv_t  *m;

    if (obj == NULL || obj->type != TSB_JV_OBJECT) {
        return NULL;
    }

    len = strlen(key);

    for (m = obj->child; m; m = m->next) {
        if (m->key_len == len && memcmp(m->key, key, len) == 0) {
            return m;
        }
    }

    return NULL;
}


/* ---------------------------------------------------------- base64url */

static int
tsb_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}


int
tsb_b64url_decode(const char *in, size_t len, tsb_buf_t *out)
{
    int        v;
    size_t     i, n;
    uint32_t   acc;
    unsigned   bits;

    out->data = NULL;
    out->len = 0;

    /* one character alone carries no whole byte */
    if (len % 4 == 1) {
        return -1;
    }

    out->data = malloc(len / 4 * 3 + 3);
    if (out->data == NULL) {
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        v = tsb_b64url_value((unsigned char) in[i]);
        if (v < 0) {
            goto bad;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out->data[n++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* the left-over bits must be zero: one encoding per byte string */
    if (acc != 0) {
        goto bad;
    }

    out->data[n] = '\0';
    out->len = n;

    return 0;

bad:

    free(out->data);
    out->data = NULL;

    return -1;
}


int
tsb_b64url_encode(const unsigned char *in, size_t len, tsb_buf_t *out)
{
    static const char  tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t     i, n;
    uint32_t   acc;
    unsigned   bits;

    out->data = malloc(len / 3 * 4 + 5);
    if (out->data == NULL) {
        out->len = 0;
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;

        while (bits >= 6) {
            bits -= 6;
            out->data[n++] = tab[(acc >> bits) & 0x3f];
        }

        acc &= (1u << bits) - 1;
    }

    if (bits) {
        out->data[n++] = tab[(acc << (6 - bits)) & 0x3f];
    }

    out->data[n] = '\0';
    out->len = n;

    return 0;
}


/* ---------------------------------------------------------------- JWK */

static const char *
tsb_jv_str(const tsb_jv_t *obj, const char *key)
{
    const tsb_jv_t  *v;

    v = tsb_jv_get(obj, key);

    return (v && v->type == TSB_JV_STRING) ? v->str : NULL;
}


static int
tsb_jwk_canon(tsb_jwk_t *key, const char **names, const char **values)
{
    size_t                i, len;
    yajl_gen              g;
    const unsigned char  *p;

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return -1;
    }

    yajl_gen_config(g, yajl_gen_beautify, 0);

    if (yajl_gen_map_open(g) != yajl_gen_status_ok) {
        goto failed;
    }

    /* RFC 7638 section 3.2: the required members in lexicographic order */
    for (i = 0; names[i]; i++) {
        if (yajl_gen_string(g, (const unsigned char *) names[i],
                            strlen(names[i])) != yajl_gen_status_ok
            || yajl_gen_string(g, (const unsigned char *) values[i],
                               strlen(values[i])) != yajl_gen_status_ok)
        {
            goto failed;
        }
    }

    if (yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_get_buf(g, &p, &len) != yajl_gen_status_ok)
    {
        goto failed;
    }

    key->canon.data = malloc(len + 1);
    if (key->canon.data == NULL) {
        goto failed;
    }

    memcpy(key->canon.data, p, len);
    key->canon.data[len] = '\0';
    key->canon.len = len;

    yajl_gen_free(g);

    return 0;

failed:

    yajl_gen_free(g);

    return -1;
}


static int
tsb_jwk_thumb(tsb_jwk_t *key)
{
    tsb_buf_t      b64;
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (!EVP_Digest(key->canon.data, key->canon.len, md, &mdlen,
                    EVP_sha256(), NULL)
        || tsb_b64url_encode(md, mdlen, &b64) != 0)
    {
        return -1;
    }

    if (b64.len != TSB_JWK_THUMB_LEN) {
        tsb_buf_free(&b64);
        return -1;
    }

    memcpy(key->thumb, b64.data, b64.len + 1);
    tsb_buf_free(&b64);

    return 0;
}


static EVP_PKEY *
tsb_jwk_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *pctx;

    pkey = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || pctx == NULL
        || EVP_PKEY_fromdata_init(pctx) <= 0
        || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    {
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);

    return pkey;
}


static EVP_PKEY *
tsb_jwk_ec(const char *crv, const char *x, const char *y, tsb_error_t *err)
{
    size_t           flen;
    EVP_PKEY        *pkey;
    tsb_buf_t        bx, by;
    const char      *group;
    unsigned char    pub[1 + 2 * 66];
    OSSL_PARAM_BLD  *bld;

    if (strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        flen = 32;

    } else if (strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        flen = 48;

    } else if (strcmp(crv, "P-521") == 0) {
        group = "secp521r1";
        flen = 66;

    } else {
        tsb_error_set(err, 400, "badPublicKey",
                      "the EC key's curve is not P-256, P-384 or P-521");
        return NULL;
    }

    if (tsb_b64url_decode(x, strlen(x), &bx) != 0) {
        goto bad;
    }

    if (tsb_b64url_decode(y, strlen(y), &by) != 0) {
        tsb_buf_free(&bx);
        goto bad;
    }

    /* RFC 7518 section 6.2.1.2: the full field size, no more, no less */
    if (bx.len != flen || by.len != flen) {
        tsb_buf_free(&bx);
        tsb_buf_free(&by);
        goto bad;
    }

    pub[0] = 0x04;
    memcpy(pub + 1, bx.data, flen);
    memcpy(pub + 1 + flen, by.data, flen);
    tsb_buf_free(&bx);
    tsb_buf_free(&by);

    pkey = NULL;
    bld = OSSL_PARAM_BLD_new();

    if (bld != NULL
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            pub, 1 + 2 * flen))
    {
        pkey = tsb_jwk_from_params("EC", bld);
    }

    OSSL_PARAM_BLD_free(bld);

    if (pkey == NULL) {
        goto bad;
    }

    return pkey;

bad:

    ERR_clear_error();
    tsb_error_set(err, 400, "badPublicKey",
                  "the EC key's x and y are not a point on %s", crv);

    return NULL;
}


static EVP_PKEY *
tsb_jwk_rsa(const char *n, const char *e, tsb_error_t *err)
{
    int              bits;
    BIGNUM          *bn, *be;
    EVP_PKEY        *pkey;
    tsb_buf_t        dn, de;
    OSSL_PARAM_BLD  *bld;

    pkey = NULL;
    bn = NULL;
    be = NULL;
    bld = NULL;

    if (tsb_b64url_decode(n, strlen(n), &dn) != 0) {
        goto bad;
    }

    if (tsb_b64url_decode(e, strlen(e), &de) != 0) {
        tsb_buf_free(&dn);
        goto bad;
    }

    /* no leading zero octets (RFC 7518 section 6.3.1.1) */
    if (dn.len == 0 || de.len == 0 || de.len > 8
        || dn.data[0] == 0 || de.data[0] == 0)
    {
        tsb_buf_free(&dn);
        tsb_buf_free(&de);
        goto bad;
    }

    bn = BN_bin2bn(dn.data, (int) dn.len, NULL);
    be = BN_bin2bn(de.data, (int) de.len, NULL);
    tsb_buf_free(&dn);
    tsb_buf_free(&de);

    if (bn == NULL || be == NULL) {
        goto bad;
    }

    bits = BN_num_bits(bn);

    if (bits < 2048 || bits > 8192 || !BN_is_odd(be) || BN_is_one(be)) {
        BN_free(bn);
        BN_free(be);
        tsb_error_set(err, 400, "badPublicKey",
                      "an RSA account key must have 2048 to 8192 bits and "
                      "an odd exponent above 1");
        return NULL;
    }

    bld = OSSL_PARAM_BLD_new();

    if (bld != NULL
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
    {
        pkey = tsb_jwk_from_params("RSA", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    bn = NULL;
    be = NULL;

    if (pkey) {
        return pkey;
    }

bad:

    BN_free(bn);
    BN_free(be);
    ERR_clear_error();
    tsb_error_set(err, 400, "badPublicKey",
                  "the RSA key's n or e is not base64url of a big-endian "
                  "integer");

    return NULL;
}


static EVP_PKEY *
tsb_jwk_okp(const char *crv, const char *x, tsb_error_t *err)
{
    EVP_PKEY   *pkey;
    tsb_buf_t   bx;

    if (strcmp(crv, "Ed25519") != 0) {
        tsb_error_set(err, 400, "badPublicKey",
                      "the OKP key's curve is not Ed25519");
        return NULL;
    }

    if (tsb_b64url_decode(x, strlen(x), &bx) != 0 || bx.len != 32) {
        if (bx.data) {
            tsb_buf_free(&bx);
        }

        tsb_error_set(err, 400, "badPublicKey",
                      "the Ed25519 key's x is not 32 bytes of base64url");
        return NULL;
    }

    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, bx.data, 32);
    tsb_buf_free(&bx);

    if (pkey == NULL) {
        ERR_clear_error();
        tsb_error_set(err, 400, "badPublicKey",
                      "the Ed25519 key does not decode");
    }

    return pkey;
}


int
tsb_jwk_from_jv(const tsb_jv_t *jwk, tsb_jwk_t *key, tsb_error_t *err)
{
    const char       *kty, *crv, *x, *y, *n, *e;
    const char       *names[5], *values[5];
    const tsb_jv_t   *m;

    memset(key, 0, sizeof(tsb_jwk_t));

    if (jwk == NULL || jwk->type != TSB_JV_OBJECT) {
        tsb_error_set(err, 400, "malformed", "\"jwk\" is not an object");
        return -1;
    }

    /* a private key part must never travel: refuse it loudly */
    for (m = jwk->child; m; m = m->next) {
        if (strcmp(m->key, "d") == 0 || strcmp(m->key, "p") == 0
            || strcmp(m->key, "q") == 0 || strcmp(m->key, "k") == 0)
        {
            tsb_error_set(err, 400, "badPublicKey",
                          "the JWK holds private key material");
            return -1;
        }
    }

    kty = tsb_jv_str(jwk, "kty");
    crv = tsb_jv_str(jwk, "crv");
    x = tsb_jv_str(jwk, "x");
    y = tsb_jv_str(jwk, "y");
    n = tsb_jv_str(jwk, "n");
    e = tsb_jv_str(jwk, "e");

    if (kty == NULL) {
        tsb_error_set(err, 400, "malformed", "the JWK has no \"kty\"");
        return -1;
    }

    if (strcmp(kty, "EC") == 0) {
        if (crv == NULL || x == NULL || y == NULL) {
            tsb_error_set(err, 400, "malformed",
                          "an EC JWK needs \"crv\", \"x\" and \"y\"");
            return -1;
        }

        key->pkey = tsb_jwk_ec(crv, x, y, err);

        names[0] = "crv"; values[0] = crv;
        names[1] = "kty"; values[1] = kty;
        names[2] = "x"; values[2] = x;
        names[3] = "y"; values[3] = y;
        names[4] = NULL;

    } else if (strcmp(kty, "RSA") == 0) {
        if (n == NULL || e == NULL) {
            tsb_error_set(err, 400, "malformed",
                          "an RSA JWK needs \"n\" and \"e\"");
            return -1;
        }

        key->pkey = tsb_jwk_rsa(n, e, err);

        names[0] = "e"; values[0] = e;
        names[1] = "kty"; values[1] = kty;
        names[2] = "n"; values[2] = n;
        names[3] = NULL;

    } else if (strcmp(kty, "OKP") == 0) {
        if (crv == NULL || x == NULL) {
            tsb_error_set(err, 400, "malformed",
                          "an OKP JWK needs \"crv\" and \"x\"");
            return -1;
        }

        key->pkey = tsb_jwk_okp(crv, x, err);

        names[0] = "crv"; values[0] = crv;
        names[1] = "kty"; values[1] = kty;
        names[2] = "x"; values[2] = x;
        names[3] = NULL;

    } else {
        tsb_error_set(err, 400, "badPublicKey",
                      "the JWK's \"kty\" is not EC, RSA or OKP");
        return -1;
    }

    if (key->pkey == NULL) {
        return -1;
    }

    if (tsb_jwk_canon(key, names, values) != 0 || tsb_jwk_thumb(key) != 0) {
        tsb_jwk_free(key);
        tsb_error_set(err, 500, "serverInternal", "out of memory");
        return -1;
    }

    return 0;
}


int
tsb_jwk_parse(const unsigned char *buf, size_t len, tsb_jwk_t *key,
    tsb_error_t *err)
{
    int        rc;
    tsb_jv_t  *v;

    memset(key, 0, sizeof(tsb_jwk_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    rc = tsb_jwk_from_jv(v, key, err);
    tsb_jv_free(v);

    return rc;
}


void
tsb_jwk_free(tsb_jwk_t *key)
{
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
    tsb_buf_free(&key->canon);
}


/* ---------------------------------------------------------------- JWS */

static const struct {
    const char  *name;
    int          alg;
} tsb_jws_algs[] = {
    { "ES256", TSB_JWS_ES256 },
    { "ES384", TSB_JWS_ES384 },
    { "ES512", TSB_JWS_ES512 },
    { "RS256", TSB_JWS_RS256 },
    { "EdDSA", TSB_JWS_EDDSA },
    { "HS256", TSB_JWS_HS256 },
    { "HS384", TSB_JWS_HS384 },
    { "HS512", TSB_JWS_HS512 },
    { NULL, 0 }
};


const char *
tsb_jws_alg_name(int alg)
{
    int  i;

    for (i = 0; tsb_jws_algs[i].name; i++) {
        if (tsb_jws_algs[i].alg == alg) {
            return tsb_jws_algs[i].name;
        }
    }

    return NULL;
}


static int
tsb_jws_is_hmac(int alg)
{
    return alg == TSB_JWS_HS256 || alg == TSB_JWS_HS384
           || alg == TSB_JWS_HS512;
}


/* whether alg can be made with key: 1 or 0 */
static int
tsb_jws_alg_fits(int alg, EVP_PKEY *pkey)
{
    int   bits;

    switch (EVP_PKEY_get_base_id(pkey)) {

    case EVP_PKEY_EC:
        bits = EVP_PKEY_get_bits(pkey);
        return (alg == TSB_JWS_ES256 && bits == 256)
               || (alg == TSB_JWS_ES384 && bits == 384)
               || (alg == TSB_JWS_ES512 && bits == 521);

    case EVP_PKEY_RSA:
        return alg == TSB_JWS_RS256;

    case EVP_PKEY_ED25519:
        return alg == TSB_JWS_EDDSA;
    }

    return 0;
}


static int
tsb_jws_dup(const tsb_jv_t *v, char **out)
{
    *out = malloc(v->len + 1);
    if (*out == NULL) {
        return -1;
    }

    memcpy(*out, v->str, v->len + 1);

    return 0;
}


int
tsb_jws_from_jv(const tsb_jv_t *outer, int kind, tsb_jws_t *jws,
    tsb_error_t *err)
{
    int              i;
    size_t           n;
    tsb_jv_t        *hdr;
    tsb_buf_t        prot;
    const tsb_jv_t  *m, *p, *pl, *sig, *alg, *nonce, *url, *jwk, *kid;

    memset(jws, 0, sizeof(tsb_jws_t));
    hdr = NULL;

    if (outer == NULL || outer->type != TSB_JV_OBJECT) {
        tsb_error_set(err, 400, "malformed", "the JWS is not an object");
        return -1;
    }

    p = tsb_jv_get(outer, "protected");
    pl = tsb_jv_get(outer, "payload");
    sig = tsb_jv_get(outer, "signature");

    /* RFC 8555 section 6.2: no unprotected header, no other member */
    for (m = outer->child; m; m = m->next) {
        if (m != p && m != pl && m != sig) {
            tsb_error_set(err, 400, "malformed",
                          "a flattened JWS has \"protected\", \"payload\" "
                          "and \"signature\" only");
            return -1;
        }
    }

    if (p == NULL || pl == NULL || sig == NULL
        || p->type != TSB_JV_STRING || pl->type != TSB_JV_STRING
        || sig->type != TSB_JV_STRING)
    {
        tsb_error_set(err, 400, "malformed",
                      "the JWS needs \"protected\", \"payload\" and "
                      "\"signature\" as strings");
        return -1;
    }

    if (tsb_b64url_decode(p->str, p->len, &prot) != 0) {
        tsb_error_set(err, 400, "malformed",
                      "\"protected\" is not base64url");
        return -1;
    }

    if (tsb_b64url_decode(pl->str, pl->len, &jws->payload) != 0) {
        tsb_buf_free(&prot);
        tsb_error_set(err, 400, "malformed", "\"payload\" is not base64url");
        return -1;
    }

    if (tsb_b64url_decode(sig->str, sig->len, &jws->signature) != 0) {
        tsb_buf_free(&prot);
        tsb_error_set(err, 400, "malformed",
                      "\"signature\" is not base64url");
        goto failed;
    }

    /* what was signed: the encoded header and payload, as sent */
    n = p->len + 1 + pl->len;
    jws->signing_input.data = malloc(n + 1);
    jws->payload_b64.data = malloc(pl->len + 1);

    if (jws->signing_input.data == NULL || jws->payload_b64.data == NULL) {
        tsb_buf_free(&prot);
        tsb_error_set(err, 500, "serverInternal", "out of memory");
        goto failed;
    }

    memcpy(jws->signing_input.data, p->str, p->len);
    jws->signing_input.data[p->len] = '.';
    memcpy(jws->signing_input.data + p->len + 1, pl->str, pl->len);
    jws->signing_input.data[n] = '\0';
    jws->signing_input.len = n;

    memcpy(jws->payload_b64.data, pl->str, pl->len + 1);
    jws->payload_b64.len = pl->len;

    i = tsb_jv_parse(prot.data, prot.len, &hdr, err);
    tsb_buf_free(&prot);

    if (i != 0) {
        tsb_error_set(err, 400, "malformed",
                      "the protected header is not a JSON object");
        goto failed;
    }

    if (tsb_jv_get(hdr, "crit") || tsb_jv_get(hdr, "b64")) {
        tsb_error_set(err, 400, "malformed",
                      "the protected header has \"crit\" or \"b64\", which "
                      "ACME does not use");
        goto failed;
    }

    alg = tsb_jv_get(hdr, "alg");
    nonce = tsb_jv_get(hdr, "nonce");
    url = tsb_jv_get(hdr, "url");
    jwk = tsb_jv_get(hdr, "jwk");
    kid = tsb_jv_get(hdr, "kid");

    if (alg == NULL || alg->type != TSB_JV_STRING) {
        tsb_error_set(err, 400, "malformed",
                      "the protected header has no \"alg\"");
        goto failed;
    }

    for (i = 0; tsb_jws_algs[i].name; i++) {
        if (strcmp(alg->str, tsb_jws_algs[i].name) == 0) {
            jws->alg = tsb_jws_algs[i].alg;
            break;
        }
    }

    if (jws->alg == TSB_JWS_ALG_NONE
        || tsb_jws_is_hmac(jws->alg) != (kind == TSB_JWS_EAB))
    {
        tsb_error_set(err, 400, "badSignatureAlgorithm",
                      kind == TSB_JWS_EAB
                      ? "an external account binding is signed with "
                        "HS256, HS384 or HS512"
                      : "sign with ES256, ES384, ES512, RS256 or EdDSA");
        goto failed;
    }

    if (url == NULL || url->type != TSB_JV_STRING || url->len == 0) {
        tsb_error_set(err, 400, "malformed",
                      "the protected header has no \"url\"");
        goto failed;
    }

    if (tsb_jws_dup(url, &jws->url) != 0) {
        goto nomem;
    }

    if (kind == TSB_JWS_EAB) {
        if (nonce != NULL || jwk != NULL) {
            tsb_error_set(err, 400, "malformed",
                          "an external account binding has no \"nonce\" "
                          "and no \"jwk\"");
            goto failed;
        }

        if (kid == NULL || kid->type != TSB_JV_STRING || kid->len == 0) {
            tsb_error_set(err, 400, "malformed",
                          "an external account binding needs a \"kid\"");
            goto failed;
        }

        if (tsb_jws_dup(kid, &jws->kid) != 0) {
            goto nomem;
        }

        tsb_jv_free(hdr);
        return 0;
    }

    if (kind == TSB_JWS_INNER && nonce == NULL) {
        /* keyChange's inner JWS may go without */

    } else if (nonce == NULL || nonce->type != TSB_JV_STRING
               || nonce->len == 0)
    {
        tsb_error_set(err, 400, "badNonce",
                      "the protected header has no \"nonce\"");
        goto failed;

    } else if (tsb_jws_dup(nonce, &jws->nonce) != 0) {
        goto nomem;
    }

    if (kind == TSB_JWS_INNER && (jwk == NULL || kid != NULL)) {
        tsb_error_set(err, 400, "malformed",
                      "the inner JWS of a key change has the new key as "
                      "\"jwk\" and no \"kid\"");
        goto failed;
    }

    if ((jwk == NULL) == (kid == NULL)) {
        tsb_error_set(err, 400, "malformed",
                      "the protected header has either \"jwk\" or \"kid\", "
                      "not both, not neither");
        goto failed;
    }

    if (kid) {
        if (kid->type != TSB_JV_STRING || kid->len == 0) {
            tsb_error_set(err, 400, "malformed", "\"kid\" is not a string");
            goto failed;
        }

        if (tsb_jws_dup(kid, &jws->kid) != 0) {
            goto nomem;
        }

        tsb_jv_free(hdr);
        return 0;
    }

    if (tsb_jwk_from_jv(jwk, &jws->jwk, err) != 0) {
        goto failed;
    }

    jws->has_jwk = 1;

    if (!tsb_jws_alg_fits(jws->alg, jws->jwk.pkey)) {
        tsb_error_set(err, 400, "badSignatureAlgorithm",
                      "\"alg\" %s does not fit the JWK's key",
                      tsb_jws_alg_name(jws->alg));
        goto failed;
    }

    tsb_jv_free(hdr);

    return 0;

nomem:

    tsb_error_set(err, 500, "serverInternal", "out of memory");

failed:

    tsb_jv_free(hdr);
    tsb_jws_free(jws);

    return -1;
}


int
tsb_jws_parse(const unsigned char *buf, size_t len, int kind,
    tsb_jws_t *jws, tsb_error_t *err)
{
    int        rc;
    tsb_jv_t  *v;

    memset(jws, 0, sizeof(tsb_jws_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    rc = tsb_jws_from_jv(v, kind, jws, err);
    tsb_jv_free(v);

    return rc;
}


/* r || s, each the curve's size (RFC 7518 section 3.4), to DER */
static int
tsb_jws_ecdsa_der(const tsb_buf_t *raw, size_t flen, tsb_buf_t *der)
{
    int            n;
    BIGNUM        *r, *s;
    ECDSA_SIG     *es;
    unsigned char *p;

    der->data = NULL;

    if (raw->len != 2 * flen) {
        return -1;
    }

    es = ECDSA_SIG_new();
    r = BN_bin2bn(raw->data, (int) flen, NULL);
    s = BN_bin2bn(raw->data + flen, (int) flen, NULL);

    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return -1;
    }

    n = i2d_ECDSA_SIG(es, NULL);

    if (n <= 0 || (der->data = malloc(n)) == NULL) {
        ECDSA_SIG_free(es);
        return -1;
    }

    p = der->data;
    der->len = (size_t) i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);

    return 0;
}


int
tsb_jws_verify(const tsb_jws_t *jws, const tsb_jwk_t *key, tsb_error_t *err)
{
    int            ok;
    size_t         flen;
    EVP_PKEY      *pkey;
    tsb_buf_t      der;
    EVP_MD_CTX    *md;
    const EVP_MD  *h;

    if (key == NULL) {
        key = &jws->jwk;
    }

    pkey = key->pkey;

    if (pkey == NULL) {
        tsb_error_set(err, 500, "serverInternal", "no key to verify with");
        return -1;
    }

    if (!tsb_jws_alg_fits(jws->alg, pkey)) {
        /* the header's own jwk was checked: this is another key */
        tsb_error_set(err, 403, "unauthorized",
                      "the JWS is not signed with the account's key "
                      "(\"alg\" %s does not fit it)",
                      tsb_jws_alg_name(jws->alg));
        return -1;
    }

    flen = 0;
    h = NULL;

    switch (jws->alg) {
    case TSB_JWS_ES256:
        flen = 32;
        h = EVP_sha256();
        break;
    case TSB_JWS_ES384:
        flen = 48;
        h = EVP_sha384();
        break;
    case TSB_JWS_ES512:
        flen = 66;
        h = EVP_sha512();
        break;
    case TSB_JWS_RS256:
        h = EVP_sha256();
        break;
    default: /* EdDSA: no separate digest */
        break;
    }

    der.data = NULL;
    der.len = 0;

    if (flen && tsb_jws_ecdsa_der(&jws->signature, flen, &der) != 0) {
        tsb_error_set(err, 403, "unauthorized",
                      "the JWS signature does not verify");
        return -1;
    }

    md = EVP_MD_CTX_new();

    ok = md != NULL
         && EVP_DigestVerifyInit(md, NULL, h, NULL, pkey) == 1
         && EVP_DigestVerify(md,
                             flen ? der.data : jws->signature.data,
                             flen ? der.len : jws->signature.len,
                             jws->signing_input.data,
                             jws->signing_input.len) == 1;

    EVP_MD_CTX_free(md);
    free(der.data);

    if (!ok) {
        ERR_clear_error();
        tsb_error_set(err, 403, "unauthorized",
                      "the JWS signature does not verify");
        return -1;
    }

    return 0;
}


int
tsb_jws_verify_hmac(const tsb_jws_t *jws, const unsigned char *secret,
    size_t len, tsb_error_t *err)
{
    unsigned int   mdlen;
    const EVP_MD  *h;
    unsigned char  md[EVP_MAX_MD_SIZE];

    switch (jws->alg) {
    case TSB_JWS_HS256:
        h = EVP_sha256();
        break;
    case TSB_JWS_HS384:
        h = EVP_sha384();
        break;
    case TSB_JWS_HS512:
        h = EVP_sha512();
        break;
    default:
        tsb_error_set(err, 400, "badSignatureAlgorithm",
                      "an external account binding is signed with HS256, "
                      "HS384 or HS512");
        return -1;
    }

    if (HMAC(h, secret, (int) len, jws->signing_input.data,
             jws->signing_input.len, md, &mdlen) == NULL
        || mdlen != jws->signature.len
        || CRYPTO_memcmp(md, jws->signature.data, mdlen) != 0)
    {
        ERR_clear_error();
        tsb_error_set(err, 403, "unauthorized",
                      "the external account binding's MAC does not verify "
                      "with the key named by its kid");
        return -1;
    }

    return 0;
}


void
tsb_jws_free(tsb_jws_t *jws)
{
    free(jws->nonce);
    free(jws->url);
    free(jws->kid);
    tsb_jwk_free(&jws->jwk);
    tsb_buf_free(&jws->payload);
    tsb_buf_free(&jws->payload_b64);
    tsb_buf_free(&jws->signing_input);
    tsb_buf_free(&jws->signature);

    memset(jws, 0, sizeof(tsb_jws_t));
}
