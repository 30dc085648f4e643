
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * JSON codecs of the TSB API.  Everything is read with yajl's callback
 * parser (never yajl_tree_parse: it needs a NUL-terminated copy, always
 * allows comments and silently keeps the first of two duplicate keys) and
 * written with yajl_gen.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "tsb_json.h"


/* a client string larger than this is not a CSR, a name or a password */
#define TSB_JSON_MAX_STRING       (64 * 1024)

/* upstream answers: a PEM certificate (chain) fits with a wide margin */
#define TSB_JSON_UP_MAX_STRING    (1024 * 1024)
#define TSB_JSON_UP_MAX_DEPTH     32
#define TSB_JSON_UP_MAX_ITEMS     1024

/* upstream error texts only end up in logs */
#define TSB_JSON_UP_MAX_TEXT      1024

/* names longer than this, or not printable, are not quoted in details */
#define TSB_JSON_MAX_QUOTE        64

#define TSB_JSON_ID_MAX           64


/*
 * Allocation
 */

/*
 * yajl copies decoded strings (a keyPassword with escapes in it) and the
 * generated text into its own buffers.  These allocators remember each
 * block's size so they can wipe it before it goes back to malloc: no
 * secret outlives a parse or a build in freed heap memory.
 */
typedef union {
    size_t        size;
    long double   align_ld;
    long long     align_ll;
    void         *align_p;
} tsb_json_hdr_t;


static void *
tsb_json_wipe_malloc(void *ctx, size_t size)
{
    tsb_json_hdr_t  *h;

    (void) ctx;

    if (size > SIZE_MAX - sizeof(tsb_json_hdr_t)) {
        return NULL;
    }

    h = malloc(sizeof(tsb_json_hdr_t) + size);
    if (h == NULL) {
        return NULL;
    }

    h->size = size;

    return h + 1;
}


static void
tsb_json_wipe_free(void *ctx, void *p)
{
    tsb_json_hdr_t  *h;

    (void) ctx;

    if (p == NULL) {
        return;
    }

    h = (tsb_json_hdr_t *) p - 1;
    tsb_secure_zero(p, h->size);
    free(h);
}


static void *
tsb_json_wipe_realloc(void *ctx, void *p, size_t size)
{
    void            *n;
    tsb_json_hdr_t  *h;

    if (p == NULL) {
        return tsb_json_wipe_malloc(ctx, size);
    }

    /* never realloc() in place: that could leave a copy behind unwiped */

    n = tsb_json_wipe_malloc(ctx, size);
    if (n == NULL) {
        return NULL;
    }

    h = (tsb_json_hdr_t *) p - 1;
    memcpy(n, p, h->size < size ? h->size : size);
    tsb_json_wipe_free(ctx, p);

    return n;
}


static yajl_alloc_funcs  tsb_json_wipe_alloc = {
    tsb_json_wipe_malloc,
    tsb_json_wipe_realloc,
    tsb_json_wipe_free,
    NULL
};


static char *
tsb_json_strndup(const unsigned char *s, size_t len)
{
    char  *p;

    if (len == SIZE_MAX) {
        return NULL;
    }

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


static void
tsb_json_free_secret(char *p, size_t len)
{
    if (p == NULL) {
        return;
    }

    tsb_secure_zero(p, len + 1);
    free(p);
}


/*
 * Text checks
 */

static int
tsb_utf8_valid(const unsigned char *s, size_t len)
{
    size_t  n;

    while (len) {

        /* ASCII, most of what a client sends, without a call a byte */
        if (*s < 0x80) {
            s++;
            len--;
            continue;
        }

        n = tsb_utf8_sequence(s, len);
        if (n == 0) {
            return 0;
        }

        s += n;
        len -= n;
    }

    return 1;
}


/* a copy with every byte that is not part of valid UTF-8 replaced by '?' */
static unsigned char *
tsb_utf8_sanitize(const unsigned char *s, size_t len)
{
    size_t          i, n;
    unsigned char  *p;

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    i = 0;

    while (i < len) {
        n = tsb_utf8_sequence(s + i, len - i);

        if (n == 0) {
            p[i++] = '?';
            continue;
        }

        memcpy(p + i, s + i, n);
        i += n;
    }

    p[len] = '\0';

    return p;
}


/*
 * A client-supplied name may be quoted in an error detail only when it is
 * short printable ASCII without quotes or backslashes: the detail then
 * cannot smuggle anything into logs or responses.
 */
static int
tsb_json_quotable(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > TSB_JSON_MAX_QUOTE) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') {
            return 0;
        }
    }

    return 1;
}


static int
tsb_json_blank(const unsigned char *buf, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n'
            && buf[i] != '\r')
        {
            return 0;
        }
    }

    return 1;
}


/* a request id as the TSB makes them (UUIDs): safe in URIs, headers, logs */
static int
tsb_json_id_valid(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > TSB_JSON_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * yajl's non-verbose error text is one of its static messages ("parse
 * error: trailing garbage"); the verbose form quotes the input.  Keep
 * only printable ASCII and drop the trailing newline, so that even a
 * future yajl that put input into the short form could not leak it whole.
 */
static void
tsb_json_syntax_text(yajl_handle h, const unsigned char *buf, size_t len,
    char *text, size_t size)
{
    size_t          i, n;
    unsigned char  *e;

    e = yajl_get_error(h, 0, buf, len);

    if (e == NULL) {
        snprintf(text, size, "parse error");
        return;
    }

    n = 0;

    for (i = 0; e[i] != '\0' && n + 1 < size; i++) {
        if (e[i] == '\n') {
            break;
        }

        if (e[i] < 0x20 || e[i] > 0x7e) {
            n = 0;
            break;
        }

        text[n++] = (char) e[i];
    }

    text[n] = '\0';

    yajl_free_error(h, e);

    if (n == 0) {
        snprintf(text, size, "parse error");
    }
}


/* 1-based line and byte column of a byte offset, as editors count them */
static void
tsb_json_position(const unsigned char *buf, size_t len, size_t off,
    size_t *line, size_t *col)
{
    size_t  i;

    if (off > len) {
        off = len;
    }

    *line = 1;
    *col = 1;

    for (i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;

        } else {
            (*col)++;
        }
    }
}


static int
tsb_json_token_char(unsigned char c)
{
    return !(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '{'
             || c == '}' || c == '[' || c == ']' || c == ',' || c == ':');
}


/*
 * yajl stops a few bytes into the token it did not expect.  Point at the
 * start of that token, and at the end of the one before it: a missing
 * comma is "after" the line that lacks it, which is where a user looks.
 */

static void
tsb_json_syntax_error(tsb_error_t *err, int status, const char *reason,
    const unsigned char *buf, size_t len, size_t off, const char *text)
{
    size_t  line, col, prev, pline, pcol;

    if (off > len) {
        off = len;
    }

    while (off > 0 && off < len && tsb_json_token_char(buf[off - 1])
           && tsb_json_token_char(buf[off]))
    {
        off--;
    }

    tsb_json_position(buf, len, off, &line, &col);

    prev = off;

    while (prev > 0 && (buf[prev - 1] == ' ' || buf[prev - 1] == '\t'
                        || buf[prev - 1] == '\r' || buf[prev - 1] == '\n'))
    {
        prev--;
    }

    if (prev == 0 || prev == off) {
        tsb_error_set(err, status, reason,
                      "invalid JSON at line %zu, column %zu (byte %zu): %s",
                      line, col, off, text);
        return;
    }

    tsb_json_position(buf, len, prev - 1, &pline, &pcol);

    tsb_error_set(err, status, reason,
                  "invalid JSON at line %zu, column %zu (byte %zu), after "
                  "line %zu, column %zu: %s", line, col, off, pline, pcol,
                  text);
}


static void
tsb_json_config_strict(yajl_handle h)
{
    /* these are yajl's defaults; set them anyway, strictness is the point */
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);
}


/*
 * Generation
 */

