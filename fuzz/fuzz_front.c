
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: the TSB front's JSON (tsb_front.c), all parsers on the
 * same bytes: tsb_json_check() (a client's body), tsb_json_reemit() (the
 * TSB's answer, written again) and tsb_import_req_parse() (the import
 * helper's body, with tsb_import_req_build() and a second parse).
 *
 * The re-emitted JSON must be the same value as the input (compared token
 * by token with yajl, strings decoded), must re-emit to itself, and must
 * pass tsb_json_check() exactly when the input did; whatever the client
 * check accepts must re-emit.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "tsb_front.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_front: assertion failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


/* ------------------------------------------- a token stream, for equality */

typedef struct {
    unsigned char  *data;
    size_t          len;
    size_t          cap;
} fuzz_toks_t;


static int
fuzz_tok(fuzz_toks_t *t, char type, const void *s, size_t len)
{
    size_t          need, cap;
    unsigned char  *p;

    need = t->len + 1 + sizeof(size_t) + len;

    if (need > t->cap) {
        cap = t->cap ? t->cap : 256;

        while (cap < need) {
            cap *= 2;
        }

        p = realloc(t->data, cap);
        fuzz_assert(p != NULL);

        t->data = p;
        t->cap = cap;
    }

    t->data[t->len++] = (unsigned char) type;
    memcpy(t->data + t->len, &len, sizeof(size_t));
    t->len += sizeof(size_t);

    if (len) {
        memcpy(t->data + t->len, s, len);
        t->len += len;
    }

    return 1;
}


static int
fuzz_null(void *t)
{
    return fuzz_tok(t, 'n', NULL, 0);
}


static int
fuzz_bool(void *t, int v)
{
    return fuzz_tok(t, v ? 't' : 'f', NULL, 0);
}


static int
fuzz_number(void *t, const char *s, size_t len)
{
    return fuzz_tok(t, '#', s, len);
}


static int
fuzz_string(void *t, const unsigned char *s, size_t len)
{
    return fuzz_tok(t, '"', s, len);
}


static int
fuzz_map_open(void *t)
{
    return fuzz_tok(t, '{', NULL, 0);
}


static int
fuzz_map_key(void *t, const unsigned char *s, size_t len)
{
    return fuzz_tok(t, 'k', s, len);
}


static int
fuzz_map_close(void *t)
{
    return fuzz_tok(t, '}', NULL, 0);
}


static int
fuzz_array_open(void *t)
{
    return fuzz_tok(t, '[', NULL, 0);
}


static int
fuzz_array_close(void *t)
{
    return fuzz_tok(t, ']', NULL, 0);
}


static const yajl_callbacks  fuzz_tok_callbacks = {
    fuzz_null, fuzz_bool, NULL, NULL, fuzz_number, fuzz_string,
    fuzz_map_open, fuzz_map_key, fuzz_map_close, fuzz_array_open,
    fuzz_array_close
};


/* 0 and the tokens, or -1: yajl (as strict as the engine) refuses it */
static int
fuzz_tokens(const unsigned char *buf, size_t len, fuzz_toks_t *t)
{
    yajl_handle  h;
    yajl_status  st;

    memset(t, 0, sizeof(fuzz_toks_t));

    h = yajl_alloc(&fuzz_tok_callbacks, NULL, t);
    fuzz_assert(h != NULL);

    st = yajl_parse(h, buf, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok) {
        free(t->data);
        memset(t, 0, sizeof(fuzz_toks_t));
        return -1;
    }

    return 0;
}


static void
fuzz_error_ok(const tsb_error_t *err, int status, const char *prefix)
{
    size_t  i;

    fuzz_assert(err->status == status);
    fuzz_assert(err->reason != NULL);
    fuzz_assert(strncmp(err->reason, prefix, strlen(prefix)) == 0
                || strcmp(err->reason, "internal.memory") == 0);
    fuzz_assert(memchr(err->detail, '\0', sizeof(err->detail)) != NULL);
    fuzz_assert(err->detail[0] != '\0');

    /* the detail never carries input bytes: our own ASCII only */

    for (i = 0; err->detail[i]; i++) {
        fuzz_assert(err->detail[i] >= 0x20 && err->detail[i] < 0x7f);
    }
}


/* ----------------------------------------------------------------------- */

static void
fuzz_reemit(const uint8_t *data, size_t size, int checked)
{
    size_t        i;
    tsb_buf_t     out, again;
    tsb_error_t   err, err2;
    fuzz_toks_t   a, b;

    if (tsb_json_reemit(data, size, &out, &err) != 0) {
        fuzz_assert(out.data == NULL && out.len == 0);
        fuzz_error_ok(&err, 502, "upstream.response");

        /* what a client may send must also come back */
        fuzz_assert(checked != 0);
        return;
    }

    fuzz_assert(out.data != NULL && out.len > 0);
    fuzz_assert(out.data[out.len] == '\0');

    /* compact, every control character escaped */

    for (i = 0; i < out.len; i++) {
        fuzz_assert(out.data[i] >= 0x20);
    }

    /* the same value */

    fuzz_assert(fuzz_tokens(data, size, &a) == 0);
    fuzz_assert(fuzz_tokens(out.data, out.len, &b) == 0);
    fuzz_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    free(a.data);
    free(b.data);

    /* a fixed point */

    fuzz_assert(tsb_json_reemit(out.data, out.len, &again, &err2) == 0);
    fuzz_assert(again.len == out.len
                && memcmp(again.data, out.data, out.len) == 0);
    tsb_buf_free(&again);

    /* and as acceptable to the client check as the input was */

    fuzz_assert((tsb_json_check(out.data, out.len, &err2) == 0)
                == (checked == 0));

    tsb_buf_free(&out);
}


static void
fuzz_import(const uint8_t *data, size_t size, int checked)
{
    size_t            i;
    tsb_buf_t         out;
    tsb_error_t       err;
    tsb_import_req_t  req, again;

    if (tsb_import_req_parse(data, size, &req, &err) != 0) {
        fuzz_assert(req.label == NULL && req.certificate == NULL
                    && req.certificate_len == 0);
        fuzz_error_ok(&err, 400, "json.");
        return;
    }

    /* a stricter check than the client check */
    fuzz_assert(checked == 0);

    fuzz_assert(req.label != NULL && req.certificate != NULL);
    fuzz_assert(strlen(req.label) >= 1
                && strlen(req.label) <= TSB_FRONT_LABEL_MAX);
    fuzz_assert(strlen(req.certificate) == req.certificate_len);

    for (i = 0; req.label[i]; i++) {
        fuzz_assert((unsigned char) req.label[i] >= 0x20
                    && req.label[i] != 0x7f);
    }

    /* what the glue builds from it parses back to the same fields */

    fuzz_assert(tsb_import_req_build(req.label, req.certificate,
                                     req.certificate_len, &out) == 0);
    fuzz_assert(out.data[out.len] == '\0');

    if (tsb_import_req_parse(out.data, out.len, &again, &err) != 0) {
        fprintf(stderr, "fuzz_front: our own import body does not parse: "
                "%s: %s\n", err.reason, err.detail);
        abort();
    }

    fuzz_assert(strcmp(again.label, req.label) == 0);
    fuzz_assert(again.certificate_len == req.certificate_len);
    fuzz_assert(memcmp(again.certificate, req.certificate,
                       req.certificate_len) == 0);

    tsb_import_req_free(&again);
    tsb_buf_free(&out);
    tsb_import_req_free(&req);

    fuzz_assert(req.label == NULL && req.certificate == NULL);
}


/*
 * The key check is tsb_json_check() and then some: whatever it passes,
 * tsb_json_check() passes; whatever that refuses, it refuses; with no keys
 * configured the two agree exactly.
 */
static void
fuzz_key_check(const uint8_t *data, size_t size, int checked)
{
    int                  rc;
    tsb_error_t          err;
    static const char   *keys[] = { "CA-Key" };

    rc = tsb_front_key_check(data, size, NULL, 0, &err);
    fuzz_assert(rc == checked);

    rc = tsb_front_key_check(data, size, keys, 1, &err);

    if (checked != 0) {
        fuzz_assert(rc == -1);
    }

    if (rc != 0) {
        fuzz_assert(rc == -1 && err.reason != NULL);
        fuzz_assert(err.status == 400 || err.status == 403);

    } else {
        fuzz_assert(err.reason == NULL);
    }

    (void) tsb_front_path_names_key(data, size, keys, 1);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          checked;
    tsb_error_t  err;

    checked = tsb_json_check(data, size, &err);

    if (checked != 0) {
        fuzz_assert(checked == -1);
        fuzz_error_ok(&err, 400, "json.");

    } else {
        fuzz_assert(err.reason == NULL);
    }

    fuzz_key_check(data, size, checked);
    fuzz_reemit(data, size, checked);
    fuzz_import(data, size, checked);

    return 0;
}
