
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB front's allow-list (tsb_allow.c): which raw paths are refused
 * before matching, which patterns configuration accepts, and what they
 * match.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_allow.h"
#include "tap.h"


typedef struct {
    const char  *path;
    int          ok;
} path_case_t;


static const path_case_t  paths[] = {
    { "/v1/request/3f2a6c1e-9b7d-4e21-a0c4-5d8e9f1a2b3c", 1 },
    { "/v1/certificate/sign", 1 },
    { "/v1/key/My%20Key", 1 },
    { "/v1/key/caf%C3%A9", 1 },
    { "/v1/key/a:b@c!$&'()*+,=~_-.x", 1 },
    { "/", 0 },                                 /* empty segment */
    { "", 0 },
    { "v1/request/x", 0 },
    { "/v1//key", 0 },
    { "/v1/request/", 0 },
    { "/v1/request/../key", 0 },
    { "/v1/request/./x", 0 },
    { "/v1/request/..", 0 },
    { "/v1/request/%2e%2e/key", 0 },
    { "/v1/request/%2E%2E/key", 0 },
    { "/v1/request/.%2e/key", 0 },
    { "/v1/request/a%2Fb", 0 },
    { "/v1/request/a%2fb", 0 },
    { "/v1/request/a%5Cb", 0 },
    { "/v1/request/a\\b", 0 },
    { "/v1/request/..;/key", 0 },
    { "/v1/request/x;jsessionid=1", 0 },
    { "/v1/request/a%3Bb", 0 },
    { "/v1/request/a%252Fb", 0 },
    { "/v1/request/a%00", 0 },
    { "/v1/request/a%0a", 0 },
    { "/v1/request/a%zz", 0 },
    { "/v1/request/a%2", 0 },
    { "/v1/request/a%", 0 },
    { "/v1/request/a b", 0 },
    { "/v1/request/a\"b", 0 },
    { "/v1/request/a#b", 0 },
    { "/v1/request/a?b", 0 },
    { "/v1/request/\xc3\xa9", 0 },
    { NULL, 0 }
};


typedef struct {
    const char  *pattern;
    int          ok;
} pattern_case_t;


static const pattern_case_t  patterns[] = {
    { "/v1/request/*", 1 },
    { "/v1/certificate/sign", 1 },
    { "/v1/key/**", 1 },
    { "/v1/key/*/attributes", 1 },
    { "/v1/request/*/*", 1 },
    { "/v1/*", 0 },                 /* the second segment must be named */
    { "/v1/**", 0 },
    { "/*/key", 0 },
    { "/**", 0 },
    { "/v1/key/**/x", 0 },          /* ** only last */
    { "/v1/key/a*", 0 },            /* wildcards stand for whole segments */
    { "/v1/key/***", 0 },
    { "/v1/key/%2A", 0 },           /* no percent-encodings in patterns */
    { "/v1//key", 0 },
    { "/v1/key/../request", 0 },
    { "v1/key", 0 },
    { "/v1/key/", 0 },
    { NULL, 0 }
};


typedef struct {
    const char  *pattern;
    const char  *path;
    int          match;
} match_case_t;


static const match_case_t  matches[] = {
    { "/v1/request/*", "/v1/request/abc", 1 },
    { "/v1/request/*", "/v1/request/abc/def", 0 },
    { "/v1/request/*", "/v1/request", 0 },
    { "/v1/request/*", "/v1/requests/abc", 0 },
    { "/v1/request/*", "/v1/Request/abc", 0 },
    { "/v1/certificate/sign", "/v1/certificate/sign", 1 },
    { "/v1/certificate/sign", "/v1/certificate/signx", 0 },
    { "/v1/certificate/sign", "/v1/certificate/sign/x", 0 },
    { "/v1/certificate/sign", "/v1/certificate", 0 },
    { "/v1/key/**", "/v1/key/a", 1 },
    { "/v1/key/**", "/v1/key/a/b/c", 1 },
    { "/v1/key/**", "/v1/key", 0 },
    { "/v1/key/**", "/v1/keys/a", 0 },
    { "/v1/key/*/attributes", "/v1/key/k1/attributes", 1 },
    { "/v1/key/*/attributes", "/v1/key/k1/export", 0 },
    { "/v1/request/*/*", "/v1/request/a/b", 1 },
    { "/v1/request/*/*", "/v1/request/a", 0 },
    { NULL, NULL, 0 }
};