static yajl_gen
tsb_gen_new(int secret)
{
    yajl_gen  g;

    g = yajl_gen_alloc(secret ? &tsb_json_wipe_alloc : NULL);
    if (g == NULL) {
        return NULL;
    }

    if (!yajl_gen_config(g, yajl_gen_validate_utf8, 1)
        || !yajl_gen_config(g, yajl_gen_beautify, 0))
    {
        yajl_gen_free(g);
        return NULL;
    }

    return g;
}


static int
tsb_gen_str(yajl_gen g, const char *s, size_t len)
{
    return yajl_gen_string(g, (const unsigned char *) s, len)
           == yajl_gen_status_ok ? 0 : -1;
}


static int
tsb_gen_cstr(yajl_gen g, const char *s)
{
    return tsb_gen_str(g, s, strlen(s));
}


static int
tsb_gen_str_or_null(yajl_gen g, const char *s)
{
    if (s == NULL) {
        return yajl_gen_null(g) == yajl_gen_status_ok ? 0 : -1;
    }

    return tsb_gen_cstr(g, s);
}


static int
tsb_gen_strings(yajl_gen g, char **a, size_t n)
{
    size_t  i;

    if (yajl_gen_array_open(g) != yajl_gen_status_ok) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (a == NULL || tsb_gen_str_or_null(g, a[i]) != 0) {
            return -1;
        }
    }

    return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -1;
}


/* copies the generated text out (NUL-terminated) before yajl_gen_free() */
static int
tsb_gen_finish(yajl_gen g, tsb_buf_t *out)
{
    size_t                len;
    const unsigned char  *p;

    if (yajl_gen_get_buf(g, &p, &len) != yajl_gen_status_ok
        || len == SIZE_MAX)
    {
        return -1;
    }

    out->data = malloc(len + 1);
    if (out->data == NULL) {
        return -1;
    }

    memcpy(out->data, p, len);
    out->data[len] = '\0';
    out->len = len;

    return 0;
}


/*
 * signCertificateRequest: the strict client parser
 */

typedef enum {
    TSB_SR_TOP = 0,            /* before the top-level value */
    TSB_SR_TOP_KEY,            /* in the top-level object */
    TSB_SR_SCR,                /* the signCertificateRequest value */
    TSB_SR_KEY,                /* in signCertificateRequest */
    TSB_SR_VALUE,              /* the value of a known field */
    TSB_SR_ARRAY,              /* inside an array-valued field */
    TSB_SR_SKIP,               /* inside requestSignature */
    TSB_SR_DONE
} tsb_sr_state_e;


typedef enum {
    TSB_SRT_STRING = 0,        /* string or null */
    TSB_SRT_PASSWORD,          /* null, string, or one-char strings */
    TSB_SRT_BOOL,
    TSB_SRT_CSR,               /* string, required */
    TSB_SRT_KU,
    TSB_SRT_EKU,
    TSB_SRT_VALIDITY
} tsb_sr_type_e;


typedef struct {
    const char  *name;
    int          type;         /* tsb_sr_type_e */
    size_t       offset;       /* of the char * for TSB_SRT_STRING */
    const char  *expect;
} tsb_sr_field_t;


static const tsb_sr_field_t  tsb_sr_fields[] = {
    { "signKeyName", TSB_SRT_STRING,
      offsetof(tsb_sign_req_t, sign_key_name), "a string or null" },
    { "keyPassword", TSB_SRT_PASSWORD, 0,
      "null, a string or an array of one-character strings" },
    { "signatureAlgorithm", TSB_SRT_STRING,
      offsetof(tsb_sign_req_t, signature_algorithm), "a string or null" },
    { "commonName", TSB_SRT_STRING,
      offsetof(tsb_sign_req_t, common_name), "a string or null" },
    { "certificateAuthority", TSB_SRT_BOOL, 0, "a boolean" },
    { "certificateSigningRequest", TSB_SRT_CSR, 0, "a string" },
    { "keyUsage", TSB_SRT_KU, 0, "an array of strings" },
    { "extendedKeyUsage", TSB_SRT_EKU, 0, "an array of strings" },
    { "validity", TSB_SRT_VALIDITY, 0, "an integer or null" },
    { "metaData", TSB_SRT_STRING,
      offsetof(tsb_sign_req_t, meta_data), "a string or null" },
    { "metaDataSignature", TSB_SRT_STRING,
      offsetof(tsb_sign_req_t, meta_data_signature), "a string or null" },
    { NULL, 0, 0, NULL }
};


#define TSB_SR_TOP_SCR   0x01
#define TSB_SR_TOP_SIG   0x02

#define TSB_SR_VALIDITY_MAX  36500


typedef struct {
    yajl_handle          h;
    const unsigned char *buf;
    size_t               len;
    tsb_sign_req_t      *req;
    tsb_error_t         *err;
    int                  failed;

    tsb_sr_state_e       state;
    int                  field;         /* index into tsb_sr_fields */
    unsigned             depth;
    unsigned             skip_base;     /* depth requestSignature sits at */
    unsigned             seen_top;      /* TSB_SR_TOP_* */
    unsigned long        seen;          /* 1 << field */

    /* keyPassword sent as an array of one-character strings */
    char                *pw;
    size_t               pw_len;
    size_t               pw_cap;
} tsb_sr_ctx_t;


static int
tsb_sr_fail(tsb_sr_ctx_t *ctx, const char *reason, const char *fmt,
    const char *arg)
{
    /* fmt holds at most one %s, always a name from our own tables */
    tsb_error_set(ctx->err, 400, reason, fmt, arg);
    ctx->failed = 1;

    return 0;
}


static int
tsb_sr_type_error(tsb_sr_ctx_t *ctx)
{
    const tsb_sr_field_t  *f;

    f = &tsb_sr_fields[ctx->field];

    tsb_error_set(ctx->err, 400, "json.type",
                  "signCertificateRequest.%s must be %s", f->name,
                  f->expect);
    ctx->failed = 1;

    return 0;
}


static const char *
tsb_sr_where(tsb_sr_ctx_t *ctx)
{
    if (ctx->state == TSB_SR_VALUE || ctx->state == TSB_SR_ARRAY) {
        return tsb_sr_fields[ctx->field].name;
    }

    if (ctx->state == TSB_SR_SKIP) {
        return "requestSignature";
    }

    return "an object key";
}


/* every string and key: size, NUL, strict UTF-8 */
static int
tsb_sr_check_string(tsb_sr_ctx_t *ctx, const unsigned char *s, size_t len)
{
    if (len > TSB_JSON_MAX_STRING) {
        tsb_error_set(ctx->err, 400, "json.size",
                      "string in %s is longer than %d bytes",
                      tsb_sr_where(ctx), TSB_JSON_MAX_STRING);
        ctx->failed = 1;
        return 0;
    }

    if (memchr(s, '\0', len) != NULL) {
        return tsb_sr_fail(ctx, "json.string",
                           "string in %s contains a NUL character",
                           tsb_sr_where(ctx));
    }

    if (!tsb_utf8_valid(s, len)) {
        /* inside a callback, the count is just past the current token */
        tsb_json_syntax_error(ctx->err, 400, "json.syntax", ctx->buf,
                              ctx->len, yajl_get_bytes_consumed(ctx->h),
                              "invalid UTF-8 in a string");
        ctx->failed = 1;
        return 0;
    }

    return 1;
}


/* a value at the level requestSignature sits at ends the skip */
static int
tsb_sr_skipped_value(tsb_sr_ctx_t *ctx)
{
    if (ctx->depth == ctx->skip_base) {
        ctx->state = TSB_SR_TOP_KEY;
    }

    return 1;
}


static int
tsb_sr_not_object(tsb_sr_ctx_t *ctx)
{
    if (ctx->state == TSB_SR_TOP) {
        return tsb_sr_fail(ctx, "json.type", "the body must be a JSON %s",
                           "object");
    }

    return tsb_sr_fail(ctx, "json.type", "%s must be an object",
                       "signCertificateRequest");
}


/*
 * Where a null, boolean or number may stand: -1 when it is a field's value
 * to take, else what the callback returns (skipped, or refused).
 */
