
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: the record of an accepted request as the zone and
 * tsb_store keep it (tsb_owner.c).  A record read back from disk may be
 * anything: splitting it must stay within it, and a record wrapped from a
 * split one must split the same way again.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_owner.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_owner: assertion failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                elen, elen2;
    tsb_buf_t             rec;
    unsigned char         h[TSB_OWNER_HASH_LEN];
    const unsigned char  *e, *o, *e2, *o2;

    if (tsb_owner_split(data, size, &e, &elen, &o) != 0) {
        fuzz_assert(o == NULL && elen == 0);
        fuzz_assert(size >= 2 && size < TSB_OWNER_TAG_LEN);
        return 0;
    }

    fuzz_assert(e >= data && e + elen == data + size);

    if (o) {
        fuzz_assert(o == data + 2 && elen == size - TSB_OWNER_TAG_LEN);

    } else {
        fuzz_assert(e == data && elen == size);
    }

    /* wrapped again (the expectation with its owner): the same split */

    if (tsb_owner_wrap(o, e, elen, &rec) != 0) {
        return 0;
    }

    fuzz_assert(tsb_owner_split(rec.data, rec.len, &e2, &elen2, &o2) == 0);

    if (o) {
        fuzz_assert(o2 != NULL && tsb_owner_equal(o, o2));
        fuzz_assert(elen2 == elen && memcmp(e2, e, elen) == 0);
    }

    tsb_buf_free(&rec);

    /* the hash of anything is defined and stable */
    fuzz_assert(tsb_owner_hash(data, size, h) == 0);

    return 0;
}
