
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * A minimal TAP producer for the C unit tests, run by prove.
 */


#ifndef _TSB_TAP_H_INCLUDED_
#define _TSB_TAP_H_INCLUDED_


#include <stdio.h>
#include <string.h>


static int  tap_n, tap_failed;


#define ok(cond, ...)                                                         \
    do {                                                                      \
        int  tap_c = (cond) ? 1 : 0;                                          \
        tap_n++;                                                              \
        if (!tap_c) {                                                         \
            tap_failed++;                                                     \
        }                                                                     \
        printf("%s %d - ", tap_c ? "ok" : "not ok", tap_n);                   \
        printf(__VA_ARGS__);                                                  \
        printf("\n");                                                         \
        if (!tap_c) {                                                         \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);         \
        }                                                                     \
    } while (0)

#define is_int(got, want, ...)                                                \
    do {                                                                      \
        long  tap_g = (long) (got), tap_w = (long) (want);                    \
        ok(tap_g == tap_w, __VA_ARGS__);                                      \
        if (tap_g != tap_w) {                                                 \
            printf("#   got %ld, want %ld\n", tap_g, tap_w);                  \
        }                                                                     \
    } while (0)

#define is_str(got, want, ...)                                                \
    do {                                                                      \
        const char  *tap_g = (got), *tap_w = (want);                          \
        int  tap_eq = (tap_g && tap_w) ? strcmp(tap_g, tap_w) == 0            \
                                       : tap_g == tap_w;                      \
        ok(tap_eq, __VA_ARGS__);                                              \
        if (!tap_eq) {                                                        \
            printf("#   got '%s', want '%s'\n", tap_g ? tap_g : "(null)",     \
                   tap_w ? tap_w : "(null)");                                 \
        }                                                                     \
    } while (0)

#define done_testing()                                                        \
    (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)


#endif /* _TSB_TAP_H_INCLUDED_ */
