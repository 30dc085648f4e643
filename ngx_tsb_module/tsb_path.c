
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Request ids from URI paths.  The id goes into the upstream URI and into
 * logs and headers, so it is checked byte by byte against the alphabet of
 * the TSB's ids instead of being cleaned: anything a path trick could use
 * ('.', '/', '%', '\\', NUL, spaces) is simply not in that alphabet.
 */


#include <string.h>

#include "tsb_path.h"


typedef struct {
    const char  *suffix;
    size_t       len;
    int          format;
} tsb_path_suffix_t;


static const tsb_path_suffix_t  tsb_path_suffixes[] = {
    { ".pem", sizeof(".pem") - 1, TSB_FORMAT_PEM },
    { ".der", sizeof(".der") - 1, TSB_FORMAT_DER },
    { ".crt", sizeof(".crt") - 1, TSB_FORMAT_DER },
    { ".cer", sizeof(".cer") - 1, TSB_FORMAT_DER },
    { NULL, 0, TSB_FORMAT_NONE }
};


static const unsigned char *tsb_path_segment(const unsigned char *start,
    const unsigned char *end);
static int tsb_path_is_chain(const unsigned char *p, size_t len);
static int tsb_path_id_valid(const unsigned char *p, size_t len);


int
tsb_request_id_from_path(const unsigned char *path, size_t len,
    const unsigned char **id, size_t *id_len, int *format)
{
    int                       fmt;
    size_t                    n;
    const unsigned char      *seg, *end;
    const tsb_path_suffix_t  *s;

    *id = NULL;
    *id_len = 0;
    *format = TSB_FORMAT_NONE;

    /* a NUL would end the path early for anything that reads it as C */

    if (path == NULL || len == 0 || memchr(path, '\0', len) != NULL) {
        return -1;
    }

    end = path + len;
    seg = tsb_path_segment(path, end);
    n = (size_t) (end - seg);
    fmt = TSB_FORMAT_NONE;

    if (seg > path && tsb_path_is_chain(seg, n)) {

        /* {id}/chain: the id is the segment before, which must exist */

        end = seg - 1;
        seg = tsb_path_segment(path, end);
        fmt = TSB_FORMAT_CHAIN;

    } else {
        for (s = tsb_path_suffixes; s->suffix; s++) {
            if (n >= s->len && memcmp(end - s->len, s->suffix, s->len) == 0)
            {
                end -= s->len;
                fmt = s->format;
                break;
            }
        }

        if (fmt != TSB_FORMAT_NONE
            && tsb_path_is_chain(seg, (size_t) (end - seg)))
        {
            return -1;
        }
    }

    n = (size_t) (end - seg);

    if (!tsb_path_id_valid(seg, n)) {
        return -1;
    }

    *id = seg;
    *id_len = n;
    *format = fmt;

    return 0;
}


/* the start of the segment that ends at end: after the last '/' before it */

static const unsigned char *
tsb_path_segment(const unsigned char *start, const unsigned char *end)
{
    const unsigned char  *p;

    for (p = end; p > start && p[-1] != '/'; p--) {
        /* void */
    }

    return p;
}


static int
tsb_path_is_chain(const unsigned char *p, size_t len)
{
    return len == sizeof("chain") - 1
           && memcmp(p, "chain", sizeof("chain") - 1) == 0;
}


static int
tsb_path_id_valid(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > TSB_PATH_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}