static int
tsb_sr_scalar(tsb_sr_ctx_t *ctx)
{
    switch (ctx->state) {

    case TSB_SR_SKIP:
        return tsb_sr_skipped_value(ctx);

    case TSB_SR_VALUE:
        return -1;

    case TSB_SR_ARRAY:
        return tsb_sr_type_error(ctx);

    default:
        return tsb_sr_not_object(ctx);
    }
}


static int
tsb_sr_null(void *data)
{
    int            rc;
    tsb_sr_ctx_t  *ctx = data;

    /*
     * "requestSignature": null is what the vendor's clients send when the
     * application has no key pair: not signed, as for metaDataSignature.
     */
    if (ctx->state == TSB_SR_SKIP && ctx->depth == ctx->skip_base) {
        ctx->req->has_request_signature = 0;
    }

    rc = tsb_sr_scalar(ctx);
    if (rc != -1) {
        return rc;
    }

    switch (tsb_sr_fields[ctx->field].type) {

    case TSB_SRT_STRING:
    case TSB_SRT_VALIDITY:
        break;

    case TSB_SRT_PASSWORD:
        ctx->req->key_password_present = 1;
        break;

    case TSB_SRT_CSR:
        return tsb_sr_fail(ctx, "json.missing",
                           "signCertificateRequest.%s is required",
                           "certificateSigningRequest");

    default:
        return tsb_sr_type_error(ctx);
    }

    ctx->state = TSB_SR_KEY;

    return 1;
}


static int
tsb_sr_boolean(void *data, int value)
{
    int            rc;
    tsb_sr_ctx_t  *ctx = data;

    rc = tsb_sr_scalar(ctx);
    if (rc != -1) {
        return rc;
    }

    if (tsb_sr_fields[ctx->field].type != TSB_SRT_BOOL) {
        return tsb_sr_type_error(ctx);
    }

    ctx->req->certificate_authority = value ? 1 : 0;
    ctx->state = TSB_SR_KEY;

    return 1;
}


/* yajl hands numbers over as text, so no overflow is ever silent */
static int
tsb_sr_number(void *data, const char *s, size_t len)
{
    int            rc;
    long           v;
    size_t         i;
    tsb_sr_ctx_t  *ctx = data;

    rc = tsb_sr_scalar(ctx);
    if (rc != -1) {
        return rc;
    }

    if (tsb_sr_fields[ctx->field].type != TSB_SRT_VALIDITY) {
        return tsb_sr_type_error(ctx);
    }

    i = (len > 0 && s[0] == '-') ? 1 : 0;

    if (i == len) {
        return tsb_sr_type_error(ctx);
    }

    for ( /* void */ ; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            /* 30.0 or 3e1: not an integer */
            return tsb_sr_type_error(ctx);
        }
    }

    v = 0;

    if (s[0] != '-') {
        for (i = 0; i < len && v <= TSB_SR_VALIDITY_MAX; i++) {
            v = v * 10 + (s[i] - '0');
        }
    }

    if (v < 1 || v > TSB_SR_VALIDITY_MAX) {
        tsb_error_set(ctx->err, 400, "request.validity",
                      "signCertificateRequest.validity must be between 1 "
                      "and %d days", TSB_SR_VALIDITY_MAX);
        ctx->failed = 1;
        return 0;
    }

    ctx->req->validity = v;
    ctx->state = TSB_SR_KEY;

    return 1;
}


static int
tsb_sr_password_char(tsb_sr_ctx_t *ctx, const unsigned char *s, size_t len)
{
    char    *n;
    size_t   cap;

    /* one character: exactly one (already validated) UTF-8 sequence */
    if (len == 0 || tsb_utf8_sequence(s, len) != len) {
        return tsb_sr_type_error(ctx);
    }

    if (ctx->pw_len + len > TSB_JSON_MAX_STRING) {
        return tsb_sr_fail(ctx, "json.size", "%s is too long",
                           "signCertificateRequest.keyPassword");
    }

    if (ctx->pw_len + len + 1 > ctx->pw_cap) {
        cap = ctx->pw_cap ? ctx->pw_cap * 2 : 32;

        /* grown by hand: realloc() could leave a copy of the secret */
        n = malloc(cap);
        if (n == NULL) {
            tsb_error_set(ctx->err, 500, "internal", "out of memory");
            ctx->failed = 1;
            return 0;
        }

        if (ctx->pw != NULL) {
            memcpy(n, ctx->pw, ctx->pw_len);
            tsb_json_free_secret(ctx->pw, ctx->pw_cap - 1);
        }

        ctx->pw = n;
        ctx->pw_cap = cap;
    }

    memcpy(ctx->pw + ctx->pw_len, s, len);
    ctx->pw_len += len;
    ctx->pw[ctx->pw_len] = '\0';

    return 1;
}


/*
 * One element of keyUsage / extendedKeyUsage: a name, or, as the vendor's
 * clients send them, names joined by commas in one string, or "" for none.
 * All three shapes end up in the same mask, so the policy judges them (and
 * tsb_sign_req_build() forwards them) exactly like the array form.
 */
static int
tsb_sr_usage_name(tsb_sr_ctx_t *ctx, const unsigned char *s, size_t len)
{
    int           eku;
    long          mask;
    size_t        bad_len;
    const char   *what, *reason, *bad;

    eku = tsb_sr_fields[ctx->field].type == TSB_SRT_EKU;
    bad = NULL;
    bad_len = 0;

    if (eku) {
        mask = tsb_ext_key_usage_element((const char *) s, len, &bad,
                                         &bad_len);
        what = "extendedKeyUsage";
        reason = "request.extended_key_usage";

    } else {
        mask = tsb_key_usage_element((const char *) s, len, &bad, &bad_len);
        what = "keyUsage";
        reason = "request.key_usage";
    }

    if (mask < 0) {
        if (bad_len == 0) {
            tsb_error_set(ctx->err, 400, reason,
                          "empty %s name between commas", what);

        } else if (tsb_json_quotable((const unsigned char *) bad, bad_len)) {
            tsb_error_set(ctx->err, 400, reason, "unknown %s \"%.*s\"",
                          what, (int) bad_len, bad);

        } else {
            tsb_error_set(ctx->err, 400, reason, "unknown %s name", what);
        }

        ctx->failed = 1;
        return 0;
    }

    if (eku) {
        ctx->req->ext_key_usage |= (unsigned) mask;

    } else {
        ctx->req->key_usage |= (unsigned) mask;
    }

    return 1;
}


static int
tsb_sr_string(void *data, const unsigned char *s, size_t len)
{
    char                 **p;
    tsb_sr_ctx_t          *ctx = data;
    tsb_sign_req_t        *req;
    const tsb_sr_field_t  *f;

    if (!tsb_sr_check_string(ctx, s, len)) {
        return 0;
    }

    switch (ctx->state) {

    case TSB_SR_SKIP:
        return tsb_sr_skipped_value(ctx);

    case TSB_SR_VALUE:
    case TSB_SR_ARRAY:
        break;

    default:
        return tsb_sr_not_object(ctx);
    }

    req = ctx->req;
    f = &tsb_sr_fields[ctx->field];

    if (ctx->state == TSB_SR_ARRAY) {
        if (f->type == TSB_SRT_PASSWORD) {
            return tsb_sr_password_char(ctx, s, len);
        }

        return tsb_sr_usage_name(ctx, s, len);
    }

    switch (f->type) {

    case TSB_SRT_STRING:
        p = (char **) ((unsigned char *) req + f->offset);
        *p = tsb_json_strndup(s, len);
        if (*p == NULL) {
            goto nomem;
        }

        break;

    case TSB_SRT_PASSWORD:
        req->key_password_present = 1;
        req->key_password = tsb_json_strndup(s, len);
        if (req->key_password == NULL) {
            goto nomem;
        }

        req->key_password_len = len;
        break;

    case TSB_SRT_CSR:
        req->csr = tsb_json_strndup(s, len);
        if (req->csr == NULL) {
            goto nomem;
        }

        req->csr_len = len;
        break;

    default:
        return tsb_sr_type_error(ctx);
    }

    ctx->state = TSB_SR_KEY;

    return 1;

nomem:

    tsb_error_set(ctx->err, 500, "internal", "out of memory");
    ctx->failed = 1;

    return 0;
}


