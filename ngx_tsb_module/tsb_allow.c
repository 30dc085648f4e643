
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB front's allow-list and path checks.  See tsb_allow.h.
 */


#include <stdio.h>
#include <string.h>

#include "tsb_allow.h"
#include "tsb_common.h"


static const struct {
    const char  *name;
    size_t       len;
    unsigned     bit;
} tsb_allow_methods[] = {
    { "GET", 3, TSB_METHOD_GET },
    { "POST", 4, TSB_METHOD_POST },
    { "PUT", 3, TSB_METHOD_PUT },
    { "PATCH", 5, TSB_METHOD_PATCH },
    { "DELETE", 6, TSB_METHOD_DELETE },
    { NULL, 0, 0 }
};


static int tsb_allow_hex(unsigned char c);
static int tsb_allow_pchar(unsigned char c);


unsigned
tsb_allow_method(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; tsb_allow_methods[i].name; i++) {
        if (tsb_allow_methods[i].len == len
            && memcmp(tsb_allow_methods[i].name, name, len) == 0)
        {
            return tsb_allow_methods[i].bit;
        }
    }

    return 0;
}


static int
tsb_allow_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * What may stand in a path segment as it is: RFC 3986's unreserved
 * characters, the sub-delimiters but ';', ':' and '@'.
 */
static int
tsb_allow_pchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    switch (c) {
    case '-': case '.': case '_': case '~':
    case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case '=':
    case ':': case '@':
        return 1;
    default:
        return 0;
    }
}


int
tsb_allow_path_check(const unsigned char *path, size_t len,
    const char **why)
{
    int     hi, lo;
    size_t  i, seg;

    if (len == 0 || path[0] != '/') {
        *why = "the path does not start with '/'";
        return -1;
    }

    if (len > TSB_ALLOW_PATH_MAX) {
        *why = "the path is too long";
        return -1;
    }

    seg = 1;                            /* where the current segment starts */

    for (i = 1; i <= len; i++) {

        if (i == len || path[i] == '/') {

            if (i == seg) {
                *why = "the path has an empty segment (a double or "
                       "trailing slash)";
                return -1;
            }

            if ((i - seg == 1 && path[seg] == '.')
                || (i - seg == 2 && path[seg] == '.' && path[seg + 1] == '.'))
            {
                *why = "the path has a \".\" or \"..\" segment";
                return -1;
            }

            seg = i + 1;
            continue;
        }

        if (path[i] == '%') {
            if (i + 2 >= len
                || (hi = tsb_allow_hex(path[i + 1])) < 0
                || (lo = tsb_allow_hex(path[i + 2])) < 0)
            {
                *why = "the path has a malformed percent-encoding";
                return -1;
            }

            switch (hi * 16 + lo) {
            case '/':
            case '\\':
                *why = "the path has an encoded slash or backslash";
                return -1;
            case '.':
                *why = "the path has an encoded dot";
                return -1;
            case ';':
            case '%':
            case '?':
            case '#':
                *why = "the path has an encoded ';', '%', '?' or '#'";
                return -1;
            default:
                if (hi * 16 + lo < 0x20 || hi * 16 + lo == 0x7f) {
                    *why = "the path has an encoded control character";
                    return -1;
                }
            }

            i += 2;
            continue;
        }

        if (path[i] == ';') {
            *why = "the path has a ';' (path parameters are not passed)";
            return -1;
        }

        if (path[i] == '\\') {
            *why = "the path has a backslash";
            return -1;
        }

        if (!tsb_allow_pchar(path[i])) {
            *why = "the path has a character that must be percent-encoded";
            return -1;
        }
    }

    return 0;
}


/*
 * 1 when the query has a parameter named "_method", however encoded or
 * cased: Spring's HiddenHttpMethodFilter takes it as the real method of a
 * POST, which the front would then have judged as the wrong method.
 */
static int
tsb_allow_query_override(const unsigned char *query, size_t len)
{
    int            hi, lo;
    size_t         i, n;
    unsigned char  c;

    static const char  name[] = "_method";

    n = 0;                      /* bytes of the current name matched */

    for (i = 0; i <= len; i++) {

        if (i == len || query[i] == '&' || query[i] == '=') {
            if (n == sizeof(name) - 1) {
                return 1;
            }

            /* after '=' the value runs to the next '&' */

            while (i < len && query[i] != '&') {
                i++;
            }

            n = 0;
            continue;
        }

        c = query[i];

        if (c == '%' && i + 2 < len
            && (hi = tsb_allow_hex(query[i + 1])) >= 0
            && (lo = tsb_allow_hex(query[i + 2])) >= 0)
        {
            c = (unsigned char) (hi * 16 + lo);
            i += 2;
        }

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (n != (size_t) -1 && n < sizeof(name) - 1 && c == name[n]) {
            n++;

        } else {
            n = (size_t) -1;    /* not this name: wait for the next one */
        }
    }

    return 0;
}


