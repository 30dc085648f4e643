
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON for the TSB front (tsb_pass), all through yajl: checking what a
 * client sends before it is forwarded, re-emitting what the TSB answers,
 * the import helper's body, and telling whether the gateway changed a
 * request its client signed.
 */


#ifndef _TSB_FRONT_H_INCLUDED_
#define _TSB_FRONT_H_INCLUDED_


#include "tsb_common.h"
#include "tsb_json.h"


/* deeper JSON than this is refused, both ways */
#define TSB_FRONT_MAX_DEPTH   32

/* an import label longer than this is refused */
#define TSB_FRONT_LABEL_MAX   256


/*
 * A client's request body: one JSON value, no comments, valid UTF-8, no
 * duplicate keys in an object, at most TSB_FRONT_MAX_DEPTH deep.  0, or -1
 * with err set (400 "json.*").  Never echoes input bytes.
 */
int tsb_json_check(const unsigned char *buf, size_t len, tsb_error_t *err);

/*
 * tsb_pass, any body it forwards: tsb_json_check(), and no member named
 * "...KeyName" or "label" (any case, any depth) that names one of keys
 * (the keys the configuration issues certificates with, compared without
 * ASCII case): 403 "policy.key_operation" (a payload signed with a CA key
 * can be a certificate), or holds anything but a string or null: 400
 * "request.key_name".  0, or -1 with err set.
 */
int tsb_front_key_check(const unsigned char *buf, size_t len,
    const char *const *keys, size_t nkeys, tsb_error_t *err);

/*
 * 1 when a segment of a normalised path names one of keys, compared as
 * above (DELETE /v1/key/CA-Key).
 */
int tsb_front_path_names_key(const unsigned char *path, size_t len,
    const char *const *keys, size_t nkeys);

/*
 * The same JSON value written again by yajl_gen (compact, numbers as they
 * were, strings re-escaped): what the TSB answered, passed to a client
 * without trusting its bytes.  0, or -1 with err set (502
 * "upstream.response").
 */
int tsb_json_reemit(const unsigned char *buf, size_t len, tsb_buf_t *out,
    tsb_error_t *err);


/* POST /v1/certificate/import/plain {"label": ..., "certificate": ...} */
typedef struct {
    char        *label;
    char        *certificate;           /* as sent: PEM, or base64 DER */
    size_t       certificate_len;
} tsb_import_req_t;

/*
 * Exactly the two string fields, each once; label 1 to TSB_FRONT_LABEL_MAX
 * bytes without control characters.  0, or -1 with err set (400).
 */
int tsb_import_req_parse(const unsigned char *buf, size_t len,
    tsb_import_req_t *req, tsb_error_t *err);

void tsb_import_req_free(tsb_import_req_t *req);

/* {"label": label, "certificate": b64} */
int tsb_import_req_build(const char *label, const char *b64, size_t b64_len,
    tsb_buf_t *out);


/* 1 when the client signed its request (requestSignature, metaDataSignature) */
int tsb_sign_req_signed(const tsb_sign_req_t *req);

/*
 * NULL when the request as the gateway would send it (after the policy
 * filled in defaults, injected a password and so on) says the same as the
 * client's, else the name of the first field that differs.  The CSR text
 * is not compared: it is the same CSR, re-encoded.
 */
const char *tsb_sign_req_changed(const tsb_sign_req_t *sent,
    const tsb_sign_req_t *final);


#endif /* _TSB_FRONT_H_INCLUDED_ */
