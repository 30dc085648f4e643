
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB front's allow-list and path checks.  See tsb_allow.h.
 */


#include <stdio.h>
#include <string.h>

#include "tsb_allow.h"


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


int
tsb_allow_query_check(const unsigned char *query, size_t len,
    const char **why)
{
    size_t  i;

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
