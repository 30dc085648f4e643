
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Who created a request: the identity a tsb_sign location names with
 * tsb_owner, kept as a SHA-256 hash beside what the location accepted.
 *
 * The record of an accepted request (in the cache zone and in tsb_store's
 * .accepted file) is the expectation blob of tsb_expect_build(), which
 * starts with "TX", optionally preceded by an owner tag: "TO" and the
 * 32-byte hash.  No nginx types here.
 */


#ifndef _TSB_OWNER_H_INCLUDED_
#define _TSB_OWNER_H_INCLUDED_


#include <stddef.h>

#include "tsb_common.h"


#define TSB_OWNER_HASH_LEN  32
#define TSB_OWNER_TAG_LEN   (2 + TSB_OWNER_HASH_LEN)


/* SHA-256 of a domain label and the identity; 0, or -1 on failure */
int tsb_owner_hash(const unsigned char *identity, size_t len,
    unsigned char hash[TSB_OWNER_HASH_LEN]);

/* out = the owner tag (hash NULL: none) and the expectation; 0 or -1 */
int tsb_owner_wrap(const unsigned char hash[TSB_OWNER_HASH_LEN],
    const unsigned char *expect, size_t len, tsb_buf_t *out);

/*
 * Splits a record into its expectation (pointing into rec) and owner hash
 * (NULL when the record has no tag).  Returns -1 for a truncated tag.
 */
int tsb_owner_split(const unsigned char *rec, size_t len,
    const unsigned char **expect, size_t *expect_len,
    const unsigned char **hash);

/* 1 when the two hashes are equal, in constant time */
int tsb_owner_equal(const unsigned char *a, const unsigned char *b);


#endif /* _TSB_OWNER_H_INCLUDED_ */
