
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: If-None-Match field values (tsb_etag.c), as clients
 * send them, against a status document's entity tag.  The first byte
 * splits the input: a tag (the first data[0] % 40 bytes after it) and the
 * field value (the rest).  A match must be explainable: "*" or the tag,
 * bare or W/, as one whole list element; and the document's own tag has
 * its fixed shape and matches itself.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_etag.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_etag: assertion failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


static int
separator(unsigned char c)
{
    return c == ' ' || c == ',' || c == '\t';
}


/*
 * The tag (or W/ and the tag, or "*") is one whole element of value; an
 * element is a run of bytes between separators.
 */
static int
explained(const uint8_t *value, size_t len, const uint8_t *tag,
    size_t tag_len)
{
    size_t  i, j;

    for (i = 0; i < len; i = j + 1) {
        for (j = i; j < len && !separator(value[j]); j++) { /* void */ }

        if (j - i == 1 && value[i] == '*') {
            return 1;
        }

        if (tag_len && j - i == tag_len
            && memcmp(value + i, tag, tag_len) == 0)
        {
            return 1;
        }

        if (tag_len && j - i == tag_len + 2 && value[i] == 'W'
            && value[i + 1] == '/' && memcmp(value + i + 2, tag, tag_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            m;
    size_t         tag_len, i;
    const uint8_t *tag, *value;
    unsigned char  own[TSB_STATUS_ETAG_LEN];

    if (size == 0) {
        return 0;
    }

    tag_len = data[0] % 40;

    if (tag_len > size - 1) {
        tag_len = size - 1;
    }

    tag = data + 1;
    value = tag + tag_len;

    m = tsb_etag_match(value, size - 1 - tag_len, tag, tag_len);

    fuzz_assert(m == 0 || m == 1);

    /* a tag with a separator in it is never one list element */
    for (i = 0; i < tag_len && !separator(tag[i]); i++) { /* void */ }

    if (m && i == tag_len) {
        fuzz_assert(explained(value, size - 1 - tag_len, tag, tag_len));
    }

    if (m && i < tag_len) {
        fuzz_assert(explained(value, size - 1 - tag_len, tag, 0));
    }

    /* the value as the tag of a document: the shape, and it matches */

    fuzz_assert(tsb_status_etag(value, size - 1 - tag_len, tag, tag_len, own)
                == 0);
    fuzz_assert(own[0] == '"' && own[TSB_STATUS_ETAG_LEN - 1] == '"');
    fuzz_assert(memcmp(own + 17, "-json", 5) == 0);
    fuzz_assert(tsb_etag_match(own, TSB_STATUS_ETAG_LEN, own,
                               TSB_STATUS_ETAG_LEN));

    return 0;
}
