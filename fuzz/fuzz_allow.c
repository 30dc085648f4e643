
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: the TSB front's allow-list (tsb_allow.c).  The input
 * is a request target; it is checked whole as a path, whole as a query,
 * split at the first '?' as the glue splits it, and whole as a
 * configuration pattern.  What is accepted must mean the same to the
 * gateway and to any server behind it: no dot or empty segment, before or
 * after percent-decoding, no encoded separator, nothing that decodes
 * twice.  Matching is compared with a plain segment-by-segment reference.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_allow.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_allow: assertion failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


#define FUZZ_RULE(m, p)  { m, p, sizeof(p) - 1 }

static const tsb_allow_rule_t  fuzz_rules[] = {
    FUZZ_RULE(TSB_METHOD_GET | TSB_METHOD_DELETE, "/v1/request/*"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/sign"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/synchronous/sign"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/import/plain"),
    FUZZ_RULE(TSB_METHOD_GET, "/v1/key/*"),
    FUZZ_RULE(TSB_METHOD_GET, "/v1/key/*/certificate/*"),
    FUZZ_RULE(TSB_METHOD_GET | TSB_METHOD_PUT, "/v1/keystore/**"),
    FUZZ_RULE(TSB_METHOD_PATCH, "/v1/licenseInfo"),
};

#define FUZZ_NRULES  (sizeof(fuzz_rules) / sizeof(fuzz_rules[0]))


static int
fuzz_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* RFC 3986 pchar without ';' and percent-encodings */
static int
fuzz_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && strchr("-._~!$&'()*+,=:@", c) != NULL);
}


/* every '%' is followed by two hex digits */
static void
fuzz_percent_ok(const unsigned char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            fuzz_assert(i + 2 < len && fuzz_hex(s[i + 1]) >= 0
                        && fuzz_hex(s[i + 2]) >= 0);
            i += 2;
        }
    }
}


/*
 * An accepted path, segment by segment, as the TSB may read it after
 * percent-decoding: still no empty or dot segment, no separator, no '%'
 * that could decode a second time, no control character.
 */
static void
fuzz_accepted_path(const unsigned char *p, size_t len)
{
    int            c;
    size_t         i, seg, dlen;
    unsigned char  dec[TSB_ALLOW_PATH_MAX];

    fuzz_assert(len >= 2 && len <= TSB_ALLOW_PATH_MAX && p[0] == '/');
    fuzz_assert(p[len - 1] != '/');
    fuzz_assert(memchr(p, '\0', len) == NULL);
    fuzz_percent_ok(p, len);

    seg = 1;

    for (i = 1; i <= len; i++) {

        if (i < len && p[i] != '/') {
            fuzz_assert(p[i] == '%' || fuzz_plain(p[i]));
            continue;
        }

        fuzz_assert(i > seg);

        /* decode the segment as a server behind us would */

        dlen = 0;

        for (c = 0; seg < i; seg++) {
            c = p[seg];

            if (c == '%') {
                c = fuzz_hex(p[seg + 1]) * 16 + fuzz_hex(p[seg + 2]);
                seg += 2;

                fuzz_assert(c != '/' && c != '\\' && c != '.' && c != ';'
                            && c != '%' && c != '?' && c != '#');
                fuzz_assert(c >= 0x20 && c != 0x7f);
            }

            dec[dlen++] = (unsigned char) c;
        }

        fuzz_assert(dlen > 0);
        fuzz_assert(!(dlen == 1 && dec[0] == '.'));
        fuzz_assert(!(dlen == 2 && dec[0] == '.' && dec[1] == '.'));
        fuzz_assert(memchr(dec, ';', dlen) == NULL);
        fuzz_assert(memchr(dec, '\\', dlen) == NULL);

        seg = i + 1;
    }
}


static void
fuzz_accepted_query(const unsigned char *q, size_t len)
{
    size_t  i;

    fuzz_assert(len <= TSB_ALLOW_QUERY_MAX);
    fuzz_percent_ok(q, len);

    for (i = 0; i < len; i++) {
        fuzz_assert(q[i] == '%' || q[i] == '/' || q[i] == '?' || q[i] == ';'
                    || fuzz_plain(q[i]));
        fuzz_assert(q[i] != '#' && q[i] != ' ' && q[i] != '\0');
    }
}


