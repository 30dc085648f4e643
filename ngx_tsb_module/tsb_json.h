
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON codecs of the TSB API, all through yajl: a strict callback parser for
 * what clients send, tolerant-but-checked parsers for what the TSB answers,
 * and yajl_gen for everything we write.
 */


#ifndef _TSB_JSON_H_INCLUDED_
#define _TSB_JSON_H_INCLUDED_


#include "tsb_common.h"


#define TSB_JSON_MAX_DEPTH  8


/* a signCertificateRequest; every string is heap, NUL-terminated, checked
 * to hold no NUL and valid UTF-8 */
typedef struct {
    char        *sign_key_name;         /* NULL when absent or null */
    char        *signature_algorithm;
    char        *common_name;
    char        *csr;                   /* certificateSigningRequest text */
    size_t       csr_len;

    int          key_password_present;  /* the key was there, even null */
    char        *key_password;          /* joined when sent as an array of
                                           one-character strings; wiped on
                                           free; NULL for null */
    size_t       key_password_len;

    int          certificate_authority; /* -1 absent, 0, 1 */

    unsigned     key_usage;             /* TSB_KU_* */
    int          key_usage_present;
    unsigned     ext_key_usage;         /* TSB_EKU_* */
    int          ext_key_usage_present;

    long         validity;              /* days; -1 absent */

    char        *meta_data;             /* opaque, forwarded as given */
    char        *meta_data_signature;
    int          has_request_signature; /* top-level requestSignature,
                                           not null */
} tsb_sign_req_t;


/*
 * Parses {"signCertificateRequest": {...}} strictly: unknown fields,
 * duplicate keys, wrong types ("true" for a boolean), depth beyond
 * TSB_JSON_MAX_DEPTH, and unknown keyUsage names are refused with 400.
 * Syntax errors name the position: reason "json.syntax", detail
 * "... at line L, column C (byte B)".  Never echoes input bytes.
 */
int tsb_sign_req_parse(const unsigned char *buf, size_t len,
    tsb_sign_req_t *req, tsb_error_t *err);

void tsb_sign_req_free(tsb_sign_req_t *req);

/*
 * {"signCertificateRequest": {...}} for the upstream, from req.  out holds
 * the keyPassword: wipe it (tsb_secure_zero) before tsb_buf_free().
 */
int tsb_sign_req_build(const tsb_sign_req_t *req, tsb_buf_t *out);


/* {"signRequestId": "<id>"}; the id must be a plausible request id */
int tsb_sign_resp_parse(const unsigned char *buf, size_t len, char **id,
    tsb_error_t *err);

/* {"signRequestId": "<id>"} as we answer it */
int tsb_sign_resp_build(const char *id, size_t id_len, tsb_buf_t *out);

/* synchronous sign: {"label": ..., "certificate": ...} */
int tsb_sync_sign_resp_parse(const unsigned char *buf, size_t len,
    char **label, char **certificate, tsb_error_t *err);


#define TSB_STATUS_UNKNOWN    0
#define TSB_STATUS_PENDING    1
#define TSB_STATUS_APPROVED   2
#define TSB_STATUS_EXECUTED   3
#define TSB_STATUS_FAILED     4
#define TSB_STATUS_EXPIRED    5
#define TSB_STATUS_REJECTED   6
#define TSB_STATUS_CANCELLED  7

typedef struct {
    char        *id;
    int          status;                /* TSB_STATUS_* */
    char        *execution_time;        /* NULL when null/absent */
    char       **approved_by;
    size_t       n_approved_by;
    char       **not_yet_approved_by;
    size_t       n_not_yet_approved_by;
    char       **rejected_by;
    size_t       n_rejected_by;
    char        *result;                /* NULL when null/absent */
} tsb_status_t;

/* GET /v1/request/{id} answer; unknown extra fields are ignored, a wrong
 * type or an unknown status is an error (502 "upstream.response") */
int tsb_status_parse(const unsigned char *buf, size_t len, tsb_status_t *st,
    tsb_error_t *err);

void tsb_status_free(tsb_status_t *st);

/* re-emits the status in the TSB's own shape */
int tsb_status_build(const tsb_status_t *st, tsb_buf_t *out);

/*
 * The same, and where the three approver lists are in it: out[lists_pos,
 * lists_pos + lists_len) runs from the comma before "approvedBy" to the
 * end of "rejectedBy"'s array.  The status cache keeps that part once per
 * zone: the TSB names approvers by their public keys, the same few long
 * strings in every status.
 */
int tsb_status_build_split(const tsb_status_t *st, tsb_buf_t *out,
    size_t *lists_pos, size_t *lists_len);

/* NULL for TSB_STATUS_UNKNOWN; TSB_STATUS_UNKNOWN for an unknown name */
const char *tsb_status_name(int status);
int tsb_status_from_name(const char *name, size_t len);

/* terminal: EXECUTED, FAILED, EXPIRED, REJECTED, CANCELLED */
int tsb_status_is_terminal(int status);


/*
 * An upstream error body ({"errorCode": n, "reason": "...", "message":
 * "..."} is the TSB's shape); fills what it finds, tolerates anything.
 * Returns 0 when it was JSON at all.
 */
int tsb_upstream_error_parse(const unsigned char *buf, size_t len,
    char **reason, char **message);

/*
 * {"error": ..., "reason": ..., "detail": ...}; NULL is "", bytes that are
 * not UTF-8 become '?'.  Fails only when out of memory.
 *
 * All functions here return 0 or -1; every tsb_buf_t they fill is
 * NUL-terminated (len excludes the NUL).
 */
int tsb_error_build(const char *error, const char *reason,
    const char *detail, tsb_buf_t *out);

/*
 * The same in the TSB's shape for its clients: {"errorCode": code,
 * "reason": ..., "message": detail, "error": ..., "detail": ...}.  code 0
 * is tsb_error_build().
 */
int tsb_error_build_tsb(const char *error, const char *reason,
    const char *detail, int code, tsb_buf_t *out);


#endif /* _TSB_JSON_H_INCLUDED_ */
