
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON for the TSB front, through yajl's callback parser and yajl_gen.
 * See tsb_front.h.
 */


#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "tsb_front.h"


/*
 * More keys than this in one object of a client's body is refused: the
 * duplicate check is quadratic, and the TSB API's objects have a dozen.
 */
#define TSB_FRONT_MAX_KEYS  128


typedef struct {
    char       **keys;                  /* NULL for an array level */
    size_t      *lens;
    size_t       n;
    size_t       cap;
    unsigned     map:1;
} tsb_front_level_t;


typedef struct {
    yajl_gen             g;             /* NULL: check only */
    tsb_error_t         *err;
    int                  status;        /* of a refusal */
    size_t               depth;
    int                  dup_check;
    tsb_front_level_t    levels[TSB_FRONT_MAX_DEPTH + 1];

    /* tsb_front_key_check(): the value of a "...KeyName" member is next */
    const char *const   *keys;
    size_t               nkeys;
    int                  key_next;
} tsb_front_ctx_t;


static int tsb_front_fail(tsb_front_ctx_t *ctx, const char *reason,
    const char *detail);
static int tsb_front_gen(tsb_front_ctx_t *ctx, yajl_gen_status st);
static int tsb_front_push(tsb_front_ctx_t *ctx, int map);
static void tsb_front_pop(tsb_front_ctx_t *ctx);
static int tsb_front_run(tsb_front_ctx_t *ctx, const unsigned char *buf,
    size_t len, const char *reason);
static void tsb_front_free(tsb_front_ctx_t *ctx);
static int tsb_front_key_value(tsb_front_ctx_t *ctx, const unsigned char *s,
    size_t len, int is_string);
static int tsb_front_key_member(const unsigned char *s, size_t len);
static int tsb_front_key_named(const char *const *keys, size_t nkeys,
    const unsigned char *s, size_t len);


static int
tsb_front_fail(tsb_front_ctx_t *ctx, const char *reason, const char *detail)
{
    if (ctx->err && ctx->err->reason == NULL) {
        tsb_error_set(ctx->err, ctx->status, reason, "%s", detail);
    }

    return 0;
}


static int
tsb_front_gen(tsb_front_ctx_t *ctx, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok) {
        return tsb_front_fail(ctx, ctx->status == 502 ? "upstream.response"
                                                      : "json.string",
                              "the JSON cannot be written again "
                              "(invalid UTF-8?)");
    }

    return 1;
}


static int
tsb_front_push(tsb_front_ctx_t *ctx, int map)
{
    tsb_front_level_t  *l;

    if (ctx->depth >= TSB_FRONT_MAX_DEPTH) {
        return tsb_front_fail(ctx, ctx->status == 502 ? "upstream.response"
                                                      : "json.depth",
                              "the JSON is nested too deeply");
    }

    l = &ctx->levels[++ctx->depth];
    memset(l, 0, sizeof(tsb_front_level_t));
    l->map = map ? 1 : 0;

    return 1;
}


static void
tsb_front_pop(tsb_front_ctx_t *ctx)
{
    size_t              i;
    tsb_front_level_t  *l;

    if (ctx->depth == 0) {
        return;
    }

    l = &ctx->levels[ctx->depth--];

    for (i = 0; i < l->n; i++) {
        free(l->keys[i]);
    }

    free(l->keys);
    free(l->lens);
    memset(l, 0, sizeof(tsb_front_level_t));
}


static void
tsb_front_free(tsb_front_ctx_t *ctx)
{
    while (ctx->depth) {
        tsb_front_pop(ctx);
    }
}


static int
tsb_front_null(void *data)
{
    tsb_front_ctx_t *ctx = data;

    /* "signKeyName": null names no key */
    ctx->key_next = 0;

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_null(ctx->g)) : 1;
}


static int
tsb_front_boolean(void *data, int value)
{
    tsb_front_ctx_t *ctx = data;

    if (!tsb_front_key_value(ctx, NULL, 0, 0)) {
        return 0;
    }

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_bool(ctx->g, value)) : 1;
}


static int
tsb_front_number(void *data, const char *s, size_t len)
{
    tsb_front_ctx_t *ctx = data;

    if (!tsb_front_key_value(ctx, NULL, 0, 0)) {
        return 0;
    }

    /* the number as it was written: no rounding through a double */
    return ctx->g ? tsb_front_gen(ctx, yajl_gen_number(ctx->g, s, len)) : 1;
}


static int
tsb_front_string(void *data, const unsigned char *s, size_t len)
{
    tsb_front_ctx_t *ctx = data;

    if (!tsb_front_key_value(ctx, s, len, 1)) {
        return 0;
    }

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_string(ctx->g, s, len)) : 1;
}


