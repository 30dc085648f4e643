
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: host name syntax and the Punycode codec (tsb_name.c).
 * Properties: a name accepted as a host name is at most 253 octets of
 * LDH labels (a leading "*" label only when wildcards were allowed); what
 * decodes re-encodes to the same code points; an accepted xn-- label
 * decodes to non-ASCII code points.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_name.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_name: assertion failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          wild, rc, rc2;
    char         enc[256];
    size_t       i, n, n2, elen;
    uint32_t     cp[TSB_PUNY_MAX], cp2[TSB_PUNY_MAX];
    const char  *name, *why;

    if (size == 0) {
        return 0;
    }

    wild = data[0] & 1;
    name = (const char *) data + 1;
    size--;

    why = NULL;
    rc = tsb_name_host_check(name, size, wild, &why);

    if (rc == 0) {
        fuzz_assert(size > 0 && size <= TSB_NAME_MAX);
        fuzz_assert(name[size - 1] != '.' && name[0] != '.');

        for (i = 0; i < size; i++) {
            unsigned char c = (unsigned char) name[i];

            fuzz_assert((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                        || (c >= '0' && c <= '9') || c == '-' || c == '.'
                        || (c == '*' && i == 0 && wild));
        }

        /* no empty label, so never two dots in a row */
        fuzz_assert(memmem(name, size, "..", 2) == NULL);

        /* the same name, wildcards allowed, stays accepted */
        fuzz_assert(tsb_name_host_check(name, size, 1, &why) == 0);

    } else {
        fuzz_assert(rc == -1 && why != NULL);
    }

    /* the codec: decode, encode, decode again gives the same code points */

    rc = tsb_punycode_decode(name, size, cp, TSB_PUNY_MAX, &n);

    if (rc == 0) {
        fuzz_assert(n <= TSB_PUNY_MAX);

        rc2 = tsb_punycode_encode(cp, n, enc, sizeof(enc), &elen);

        if (rc2 == 0) {
            fuzz_assert(tsb_punycode_decode(enc, elen, cp2, TSB_PUNY_MAX,
                                            &n2) == 0);
            fuzz_assert(n2 == n);
            fuzz_assert(n == 0 || memcmp(cp, cp2, n * sizeof(uint32_t)) == 0);
        }
    }

    if (size >= 4 && tsb_name_alabel_check(name, size, &why) == 0) {
        fuzz_assert(tsb_punycode_decode(name + 4, size - 4, cp, TSB_PUNY_MAX,
                                        &n) == 0);

        for (i = 0; i < n && cp[i] < 0x80; i++) {
            /* void */
        }

        fuzz_assert(i < n);
    }

    return 0;
}
