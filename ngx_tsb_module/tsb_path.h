
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The request id and the wanted certificate format from the last segments
 * of a URI path: /.../{id}, /.../{id}.pem, /.../{id}.der, /.../{id}/chain.
 */


#ifndef _TSB_PATH_H_INCLUDED_
#define _TSB_PATH_H_INCLUDED_


#include <stddef.h>


#define TSB_FORMAT_NONE   0        /* no suffix: the status document */
#define TSB_FORMAT_PEM    1        /* {id}.pem */
#define TSB_FORMAT_DER    2        /* {id}.der, {id}.crt, {id}.cer */
#define TSB_FORMAT_CHAIN  3        /* {id}/chain */

/* as long as the TSB's request ids (UUIDs) can reasonably grow */
#define TSB_PATH_ID_MAX   64


/*
 * path is the decoded URI path (nginx's r->uri), not NUL-terminated.  On
 * success returns 0, points *id into path (*id_len bytes, 1 to
 * TSB_PATH_ID_MAX of [A-Za-z0-9-]) and sets *format to a TSB_FORMAT_*.
 *
 * Exactly one suffix is taken off, case-sensitively; what remains must be
 * an id, so "x.pem.pem", "x.PEM", "x.pem/chain", ".", "..", "%2e", a NUL
 * anywhere in the path and a path ending in '/' are all refused: -1, *id
 * NULL, *id_len 0, *format TSB_FORMAT_NONE.  "x/chain.pem" is refused too
 * rather than read as the id "chain": the chain has one format.  Only the
 * last two segments are looked at; matching the location prefix is the
 * caller's.
 */
int tsb_request_id_from_path(const unsigned char *path, size_t len,
    const unsigned char **id, size_t *id_len, int *format);


#endif /* _TSB_PATH_H_INCLUDED_ */