static int
tsb_front_start_map(void *data)
{
    tsb_front_ctx_t *ctx = data;

    if (!tsb_front_key_value(ctx, NULL, 0, 0) || !tsb_front_push(ctx, 1)) {
        return 0;
    }

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_map_open(ctx->g)) : 1;
}


static int
tsb_front_map_key(void *data, const unsigned char *s, size_t len)
{
    tsb_front_ctx_t *ctx = data;

    size_t              i, cap;
    char              **keys;
    size_t             *lens;
    tsb_front_level_t  *l;

    if (ctx->keys) {
        ctx->key_next = tsb_front_key_member(s, len);
    }

    if (ctx->dup_check) {
        l = &ctx->levels[ctx->depth];

        for (i = 0; i < l->n; i++) {
            if (l->lens[i] == len && memcmp(l->keys[i], s, len) == 0) {
                /* two readers could take different ones: refuse both */
                return tsb_front_fail(ctx, "json.duplicate_key",
                                      "an object has the same key twice");
            }
        }

        if (l->n == TSB_FRONT_MAX_KEYS) {
            return tsb_front_fail(ctx, "json.size",
                                  "an object has too many keys");
        }

        if (l->n == l->cap) {
            cap = l->cap ? l->cap * 2 : 8;

            keys = realloc(l->keys, cap * sizeof(char *));
            if (keys == NULL) {
                return tsb_front_fail(ctx, "json.size", "out of memory");
            }

            l->keys = keys;

            lens = realloc(l->lens, cap * sizeof(size_t));
            if (lens == NULL) {
                return tsb_front_fail(ctx, "json.size", "out of memory");
            }

            l->lens = lens;
            l->cap = cap;
        }

        l->keys[l->n] = malloc(len ? len : 1);
        if (l->keys[l->n] == NULL) {
            return tsb_front_fail(ctx, "json.size", "out of memory");
        }

        memcpy(l->keys[l->n], s, len);
        l->lens[l->n] = len;
        l->n++;
    }

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_string(ctx->g, s, len)) : 1;
}


static int
tsb_front_end_map(void *data)
{
    tsb_front_ctx_t *ctx = data;

    tsb_front_pop(ctx);

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_map_close(ctx->g)) : 1;
}


static int
tsb_front_start_array(void *data)
{
    tsb_front_ctx_t *ctx = data;

    if (!tsb_front_key_value(ctx, NULL, 0, 0) || !tsb_front_push(ctx, 0)) {
        return 0;
    }

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_array_open(ctx->g)) : 1;
}


static int
tsb_front_end_array(void *data)
{
    tsb_front_ctx_t *ctx = data;

    tsb_front_pop(ctx);

    return ctx->g ? tsb_front_gen(ctx, yajl_gen_array_close(ctx->g)) : 1;
}


static const yajl_callbacks  tsb_front_callbacks = {
    tsb_front_null,
    tsb_front_boolean,
    NULL,
    NULL,
    tsb_front_number,
    tsb_front_string,
    tsb_front_start_map,
    tsb_front_map_key,
    tsb_front_end_map,
    tsb_front_start_array,
    tsb_front_end_array
};


static int
tsb_front_run(tsb_front_ctx_t *ctx, const unsigned char *buf, size_t len,
    const char *reason)
{
    yajl_handle   h;
    yajl_status   st;

    h = yajl_alloc(&tsb_front_callbacks, NULL, ctx);
    if (h == NULL) {
        tsb_error_set(ctx->err, ctx->status, reason, "out of memory");
        return -1;
    }

    /* yajl's defaults, set anyway: strictness is the point */
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    st = yajl_parse(h, buf, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    if (st != yajl_status_ok && ctx->err->reason == NULL) {
        /* yajl's own text may quote the input: only the position */
        tsb_error_set(ctx->err, ctx->status, reason,
                      "invalid JSON at byte %zu",
                      (size_t) yajl_get_bytes_consumed(h));
    }

    yajl_free(h);
    tsb_front_free(ctx);

    return st == yajl_status_ok ? 0 : -1;
}


int
tsb_json_check(const unsigned char *buf, size_t len, tsb_error_t *err)
{
    tsb_front_ctx_t  ctx;

    memset(&ctx, 0, sizeof(tsb_front_ctx_t));
    memset(err, 0, sizeof(tsb_error_t));

    ctx.err = err;
    ctx.status = 400;
    ctx.dup_check = 1;

    return tsb_front_run(&ctx, buf, len, "json.syntax");
}


/*
 * A key operation names its key in a member whose name ends in "KeyName"
 * (signKeyName, blockKeyName, modifyKeyName, decryptKeyName, ...); a
 * key's attributes and a new key in "label".  Compared without case: a
 * Jackson mapper may be configured to accept any.
 */
static int
tsb_front_key_member(const unsigned char *s, size_t len)
{
    static const char  suffix[] = "keyname";
    static const char  label[] = "label";

    size_t  i, n;

    n = sizeof(suffix) - 1;

    if (len >= n) {
        for (i = 0; i < n; i++) {
            if (tsb_ascii_lower(s[len - n + i]) != (unsigned char) suffix[i]) {
                break;
            }
        }

        if (i == n) {
            return 1;
        }
    }

    n = sizeof(label) - 1;

    if (len != n) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (tsb_ascii_lower(s[i]) != (unsigned char) label[i]) {
            return 0;
        }
    }

    return 1;
}