static int
tsb_sr_deeper(tsb_sr_ctx_t *ctx)
{
    if (++ctx->depth > TSB_JSON_MAX_DEPTH) {
        tsb_error_set(ctx->err, 400, "json.depth",
                      "JSON nested deeper than %d levels",
                      TSB_JSON_MAX_DEPTH);
        ctx->failed = 1;
        return 0;
    }

    return 1;
}


static int
tsb_sr_start_map(void *data)
{
    tsb_sr_ctx_t  *ctx = data;

    if (!tsb_sr_deeper(ctx)) {
        return 0;
    }

    switch (ctx->state) {

    case TSB_SR_TOP:
        ctx->state = TSB_SR_TOP_KEY;
        return 1;

    case TSB_SR_SCR:
        ctx->state = TSB_SR_KEY;
        return 1;

    case TSB_SR_SKIP:
        return 1;

    default:
        return tsb_sr_type_error(ctx);
    }
}


static int
tsb_sr_map_key(void *data, const unsigned char *s, size_t len)
{
    int            i;
    tsb_sr_ctx_t  *ctx = data;

    if (!tsb_sr_check_string(ctx, s, len)) {
        return 0;
    }

    if (ctx->state == TSB_SR_SKIP) {
        return 1;
    }

    if (ctx->state == TSB_SR_TOP_KEY) {

        if (len == sizeof("signCertificateRequest") - 1
            && memcmp(s, "signCertificateRequest", len) == 0)
        {
            if (ctx->seen_top & TSB_SR_TOP_SCR) {
                goto duplicate;
            }

            ctx->seen_top |= TSB_SR_TOP_SCR;
            ctx->state = TSB_SR_SCR;
            return 1;
        }

        if (len == sizeof("requestSignature") - 1
            && memcmp(s, "requestSignature", len) == 0)
        {
            if (ctx->seen_top & TSB_SR_TOP_SIG) {
                goto duplicate;
            }

            /*
             * The signature over the request is the HSM's business; we
             * only note that it was there, and still bound its depth.
             */
            ctx->seen_top |= TSB_SR_TOP_SIG;
            ctx->req->has_request_signature = 1;
            ctx->skip_base = ctx->depth;
            ctx->state = TSB_SR_SKIP;
            return 1;
        }

        goto unknown;
    }

    /* TSB_SR_KEY */

    for (i = 0; tsb_sr_fields[i].name; i++) {
        if (strlen(tsb_sr_fields[i].name) == len
            && memcmp(tsb_sr_fields[i].name, s, len) == 0)
        {
            break;
        }
    }

    if (tsb_sr_fields[i].name == NULL) {
        goto unknown;
    }

    if (ctx->seen & (1UL << i)) {
        goto duplicate;
    }

    ctx->seen |= 1UL << i;
    ctx->field = i;
    ctx->state = TSB_SR_VALUE;

    return 1;

duplicate:

    tsb_error_set(ctx->err, 400, "json.duplicate_key",
                  "duplicate key \"%.*s\"", (int) len, (const char *) s);
    ctx->failed = 1;

    return 0;

unknown:

    if (tsb_json_quotable(s, len)) {
        tsb_error_set(ctx->err, 400, "json.unknown_field",
                      "unknown field \"%.*s\" in %s", (int) len,
                      (const char *) s,
                      ctx->state == TSB_SR_KEY ? "signCertificateRequest"
                                               : "the request");

    } else {
        tsb_error_set(ctx->err, 400, "json.unknown_field",
                      "unknown field in %s",
                      ctx->state == TSB_SR_KEY ? "signCertificateRequest"
                                               : "the request");
    }

    ctx->failed = 1;

    return 0;
}


static int
tsb_sr_end_map(void *data)
{
    tsb_sr_ctx_t  *ctx = data;

    ctx->depth--;

    switch (ctx->state) {

    case TSB_SR_SKIP:
        return tsb_sr_skipped_value(ctx);

    case TSB_SR_KEY:
        ctx->state = TSB_SR_TOP_KEY;
        return 1;

    case TSB_SR_TOP_KEY:
        ctx->state = TSB_SR_DONE;
        return 1;

    default:
        /* yajl only closes the map we are in */
        return tsb_sr_fail(ctx, "json.syntax", "unexpected %s", "'}'");
    }
}


static int
tsb_sr_start_array(void *data)
{
    int            type;
    tsb_sr_ctx_t  *ctx = data;

    if (!tsb_sr_deeper(ctx)) {
        return 0;
    }

    switch (ctx->state) {

    case TSB_SR_SKIP:
        return 1;

    case TSB_SR_VALUE:
        break;

    case TSB_SR_ARRAY:
        return tsb_sr_type_error(ctx);

    default:
        return tsb_sr_not_object(ctx);
    }

    type = tsb_sr_fields[ctx->field].type;

    switch (type) {

    case TSB_SRT_KU:
        ctx->req->key_usage_present = 1;
        break;

    case TSB_SRT_EKU:
        ctx->req->ext_key_usage_present = 1;
        break;

    case TSB_SRT_PASSWORD:
        ctx->req->key_password_present = 1;
        break;

    default:
        return tsb_sr_type_error(ctx);
    }

    ctx->state = TSB_SR_ARRAY;

    return 1;
}


static int
tsb_sr_end_array(void *data)
{
    tsb_sr_ctx_t    *ctx = data;
    tsb_sign_req_t  *req;

    ctx->depth--;

    if (ctx->state == TSB_SR_SKIP) {
        return tsb_sr_skipped_value(ctx);
    }

    if (ctx->state != TSB_SR_ARRAY) {
        return tsb_sr_fail(ctx, "json.syntax", "unexpected %s", "']'");
    }

    req = ctx->req;

    if (tsb_sr_fields[ctx->field].type == TSB_SRT_PASSWORD) {

        if (ctx->pw == NULL) {
            /* [] is an empty password, not an absent one */
            ctx->pw = malloc(1);
            if (ctx->pw == NULL) {
                tsb_error_set(ctx->err, 500, "internal", "out of memory");
                ctx->failed = 1;
                return 0;
            }

            ctx->pw[0] = '\0';
            ctx->pw_cap = 1;
        }

        /*
         * Only the first pw_len + 1 bytes were ever written, so the wipe
         * in tsb_sign_req_free() covers every byte of the secret.
         */
        req->key_password = ctx->pw;
        req->key_password_len = ctx->pw_len;
        ctx->pw = NULL;
        ctx->pw_len = 0;
        ctx->pw_cap = 0;
    }

    ctx->state = TSB_SR_KEY;

    return 1;
}


static const yajl_callbacks  tsb_sr_callbacks = {
    tsb_sr_null,
    tsb_sr_boolean,
    NULL,
    NULL,
    tsb_sr_number,
    tsb_sr_string,
    tsb_sr_start_map,
    tsb_sr_map_key,
    tsb_sr_end_map,
    tsb_sr_start_array,
    tsb_sr_end_array
};


/*
 * yajl decodes a lone \uD800-\uDFFF escape to '?' and a high surrogate
 * followed by anything but a low one to a wrong code point: the string a
 * client wrote is not the one we would forward.  Find such an escape in the
 * raw text (outside strings a backslash is a syntax error anyway); returns
 * its offset, or (size_t) -1.
 */

static unsigned
tsb_json_hex4(const unsigned char *p)
{
    unsigned  v, i, c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;

        } else {
            return 0x10000;
        }

        v = (v << 4) | c;
    }

    return v;
}


