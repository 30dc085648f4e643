
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB front's one path (tsb_allow.c): tsb_allow_normalise() makes the
 * request line's path into the path every decision is made on and the TSB
 * gets; tsb_allow_route() says which endpoints the gateway handles or never
 * passes; tsb_allow_rule_check() refuses, at configuration time, rules that
 * could pass a certificate-issuing endpoint.  Encoded letters of "sign" must
 * not make another endpoint of it, as they did when the front judged raw
 * bytes and the TSB decoded them.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_allow.h"
#include "tap.h"


typedef struct {
    const char  *raw;
    const char  *norm;              /* NULL: refused */
} norm_case_t;


static const norm_case_t  norms[] = {
    { "/v1/certificate/sign", "/v1/certificate/sign" },
    { "/v1/certificate/%73ign", "/v1/certificate/sign" },
    { "/v1/certificate/%73%69%67%6E", "/v1/certificate/sign" },
    { "/v1/certificate/%73%69%67%6e", "/v1/certificate/sign" },
    { "/v1/certificate/synchronous/%73ign",
      "/v1/certificate/synchronous/sign" },
    { "/%76%31/certificate/sign", "/v1/certificate/sign" },
    { "/v1/certificate/%53ign", "/v1/certificate/Sign" },
    { "/v1/request/%2D%5F%7E%2E%21", "/v1/request/-_~.!" },
    { "/v1/key/a%3Ab%40c", "/v1/key/a:b@c" },
    { "/v1/key/a:b@c!$&'()*+,=~_-.x", "/v1/key/a:b@c!$&'()*+,=~_-.x" },
    { "/v1/request/a.b", "/v1/request/a.b" },
    { "/v1/request/...", "/v1/request/..." },
    { "/v1/request/%2E%2E%2E", "/v1/request/..." },

    /* dot and empty segments, decoded or not */
    { "/v1/request/%2e%2e/key", NULL },
    { "/v1/request/%2E%2E/key", NULL },
    { "/v1/request/.%2e/key", NULL },
    { "/v1/request/%2e/x", NULL },
    { "/v1/request/../key", NULL },
    { "/v1/request/./x", NULL },
    { "/v1/request/..", NULL },
    { "/v1//certificate/sign", NULL },
    { "//v1/certificate/sign", NULL },
    { "/v1/certificate/sign/", NULL },       /* Spring: the sign endpoint */
    { "/v1/certificate/%73ign/", NULL },
    { "/", NULL },
    { "", NULL },
    { "v1/certificate/sign", NULL },

    /* path parameters: Tomcat drops them, "sign;x" is sign */
    { "/v1/certificate/sign;x", NULL },
    { "/v1/certificate/sign;jsessionid=1", NULL },
    { "/v1/request/..;/certificate/sign", NULL },
    { "/v1/certificate/sign%3Bx", NULL },
    { "/v1/certificate/sign%3bx", NULL },

    /* separators, double encoding, controls */
    { "/v1/certificate%2Fsign", NULL },
    { "/v1/certificate%2fsign", NULL },
    { "/v1/certificate%5Csign", NULL },
    { "/v1/certificate\\sign", NULL },
    { "/v1/certificate/%2573ign", NULL },
    { "/v1/certificate/sign%00", NULL },
    { "/v1/certificate/sign%0a", NULL },
    { "/v1/certificate/sign%7F", NULL },
    { "/v1/certificate/sign%09", NULL },

    /* encodings a TSB path never needs */
    { "/v1/certificate/sign%20", NULL },     /* a trimmed token */
    { "/v1/key/My%20Key", NULL },
    { "/v1/key/caf%C3%A9", NULL },
    { "/v1/certificate/%C5%BFign", NULL },   /* long s: 'S' uppercased */
    { "/v1/certificate/sign%3F", NULL },
    { "/v1/certificate/sign%23", NULL },
    { "/v1/certificate/sign%22", NULL },
    { "/v1/certificate/sign%7B", NULL },
    { "/v1/certificate/sign%FF", NULL },

    /* malformed */
    { "/v1/certificate/%7", NULL },
    { "/v1/certificate/%", NULL },
    { "/v1/certificate/%zzign", NULL },
    { "/v1/certificate/%7zign", NULL },
    { "/v1/certificate/a b", NULL },
    { "/v1/certificate/a\"b", NULL },
    { "/v1/certificate/\xc3\xa9", NULL },
    { NULL, NULL }
};


typedef struct {
    unsigned     method;
    const char  *path;
    int          route;
} route_case_t;