static int
tsb_front_key_named(const char *const *keys, size_t nkeys,
    const unsigned char *s, size_t len)
{
    size_t  i, j;

    for (i = 0; i < nkeys; i++) {

        if (strlen(keys[i]) != len) {
            continue;
        }

        for (j = 0; j < len; j++) {
            if (tsb_ascii_lower(s[j])
                != tsb_ascii_lower((unsigned char) keys[i][j]))
            {
                break;
            }
        }

        if (j == len) {
            return 1;
        }
    }

    return 0;
}


static int
tsb_front_key_value(tsb_front_ctx_t *ctx, const unsigned char *s, size_t len,
    int is_string)
{
    if (!ctx->key_next) {
        return 1;
    }

    ctx->key_next = 0;

    if (!is_string) {
        /* ["CA-Key"] could be unwrapped by a lenient mapper: refuse */
        return tsb_front_fail(ctx, "request.key_name",
                              "a key name (a \"...KeyName\" or \"label\" "
                              "member) must be a string or null");
    }

    if (tsb_front_key_named(ctx->keys, ctx->nkeys, s, len)) {
        ctx->status = 403;
        return tsb_front_fail(ctx, "policy.key_operation",
                              "the request names a key this gateway issues "
                              "certificates with; key operations on it are "
                              "never passed (a payload it signs could be a "
                              "certificate the policy never judged)");
    }

    return 1;
}


int
tsb_front_key_check(const unsigned char *buf, size_t len,
    const char *const *keys, size_t nkeys, tsb_error_t *err)
{
    tsb_front_ctx_t  ctx;

    memset(&ctx, 0, sizeof(tsb_front_ctx_t));
    memset(err, 0, sizeof(tsb_error_t));

    ctx.err = err;
    ctx.status = 400;
    ctx.dup_check = 1;
    ctx.keys = keys;
    ctx.nkeys = nkeys;

    return tsb_front_run(&ctx, buf, len, "json.syntax");
}


int
tsb_front_path_names_key(const unsigned char *path, size_t len,
    const char *const *keys, size_t nkeys)
{
    size_t  i, start;

    start = 0;

    for (i = 0; i <= len; i++) {

        if (i < len && path[i] != '/') {
            continue;
        }

        if (i > start
            && tsb_front_key_named(keys, nkeys, path + start, i - start))
        {
            return 1;
        }

        start = i + 1;
    }

    return 0;
}


int
tsb_json_reemit(const unsigned char *buf, size_t len, tsb_buf_t *out,
    tsb_error_t *err)
{
    size_t                glen;
    const unsigned char  *gbuf;
    tsb_front_ctx_t       ctx;

    out->data = NULL;
    out->len = 0;

    memset(&ctx, 0, sizeof(tsb_front_ctx_t));
    memset(err, 0, sizeof(tsb_error_t));

    ctx.err = err;
    ctx.status = 502;

    ctx.g = yajl_gen_alloc(NULL);
    if (ctx.g == NULL) {
        tsb_error_set(err, 502, "upstream.response", "out of memory");
        return -1;
    }

    yajl_gen_config(ctx.g, yajl_gen_validate_utf8, 1);
    yajl_gen_config(ctx.g, yajl_gen_beautify, 0);

    if (tsb_front_run(&ctx, buf, len, "upstream.response") != 0) {
        yajl_gen_free(ctx.g);
        return -1;
    }

    if (yajl_gen_get_buf(ctx.g, &gbuf, &glen) != yajl_gen_status_ok) {
        yajl_gen_free(ctx.g);
        tsb_error_set(err, 502, "upstream.response", "out of memory");
        return -1;
    }

    out->data = malloc(glen + 1);
    if (out->data == NULL) {
        yajl_gen_free(ctx.g);
        tsb_error_set(err, 502, "upstream.response", "out of memory");
        return -1;
    }

    memcpy(out->data, gbuf, glen);
    out->data[glen] = '\0';
    out->len = glen;

    yajl_gen_free(ctx.g);

    return 0;
}


