
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * ACME (RFC 8555) codecs: the payloads clients send (newAccount, account
 * update, newOrder, finalize, keyChange), parsed strictly from tsb_jws.h's
 * JSON tree; the objects the server answers (directory, account, order,
 * authorization, challenge, problem documents), written with yajl_gen;
 * and the records the gateway keeps of accounts and orders.
 *
 * Errors carry an ACME error type as their reason ("malformed",
 * "rejectedIdentifier", "badCSR", ...).
 */


#ifndef _TSB_ACME_H_INCLUDED_
#define _TSB_ACME_H_INCLUDED_


#include "tsb_common.h"
#include "tsb_csr.h"
#include "tsb_jws.h"


#define TSB_ACME_MAX_IDENTS    20
#define TSB_ACME_MAX_CONTACTS  4
#define TSB_ACME_MAX_CONTACT   256
#define TSB_ACME_MAX_ID        64      /* account and order ids */

#define TSB_ACME_ERROR_PREFIX  "urn:ietf:params:acme:error:"


/* account, order, authorization and challenge statuses */
#define TSB_ACME_PENDING       0
#define TSB_ACME_READY         1
#define TSB_ACME_PROCESSING    2
#define TSB_ACME_VALID         3
#define TSB_ACME_INVALID       4
#define TSB_ACME_DEACTIVATED   5
#define TSB_ACME_REVOKED       6
#define TSB_ACME_EXPIRED       7

const char *tsb_acme_status_name(int status);
int tsb_acme_status_from_name(const char *name);


/* a "dns" identifier: lower case, no trailing dot, maybe "*." first */
typedef struct {
    char        *value;
    size_t       len;
} tsb_acme_ident_t;


/* newAccount and account update payloads */
typedef struct {
    char        *contact[TSB_ACME_MAX_CONTACTS];
    size_t       n_contact;
    int          contact_present;
    int          tos_agreed;         /* -1 absent */
    int          only_existing;
    int          deactivate;         /* "status": "deactivated" */
    tsb_jws_t    eab;                /* externalAccountBinding */
    int          has_eab;
} tsb_acme_account_req_t;

#define TSB_ACME_NEW_ACCOUNT  0
#define TSB_ACME_UPDATE       1

/*
 * For TSB_ACME_NEW_ACCOUNT: contact (mailto: addresses only),
 * termsOfServiceAgreed, onlyReturnExisting, externalAccountBinding (a
 * JWS, parsed, not verified).  For TSB_ACME_UPDATE: contact and status
 * ("deactivated" only).  Unknown members are ignored, as RFC 8555 wants
 * for forward compatibility; a known one of the wrong type is "malformed".
 */
int tsb_acme_account_req_parse(const unsigned char *buf, size_t len,
    int kind, tsb_acme_account_req_t *req, tsb_error_t *err);
void tsb_acme_account_req_free(tsb_acme_account_req_t *req);


/* newOrder: identifiers, "dns" only; notBefore/notAfter are refused */
typedef struct {
    tsb_acme_ident_t  idents[TSB_ACME_MAX_IDENTS];
    size_t            n;
} tsb_acme_order_req_t;

int tsb_acme_order_req_parse(const unsigned char *buf, size_t len,
    tsb_acme_order_req_t *req, tsb_error_t *err);
void tsb_acme_order_req_free(tsb_acme_order_req_t *req);

/* finalize: {"csr": base64url DER} */
int tsb_acme_finalize_parse(const unsigned char *buf, size_t len,
    tsb_buf_t *der, tsb_error_t *err);

/* keyChange's inner payload: {"account": url, "oldKey": jwk} */
int tsb_acme_key_change_parse(const unsigned char *buf, size_t len,
    char **account, tsb_jwk_t *old_key, tsb_error_t *err);

/*
 * RFC 8555 section 7.4: the CSR names exactly the order's identifiers: its
 * DNS SANs (and commonName, if any, one of them) are the identifiers, no
 * more and no fewer, and it has no other kind of SAN.  400 "badCSR".
 */
int tsb_acme_csr_matches(const tsb_csr_t *csr, const tsb_acme_ident_t *ids,
    size_t n, tsb_error_t *err);


