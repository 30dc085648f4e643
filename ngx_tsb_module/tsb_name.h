
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Host name syntax: what a commonName or a DNS subjectAltName must look
 * like before a name pattern may judge it.  Internationalised names are
 * accepted only as "xn--" A-labels whose Punycode (RFC 3492) decodes, and
 * re-encodes, to a label of permitted code points.
 */


#ifndef _TSB_NAME_H_INCLUDED_
#define _TSB_NAME_H_INCLUDED_


#include "tsb_common.h"


#define TSB_NAME_MAX        253        /* octets, without a trailing dot */
#define TSB_NAME_LABEL_MAX  63
#define TSB_PUNY_MAX        63         /* code points of one decoded label */


/*
 * 0 when name is a host name: LDH labels of 1 to 63 octets, 253 octets at
 * most, no label starting or ending with '-', no label with "--" in its
 * third and fourth place unless it is a valid "xn--" A-label, no trailing
 * dot.  With allow_wildcard, a leftmost label of exactly "*" is accepted
 * too.  Otherwise -1 and *why (a static string) says what is wrong.
 */
int tsb_name_host_check(const char *name, size_t len, int allow_wildcard,
    const char **why);

/*
 * One "xn--" label (with its prefix): 0 when it is a valid A-label, -1
 * with *why.
 */
int tsb_name_alabel_check(const char *label, size_t len, const char **why);

/*
 * RFC 3492 decoding of the part after "xn--", strictly: basic code points
 * only in the input, no overflow, at most max code points out.  Returns
 * 0 and *n, or -1.
 */
int tsb_punycode_decode(const char *in, size_t len, uint32_t *out,
    size_t max, size_t *n);

/* RFC 3492 encoding into out (lower case); 0 and *len, or -1 */
int tsb_punycode_encode(const uint32_t *in, size_t n, char *out,
    size_t size, size_t *len);


#endif /* _TSB_NAME_H_INCLUDED_ */