/* ------------------------------------------------------- import/plain */

#define TSB_IMPORT_NONE   0
#define TSB_IMPORT_LABEL  1
#define TSB_IMPORT_CERT   2


typedef struct {
    tsb_import_req_t    *req;
    tsb_error_t         *err;
    int                  depth;
    int                  field;          /* the key just read */
    unsigned             seen;
} tsb_import_ctx_t;


static int
tsb_import_fail(tsb_import_ctx_t *ctx, const char *reason, const char *fmt)
{
    if (ctx->err->reason == NULL) {
        tsb_error_set(ctx->err, 400, reason, "%s", fmt);
    }

    return 0;
}


static int
tsb_import_scalar(void *data)
{
    tsb_import_ctx_t *ctx = data;

    return tsb_import_fail(ctx, ctx->depth == 0 ? "json.type" : "json.type",
                           ctx->depth == 0
                           ? "the body must be a JSON object"
                           : "label and certificate must be strings");
}


static int
tsb_import_boolean(void *data, int value)
{
    (void) value;

    return tsb_import_scalar(data);
}


static int
tsb_import_number(void *data, const char *s, size_t len)
{
    (void) s;
    (void) len;

    return tsb_import_scalar(data);
}


static int
tsb_import_string(void *data, const unsigned char *s, size_t len)
{
    tsb_import_ctx_t *ctx = data;

    size_t   i;
    char    *p;

    if (ctx->depth != 1 || ctx->field == TSB_IMPORT_NONE) {
        return tsb_import_scalar(data);
    }

    if (memchr(s, '\0', len) != NULL) {
        return tsb_import_fail(ctx, "json.string",
                               "a string holds a NUL character");
    }

    p = malloc(len + 1);
    if (p == NULL) {
        return tsb_import_fail(ctx, "json.size", "out of memory");
    }

    memcpy(p, s, len);
    p[len] = '\0';

    if (ctx->field == TSB_IMPORT_LABEL) {
        ctx->req->label = p;

        if (len == 0 || len > TSB_FRONT_LABEL_MAX) {
            return tsb_import_fail(ctx, "json.string",
                                   "label must be 1 to 256 bytes");
        }

        for (i = 0; i < len; i++) {
            if (s[i] < 0x20 || s[i] == 0x7f) {
                return tsb_import_fail(ctx, "json.string",
                                       "label holds a control character");
            }
        }

    } else {
        ctx->req->certificate = p;
        ctx->req->certificate_len = len;
    }

    ctx->field = TSB_IMPORT_NONE;

    return 1;
}


static int
tsb_import_start(void *data)
{
    tsb_import_ctx_t *ctx = data;

    if (ctx->depth != 0) {
        return tsb_import_scalar(data);
    }

    ctx->depth = 1;

    return 1;
}


static int
tsb_import_start_array(void *data)
{
    return tsb_import_scalar(data);
}


static int
tsb_import_key(void *data, const unsigned char *s, size_t len)
{
    tsb_import_ctx_t *ctx = data;

    unsigned  bit;

    if (len == sizeof("label") - 1 && memcmp(s, "label", len) == 0) {
        ctx->field = TSB_IMPORT_LABEL;

    } else if (len == sizeof("certificate") - 1
               && memcmp(s, "certificate", len) == 0)
    {
        ctx->field = TSB_IMPORT_CERT;

    } else {
        return tsb_import_fail(ctx, "json.unknown_field",
                               "only \"label\" and \"certificate\" are "
                               "allowed");
    }

    bit = 1u << ctx->field;

    if (ctx->seen & bit) {
        return tsb_import_fail(ctx, "json.duplicate_key",
                               "a key is there twice");
    }

    ctx->seen |= bit;

    return 1;
}


static int
tsb_import_end(void *data)
{
    tsb_import_ctx_t *ctx = data;

    ctx->depth = 2;                     /* nothing may follow */

    return 1;
}


static const yajl_callbacks  tsb_import_callbacks = {
    tsb_import_scalar,
    tsb_import_boolean,
    NULL,
    NULL,
    tsb_import_number,
    tsb_import_string,
    tsb_import_start,
    tsb_import_key,
    tsb_import_end,
    tsb_import_start_array,
    NULL
};


