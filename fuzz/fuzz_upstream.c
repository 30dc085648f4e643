
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: everything the TSB sends back, all parsers on the same
 * bytes: the sign answer, the synchronous sign answer, the request status
 * (whose re-emitted form must parse again to the same status) and error
 * bodies.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_json.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_upstream: assertion failed: %s "            \
                    "(line %d)\n", #cond, __LINE__);                          \
            abort();                                                          \
        }                                                                     \
    } while (0)


static int
fuzz_same(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


static void
fuzz_same_list(char **a, size_t na, char **b, size_t nb)
{
    size_t  i;

    fuzz_assert(na == nb);

    for (i = 0; i < na; i++) {
        fuzz_assert(fuzz_same(a[i], b[i]));
    }
}


static void
fuzz_error_ok(const tsb_error_t *err)
{
    fuzz_assert(err->status >= 400 && err->status < 600);
    fuzz_assert(err->reason != NULL);
    fuzz_assert(memchr(err->detail, '\0', sizeof(err->detail)) != NULL);
}


static void
fuzz_sign_resp(const uint8_t *data, size_t size)
{
    char         *id;
    tsb_buf_t     out;
    tsb_error_t   err;

    if (tsb_sign_resp_parse(data, size, &id, &err) != 0) {
        fuzz_assert(id == NULL);
        fuzz_error_ok(&err);
        return;
    }

    /* the id we pass on to our own client, and parse back */

    fuzz_assert(tsb_sign_resp_build(id, strlen(id), &out) == 0);
    free(id);

    fuzz_assert(tsb_sign_resp_parse(out.data, out.len, &id, &err) == 0);
    free(id);
    tsb_buf_free(&out);
}


static void
fuzz_sync_sign_resp(const uint8_t *data, size_t size)
{
    char         *label, *cert;
    tsb_error_t   err;

    if (tsb_sync_sign_resp_parse(data, size, &label, &cert, &err) != 0) {
        fuzz_assert(label == NULL && cert == NULL);
        fuzz_error_ok(&err);
        return;
    }

    fuzz_assert(label != NULL && cert != NULL);

    free(label);
    free(cert);
}


static void
fuzz_status(const uint8_t *data, size_t size)
{
    size_t        pos, len;
    tsb_buf_t     out, split;
    tsb_error_t   err;
    tsb_status_t  st, again;

    if (tsb_status_parse(data, size, &st, &err) != 0) {
        fuzz_assert(st.id == NULL && st.result == NULL);
        fuzz_error_ok(&err);
        return;
    }

    fuzz_assert(st.id != NULL);
    fuzz_assert(tsb_status_name(st.status) != NULL);

    if (tsb_status_build(&st, &out) != 0) {
        fprintf(stderr, "fuzz_upstream: a parsed status does not build\n");
        abort();
    }

    if (tsb_status_parse(out.data, out.len, &again, &err) != 0) {
        fprintf(stderr, "fuzz_upstream: the built status does not parse: "
                "%s: %s\n", err.reason, err.detail);
        abort();
    }

    fuzz_assert(fuzz_same(again.id, st.id));
    fuzz_assert(again.status == st.status);
    fuzz_assert(fuzz_same(again.execution_time, st.execution_time));
    fuzz_assert(fuzz_same(again.result, st.result));
    fuzz_same_list(again.approved_by, again.n_approved_by,
                   st.approved_by, st.n_approved_by);
    fuzz_same_list(again.not_yet_approved_by, again.n_not_yet_approved_by,
                   st.not_yet_approved_by, st.n_not_yet_approved_by);
    fuzz_same_list(again.rejected_by, again.n_rejected_by,
                   st.rejected_by, st.n_rejected_by);

    /*
     * The split the status cache stores: the same bytes, the lists from
     * the comma before "approvedBy" to the end of "rejectedBy"'s array.
     */

    if (tsb_status_build_split(&st, &split, &pos, &len) != 0) {
        fprintf(stderr, "fuzz_upstream: a parsed status does not split\n");
        abort();
    }

    fuzz_assert(split.len == out.len
                && memcmp(split.data, out.data, out.len) == 0);
    fuzz_assert(pos + len <= split.len);
    fuzz_assert(len > sizeof(",\"approvedBy\":") - 1
                && memcmp(split.data + pos, ",\"approvedBy\":",
                          sizeof(",\"approvedBy\":") - 1) == 0);
    fuzz_assert(split.data[pos + len - 1] == ']');

    tsb_buf_free(&split);
    tsb_status_free(&again);
    tsb_buf_free(&out);
    tsb_status_free(&st);
}


static void
fuzz_upstream_error(const uint8_t *data, size_t size)
{
    char       *reason, *message;
    tsb_buf_t   out;

    if (tsb_upstream_error_parse(data, size, &reason, &message) != 0) {
        fuzz_assert(reason == NULL && message == NULL);
        return;
    }

    /* what the glue does with them: quote them in our own error body */

    fuzz_assert(tsb_error_build("upstream", reason, message, &out) == 0);
    fuzz_assert(out.len > 0 && out.data[out.len] == '\0');

    tsb_buf_free(&out);
    free(reason);
    free(message);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_sign_resp(data, size);
    fuzz_sync_sign_resp(data, size);
    fuzz_status(data, size);
    fuzz_upstream_error(data, size);

    return 0;
}
