
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON Web Signatures as ACME (RFC 8555 section 6.2) uses them: the
 * flattened JSON serialisation, a protected header with "alg", "nonce",
 * "url" and either "jwk" or "kid", verified with OpenSSL (ES256, ES384,
 * ES512, RS256, EdDSA; HS256/384/512 for external account binding only),
 * and the JWK thumbprint of RFC 7638.  Also the small strict JSON tree the
 * ACME codecs read client input with (yajl's callback parser: duplicate
 * keys, depth, size and NUL bytes refused).
 *
 * Errors carry an ACME error type as their reason ("malformed",
 * "badSignatureAlgorithm", "badPublicKey", "unauthorized", ...): the glue
 * prefixes "urn:ietf:params:acme:error:".
 */


#ifndef _TSB_JWS_H_INCLUDED_
#define _TSB_JWS_H_INCLUDED_


#include "tsb_common.h"


/* the largest JWS body taken (a CSR with 100 names fits easily) */
#define TSB_JWS_MAX          65536
#define TSB_JV_MAX_DEPTH     8
#define TSB_JV_MAX_NODES     1024

/* a thumbprint: base64url of SHA-256, 43 characters */
#define TSB_JWK_THUMB_LEN    43


#define TSB_JV_NULL    0
#define TSB_JV_BOOL    1
#define TSB_JV_NUMBER  2
#define TSB_JV_STRING  3
#define TSB_JV_ARRAY   4
#define TSB_JV_OBJECT  5


typedef struct tsb_jv_s  tsb_jv_t;

struct tsb_jv_s {
    int          type;          /* TSB_JV_* */
    char        *key;           /* a member's name, NUL-terminated */
    size_t       key_len;
    char        *str;           /* STRING and NUMBER text, NUL-terminated */
    size_t       len;
    int          boolean;
    tsb_jv_t    *child;         /* ARRAY elements, OBJECT members */
    tsb_jv_t    *last;
    tsb_jv_t    *next;
    size_t       n;             /* how many children */
};


/*
 * Parses exactly one JSON value (an object at the top) strictly: no
 * comments, no duplicate member names, no NUL in strings, depth up to
 * TSB_JV_MAX_DEPTH, TSB_JV_MAX_NODES values.  400 "malformed" otherwise,
 * never echoing input bytes.
 */
int tsb_jv_parse(const unsigned char *buf, size_t len, tsb_jv_t **out,
    tsb_error_t *err);

void tsb_jv_free(tsb_jv_t *v);

/* the member named key of an object, or NULL */
const tsb_jv_t *tsb_jv_get(const tsb_jv_t *obj, const char *key);


/* base64url without padding (RFC 7515 section 2); -1 for anything else */
int tsb_b64url_decode(const char *in, size_t len, tsb_buf_t *out);
int tsb_b64url_encode(const unsigned char *in, size_t len, tsb_buf_t *out);


#define TSB_JWS_ALG_NONE   0
#define TSB_JWS_ES256      1
#define TSB_JWS_ES384      2
#define TSB_JWS_ES512      3
#define TSB_JWS_RS256      4
#define TSB_JWS_EDDSA      5
#define TSB_JWS_HS256      6
#define TSB_JWS_HS384      7
#define TSB_JWS_HS512      8


/* a public key from a JWK, and its RFC 7638 identity */
typedef struct {
    void        *pkey;          /* EVP_PKEY *, owned */
    tsb_buf_t    canon;         /* the thumbprint input: the required
                                   members in order, no blanks; also how
                                   an account's key is stored */
    char         thumb[TSB_JWK_THUMB_LEN + 1];
} tsb_jwk_t;


/*
 * A key from a JWK object: EC (P-256, P-384, P-521), RSA (2048 to 8192
 * bits, odd exponent) or OKP (Ed25519).  400 "badPublicKey" when it is
 * none of these or does not decode; "malformed" for a wrong shape.
 */
int tsb_jwk_from_jv(const tsb_jv_t *jwk, tsb_jwk_t *key, tsb_error_t *err);

/* the same from JSON text, e.g. a stored account's canon */
int tsb_jwk_parse(const unsigned char *buf, size_t len, tsb_jwk_t *key,
    tsb_error_t *err);

void tsb_jwk_free(tsb_jwk_t *key);


typedef struct {
    int          alg;           /* TSB_JWS_* */
    char        *nonce;         /* NULL when absent */
    char        *url;
    char        *kid;           /* NULL when the header has a jwk */
    tsb_jwk_t    jwk;           /* jwk.pkey NULL when it has a kid */
    int          has_jwk;

    tsb_buf_t    payload;       /* decoded, NUL-terminated */
    tsb_buf_t    payload_b64;   /* as sent */
    tsb_buf_t    signing_input; /* protected "." payload, as sent */
    tsb_buf_t    signature;     /* decoded */
} tsb_jws_t;


#define TSB_JWS_ACME  0         /* an ACME request: asymmetric, nonce, url */
#define TSB_JWS_EAB   1         /* external account binding: HS*, kid */
#define TSB_JWS_INNER 2         /* keyChange's inner JWS: jwk, no kid,
                                   the nonce optional (7.3.5) */


/*
 * Parses a flattened JWS (an object of exactly "protected", "payload" and
 * "signature") and its protected header; does not verify.  For
 * TSB_JWS_ACME: "alg" among the asymmetric ones ("badSignatureAlgorithm"),
 * "nonce" and "url" required, exactly one of "jwk" and "kid", the jwk's
 * key fitting the alg.  For TSB_JWS_EAB: an HS* alg, "kid" and "url", no
 * "nonce" (RFC 8555 section 7.3.4).  For TSB_JWS_INNER: as ACME with a
 * "jwk", the "nonce" optional.  A "crit" or "b64" member is refused.
 */
int tsb_jws_parse(const unsigned char *buf, size_t len, int kind,
    tsb_jws_t *jws, tsb_error_t *err);
int tsb_jws_from_jv(const tsb_jv_t *v, int kind, tsb_jws_t *jws,
    tsb_error_t *err);

/*
 * Verifies the signature with key (NULL: the header's own jwk); the key
 * must fit the alg.  403 "unauthorized" when it does not verify.
 */
int tsb_jws_verify(const tsb_jws_t *jws, const tsb_jwk_t *key,
    tsb_error_t *err);

/* an HS* signature with a shared secret (external account binding) */
int tsb_jws_verify_hmac(const tsb_jws_t *jws, const unsigned char *secret,
    size_t len, tsb_error_t *err);

void tsb_jws_free(tsb_jws_t *jws);

const char *tsb_jws_alg_name(int alg);


#endif /* _TSB_JWS_H_INCLUDED_ */
