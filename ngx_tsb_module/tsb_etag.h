
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Entity tags of the status document, and If-None-Match.  A ?wait= status
 * request that names the tag it has is answered as soon as the request's
 * status document is different from it: the approvals appear live.
 */


#ifndef _TSB_ETAG_H_INCLUDED_
#define _TSB_ETAG_H_INCLUDED_


#include <stddef.h>


/* "<16 hex digits>-json", with the quotes */
#define TSB_STATUS_ETAG_LEN  23


/*
 * The strong entity tag of the status document the gateway serves for a
 * request: the status JSON as kept (its "result" null) and, when it was
 * issued, the certificate's DER, which the document carries as PEM.  The
 * document is rebuilt from these two byte for byte, so equal tags mean
 * equal documents; executionTime is in the JSON but only changes with the
 * status.  Writes TSB_STATUS_ETAG_LEN bytes to out (no NUL) and returns
 * 0, or -1 if OpenSSL failed (out of memory).
 */
int tsb_status_etag(const unsigned char *json, size_t json_len,
    const unsigned char *der, size_t der_len, unsigned char *out);

/*
 * Does the If-None-Match field value (a comma-separated list of entity
 * tags, or "*") match etag?  As RFC 9110 says for If-None-Match, weakly: a
 * W/ tag matches its strong twin.  1 or 0; an empty value or a list with
 * nothing that looks like a tag matches nothing.
 */
int tsb_etag_match(const unsigned char *value, size_t len,
    const unsigned char *etag, size_t etag_len);


#endif /* _TSB_ETAG_H_INCLUDED_ */