int
tsb_allow_query_check(const unsigned char *query, size_t len,
    const char **why)
{
    size_t  i;

    if (tsb_allow_query_override(query, len)) {
        *why = "the query string has a \"_method\" parameter (a method "
               "override)";
        return -1;
    }

    if (len > TSB_ALLOW_QUERY_MAX) {
        *why = "the query string is too long";
        return -1;
    }

    for (i = 0; i < len; i++) {

        if (query[i] == '%') {
            if (i + 2 >= len || tsb_allow_hex(query[i + 1]) < 0
                || tsb_allow_hex(query[i + 2]) < 0)
            {
                *why = "the query string has a malformed percent-encoding";
                return -1;
            }

            i += 2;
            continue;
        }

        if (!tsb_allow_pchar(query[i]) && query[i] != '/' && query[i] != '?'
            && query[i] != ';')
        {
            *why = "the query string has a character that must be "
                   "percent-encoded";
            return -1;
        }
    }

    return 0;
}


int
tsb_allow_pattern_check(const char *pattern, size_t len, char *errbuf,
    size_t errlen)
{
    size_t       i, seg, nseg;
    const char  *why;

    if (tsb_allow_path_check((const unsigned char *) pattern, len, &why)
        != 0)
    {
        snprintf(errbuf, errlen, "%s", why);
        return -1;
    }

    nseg = 0;
    seg = 1;

    for (i = 1; i <= len; i++) {

        if (i < len && pattern[i] != '/') {
            if (pattern[i] == '%') {
                snprintf(errbuf, errlen, "a pattern has no percent-encoding");
                return -1;
            }

            continue;
        }

        nseg++;

        if (memchr(pattern + seg, '*', i - seg) != NULL) {

            if (!(i - seg == 1
                  || (i - seg == 2 && pattern[seg] == '*'
                      && pattern[seg + 1] == '*')))
            {
                snprintf(errbuf, errlen,
                         "\"*\" and \"**\" stand for whole segments");
                return -1;
            }

            if (nseg <= 2) {
                snprintf(errbuf, errlen,
                         "the first two segments must be written out "
                         "(\"/v1/request/*\", not \"/v1/*\")");
                return -1;
            }

            if (i - seg == 2 && i != len) {
                snprintf(errbuf, errlen, "\"**\" must be the last segment");
                return -1;
            }
        }

        seg = i + 1;
    }

    return 0;
}