static size_t
tsb_json_bad_escape(const unsigned char *buf, size_t len)
{
    size_t    i;
    unsigned  u, lo;

    for (i = 0; i + 1 < len; i++) {

        if (buf[i] != '\\') {
            continue;
        }

        if (buf[i + 1] != 'u') {
            /* \\ and the other escapes: skip the escaped character */
            i++;
            continue;
        }

        if (i + 6 > len) {
            return (size_t) -1;     /* yajl reports the truncation */
        }

        u = tsb_json_hex4(buf + i + 2);

        if (u >= 0xdc00 && u <= 0xdfff) {
            return i;
        }

        if (u >= 0xd800 && u <= 0xdbff) {
            lo = (i + 12 <= len && buf[i + 6] == '\\' && buf[i + 7] == 'u')
                 ? tsb_json_hex4(buf + i + 8) : 0;

            if (lo < 0xdc00 || lo > 0xdfff) {
                return i;
            }

            i += 11;
            continue;
        }

        i += 5;
    }

    return (size_t) -1;
}


int
tsb_sign_req_parse(const unsigned char *buf, size_t len,
    tsb_sign_req_t *req, tsb_error_t *err)
{
    int            completing;
    char           text[128];
    size_t         off;
    yajl_handle    h;
    yajl_status    rc;
    tsb_sr_ctx_t   ctx;

    memset(req, 0, sizeof(tsb_sign_req_t));
    req->certificate_authority = -1;
    req->validity = -1;

    if (buf == NULL || tsb_json_blank(buf, len)) {
        tsb_error_set(err, 400, "json.syntax",
                      "the request body is empty; expected a JSON object");
        memset(req, 0, sizeof(tsb_sign_req_t));
        return -1;
    }

    off = tsb_json_bad_escape(buf, len);

    if (off != (size_t) -1) {
        tsb_json_syntax_error(err, 400, "json.string", buf, len, off,
                              "a \\u escape names half of a UTF-16 "
                              "surrogate pair");
        memset(req, 0, sizeof(tsb_sign_req_t));
        return -1;
    }

    memset(&ctx, 0, sizeof(tsb_sr_ctx_t));
    ctx.buf = buf;
    ctx.len = len;
    ctx.req = req;
    ctx.err = err;
    ctx.state = TSB_SR_TOP;

    h = yajl_alloc(&tsb_sr_callbacks, &tsb_json_wipe_alloc, &ctx);
    if (h == NULL) {
        tsb_error_set(err, 500, "internal", "out of memory");
        memset(req, 0, sizeof(tsb_sign_req_t));
        return -1;
    }

    ctx.h = h;
    tsb_json_config_strict(h);

    completing = 0;
    rc = yajl_parse(h, buf, len);

    if (rc == yajl_status_ok) {
        completing = 1;
        rc = yajl_complete_parse(h);
    }

    if (rc != yajl_status_ok) {
        if (!ctx.failed) {
            /* yajl_complete_parse() restarts the count: the error is at
             * the end of the input, where more was expected */
            off = completing ? len : yajl_get_bytes_consumed(h);
            tsb_json_syntax_text(h, buf, len, text, sizeof(text));
            tsb_json_syntax_error(err, 400, "json.syntax", buf, len, off,
                                  text);
        }

        goto failed;
    }

    if (!(ctx.seen_top & TSB_SR_TOP_SCR)) {
        tsb_error_set(err, 400, "json.missing",
                      "signCertificateRequest is required");
        goto failed;
    }

    if (req->csr == NULL) {
        tsb_error_set(err, 400, "json.missing",
                      "signCertificateRequest.certificateSigningRequest "
                      "is required");
        goto failed;
    }

    yajl_free(h);

    return 0;

failed:

    yajl_free(h);

    if (ctx.pw != NULL) {
        tsb_json_free_secret(ctx.pw, ctx.pw_cap - 1);
    }

    tsb_sign_req_free(req);

    return -1;
}


void
tsb_sign_req_free(tsb_sign_req_t *req)
{
    if (req == NULL) {
        return;
    }

    free(req->sign_key_name);
    free(req->signature_algorithm);
    free(req->common_name);
    free(req->csr);
    tsb_json_free_secret(req->key_password, req->key_password_len);
    free(req->meta_data);
    free(req->meta_data_signature);

    memset(req, 0, sizeof(tsb_sign_req_t));
}


static int
tsb_gen_usages(yajl_gen g, unsigned mask, int eku)
{
    unsigned     bit;
    const char  *name;

    if (yajl_gen_array_open(g) != yajl_gen_status_ok) {
        return -1;
    }

    for (bit = 1; bit != 0 && bit <= mask; bit <<= 1) {
        if (!(mask & bit)) {
            continue;
        }

        name = eku ? tsb_ext_key_usage_name(bit) : tsb_key_usage_name(bit);

        /* a bit we have no name for cannot be forwarded faithfully */
        if (name == NULL || tsb_gen_cstr(g, name) != 0) {
            return -1;
        }
    }

    return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -1;
}


static int
tsb_gen_field(yajl_gen g, const char *key, const char *value)
{
    if (value == NULL) {
        return 0;
    }

    if (tsb_gen_cstr(g, key) != 0 || tsb_gen_cstr(g, value) != 0) {
        return -1;
    }

    return 0;
}


int
tsb_sign_req_build(const tsb_sign_req_t *req, tsb_buf_t *out)
{
    int       rc;
    size_t    n;
    yajl_gen  g;

    out->data = NULL;
    out->len = 0;

    /* the body carries the keyPassword: yajl's buffers are wiped too */
    g = tsb_gen_new(1);
    if (g == NULL) {
        return -1;
    }

    rc = -1;

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || tsb_gen_cstr(g, "signCertificateRequest") != 0
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || tsb_gen_field(g, "signKeyName", req->sign_key_name) != 0)
    {
        goto done;
    }

    if (req->key_password_present) {
        if (tsb_gen_cstr(g, "keyPassword") != 0) {
            goto done;
        }

        if (req->key_password == NULL) {
            if (yajl_gen_null(g) != yajl_gen_status_ok) {
                goto done;
            }

        } else {
            n = req->key_password_len ? req->key_password_len
                                      : strlen(req->key_password);

            if (tsb_gen_str(g, req->key_password, n) != 0) {
                goto done;
            }
        }
    }

    if (tsb_gen_field(g, "signatureAlgorithm", req->signature_algorithm)
        != 0
        || tsb_gen_field(g, "commonName", req->common_name) != 0
        || tsb_gen_cstr(g, "certificateAuthority") != 0
        || yajl_gen_bool(g, req->certificate_authority == 1)
           != yajl_gen_status_ok)
    {
        goto done;
    }

    if (req->csr != NULL) {
        n = req->csr_len ? req->csr_len : strlen(req->csr);

        if (tsb_gen_cstr(g, "certificateSigningRequest") != 0
            || tsb_gen_str(g, req->csr, n) != 0)
        {
            goto done;
        }
    }

    if (req->key_usage_present || req->key_usage != 0) {
        if (tsb_gen_cstr(g, "keyUsage") != 0
            || tsb_gen_usages(g, req->key_usage, 0) != 0)
        {
            goto done;
        }
    }

    if (req->ext_key_usage_present || req->ext_key_usage != 0) {
        if (tsb_gen_cstr(g, "extendedKeyUsage") != 0
            || tsb_gen_usages(g, req->ext_key_usage, 1) != 0)
        {
            goto done;
        }
    }

    if (req->validity >= 0) {
        if (tsb_gen_cstr(g, "validity") != 0
            || yajl_gen_integer(g, req->validity) != yajl_gen_status_ok)
        {
            goto done;
        }
    }

    if (tsb_gen_field(g, "metaData", req->meta_data) != 0
        || tsb_gen_field(g, "metaDataSignature", req->meta_data_signature)
           != 0
        || yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_map_close(g) != yajl_gen_status_ok)
    {
        goto done;
    }

    rc = tsb_gen_finish(g, out);

done:

    yajl_gen_free(g);

    return rc;
}


/*
 * Upstream answers: one small parser for flat objects of known fields.
 * Unknown fields are skipped (nested up to a cap), known ones are checked.
 * In tolerant mode (error bodies) a field of the wrong type is skipped
 * instead of failing, and nothing but invalid JSON fails.
 */

