
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: the TSB front's one path (tsb_allow_normalise(),
 * tsb_allow_route(), tsb_allow_find()), differentially.  The first byte
 * picks the method; the second seeds which characters get encoded; the
 * rest is the raw request path.  The decision of the front (refused, never
 * passed, or which route and which rule) must be the same for
 *
 *   P                the raw path,
 *   decode(P)        P with every encoding of a path character decoded,
 *   encode(P)        P with some path characters percent-encoded, in
 *                    upper- or lowercase hex,
 *
 * and when P is accepted its normalised form N must be what a servlet
 * container reads in P (decoded, path parameters dropped, dot segments
 * resolved), must hold no '%' and normalise to itself, and must not be an
 * issuing endpoint to a case-insensitive, suffix-matching Spring router
 * unless the front refuses it or routes it through the policy.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_allow.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_front_path: assertion failed: %s "          \
                    "(line %d)\n", #cond, __LINE__);                          \
            abort();                                                          \
        }                                                                     \
    } while (0)


/* encoding triples a path: keep it under TSB_ALLOW_PATH_MAX */
#define FUZZ_PATH_MAX  (TSB_ALLOW_PATH_MAX / 3 - 1)

#define FUZZ_RULE(m, p)  { m, p, sizeof(p) - 1 }

/* rules tsb_allow_rule_check() accepts (checked at the first run) */
static const tsb_allow_rule_t  fuzz_rules[] = {
    FUZZ_RULE(TSB_METHOD_GET | TSB_METHOD_DELETE, "/v1/request/*"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/sign"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/import/plain"),
    FUZZ_RULE(TSB_METHOD_POST, "/v1/certificate/request"),
    FUZZ_RULE(TSB_METHOD_GET | TSB_METHOD_DELETE, "/v1/certificate/**"),
    FUZZ_RULE(TSB_METHOD_POST | TSB_METHOD_PUT, "/v1/key/**"),
    FUZZ_RULE(TSB_METHOD_PATCH, "/v1/key/*/attributes"),
};

#define FUZZ_NRULES  (sizeof(fuzz_rules) / sizeof(fuzz_rules[0]))

/* what a Spring router may take for a certificate-issuing endpoint */
static const char  *fuzz_issuing[] = {
    "/v1/certificate/synchronous/sign",
    "/v1/certificate/selfsign",
    "/v1/certificate/synchronous/selfsign",
    NULL
};

static const unsigned  fuzz_methods[] = {
    TSB_METHOD_GET, TSB_METHOD_POST, TSB_METHOD_PUT, TSB_METHOD_PATCH,
    TSB_METHOD_DELETE
};


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


/* what may stand in a path segment as it is */
static int
fuzz_pchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && strchr("-._~!$&'()*+,=:@", c) != NULL);
}


/* every '%' is followed by two hex digits */
static int
fuzz_well_formed(const unsigned char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len || fuzz_hex(s[i + 1]) < 0
                || fuzz_hex(s[i + 2]) < 0)
            {
                return 0;
            }

            i += 2;
        }
    }

    return 1;
}


/* decode(P): encodings of path characters decoded, the others kept */
static size_t
fuzz_decode_pchars(const unsigned char *s, size_t len, unsigned char *out)
{
    int     c;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && fuzz_hex(s[i + 1]) >= 0
            && fuzz_hex(s[i + 2]) >= 0)
        {
            c = fuzz_hex(s[i + 1]) * 16 + fuzz_hex(s[i + 2]);

            if (fuzz_pchar((unsigned char) c)) {
                out[n++] = (unsigned char) c;

            } else {
                memcpy(out + n, s + i, 3);
                n += 3;
            }

            i += 2;
            continue;
        }

        out[n++] = s[i];
    }

    return n;
}


/* encode(P): some path characters outside encodings percent-encoded */
static size_t
fuzz_encode(const unsigned char *s, size_t len, unsigned seed,
    unsigned char *out)
{
    size_t                     i, n;
    static const char          upper[] = "0123456789ABCDEF";
    static const char          lower[] = "0123456789abcdef";
    const char                *hex;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            /* an encoding is copied whole: its digits are not ours */
            memcpy(out + n, s + i, i + 2 < len ? 3 : len - i);
            n += i + 2 < len ? 3 : len - i;
            i += 2;
            continue;
        }

        seed = seed * 1103515245u + 12345u;

        if (fuzz_pchar(s[i]) && (seed >> 16) % 3 == 0) {
            hex = ((seed >> 20) & 1) ? upper : lower;
            out[n++] = '%';
            out[n++] = hex[s[i] >> 4];
            out[n++] = hex[s[i] & 0xf];
            continue;
        }

        out[n++] = s[i];
    }

    return n;
}


/*
 * A servlet container's reading of a path: ';' parameters dropped from
 * each segment, everything percent-decoded, "." and ".." resolved.  Only
 * used on accepted paths, which have none of the first and last, so it
 * comes down to the decoding; written out in full anyway, to be the
 * reference and not a copy of the code under test.
 */
static size_t
fuzz_servlet(const unsigned char *s, size_t len, unsigned char *out)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == ';') {
            while (i + 1 < len && s[i + 1] != '/') {
                i++;
            }

            continue;
        }

        if (s[i] == '%' && i + 2 < len) {
            out[n++] = (unsigned char) (fuzz_hex(s[i + 1]) * 16
                                        + fuzz_hex(s[i + 2]));
            i += 2;
            continue;
        }

        out[n++] = s[i];
    }

    return n;
}