int
tsb_allow_match(const char *pattern, size_t plen, const unsigned char *path,
    size_t len)
{
    size_t  pi, si, pe, se;

    pi = 1;
    si = 1;

    if (plen == 0 || len == 0 || pattern[0] != '/' || path[0] != '/') {
        return 0;
    }

    for ( ;; ) {
        for (pe = pi; pe < plen && pattern[pe] != '/'; pe++) { /* void */ }
        for (se = si; se < len && path[se] != '/'; se++) { /* void */ }

        if (pe - pi == 2 && pattern[pi] == '*' && pattern[pi + 1] == '*') {
            /* one or more segments, to the end */
            return si < len && se > si;
        }

        if (se == si) {
            /* the path has run out of segments */
            return 0;
        }

        if (!(pe - pi == 1 && pattern[pi] == '*')
            && !(pe - pi == se - si && memcmp(pattern + pi, path + si, pe - pi)
                                       == 0))
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


long
tsb_allow_find(const tsb_allow_rule_t *rules, size_t n, unsigned method,
    const unsigned char *path, size_t len, int *path_known)
{
    size_t  i;

    *path_known = 0;

    for (i = 0; i < n; i++) {
        if (!tsb_allow_match(rules[i].pattern, rules[i].len, path, len)) {
            continue;
        }

        if (rules[i].methods & method) {
            return (long) i;
        }

        *path_known = 1;
    }

    return -1;
}


/* ------------------------------------------------ the one path judged */

/*
 * A percent-encoding is decoded when what it stands for may stand in a
 * path segment as it is (tsb_allow_pchar()): then "%73ign", "%53ign"
 * with the 'S' and "sign" are one path to the gateway as they are to a
 * servlet container, which decodes before it routes.  Every other
 * encoding is refused: the TSB API's paths are ASCII names, UUIDs and key
 * labels, and what an encoded '/', '\', ';', '%', control byte, space or
 * non-ASCII byte would become behind the gateway (a separator, a path
 * parameter, a second decoding, a trimmed token, a case-folded letter) is
 * the server's to decide, not the gateway's.  So the normalised path holds
 * no '%' at all and nothing behind the gateway decodes it into another.
 */

int
tsb_allow_normalise(const unsigned char *path, size_t len,
    unsigned char *out, size_t *out_len, const char **why)
{
    int            hi, lo;
    size_t         i, n, seg;
    unsigned char  c;

    *out_len = 0;

    if (len == 0 || path[0] != '/') {
        *why = "the path does not start with '/'";
        return -1;
    }

    if (len > TSB_ALLOW_PATH_MAX) {
        *why = "the path is too long";
        return -1;
    }

    out[0] = '/';
    n = 1;
    seg = 1;                    /* where the current segment starts in out */

    for (i = 1; i <= len; i++) {

        if (i == len || path[i] == '/') {

            /* segments are judged decoded: "%2e%2E" is "..", as for Tomcat */

            if (n == seg) {
                *why = "the path has an empty segment (a double or "
                       "trailing slash)";
                return -1;
            }

            if ((n - seg == 1 && out[seg] == '.')
                || (n - seg == 2 && out[seg] == '.' && out[seg + 1] == '.'))
            {
                *why = "the path has a \".\" or \"..\" segment";
                return -1;
            }

            if (i < len) {
                out[n++] = '/';
                seg = n;
            }

            continue;
        }

        c = path[i];

        if (c == '%') {
            if (i + 2 >= len
                || (hi = tsb_allow_hex(path[i + 1])) < 0
                || (lo = tsb_allow_hex(path[i + 2])) < 0)
            {
                *why = "the path has a malformed percent-encoding";
                return -1;
            }

            c = (unsigned char) (hi * 16 + lo);
            i += 2;

            if (c == '/' || c == '\\') {
                *why = "the path has an encoded slash or backslash";
                return -1;
            }

            if (c == '%') {
                *why = "the path has an encoded '%' (double encoding)";
                return -1;
            }

            if (c < 0x20 || c == 0x7f) {
                *why = "the path has an encoded control character";
                return -1;
            }

            if (!tsb_allow_pchar(c)) {
                *why = "the path has a percent-encoding that no TSB path "
                       "needs (only letters, digits and -._~!$&'()*+,=:@ "
                       "may be encoded)";
                return -1;
            }

            out[n++] = c;
            continue;
        }

        if (c == ';') {
            *why = "the path has a ';' (path parameters are not passed)";
            return -1;
        }

        if (c == '\\') {
            *why = "the path has a backslash";
            return -1;
        }

        if (!tsb_allow_pchar(c)) {
            *why = "the path has a character that must be percent-encoded";
            return -1;
        }

        out[n++] = c;
    }

    *out_len = n;

    return 0;
}


/* ------------------------------------------------------------ routing */

#define TSB_ALLOW_BODY_METHODS  (TSB_METHOD_POST | TSB_METHOD_PUT           \
                                 | TSB_METHOD_PATCH)

/*
 * The TSB endpoints the front has an opinion on.  The issuing ones are
 * every way the TSB API has to make a certificate: none but
 * /v1/certificate/sign, through the location's policy, is ever passed.
 * /v1/certificate/request and /v1/certificate/synchronous/request are not
 * here: they make a CSR, which no relying party trusts, and the
 * certificate for it still has to come through sign.
 */
static const struct {
    const char  *path;
    size_t       len;
    int          route;
    const char  *why;
} tsb_allow_endpoints[] = {

#define TSB_ALLOW_ENDPOINT(p, r, w)  { p, sizeof(p) - 1, r, w }

    TSB_ALLOW_ENDPOINT("/v1/certificate/sign", TSB_ROUTE_SIGN, NULL),
    TSB_ALLOW_ENDPOINT("/v1/certificate/import/plain", TSB_ROUTE_IMPORT,
                       NULL),
    TSB_ALLOW_ENDPOINT("/v1/certificate/synchronous/sign", TSB_ROUTE_REFUSE,
                       "synchronous signing would skip the approval "
                       "workflow and the location's policy"),
    TSB_ALLOW_ENDPOINT("/v1/certificate/selfsign", TSB_ROUTE_REFUSE,
                       "self-signing issues a certificate the location's "
                       "policy never judged"),
    TSB_ALLOW_ENDPOINT("/v1/certificate/synchronous/selfsign",
                       TSB_ROUTE_REFUSE,
                       "self-signing issues a certificate the location's "
                       "policy never judged"),
    { NULL, 0, 0, NULL }
};


static int tsb_allow_like(const unsigned char *path, size_t len,
    const char *name, size_t nlen);


/*
 * 1 when a Spring MVC application could route path to the endpoint name
 * (written in lowercase):
 * the same but for ASCII case (a router configured case-insensitive) or a
 * ".suffix" on the last segment (suffix pattern matching, the default
 * before Spring 5.3).  The trailing-slash match needs an empty segment,
 * which never gets this far.
 */
static int
tsb_allow_like(const unsigned char *path, size_t len, const char *name,
    size_t nlen)
{
    size_t  i, last;

    if (len < nlen) {
        return 0;
    }

    for (last = len; last > 0 && path[last - 1] != '/'; last--) {
        /* void */
    }

    if (len > nlen) {
        /* only "{name}.anything" with the dot in the last segment */

        if (path[nlen] != '.' || nlen < last) {
            return 0;
        }
    }

    for (i = 0; i < nlen; i++) {
        if (tsb_ascii_lower(path[i]) != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


int
tsb_allow_route(unsigned method, const unsigned char *path, size_t len,
    const char **why)
{
    size_t  i, n;

    *why = NULL;

    for (i = 0; tsb_allow_endpoints[i].path; i++) {

        if (!tsb_allow_like(path, len, tsb_allow_endpoints[i].path,
                            tsb_allow_endpoints[i].len))
        {
            continue;
        }

        /* GET and DELETE never reach these (POST) endpoints' handlers */

        if (!(method & TSB_ALLOW_BODY_METHODS)) {
            break;
        }

        if (tsb_allow_endpoints[i].route == TSB_ROUTE_REFUSE) {
            *why = tsb_allow_endpoints[i].why;
            return TSB_ROUTE_REFUSE;
        }

        if (method != TSB_METHOD_POST) {
            *why = "the gateway's own endpoints take POST only";
            return TSB_ROUTE_REFUSE;
        }

        if (len != tsb_allow_endpoints[i].len
            || memcmp(path, tsb_allow_endpoints[i].path, len) != 0)
        {
            *why = "the path differs from an endpoint the gateway handles "
                   "only by case or a suffix";
            return TSB_ROUTE_REFUSE;
        }

        return tsb_allow_endpoints[i].route;
    }

    n = sizeof("/v1/request/") - 1;

    if ((method == TSB_METHOD_GET || method == TSB_METHOD_DELETE)
        && len > n && memcmp(path, "/v1/request/", n) == 0
        && memchr(path + n, '/', len - n) == NULL)
    {
        return method == TSB_METHOD_GET ? TSB_ROUTE_STATUS : TSB_ROUTE_CANCEL;
    }

    return TSB_ROUTE_PASS;
}


int
tsb_allow_rule_check(unsigned methods, const char *pattern, size_t len,
    char *errbuf, size_t errlen)
{
    size_t       i;
    unsigned     m;
    const char  *why;

    if (!(methods & TSB_ALLOW_BODY_METHODS)) {
        return 0;
    }

    for (i = 0; tsb_allow_endpoints[i].path; i++) {

        if (tsb_allow_endpoints[i].route != TSB_ROUTE_REFUSE) {
            continue;
        }

        if (tsb_allow_match(pattern, len,
                            (const unsigned char *) tsb_allow_endpoints[i].path,
                            tsb_allow_endpoints[i].len))
        {
            snprintf(errbuf, errlen, "it matches %s, which is never "
                     "passed: %s", tsb_allow_endpoints[i].path,
                     tsb_allow_endpoints[i].why);
            return -1;
        }
    }

    /* a literal the router would refuse anyway: "/v1/certificate/Sign" */

    for (m = TSB_METHOD_POST; m <= TSB_METHOD_PATCH; m <<= 1) {
        if ((methods & m)
            && tsb_allow_route(m, (const unsigned char *) pattern, len, &why)
               == TSB_ROUTE_REFUSE)
        {
            snprintf(errbuf, errlen, "it would never be passed: %s", why);
            return -1;
        }
    }

    return 0;
}