typedef enum {
    TSB_UPT_STRING = 0,        /* string */
    TSB_UPT_STRING_NULL,       /* string or null */
    TSB_UPT_STRINGS_NULL       /* array of strings, or null */
} tsb_up_type_e;


typedef struct {
    const char   *name;
    int           type;        /* tsb_up_type_e */
    char        **str;
    char       ***arr;
    size_t       *n;
} tsb_up_field_t;


typedef enum {
    TSB_UP_TOP = 0,
    TSB_UP_KEY,
    TSB_UP_VALUE,
    TSB_UP_ARRAY,
    TSB_UP_SKIP,
    TSB_UP_DONE
} tsb_up_state_e;


typedef struct {
    yajl_handle      h;
    tsb_up_field_t  *fields;
    const char      *what;          /* "sign answer", for details */
    tsb_error_t     *err;
    int              tolerant;
    int              failed;

    tsb_up_state_e   state;
    int              field;
    size_t           depth;
    size_t           skip_base;
    unsigned long    seen;
    size_t           cap;           /* of the array being filled */
} tsb_up_ctx_t;


static int
tsb_up_fail(tsb_up_ctx_t *ctx, const char *fmt, const char *arg)
{
    /* fmt holds two %s: the answer's kind, then arg (our names or "") */
    if (!ctx->tolerant) {
        tsb_error_set(ctx->err, 502, "upstream.response", fmt, ctx->what,
                      arg);
    }

    ctx->failed = 1;

    return 0;
}


static int
tsb_up_type_error(tsb_up_ctx_t *ctx)
{
    return tsb_up_fail(ctx, "%s: field \"%s\" has the wrong type",
                       ctx->fields[ctx->field].name);
}


static int
tsb_up_skipped_value(tsb_up_ctx_t *ctx)
{
    if (ctx->depth == ctx->skip_base) {
        ctx->state = TSB_UP_KEY;
    }

    return 1;
}


/*
 * A value of the wrong type for a known field: an error, or in tolerant
 * mode just skipped.  open tells whether the value opens a map or array.
 */
static int
tsb_up_wrong(tsb_up_ctx_t *ctx, int open)
{
    if (!ctx->tolerant) {
        return tsb_up_type_error(ctx);
    }

    if (ctx->state == TSB_UP_ARRAY) {
        /* the array so far is kept; the rest of it is skipped */
        ctx->skip_base = ctx->depth - 1 - (open ? 1 : 0);
        ctx->state = TSB_UP_SKIP;
        return 1;
    }

    ctx->skip_base = ctx->depth - (open ? 1 : 0);
    ctx->state = open ? TSB_UP_SKIP : TSB_UP_KEY;

    return 1;
}


static int
tsb_up_null(void *data)
{
    tsb_up_ctx_t  *ctx = data;

    switch (ctx->state) {

    case TSB_UP_SKIP:
        return tsb_up_skipped_value(ctx);

    case TSB_UP_VALUE:
        if (ctx->fields[ctx->field].type == TSB_UPT_STRING) {
            return tsb_up_wrong(ctx, 0);
        }

        ctx->state = TSB_UP_KEY;
        return 1;

    case TSB_UP_ARRAY:
        return tsb_up_wrong(ctx, 0);

    default:
        return tsb_up_fail(ctx, "%s is not a JSON object%s", "");
    }
}


static int
tsb_up_scalar(tsb_up_ctx_t *ctx)
{
    switch (ctx->state) {

    case TSB_UP_SKIP:
        return tsb_up_skipped_value(ctx);

    case TSB_UP_VALUE:
    case TSB_UP_ARRAY:
        return tsb_up_wrong(ctx, 0);

    default:
        return tsb_up_fail(ctx, "%s is not a JSON object%s", "");
    }
}


static int
tsb_up_boolean(void *data, int value)
{
    (void) value;

    return tsb_up_scalar(data);
}


static int
tsb_up_number(void *data, const char *s, size_t len)
{
    (void) s;
    (void) len;

    return tsb_up_scalar(data);
}


