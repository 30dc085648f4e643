
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The allow-list of the TSB front (tsb_pass): which methods and paths of
 * the TSB API a client may reach through the gateway, and the checks that
 * keep a path from meaning one thing to the gateway and another to the
 * TSB.
 *
 * Every decision of the front (the allow-list, the endpoints it handles
 * itself, the ones it never passes) is made on one normalised path, and
 * that same path is what goes to the TSB: tsb_allow_normalise() decodes
 * what a servlet container would decode anyway and refuses what it could
 * read differently from the gateway (dot segments, empty segments, ';'
 * path parameters, backslashes, encoded separators and any encoding a TSB
 * path never needs), so the TSB has nothing left to decode.
 */


#ifndef _TSB_ALLOW_H_INCLUDED_
#define _TSB_ALLOW_H_INCLUDED_


#include <stddef.h>


#define TSB_METHOD_GET     0x01
#define TSB_METHOD_POST    0x02
#define TSB_METHOD_PUT     0x04
#define TSB_METHOD_PATCH   0x08
#define TSB_METHOD_DELETE  0x10

/* longer paths and query strings are refused */
#define TSB_ALLOW_PATH_MAX   2048
#define TSB_ALLOW_QUERY_MAX  2048


/*
 * A pattern is a path of literal segments, where a segment "*" matches any
 * one segment and a last segment "**" matches one or more.  The first two
 * segments must be literal ("/v1/key", "/v1/certificate"): a wildcard never
 * grants a whole area of the API, such as key management or approvals, that
 * the operator did not name.
 */
typedef struct {
    unsigned      methods;          /* TSB_METHOD_* */
    const char   *pattern;
    size_t        len;
} tsb_allow_rule_t;


/* TSB_METHOD_* of a method name (case-sensitive, as HTTP), 0 if unknown */
unsigned tsb_allow_method(const char *name, size_t len);

/* configuration time: 0, or -1 with a message in errbuf */
int tsb_allow_pattern_check(const char *pattern, size_t len, char *errbuf,
    size_t errlen);

/*
 * A raw path that needs no normalising but may keep percent-encodings
 * (configuration patterns, which then must not have any): 0, or -1 with
 * *why set.
 */
int tsb_allow_path_check(const unsigned char *path, size_t len,
    const char **why);

/*
 * The raw request path (the request line's, without the query) made into
 * the one path the front judges and forwards, in out (len bytes at
 * least): percent-encoded letters, digits and other characters that may
 * stand in a path segment as they are decoded; any other encoding, a dot
 * or empty segment (after decoding), a ';', a backslash or a character
 * that should have been encoded is refused.  The result has no '%' in it.
 * 0 with *out_len set, or -1 with *why set.
 */
int tsb_allow_normalise(const unsigned char *path, size_t len,
    unsigned char *out, size_t *out_len, const char **why);

/*
 * The raw query string (without '?'): 0, or -1 with *why set.  A
 * "_method" parameter, however encoded or cased, is refused: Spring takes
 * it for the method of a POST.
 */
int tsb_allow_query_check(const unsigned char *query, size_t len,
    const char **why);

/* 1 when a checked path matches a checked pattern */
int tsb_allow_match(const char *pattern, size_t plen,
    const unsigned char *path, size_t len);

/*
 * The first rule that allows method on path, or -1.  *path_known is set
 * to 1 when some rule matches the path for another method (the caller may
 * then say "not this method" rather than "not this path").
 */
long tsb_allow_find(const tsb_allow_rule_t *rules, size_t n,
    unsigned method, const unsigned char *path, size_t len,
    int *path_known);



#define TSB_ROUTE_PASS     0        /* forwarded as it is */
#define TSB_ROUTE_SIGN     1        /* the sign handler's policy */
#define TSB_ROUTE_STATUS   2        /* the status handler, cache */
#define TSB_ROUTE_CANCEL   3        /* DELETE, then the cache */
#define TSB_ROUTE_IMPORT   4        /* PEM or base64 DER in */
#define TSB_ROUTE_REFUSE   5        /* never passed, *why says why */

/*
 * Which way a normalised path goes, before the allow-list is asked.  A
 * body-carrying method (POST, PUT, PATCH) on a certificate-issuing endpoint
 * other than POST /v1/certificate/sign (synchronous sign, self-sign,
 * synchronous self-sign) is TSB_ROUTE_REFUSE, and so is anything a Spring
 * application could route to one of the gateway's endpoints while the
 * gateway would not (another case, a ".suffix" on the last segment).
 */
int tsb_allow_route(unsigned method, const unsigned char *path, size_t len,
    const char **why);

/*
 * Configuration time, after tsb_allow_pattern_check(): -1 with a message in
 * errbuf when a rule for these methods could pass a certificate-issuing
 * endpoint other than through the policy, or names a path the router
 * always refuses.
 */
int tsb_allow_rule_check(unsigned methods, const char *pattern, size_t len,
    char *errbuf, size_t errlen);


#endif /* _TSB_ALLOW_H_INCLUDED_ */
