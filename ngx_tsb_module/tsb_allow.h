
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The allow-list of the TSB front (tsb_pass): which methods and paths of
 * the TSB API a client may reach through the gateway, and the checks that
 * keep a path from meaning one thing to the gateway and another to the
 * TSB.
 *
 * Matching works on the path exactly as the client wrote it in the request
 * line (percent-encodings and all), and that same path is what goes to the
 * TSB: nothing is decoded, merged or normalised in between, so whatever the
 * allow-list approved is what the TSB sees.  Paths that a server could read
 * differently from the gateway are refused outright: dot segments, empty
 * segments ("//"), ';' path parameters (Java servers strip them: the
 * classic "/..;/" trick), backslashes, and percent-encoded '/', '\', '.',
 * ';', '%', '?', '#' or control characters.
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
 * The raw request path (the request line's, without the query): 0 when it
 * can be matched and forwarded as it is, -1 with *why set otherwise.
 */
int tsb_allow_path_check(const unsigned char *path, size_t len,
    const char **why);

/* the raw query string (without '?'): 0, or -1 with *why set */
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


#endif /* _TSB_ALLOW_H_INCLUDED_ */