/* returns the length to keep, or -1 when the string is unusable */
static long
tsb_up_string_len(tsb_up_ctx_t *ctx, const unsigned char *s, size_t len)
{
    const unsigned char  *nul;

    if (!ctx->tolerant) {
        if (len > TSB_JSON_UP_MAX_STRING) {
            tsb_up_fail(ctx, "%s: field \"%s\" is too long",
                        ctx->fields[ctx->field].name);
            return -1;
        }

        if (memchr(s, '\0', len) != NULL) {
            tsb_up_fail(ctx, "%s: field \"%s\" contains a NUL character",
                        ctx->fields[ctx->field].name);
            return -1;
        }

        return (long) len;
    }

    /* error texts are only logged: keep a valid UTF-8 prefix */

    nul = memchr(s, '\0', len);
    if (nul != NULL) {
        len = (size_t) (nul - s);
    }

    if (len > TSB_JSON_UP_MAX_TEXT) {
        len = TSB_JSON_UP_MAX_TEXT;

        while (len > 0 && (s[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    return (long) len;
}


static int
tsb_up_string(void *data, const unsigned char *s, size_t len)
{
    char                 **a, *p;
    long                   n;
    size_t                 cap;
    tsb_up_ctx_t          *ctx = data;
    const tsb_up_field_t  *f;

    switch (ctx->state) {

    case TSB_UP_SKIP:
        return tsb_up_skipped_value(ctx);

    case TSB_UP_VALUE:
    case TSB_UP_ARRAY:
        break;

    default:
        return tsb_up_fail(ctx, "%s is not a JSON object%s", "");
    }

    f = &ctx->fields[ctx->field];

    if (ctx->state == TSB_UP_VALUE && f->type == TSB_UPT_STRINGS_NULL) {
        return tsb_up_wrong(ctx, 0);
    }

    n = tsb_up_string_len(ctx, s, len);
    if (n < 0) {
        return 0;
    }

    p = tsb_json_strndup(s, (size_t) n);
    if (p == NULL) {
        goto nomem;
    }

    if (ctx->state == TSB_UP_VALUE) {
        if (*f->str == NULL) {
            *f->str = p;

        } else {
            /* a tolerated duplicate */
            free(p);
        }

        ctx->state = TSB_UP_KEY;
        return 1;
    }

    /* TSB_UP_ARRAY */

    if (*f->n >= TSB_JSON_UP_MAX_ITEMS) {
        free(p);
        return tsb_up_fail(ctx, "%s: field \"%s\" has too many items",
                           f->name);
    }

    if (*f->n == ctx->cap) {
        cap = ctx->cap ? ctx->cap * 2 : 4;

        a = realloc(*f->arr, cap * sizeof(char *));
        if (a == NULL) {
            free(p);
            goto nomem;
        }

        *f->arr = a;
        ctx->cap = cap;
    }

    (*f->arr)[(*f->n)++] = p;

    return 1;

nomem:

    if (!ctx->tolerant) {
        tsb_error_set(ctx->err, 500, "internal", "out of memory");
    }

    ctx->failed = 1;

    return 0;
}


static int
tsb_up_open(tsb_up_ctx_t *ctx, int array)
{
    /* tolerant mode only skips: yajl itself does not recurse */
    if (++ctx->depth > TSB_JSON_UP_MAX_DEPTH && !ctx->tolerant) {
        return tsb_up_fail(ctx, "%s is nested too deeply%s", "");
    }

    switch (ctx->state) {

    case TSB_UP_TOP:
        if (array) {
            return tsb_up_fail(ctx, "%s is not a JSON object%s", "");
        }

        ctx->state = TSB_UP_KEY;
        return 1;

    case TSB_UP_SKIP:
        return 1;

    case TSB_UP_VALUE:
        if (array && ctx->fields[ctx->field].type == TSB_UPT_STRINGS_NULL) {
            ctx->state = TSB_UP_ARRAY;
            ctx->cap = 0;
            return 1;
        }

        return tsb_up_wrong(ctx, 1);

    default:
        return tsb_up_wrong(ctx, 1);
    }
}


static int
tsb_up_start_map(void *data)
{
    return tsb_up_open(data, 0);
}


static int
tsb_up_start_array(void *data)
{
    return tsb_up_open(data, 1);
}


static int
tsb_up_map_key(void *data, const unsigned char *s, size_t len)
{
    int            i;
    tsb_up_ctx_t  *ctx = data;

    if (ctx->state == TSB_UP_SKIP) {
        return 1;
    }

    /* TSB_UP_KEY */

    for (i = 0; ctx->fields[i].name; i++) {
        if (strlen(ctx->fields[i].name) == len
            && memcmp(ctx->fields[i].name, s, len) == 0)
        {
            break;
        }
    }

    if (ctx->fields[i].name == NULL) {
        ctx->skip_base = ctx->depth;
        ctx->state = TSB_UP_SKIP;
        return 1;
    }

    /* in tolerant mode the first usable value wins, see tsb_up_string() */

    if (!ctx->tolerant && (ctx->seen & (1UL << i))) {
        /* two answers in one: which would the TSB have meant? */
        return tsb_up_fail(ctx, "%s: duplicate field \"%s\"",
                           ctx->fields[i].name);
    }

    ctx->seen |= 1UL << i;
    ctx->field = i;
    ctx->state = TSB_UP_VALUE;

    return 1;
}


static int
tsb_up_close(void *data)
{
    tsb_up_ctx_t  *ctx = data;

    ctx->depth--;

    switch (ctx->state) {

    case TSB_UP_SKIP:
        return tsb_up_skipped_value(ctx);

    case TSB_UP_ARRAY:
    case TSB_UP_KEY:
        ctx->state = ctx->depth == 0 ? TSB_UP_DONE : TSB_UP_KEY;
        return 1;

    default:
        return tsb_up_fail(ctx, "%s: unexpected end of a value%s", "");
    }
}


static const yajl_callbacks  tsb_up_callbacks = {
    tsb_up_null,
    tsb_up_boolean,
    NULL,
    NULL,
    tsb_up_number,
    tsb_up_string,
    tsb_up_start_map,
    tsb_up_map_key,
    tsb_up_close,
    tsb_up_start_array,
    tsb_up_close
};


/*
 * Runs the upstream parser.  On failure err is set (unless tolerant); the
 * caller frees whatever the fields point at.
 */
static int
tsb_up_parse(const unsigned char *buf, size_t len, tsb_up_field_t *fields,
    const char *what, int tolerant, tsb_error_t *err)
{
    int            completing, i;
    char           text[128];
    size_t         off;
    yajl_handle    h;
    yajl_status    rc;
    tsb_up_ctx_t   ctx;

    if (buf == NULL || tsb_json_blank(buf, len)) {
        if (!tolerant) {
            tsb_error_set(err, 502, "upstream.response", "%s is empty",
                          what);
        }

        return -1;
    }

    memset(&ctx, 0, sizeof(tsb_up_ctx_t));
    ctx.fields = fields;
    ctx.what = what;
    ctx.err = err;
    ctx.tolerant = tolerant;
    ctx.state = TSB_UP_TOP;

    h = yajl_alloc(&tsb_up_callbacks, NULL, &ctx);
    if (h == NULL) {
        if (!tolerant) {
            tsb_error_set(err, 500, "internal", "out of memory");
        }

        return -1;
    }

    ctx.h = h;
    tsb_json_config_strict(h);

    completing = 0;
    rc = yajl_parse(h, buf, len);

    if (rc == yajl_status_ok) {
        completing = 1;
        rc = yajl_complete_parse(h);
    }

    if (rc != yajl_status_ok) {
        if (!ctx.failed && !tolerant) {
            off = completing ? len : yajl_get_bytes_consumed(h);
            tsb_json_syntax_text(h, buf, len, text, sizeof(text));
            tsb_error_set(err, 502, "upstream.response",
                          "%s is not valid JSON (byte %zu): %s", what, off,
                          text);
        }

        yajl_free(h);
        return -1;
    }

    yajl_free(h);

    if (ctx.state != TSB_UP_DONE) {
        /* defensive: the callbacks refuse anything but an object */
        if (!tolerant) {
            tsb_error_set(err, 502, "upstream.response",
                          "%s is not a JSON object", what);
        }

        return -1;
    }

    if (tolerant) {
        return 0;
    }

    for (i = 0; fields[i].name; i++) {
        if (fields[i].type == TSB_UPT_STRING && *fields[i].str == NULL) {
            tsb_error_set(err, 502, "upstream.response",
                          "%s: field \"%s\" is missing", what,
                          fields[i].name);
            return -1;
        }
    }

    return 0;
}


int
tsb_sign_resp_parse(const unsigned char *buf, size_t len, char **id,
    tsb_error_t *err)
{
    tsb_up_field_t  fields[] = {
        { "signRequestId", TSB_UPT_STRING, id, NULL, NULL },
        { NULL, 0, NULL, NULL, NULL }
    };

    *id = NULL;

    if (tsb_up_parse(buf, len, fields, "sign answer", 0, err) != 0) {
        goto failed;
    }

    if (!tsb_json_id_valid((unsigned char *) *id, strlen(*id))) {
        tsb_error_set(err, 502, "upstream.response",
                      "sign answer: signRequestId is not a request id");
        goto failed;
    }

    return 0;

failed:

    free(*id);
    *id = NULL;

    return -1;
}


int
tsb_sign_resp_build(const char *id, size_t id_len, tsb_buf_t *out)
{
    int       rc;
    yajl_gen  g;

    out->data = NULL;
    out->len = 0;

    g = tsb_gen_new(0);
    if (g == NULL) {
        return -1;
    }

    rc = -1;

    if (yajl_gen_map_open(g) == yajl_gen_status_ok
        && tsb_gen_cstr(g, "signRequestId") == 0
        && tsb_gen_str(g, id, id_len) == 0
        && yajl_gen_map_close(g) == yajl_gen_status_ok)
    {
        rc = tsb_gen_finish(g, out);
    }

    yajl_gen_free(g);

    return rc;
}


int
tsb_sync_sign_resp_parse(const unsigned char *buf, size_t len,
    char **label, char **certificate, tsb_error_t *err)
{
    tsb_up_field_t  fields[] = {
        { "label", TSB_UPT_STRING, label, NULL, NULL },
        { "certificate", TSB_UPT_STRING, certificate, NULL, NULL },
        { NULL, 0, NULL, NULL, NULL }
    };

    *label = NULL;
    *certificate = NULL;

    if (tsb_up_parse(buf, len, fields, "synchronous sign answer", 0, err)
        != 0)
    {
        free(*label);
        free(*certificate);
        *label = NULL;
        *certificate = NULL;
        return -1;
    }

    return 0;
}


/*
 * Request status
 */

static const char  *tsb_status_names[] = {
    NULL,
    "PENDING",
    "APPROVED",
    "EXECUTED",
    "FAILED",
    "EXPIRED",
    "REJECTED",
    "CANCELLED"
};


const char *
tsb_status_name(int status)
{
    if (status <= TSB_STATUS_UNKNOWN || status > TSB_STATUS_CANCELLED) {
        return NULL;
    }

    return tsb_status_names[status];
}


int
tsb_status_from_name(const char *name, size_t len)
{
    int  i;

    for (i = TSB_STATUS_PENDING; i <= TSB_STATUS_CANCELLED; i++) {
        if (strlen(tsb_status_names[i]) == len
            && memcmp(tsb_status_names[i], name, len) == 0)
        {
            return i;
        }
    }

    return TSB_STATUS_UNKNOWN;
}


int
tsb_status_is_terminal(int status)
{
    switch (status) {

    case TSB_STATUS_EXECUTED:
    case TSB_STATUS_FAILED:
    case TSB_STATUS_EXPIRED:
    case TSB_STATUS_REJECTED:
    case TSB_STATUS_CANCELLED:
        return 1;

    default:
        return 0;
    }
}


int
tsb_status_parse(const unsigned char *buf, size_t len, tsb_status_t *st,
    tsb_error_t *err)
{
    char  *status;

    tsb_up_field_t  fields[] = {
        { "id", TSB_UPT_STRING, &st->id, NULL, NULL },
        { "status", TSB_UPT_STRING, &status, NULL, NULL },
        { "executionTime", TSB_UPT_STRING_NULL, &st->execution_time,
          NULL, NULL },
        { "approvedBy", TSB_UPT_STRINGS_NULL, NULL, &st->approved_by,
          &st->n_approved_by },
        { "notYetApprovedBy", TSB_UPT_STRINGS_NULL, NULL,
          &st->not_yet_approved_by, &st->n_not_yet_approved_by },
        { "rejectedBy", TSB_UPT_STRINGS_NULL, NULL, &st->rejected_by,
          &st->n_rejected_by },
        { "result", TSB_UPT_STRING_NULL, &st->result, NULL, NULL },
        { NULL, 0, NULL, NULL, NULL }
    };

    memset(st, 0, sizeof(tsb_status_t));
    status = NULL;

    if (tsb_up_parse(buf, len, fields, "request status", 0, err) != 0) {
        goto failed;
    }

    if (!tsb_json_id_valid((unsigned char *) st->id, strlen(st->id))) {
        tsb_error_set(err, 502, "upstream.response",
                      "request status: id is not a request id");
        goto failed;
    }

    st->status = tsb_status_from_name(status, strlen(status));

    if (st->status == TSB_STATUS_UNKNOWN) {
        /* the value is upstream text: not echoed */
        tsb_error_set(err, 502, "upstream.response",
                      "request status: unknown status value");
        goto failed;
    }

    free(status);

    return 0;

failed:

    free(status);
    tsb_status_free(st);

    return -1;
}


static void
tsb_strings_free(char **a, size_t n)
{
    size_t  i;

    if (a == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        free(a[i]);
    }

    free(a);
}


void
tsb_status_free(tsb_status_t *st)
{
    if (st == NULL) {
        return;
    }

    free(st->id);
    free(st->execution_time);
    tsb_strings_free(st->approved_by, st->n_approved_by);
    tsb_strings_free(st->not_yet_approved_by, st->n_not_yet_approved_by);
    tsb_strings_free(st->rejected_by, st->n_rejected_by);
    free(st->result);

    memset(st, 0, sizeof(tsb_status_t));
}


int
tsb_status_build(const tsb_status_t *st, tsb_buf_t *out)
{
    return tsb_status_build_split(st, out, NULL, NULL);
}


int
tsb_status_build_split(const tsb_status_t *st, tsb_buf_t *out,
    size_t *lists_pos, size_t *lists_len)
{
    int                   rc;
    size_t                start, end;
    yajl_gen              g;
    const char           *name;
    const unsigned char  *p;

    out->data = NULL;
    out->len = 0;

    name = tsb_status_name(st->status);
    if (name == NULL) {
        return -1;
    }

    g = tsb_gen_new(0);
    if (g == NULL) {
        return -1;
    }

    rc = -1;

    /* where the lists begin and end: yajl's buffer so far, measured */

    if (yajl_gen_map_open(g) == yajl_gen_status_ok
        && tsb_gen_cstr(g, "id") == 0
        && tsb_gen_str_or_null(g, st->id) == 0
        && tsb_gen_cstr(g, "status") == 0
        && tsb_gen_cstr(g, name) == 0
        && tsb_gen_cstr(g, "executionTime") == 0
        && tsb_gen_str_or_null(g, st->execution_time) == 0
        && yajl_gen_get_buf(g, &p, &start) == yajl_gen_status_ok
        && tsb_gen_cstr(g, "approvedBy") == 0
        && tsb_gen_strings(g, st->approved_by, st->n_approved_by) == 0
        && tsb_gen_cstr(g, "notYetApprovedBy") == 0
        && tsb_gen_strings(g, st->not_yet_approved_by,
                           st->n_not_yet_approved_by) == 0
        && tsb_gen_cstr(g, "rejectedBy") == 0
        && tsb_gen_strings(g, st->rejected_by, st->n_rejected_by) == 0
        && yajl_gen_get_buf(g, &p, &end) == yajl_gen_status_ok
        && tsb_gen_cstr(g, "result") == 0
        && tsb_gen_str_or_null(g, st->result) == 0
        && yajl_gen_map_close(g) == yajl_gen_status_ok)
    {
        rc = tsb_gen_finish(g, out);
    }

    yajl_gen_free(g);

    if (rc == 0) {
        if (lists_pos) {
            *lists_pos = start;
        }

        if (lists_len) {
            *lists_len = end - start;
        }
    }

    return rc;
}


/*
 * Errors
 */

int
tsb_upstream_error_parse(const unsigned char *buf, size_t len,
    char **reason, char **message)
{
    tsb_up_field_t  fields[] = {
        { "reason", TSB_UPT_STRING_NULL, reason, NULL, NULL },
        { "message", TSB_UPT_STRING_NULL, message, NULL, NULL },
        { NULL, 0, NULL, NULL, NULL }
    };

    *reason = NULL;
    *message = NULL;

    if (tsb_up_parse(buf, len, fields, "upstream error", 1, NULL) != 0) {
        free(*reason);
        free(*message);
        *reason = NULL;
        *message = NULL;
        return -1;
    }

    return 0;
}


/*
 * Error bodies must always come out: a detail may quote text that is not
 * UTF-8 (say, a CSR subject in Latin-1), so such bytes become '?' rather
 * than making yajl_gen refuse the whole body.  The strict check runs first
 * because yajl_gen's own lets overlong forms through into the output.
 */
static int
tsb_gen_str_lossy(yajl_gen g, const char *s)
{
    int             rc;
    size_t          len;
    unsigned char  *p;

    if (s == NULL) {
        s = "";
    }

    len = strlen(s);

    if (tsb_utf8_valid((const unsigned char *) s, len)) {
        rc = yajl_gen_string(g, (const unsigned char *) s, len);

        if (rc != yajl_gen_invalid_string) {
            return rc == yajl_gen_status_ok ? 0 : -1;
        }
    }

    p = tsb_utf8_sanitize((const unsigned char *) s, len);
    if (p == NULL) {
        return -1;
    }

    rc = yajl_gen_string(g, p, len);
    free(p);

    return rc == yajl_gen_status_ok ? 0 : -1;
}


int
tsb_error_build(const char *error, const char *reason, const char *detail,
    tsb_buf_t *out)
{
    return tsb_error_build_tsb(error, reason, detail, 0, out);
}


/*
 * The TSB's own error shape first (errorCode, reason, message: its clients
 * read a numeric errorCode), then the gateway's error and detail beside
 * it; "reason" serves both.  code 0: the gateway's shape alone.
 */
int
tsb_error_build_tsb(const char *error, const char *reason,
    const char *detail, int code, tsb_buf_t *out)
{
    int       rc;
    yajl_gen  g;

    out->data = NULL;
    out->len = 0;

    g = tsb_gen_new(0);
    if (g == NULL) {
        return -1;
    }

    rc = -1;

    if (yajl_gen_map_open(g) != yajl_gen_status_ok) {
        goto done;
    }

    if (code
        && (tsb_gen_cstr(g, "errorCode") != 0
            || yajl_gen_integer(g, code) != yajl_gen_status_ok
            || tsb_gen_cstr(g, "reason") != 0
            || tsb_gen_str_lossy(g, reason) != 0
            || tsb_gen_cstr(g, "message") != 0
            || tsb_gen_str_lossy(g, detail) != 0))
    {
        goto done;
    }

    if (tsb_gen_cstr(g, "error") == 0
        && tsb_gen_str_lossy(g, error) == 0
        && (code
            || (tsb_gen_cstr(g, "reason") == 0
                && tsb_gen_str_lossy(g, reason) == 0))
        && tsb_gen_cstr(g, "detail") == 0
        && tsb_gen_str_lossy(g, detail) == 0
        && yajl_gen_map_close(g) == yajl_gen_status_ok)
    {
        rc = tsb_gen_finish(g, out);
    }

done:

    yajl_gen_free(g);

    return rc;
}