/* what the gateway keeps of an account (JSON on disk and in memory) */
typedef struct {
    char        *key;                /* the JWK, tsb_jwk_t.canon */
    int          status;             /* VALID or DEACTIVATED */
    char        *contact[TSB_ACME_MAX_CONTACTS];
    size_t       n_contact;
    char        *binding;            /* EAB key id's identity, or NULL */
    long long    created;
} tsb_acme_account_t;

int tsb_acme_account_encode(const tsb_acme_account_t *a, tsb_buf_t *out);
int tsb_acme_account_decode(const unsigned char *buf, size_t len,
    tsb_acme_account_t *a, tsb_error_t *err);
void tsb_acme_account_free(tsb_acme_account_t *a);


/* and of an order */
typedef struct {
    char        *account;            /* account id */
    int          status;
    long long    expires;
    tsb_acme_ident_t  idents[TSB_ACME_MAX_IDENTS];
    size_t       n;
    char        *request;            /* the TSB's signRequestId */
    char        *error_type;         /* an ACME error type, no prefix */
    char        *error_detail;

    /*
     * With real http-01 validation: a random token (base64url, 128 bits)
     * the challenges' tokens derive from, and each authorization's status
     * (PENDING, VALID or INVALID).  Without (token NULL, has_authz 0),
     * every authorization is valid: pre-authorised by the policy.
     */
    char        *token;
    int          has_authz;
    int          authz[TSB_ACME_MAX_IDENTS];
} tsb_acme_order_t;

int tsb_acme_order_encode(const tsb_acme_order_t *o, tsb_buf_t *out);
int tsb_acme_order_decode(const unsigned char *buf, size_t len,
    tsb_acme_order_t *o, tsb_error_t *err);
void tsb_acme_order_free(tsb_acme_order_t *o);
int tsb_acme_order_set_error(tsb_acme_order_t *o, const char *type,
    const char *detail);


/*
 * Answers.  base is the directory's prefix as an absolute URL ending in
 * '/' ("https://ca.example/acme/"); resources hang below it:
 * new-nonce, new-account, new-order, revoke-cert, key-change,
 * acct/<id>, order/<id>, authz/<id>-<n>, chall/<id>-<n>,
 * finalize/<id>, cert/<id>.
 */
int tsb_acme_directory_build(const char *base, const char *tos,
    int eab_required, tsb_buf_t *out);
int tsb_acme_account_build(const tsb_acme_account_t *a, const char *base,
    const char *id, tsb_buf_t *out);
int tsb_acme_orders_build(const char *base, char *const *ids,
    size_t n, tsb_buf_t *out);
int tsb_acme_order_build(const tsb_acme_order_t *o, const char *base,
    const char *id, tsb_buf_t *out);
int tsb_acme_authz_build(const tsb_acme_order_t *o, size_t n,
    const char *base, const char *id, tsb_buf_t *out);
int tsb_acme_challenge_build(const tsb_acme_order_t *o, size_t n,
    const char *base, const char *id, tsb_buf_t *out);

/*
 * The token of the challenge of authorization k: printable base64url, as
 * the client puts it in the http-01 path; out is at least
 * TSB_ACME_TOKEN_MAX bytes.
 */
#define TSB_ACME_TOKEN_MAX  128

int tsb_acme_challenge_token(const tsb_acme_order_t *o, size_t k,
    const char *id, char *out, size_t size);

/*
 * RFC 8555 section 8.3: whether an http-01 answer is the key
 * authorization "token.thumbprint", trailing whitespace ignored.  0 when
 * it is; else -1 with 403 "incorrectResponse" and a detail that quotes no
 * byte of the answer.
 */
int tsb_acme_http01_check(const unsigned char *body, size_t len,
    const char *token, const char *thumbprint, tsb_error_t *err);

/* {"type": "urn:ietf:params:acme:error:<type>", "detail", "status"} and,
 * with ident, the identifier the problem is about */
int tsb_acme_problem_build(const char *type, const char *detail,
    int status, const tsb_acme_ident_t *ident, tsb_buf_t *out);

/* RFC 3339, UTC, seconds: "2026-12-06T02:00:00Z" (21 bytes with NUL) */
void tsb_acme_time(long long t, char *buf, size_t len);


#endif /* _TSB_ACME_H_INCLUDED_ */