int
tsb_import_req_parse(const unsigned char *buf, size_t len,
    tsb_import_req_t *req, tsb_error_t *err)
{
    yajl_handle       h;
    yajl_status       st;
    tsb_import_ctx_t  ctx;

    memset(req, 0, sizeof(tsb_import_req_t));
    memset(err, 0, sizeof(tsb_error_t));
    memset(&ctx, 0, sizeof(tsb_import_ctx_t));

    ctx.req = req;
    ctx.err = err;

    h = yajl_alloc(&tsb_import_callbacks, NULL, &ctx);
    if (h == NULL) {
        tsb_error_set(err, 500, "internal.memory", "out of memory");
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

    if (st != yajl_status_ok && err->reason == NULL) {
        tsb_error_set(err, 400, "json.syntax", "invalid JSON at byte %zu",
                      (size_t) yajl_get_bytes_consumed(h));
    }

    yajl_free(h);

    if (st == yajl_status_ok) {
        if (req->label == NULL) {
            tsb_error_set(err, 400, "json.missing", "label is required");
            st = yajl_status_error;

        } else if (req->certificate == NULL) {
            tsb_error_set(err, 400, "json.missing",
                          "certificate is required");
            st = yajl_status_error;
        }
    }

    if (st != yajl_status_ok) {
        tsb_import_req_free(req);
        return -1;
    }

    return 0;
}


void
tsb_import_req_free(tsb_import_req_t *req)
{
    free(req->label);
    free(req->certificate);
    memset(req, 0, sizeof(tsb_import_req_t));
}


int
tsb_import_req_build(const char *label, const char *b64, size_t b64_len,
    tsb_buf_t *out)
{
    int                   rc;
    size_t                glen;
    yajl_gen              g;
    const unsigned char  *gbuf;

    out->data = NULL;
    out->len = 0;

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return -1;
    }

    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    yajl_gen_config(g, yajl_gen_beautify, 0);

    rc = -1;

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || yajl_gen_string(g, (const unsigned char *) "label", 5)
           != yajl_gen_status_ok
        || yajl_gen_string(g, (const unsigned char *) label, strlen(label))
           != yajl_gen_status_ok
        || yajl_gen_string(g, (const unsigned char *) "certificate", 11)
           != yajl_gen_status_ok
        || yajl_gen_string(g, (const unsigned char *) b64, b64_len)
           != yajl_gen_status_ok
        || yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_get_buf(g, &gbuf, &glen) != yajl_gen_status_ok)
    {
        goto done;
    }

    out->data = malloc(glen + 1);
    if (out->data == NULL) {
        goto done;
    }

    memcpy(out->data, gbuf, glen);
    out->data[glen] = '\0';
    out->len = glen;
    rc = 0;

done:

    yajl_gen_free(g);

    return rc;
}


/* ------------------------------------------------------ signed requests */

int
tsb_sign_req_signed(const tsb_sign_req_t *req)
{
    return req->has_request_signature || req->meta_data_signature != NULL;
}


static int
tsb_front_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


const char *
tsb_sign_req_changed(const tsb_sign_req_t *sent, const tsb_sign_req_t *final)
{
    if (!tsb_front_str_eq(sent->sign_key_name, final->sign_key_name)) {
        return "signKeyName";
    }

    if (!tsb_front_str_eq(sent->signature_algorithm,
                          final->signature_algorithm))
    {
        return "signatureAlgorithm";
    }

    if (!tsb_front_str_eq(sent->common_name, final->common_name)) {
        return "commonName";
    }

    if (sent->key_password_present != final->key_password_present
        || sent->key_password_len != final->key_password_len
        || (sent->key_password == NULL) != (final->key_password == NULL)
        || (sent->key_password
            && memcmp(sent->key_password, final->key_password,
                      sent->key_password_len) != 0))
    {
        return "keyPassword";
    }

    if (sent->certificate_authority != final->certificate_authority) {
        return "certificateAuthority";
    }

    if (sent->key_usage_present != final->key_usage_present
        || sent->key_usage != final->key_usage)
    {
        return "keyUsage";
    }

    if (sent->ext_key_usage_present != final->ext_key_usage_present
        || sent->ext_key_usage != final->ext_key_usage)
    {
        return "extendedKeyUsage";
    }

    if (sent->validity != final->validity) {
        return "validity";
    }

    if (!tsb_front_str_eq(sent->meta_data, final->meta_data)) {
        return "metaData";
    }

    if (!tsb_front_str_eq(sent->meta_data_signature,
                          final->meta_data_signature))
    {
        return "metaDataSignature";
    }

    return NULL;
}
