
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: request ids from URI paths (tsb_path.c).  An accepted
 * path must end in exactly the id and its suffix, and the id must be safe
 * to put into the upstream URI, a header and a log line.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_path.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_path: assertion failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   format;
    size_t                i, id_len, tail;
    const char           *suffix;
    const unsigned char  *id;

    if (tsb_request_id_from_path(data, size, &id, &id_len, &format) != 0) {
        fuzz_assert(id == NULL && id_len == 0 && format == TSB_FORMAT_NONE);
        return 0;
    }

    fuzz_assert(id_len >= 1 && id_len <= TSB_PATH_ID_MAX);
    fuzz_assert(id >= data && id + id_len <= data + size);
    fuzz_assert(memchr(data, '\0', size) == NULL);

    for (i = 0; i < id_len; i++) {
        fuzz_assert((id[i] >= 'a' && id[i] <= 'z')
                    || (id[i] >= 'A' && id[i] <= 'Z')
                    || (id[i] >= '0' && id[i] <= '9') || id[i] == '-');
    }

    /* the id is a whole segment */
    fuzz_assert(id == data || id[-1] == '/');

    tail = (size_t) (data + size - (id + id_len));

    switch (format) {

    case TSB_FORMAT_NONE:
        suffix = "";
        break;

    case TSB_FORMAT_PEM:
        suffix = ".pem";
        break;

    case TSB_FORMAT_DER:
        fuzz_assert(tail == 4);
        suffix = (id[id_len + 1] == 'd') ? ".der"
                 : (id[id_len + 2] == 'r') ? ".crt" : ".cer";
        break;

    case TSB_FORMAT_CHAIN:
        suffix = "/chain";
        break;

    default:
        fuzz_assert(0);
        return 0;
    }

    /* and nothing but the suffix follows it */

    fuzz_assert(tail == strlen(suffix));
    fuzz_assert(memcmp(id + id_len, suffix, tail) == 0);

    return 0;
}