int
main(void)
{
    int               known;
    long              i;
    char              errbuf[128];
    const char       *why;
    tsb_allow_rule_t  rules[3];

    for (i = 0; paths[i].path; i++) {
        why = NULL;
        is_int(tsb_allow_path_check((const unsigned char *) paths[i].path,
                                    strlen(paths[i].path), &why) == 0,
               paths[i].ok, "path %s: %s", paths[i].path,
               paths[i].ok ? "accepted" : "refused");

        if (!paths[i].ok) {
            ok(why != NULL && strlen(why) > 0, "path %s: says why (%s)",
               paths[i].path, why ? why : "");
        }
    }

    {
        /* a NUL inside the path is refused, not taken for its end */
        static const unsigned char  nul[] = "/v1/request/a\0b";

        ok(tsb_allow_path_check(nul, sizeof(nul) - 1, &why) != 0,
           "path with a raw NUL refused");
    }

    {
        char  longpath[TSB_ALLOW_PATH_MAX + 8];

        memset(longpath, 'a', sizeof(longpath));
        longpath[0] = '/';
        ok(tsb_allow_path_check((unsigned char *) longpath,
                                sizeof(longpath), &why) != 0,
           "an overlong path is refused");
    }

    for (i = 0; patterns[i].pattern; i++) {
        errbuf[0] = '\0';
        is_int(tsb_allow_pattern_check(patterns[i].pattern,
                                       strlen(patterns[i].pattern), errbuf,
                                       sizeof(errbuf)) == 0,
               patterns[i].ok, "pattern %s: %s (%s)", patterns[i].pattern,
               patterns[i].ok ? "accepted" : "refused", errbuf);
    }

    for (i = 0; matches[i].pattern; i++) {
        is_int(tsb_allow_match(matches[i].pattern, strlen(matches[i].pattern),
                               (const unsigned char *) matches[i].path,
                               strlen(matches[i].path)),
               matches[i].match, "%s %s %s", matches[i].pattern,
               matches[i].match ? "matches" : "does not match",
               matches[i].path);
    }

    /* queries */

    ok(tsb_allow_query_check((const unsigned char *) "format=pem&wait=5",
                             17, &why) == 0, "plain query accepted");
    ok(tsb_allow_query_check((const unsigned char *) "a=%20b", 6, &why) == 0,
       "percent-encoded query accepted");
    ok(tsb_allow_query_check((const unsigned char *) "a=%2", 4, &why) != 0,
       "truncated percent-encoding in the query refused");
    ok(tsb_allow_query_check((const unsigned char *) "a=b c", 5, &why) != 0,
       "a space in the query refused");
    ok(tsb_allow_query_check((const unsigned char *) "a=b#c", 5, &why) != 0,
       "a '#' in the query refused");

    /* methods */

    is_int(tsb_allow_method("GET", 3), TSB_METHOD_GET, "GET");
    is_int(tsb_allow_method("DELETE", 6), TSB_METHOD_DELETE, "DELETE");
    is_int(tsb_allow_method("get", 3), 0, "methods are case-sensitive");
    is_int(tsb_allow_method("HEAD", 4), 0, "HEAD is not passed");
    is_int(tsb_allow_method("OPTIONS", 7), 0, "OPTIONS is not passed");
    is_int(tsb_allow_method("GETX", 4), 0, "GETX is unknown");

    /* the list: first rule for the method, and "known path" */

    rules[0].methods = TSB_METHOD_GET;
    rules[0].pattern = "/v1/request/*";
    rules[0].len = strlen(rules[0].pattern);
    rules[1].methods = TSB_METHOD_DELETE;
    rules[1].pattern = "/v1/request/*";
    rules[1].len = strlen(rules[1].pattern);
    rules[2].methods = TSB_METHOD_POST;
    rules[2].pattern = "/v1/certificate/sign";
    rules[2].len = strlen(rules[2].pattern);

    is_int(tsb_allow_find(rules, 3, TSB_METHOD_DELETE,
                          (const unsigned char *) "/v1/request/x", 13,
                          &known), 1, "DELETE finds its rule");
    is_int(tsb_allow_find(rules, 3, TSB_METHOD_PUT,
                          (const unsigned char *) "/v1/request/x", 13,
                          &known), -1, "PUT finds none");
    is_int(known, 1, "... but the path is known");
    is_int(tsb_allow_find(rules, 3, TSB_METHOD_GET,
                          (const unsigned char *) "/v1/key/x", 9, &known),
           -1, "GET /v1/key/x finds none");
    is_int(known, 0, "... and the path is unknown");
    is_int(tsb_allow_find(rules, 0, TSB_METHOD_GET,
                          (const unsigned char *) "/v1/request/x", 13,
                          &known), -1, "an empty list allows nothing");

    return done_testing();
}