/* the reference matcher: split both at '/', compare segment by segment */
static int
fuzz_match(const char *pat, size_t plen, const unsigned char *path,
    size_t len)
{
    size_t  pi, si, pe, se;

    if (plen == 0 || len == 0 || pat[0] != '/' || path[0] != '/') {
        return 0;
    }

    pi = 1;
    si = 1;

    for ( ;; ) {
        pe = pi;
        while (pe < plen && pat[pe] != '/') {
            pe++;
        }

        se = si;
        while (se < len && path[se] != '/') {
            se++;
        }

        if (pe - pi == 2 && pat[pi] == '*' && pat[pi + 1] == '*') {
            return se > si;     /* and paths are checked: none is empty */
        }

        if (se == si) {
            return 0;
        }

        if (!(pe - pi == 1 && pat[pi] == '*')
            && (pe - pi != se - si || memcmp(pat + pi, path + si, pe - pi)))
        {
            return 0;
        }

        if (pe == plen || se == len) {
            return pe == plen && se == len;
        }

        pi = pe + 1;
        si = se + 1;
    }
}


static void
fuzz_rules_on(const unsigned char *path, size_t len, unsigned method)
{
    int     known;
    long    r;
    int     m, want_known;
    long    want;
    size_t  i;

    want = -1;
    want_known = 0;

    for (i = 0; i < FUZZ_NRULES; i++) {
        m = tsb_allow_match(fuzz_rules[i].pattern, fuzz_rules[i].len, path,
                            len);
        fuzz_assert(m == fuzz_match(fuzz_rules[i].pattern, fuzz_rules[i].len,
                                    path, len));

        if (m && want == -1) {
            if (fuzz_rules[i].methods & method) {
                want = (long) i;

            } else {
                want_known = 1;
            }
        }
    }

    r = tsb_allow_find(fuzz_rules, FUZZ_NRULES, method, path, len, &known);

    fuzz_assert(r == want);

    if (r == -1) {
        fuzz_assert(known == want_known);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  errbuf[256];
    size_t                plen;
    unsigned              method;
    const char           *why;
    const unsigned char  *q;
    static int            once;

    if (!once) {
        size_t  i;

        once = 1;

        for (i = 0; i < FUZZ_NRULES; i++) {
            fuzz_assert(tsb_allow_pattern_check(fuzz_rules[i].pattern,
                                                fuzz_rules[i].len, errbuf,
                                                sizeof(errbuf)) == 0);
        }
    }

    /* the whole input as a path */

    why = NULL;

    if (tsb_allow_path_check(data, size, &why) == 0) {
        fuzz_accepted_path(data, size);

    } else {
        fuzz_assert(why != NULL && why[0] != '\0');
    }

    /* ... and as a query string */

    why = NULL;

    if (tsb_allow_query_check(data, size, &why) == 0) {
        fuzz_accepted_query(data, size);

    } else {
        fuzz_assert(why != NULL && why[0] != '\0');
    }

    /* a request target split as the glue splits it */

    q = memchr(data, '?', size);
    plen = q ? (size_t) (q - data) : size;
    method = 1u << (size ? data[size - 1] % 5 : 0);

    if (tsb_allow_path_check(data, plen, &why) == 0) {
        fuzz_accepted_path(data, plen);
        fuzz_rules_on(data, plen, method);

        if (q) {
            if (tsb_allow_query_check(q + 1, size - plen - 1, &why) == 0) {
                fuzz_accepted_query(q + 1, size - plen - 1);
            }
        }
    }

    /* the whole input as a configured pattern: it matches itself */

    errbuf[0] = '\0';

    if (tsb_allow_pattern_check((const char *) data, size, errbuf,
                                sizeof(errbuf))
        == 0)
    {
        fuzz_assert(tsb_allow_path_check(data, size, &why) == 0);
        fuzz_assert(memchr(data, '%', size) == NULL);
        fuzz_assert(tsb_allow_match((const char *) data, size, data, size)
                    == 1);

    } else {
        fuzz_assert(errbuf[0] != '\0');
        fuzz_assert(memchr(errbuf, '\0', sizeof(errbuf)) != NULL);
    }

    return 0;
}