/* 1 when a lenient Spring router could route path to the endpoint */
static int
fuzz_spring_like(const unsigned char *p, size_t len, const char *name)
{
    size_t         i, n, last, cut;
    unsigned char  c;

    n = strlen(name);

    for (last = len; last > 0 && p[last - 1] != '/'; last--) {
        /* void */
    }

    for (cut = last; cut < len && p[cut] != '.'; cut++) {
        /* void */
    }

    if (cut != n) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        c = p[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


/* the front's decision: <0 refused, else route * 100 + rule + 1 */
static long
fuzz_decide(unsigned method, const unsigned char *p, size_t len,
    unsigned char *norm, size_t *nlen)
{
    int          route, known;
    long         rule;
    size_t       i, n2;
    const char  *why;
    static unsigned char  again[TSB_ALLOW_PATH_MAX + 16];

    why = NULL;

    if (tsb_allow_normalise(p, len, norm, nlen, &why) != 0) {
        fuzz_assert(why != NULL && why[0] != '\0');
        return -1;
    }

    /* the one path: no '%' left, pchars and '/', normal already */

    fuzz_assert(*nlen >= 2 && *nlen <= len && norm[0] == '/');
    fuzz_assert(norm[*nlen - 1] != '/');

    for (i = 1; i < *nlen; i++) {
        fuzz_assert(norm[i] == '/' || fuzz_pchar(norm[i]));
        fuzz_assert(!(norm[i] == '/' && norm[i - 1] == '/'));
    }

    fuzz_assert(tsb_allow_normalise(norm, *nlen, again, &n2, &why) == 0);
    fuzz_assert(n2 == *nlen && memcmp(again, norm, n2) == 0);

    why = NULL;
    route = tsb_allow_route(method, norm, *nlen, &why);

    fuzz_assert(route >= TSB_ROUTE_PASS && route <= TSB_ROUTE_REFUSE);

    if (route == TSB_ROUTE_REFUSE) {
        fuzz_assert(why != NULL && why[0] != '\0');
        return -2;
    }

    /* nothing passed that a lenient router takes for an issuing endpoint */

    if (method != TSB_METHOD_GET && method != TSB_METHOD_DELETE) {
        for (i = 0; fuzz_issuing[i]; i++) {
            fuzz_assert(!fuzz_spring_like(norm, *nlen, fuzz_issuing[i]));
        }

        if (fuzz_spring_like(norm, *nlen, "/v1/certificate/sign")) {
            fuzz_assert(route == TSB_ROUTE_SIGN);
        }
    }

    if (route == TSB_ROUTE_SIGN) {
        fuzz_assert(method == TSB_METHOD_POST
                    && *nlen == sizeof("/v1/certificate/sign") - 1
                    && memcmp(norm, "/v1/certificate/sign", *nlen) == 0);
    }

    rule = tsb_allow_find(fuzz_rules, FUZZ_NRULES, method, norm, *nlen,
                          &known);

    return route * 100 + rule + 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long                  d, d2;
    size_t                i, len, n, nlen, nlen2;
    unsigned              method, seed;
    char                  errbuf[256];
    const unsigned char  *p;
    static int            checked;
    static unsigned char  buf[TSB_ALLOW_PATH_MAX + 16];
    static unsigned char  norm[TSB_ALLOW_PATH_MAX + 16];
    static unsigned char  norm2[TSB_ALLOW_PATH_MAX + 16];
    static unsigned char  ref[TSB_ALLOW_PATH_MAX + 16];

    if (!checked) {
        for (i = 0; i < FUZZ_NRULES; i++) {
            fuzz_assert(tsb_allow_pattern_check(fuzz_rules[i].pattern,
                                                fuzz_rules[i].len, errbuf,
                                                sizeof(errbuf)) == 0);
            fuzz_assert(tsb_allow_rule_check(fuzz_rules[i].methods,
                                             fuzz_rules[i].pattern,
                                             fuzz_rules[i].len, errbuf,
                                             sizeof(errbuf)) == 0);
        }

        checked = 1;
    }

    if (size < 2 || size - 2 > FUZZ_PATH_MAX) {
        return 0;
    }

    method = fuzz_methods[data[0] % 5];
    seed = data[1];
    p = data + 2;
    len = size - 2;

    d = fuzz_decide(method, p, len, norm, &nlen);

    if (d != -1) {
        /* what the TSB reads in what was judged: the same path */

        n = fuzz_servlet(p, len, ref);
        fuzz_assert(n == nlen && memcmp(ref, norm, n) == 0);
        fuzz_assert(fuzz_well_formed(p, len));
    }

    if (!fuzz_well_formed(p, len)) {
        /* a malformed encoding is refused, whatever else is there */
        fuzz_assert(d == -1);
        return 0;
    }

    /* decision(P) == decision(decode(P)) */

    n = fuzz_decode_pchars(p, len, buf);
    d2 = fuzz_decide(method, buf, n, norm2, &nlen2);

    fuzz_assert(d == d2);

    if (d != -1) {
        fuzz_assert(nlen == nlen2 && memcmp(norm, norm2, nlen) == 0);
    }

    /* decision(P) == decision(encode(P)) */

    n = fuzz_encode(p, len, seed, buf);
    d2 = fuzz_decide(method, buf, n, norm2, &nlen2);

    fuzz_assert(d == d2);

    if (d != -1) {
        fuzz_assert(nlen == nlen2 && memcmp(norm, norm2, nlen) == 0);
    }

    return 0;
}
