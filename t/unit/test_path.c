
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Request ids from URI paths (tsb_path.c): one table row per path, what
 * id and format come out, or that the path is refused.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_path.h"
#include "tap.h"


#define UUID  "3f2a6c1e-9b7d-4e21-a0c4-5d8e9f1a2b3c"
#define ID16  "aaaaaaaaaaaaaaaa"
#define ID64  ID16 ID16 ID16 ID16
#define ID65  ID64 "a"

#define REFUSED  -1


typedef struct {
    const char  *name;
    const char  *path;
    size_t       len;          /* 0: strlen(path) */
    int          format;       /* TSB_FORMAT_* or REFUSED */
    const char  *id;
} path_case_t;


static const path_case_t  cases[] = {

    /* accepted */
    { "bare id", "/v1/request/" UUID, 0, TSB_FORMAT_NONE, UUID },
    { "no leading slash", UUID, 0, TSB_FORMAT_NONE, UUID },
    { "one char", "/r/a", 0, TSB_FORMAT_NONE, "a" },
    { "upper case and digits", "/r/ABC-123-xyz", 0, TSB_FORMAT_NONE,
      "ABC-123-xyz" },
    { "only dashes", "/r/---", 0, TSB_FORMAT_NONE, "---" },
    { ".pem", "/r/" UUID ".pem", 0, TSB_FORMAT_PEM, UUID },
    { ".der", "/r/" UUID ".der", 0, TSB_FORMAT_DER, UUID },
    { ".crt", "/r/" UUID ".crt", 0, TSB_FORMAT_DER, UUID },
    { ".cer", "/r/" UUID ".cer", 0, TSB_FORMAT_DER, UUID },
    { "/chain", "/r/" UUID "/chain", 0, TSB_FORMAT_CHAIN, UUID },
    { "64 chars", "/r/" ID64, 0, TSB_FORMAT_NONE, ID64 },
    { "64 chars .pem", "/r/" ID64 ".pem", 0, TSB_FORMAT_PEM, ID64 },
    { "64 chars /chain", "/r/" ID64 "/chain", 0, TSB_FORMAT_CHAIN, ID64 },
    { "double slash before id", "/r//" UUID, 0, TSB_FORMAT_NONE, UUID },
    { "earlier segments are not judged", "/a.b/%zz/.." "/" UUID, 0,
      TSB_FORMAT_NONE, UUID },
    { "id named like a suffix word", "/r/pem", 0, TSB_FORMAT_NONE, "pem" },
    { "id 'chain' without a slash", "chain", 0, TSB_FORMAT_NONE, "chain" },
    { "id 'chain' then /chain", "/r/chain/chain", 0, TSB_FORMAT_CHAIN,
      "chain" },
    { "suffix letters inside the id", "/r/derpem", 0, TSB_FORMAT_NONE,
      "derpem" },
    { "upper-case CHAIN is an id, not the suffix", "/r/" UUID "/CHAIN", 0,
      TSB_FORMAT_NONE, "CHAIN" },

    /* refused: empty and dot segments */
    { "empty path", "", 0, REFUSED, NULL },
    { "root", "/", 0, REFUSED, NULL },
    { "trailing slash", "/r/" UUID "/", 0, REFUSED, NULL },
    { "trailing slash after /chain", "/r/" UUID "/chain/", 0, REFUSED,
      NULL },
    { "dot", "/r/.", 0, REFUSED, NULL },
    { "dot dot", "/r/..", 0, REFUSED, NULL },
    { "dot dot then /chain", "/r/../chain", 0, REFUSED, NULL },
    { "dot then /chain", "/r/./chain", 0, REFUSED, NULL },
    { "only a suffix", "/r/.pem", 0, REFUSED, NULL },
    { "only /chain", "/chain", 0, REFUSED, NULL },
    { "empty segment before /chain", "/r//chain", 0, REFUSED, NULL },
    { "dot dot .pem", "/r/...pem", 0, REFUSED, NULL },

    /* refused: suffix tricks */
    { "two suffixes", "/r/" UUID ".pem.pem", 0, REFUSED, NULL },
    { "der then pem", "/r/" UUID ".der.pem", 0, REFUSED, NULL },
    { "upper-case suffix", "/r/" UUID ".PEM", 0, REFUSED, NULL },
    { "unknown suffix", "/r/" UUID ".json", 0, REFUSED, NULL },
    { "suffix then /chain", "/r/" UUID ".pem/chain", 0, REFUSED, NULL },
    { "chain with a suffix", "/r/" UUID "/chain.pem", 0, REFUSED, NULL },
    { "chain with a der suffix", "/r/chain.der", 0, REFUSED, NULL },
    { "trailing dot", "/r/" UUID ".", 0, REFUSED, NULL },
    { "suffix without dot", "/r/" UUID "pem", 0, TSB_FORMAT_NONE,
      UUID "pem" },

    /* refused: characters outside the id alphabet */
    { "percent (double encoding)", "/r/%2e%2e", 0, REFUSED, NULL },
    { "percent in id", "/r/abc%2Fdef", 0, REFUSED, NULL },
    { "backslash", "/r/..\\..\\etc", 0, REFUSED, NULL },
    { "backslash in id", "/r/ab\\cd", 0, REFUSED, NULL },
    { "space", "/r/ab cd", 0, REFUSED, NULL },
    { "underscore", "/r/ab_cd", 0, REFUSED, NULL },
    { "plus", "/r/ab+cd", 0, REFUSED, NULL },
    { "semicolon parameter", "/r/abc;jsessionid=1", 0, REFUSED, NULL },
    { "query mark", "/r/abc?x=1", 0, REFUSED, NULL },
    { "CR LF", "/r/abc\r\nX-Injected: 1", 0, REFUSED, NULL },
    { "tab", "/r/abc\t", 0, REFUSED, NULL },
    { "high byte", "/r/abc\xc3\xa9", 0, REFUSED, NULL },
    { "overlong UTF-8 slash", "/r/abc\xc0\xaf", 0, REFUSED, NULL },
    { "colon", "/r/c:abc", 0, REFUSED, NULL },
    { "65 chars", "/r/" ID65, 0, REFUSED, NULL },
    { "65 chars .pem", "/r/" ID65 ".pem", 0, REFUSED, NULL },
    { "65 chars /chain", "/r/" ID65 "/chain", 0, REFUSED, NULL },

    /* refused: NUL anywhere in the path */
    { "NUL in id", "/r/abc\0def", 10, REFUSED, NULL },
    { "NUL before suffix", "/r/abc\0.pem", 11, REFUSED, NULL },
    { "NUL at end", "/r/abc\0", 7, REFUSED, NULL },
    { "NUL in an earlier segment", "/r\0x/abc", 8, REFUSED, NULL },

    { NULL, NULL, 0, 0, NULL }
};