static const route_case_t  routes[] = {
    { TSB_METHOD_POST, "/v1/certificate/sign", TSB_ROUTE_SIGN },
    { TSB_METHOD_POST, "/v1/certificate/import/plain", TSB_ROUTE_IMPORT },
    { TSB_METHOD_GET, "/v1/request/abc", TSB_ROUTE_STATUS },
    { TSB_METHOD_DELETE, "/v1/request/abc", TSB_ROUTE_CANCEL },
    { TSB_METHOD_GET, "/v1/request/abc/x", TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/certificate/request", TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/request",
      TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/certificate/signature", TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/certificate/sign2", TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/certificate/sign/x", TSB_ROUTE_PASS },
    { TSB_METHOD_POST, "/v1/key", TSB_ROUTE_PASS },
    { TSB_METHOD_GET, "/v1/certificate/selfsign", TSB_ROUTE_PASS },
    { TSB_METHOD_GET, "/v1/certificate/sign", TSB_ROUTE_PASS },
    { TSB_METHOD_DELETE, "/v1/certificate/synchronous/sign",
      TSB_ROUTE_PASS },

    /* never passed */
    { TSB_METHOD_POST, "/v1/certificate/synchronous/sign",
      TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/selfsign", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/selfsign",
      TSB_ROUTE_REFUSE },
    { TSB_METHOD_PUT, "/v1/certificate/synchronous/sign", TSB_ROUTE_REFUSE },
    { TSB_METHOD_PATCH, "/v1/certificate/selfsign", TSB_ROUTE_REFUSE },
    { TSB_METHOD_PUT, "/v1/certificate/sign", TSB_ROUTE_REFUSE },

    /* what a Spring router might still take for one of them */
    { TSB_METHOD_POST, "/v1/certificate/Sign", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/V1/Certificate/SIGN", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/sign.json", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/sign.", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/Sign",
      TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/sign.x.y",
      TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/SelfSign", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/import/Plain", TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate/import/plain.pem",
      TSB_ROUTE_REFUSE },
    { TSB_METHOD_POST, "/v1/certificate.x/sign", TSB_ROUTE_PASS },
    { 0, NULL, 0 }
};


typedef struct {
    unsigned     methods;
    const char  *pattern;
    int          ok;
} rule_case_t;


static const rule_case_t  rules[] = {
    { TSB_METHOD_POST, "/v1/certificate/sign", 1 },
    { TSB_METHOD_POST, "/v1/certificate/import/plain", 1 },
    { TSB_METHOD_POST, "/v1/certificate/request", 1 },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/request", 1 },
    { TSB_METHOD_GET, "/v1/certificate/**", 1 },
    { TSB_METHOD_GET | TSB_METHOD_DELETE, "/v1/certificate/*", 1 },
    { TSB_METHOD_POST, "/v1/key/**", 1 },
    { TSB_METHOD_POST, "/v1/certificate/import/*", 1 },

    { TSB_METHOD_POST, "/v1/certificate/**", 0 },
    { TSB_METHOD_POST, "/v1/certificate/*", 0 },      /* selfsign */
    { TSB_METHOD_POST, "/v1/certificate/synchronous/*", 0 },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/**", 0 },
    { TSB_METHOD_POST, "/v1/certificate/*/sign", 0 },
    { TSB_METHOD_POST, "/v1/certificate/*/selfsign", 0 },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/sign", 0 },
    { TSB_METHOD_POST, "/v1/certificate/selfsign", 0 },
    { TSB_METHOD_POST, "/v1/certificate/synchronous/selfsign", 0 },
    { TSB_METHOD_PUT, "/v1/certificate/**", 0 },
    { TSB_METHOD_PATCH, "/v1/certificate/selfsign", 0 },
    { TSB_METHOD_GET | TSB_METHOD_POST, "/v1/certificate/*", 0 },
    { TSB_METHOD_POST, "/v1/certificate/Sign", 0 },
    { TSB_METHOD_POST, "/v1/certificate/sign.json", 0 },
    { TSB_METHOD_POST, "/v1/certificate/SELFSIGN", 0 },
    { 0, NULL, 0 }
};


int
main(void)
{
    int             r;
    size_t          len, len2;
    long            i;
    char            errbuf[256];
    const char     *why;
    unsigned char   out[TSB_ALLOW_PATH_MAX + 16];
    unsigned char   out2[TSB_ALLOW_PATH_MAX + 16];

    for (i = 0; norms[i].raw; i++) {
        why = NULL;
        len = 0;
        r = tsb_allow_normalise((const unsigned char *) norms[i].raw,
                                strlen(norms[i].raw), out, &len, &why);

        if (norms[i].norm == NULL) {
            ok(r != 0 && why != NULL && strlen(why) > 0,
               "%s refused (%s)", norms[i].raw, why ? why : "");
            continue;
        }

        ok(r == 0 && len == strlen(norms[i].norm)
           && memcmp(out, norms[i].norm, len) == 0,
           "%s is %s (%.*s)", norms[i].raw, norms[i].norm, (int) len, out);

        /* what is forwarded is normal already: nothing left to decode */
        ok(memchr(out, '%', len) == NULL
           && tsb_allow_normalise(out, len, out2, &len2, &why) == 0
           && len2 == len && memcmp(out, out2, len) == 0,
           "... and stays %s", norms[i].norm);
    }

    {
        static const unsigned char  nul[] = "/v1/request/a\0b";

        ok(tsb_allow_normalise(nul, sizeof(nul) - 1, out, &len, &why) != 0,
           "a raw NUL refused");
    }

    {
        char  longpath[TSB_ALLOW_PATH_MAX + 8];

        memset(longpath, 'a', sizeof(longpath));
        longpath[0] = '/';
        ok(tsb_allow_normalise((unsigned char *) longpath, sizeof(longpath),
                               out, &len, &why) != 0,
           "an overlong path refused");
    }

    for (i = 0; routes[i].path; i++) {
        why = NULL;
        r = tsb_allow_route(routes[i].method,
                            (const unsigned char *) routes[i].path,
                            strlen(routes[i].path), &why);
        is_int(r, routes[i].route, "route of %u %s (%s)", routes[i].method,
               routes[i].path, why ? why : "");

        if (routes[i].route == TSB_ROUTE_REFUSE) {
            ok(why != NULL && strlen(why) > 0, "... says why");
        }
    }

    /* the attack of issue 10: one letter encoded, through the router */

    r = tsb_allow_normalise(
            (const unsigned char *) "/v1/certificate/synchronous/%73ign",
            34, out, &len, &why);
    ok(r == 0, "an encoded letter of synchronous/sign is decoded");
    is_int(tsb_allow_route(TSB_METHOD_POST, out, len, &why),
           TSB_ROUTE_REFUSE, "... and the synchronous sign is refused");

    r = tsb_allow_normalise((const unsigned char *) "/v1/certificate/%73ign",
                            22, out, &len, &why);
    is_int(tsb_allow_route(TSB_METHOD_POST, out, len, &why), TSB_ROUTE_SIGN,
           "an encoded letter of sign goes through the policy");

    /* a method override in the query (Spring's HiddenHttpMethodFilter) */

    {
        static const struct {
            const char  *q;
            int          ok;
        } qs[] = {
            { "wait=5&format=pem", 1 },
            { "method=DELETE", 1 },
            { "x_method=DELETE", 1 },
            { "_methods=DELETE", 1 },
            { "a=_method", 1 },
            { "_method=DELETE", 0 },
            { "_method", 0 },
            { "a=1&_method=PUT", 0 },
            { "a=1&_METHOD=PUT", 0 },
            { "%5Fmethod=DELETE", 0 },
            { "_%6Dethod=DELETE", 0 },
            { "_method&a=1", 0 },
            { NULL, 0 }
        };

        for (i = 0; qs[i].q; i++) {
            is_int(tsb_allow_query_check((const unsigned char *) qs[i].q,
                                         strlen(qs[i].q), &why) == 0,
                   qs[i].ok, "query %s %s", qs[i].q,
                   qs[i].ok ? "accepted" : "refused");
        }
    }

    for (i = 0; rules[i].pattern; i++) {
        errbuf[0] = '\0';
        r = tsb_allow_pattern_check(rules[i].pattern,
                                    strlen(rules[i].pattern), errbuf,
                                    sizeof(errbuf));
        ok(r == 0, "pattern %s is well-formed", rules[i].pattern);

        r = tsb_allow_rule_check(rules[i].methods, rules[i].pattern,
                                 strlen(rules[i].pattern), errbuf,
                                 sizeof(errbuf));
        is_int(r == 0, rules[i].ok, "rule %u %s %s (%s)", rules[i].methods,
               rules[i].pattern, rules[i].ok ? "accepted" : "refused",
               rules[i].ok ? "" : errbuf);
    }

    return done_testing();
}