static void
test_table(void)
{
    int                   rc, format;
    size_t                len, id_len;
    const path_case_t    *c;
    const unsigned char  *id, *p;

    for (c = cases; c->name; c++) {
        len = c->len ? c->len : strlen(c->path);
        p = (const unsigned char *) c->path;

        id = (const unsigned char *) "stale";
        id_len = 99;
        format = 99;

        rc = tsb_request_id_from_path(p, len, &id, &id_len, &format);

        if (c->format == REFUSED) {
            is_int(rc, -1, "%s: refused", c->name);
            ok(id == NULL && id_len == 0 && format == TSB_FORMAT_NONE,
               "%s: outputs cleared", c->name);
            continue;
        }

        is_int(rc, 0, "%s: accepted", c->name);
        is_int(format, c->format, "%s: format", c->name);
        ok(id != NULL && id_len == strlen(c->id)
           && memcmp(id, c->id, id_len) == 0,
           "%s: id is %s", c->name, c->id);
        ok(id >= p && id + id_len <= p + len,
           "%s: id points into the path", c->name);
    }
}


static void
test_edges(void)
{
    int                   format;
    size_t                id_len;
    const unsigned char  *id;

    /* a NULL path is refused, not dereferenced */
    is_int(tsb_request_id_from_path(NULL, 5, &id, &id_len, &format), -1,
           "NULL path refused");

    /* the length is what counts, not a NUL: "abc.pem" cut after "abc" */
    is_int(tsb_request_id_from_path((const unsigned char *) "/r/abc.pem", 6,
                                    &id, &id_len, &format), 0,
           "length bounds the path");
    is_int(format, TSB_FORMAT_NONE, "cut path has no suffix");
    is_int(id_len, 3, "cut path id length");

    /* and a path that is not NUL-terminated is not read beyond len */
    {
        unsigned char  *buf;

        buf = malloc(7);
        if (buf == NULL) {
            ok(0, "malloc");
            return;
        }

        memcpy(buf, "/r/abcd", 7);
        is_int(tsb_request_id_from_path(buf, 7, &id, &id_len, &format), 0,
               "unterminated path accepted");
        ok(id_len == 4 && memcmp(id, "abcd", 4) == 0,
           "unterminated path id");

        memcpy(buf, "/r/a.pem", 7);
        is_int(tsb_request_id_from_path(buf, 7, &id, &id_len, &format), -1,
               "'a.pe' refused, nothing read past len");
        free(buf);
    }
}


int
main(void)
{
    test_table();
    test_edges();

    return done_testing();
}
