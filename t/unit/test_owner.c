
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The owner tag of an accepted request's record (tsb_owner.c): hashes,
 * wrapping and splitting, and records from before owners were kept.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "tsb_owner.h"
#include "tap.h"


int
main(void)
{
    size_t                elen;
    tsb_buf_t             rec;
    unsigned char         a[TSB_OWNER_HASH_LEN], b[TSB_OWNER_HASH_LEN];
    unsigned char         plain[SHA256_DIGEST_LENGTH];
    const unsigned char  *e, *h;

    static const unsigned char  expect[] = "TX\x01\x00 some expectation";

    ok(tsb_owner_hash((const unsigned char *) "alice", 5, a) == 0,
       "hash of alice");
    ok(tsb_owner_hash((const unsigned char *) "alice", 5, b) == 0
       && tsb_owner_equal(a, b), "the same identity, the same hash");
    ok(tsb_owner_hash((const unsigned char *) "Alice", 5, b) == 0
       && !tsb_owner_equal(a, b), "case matters: Alice is not alice");
    ok(tsb_owner_hash((const unsigned char *) "alice\0", 6, b) == 0
       && !tsb_owner_equal(a, b), "a trailing NUL is another identity");

    SHA256((const unsigned char *) "alice", 5, plain);
    ok(memcmp(a, plain, sizeof(plain)) != 0,
       "not the bare SHA-256 of the name (domain label)");

    ok(tsb_owner_hash(NULL, 0, b) == 0 && !tsb_owner_equal(a, b),
       "the empty identity hashes too, differently");

    /* wrapped and split again */

    ok(tsb_owner_wrap(a, expect, sizeof(expect) - 1, &rec) == 0,
       "wrap with an owner");
    is_int(rec.len, TSB_OWNER_TAG_LEN + sizeof(expect) - 1, "tag + blob");
    ok(tsb_owner_split(rec.data, rec.len, &e, &elen, &h) == 0,
       "split it");
    ok(h != NULL && tsb_owner_equal(h, a), "... the owner comes back");
    ok(elen == sizeof(expect) - 1 && memcmp(e, expect, elen) == 0,
       "... and the expectation, unchanged");
    tsb_buf_free(&rec);

    ok(tsb_owner_wrap(NULL, expect, sizeof(expect) - 1, &rec) == 0
       && rec.len == sizeof(expect) - 1
       && memcmp(rec.data, expect, rec.len) == 0,
       "wrap without an owner: the blob alone");
    ok(tsb_owner_split(rec.data, rec.len, &e, &elen, &h) == 0 && h == NULL
       && elen == rec.len && e == rec.data,
       "a record from before owners: no owner, all expectation");
    tsb_buf_free(&rec);

    ok(tsb_owner_wrap(a, NULL, 0, &rec) == 0
       && rec.len == TSB_OWNER_TAG_LEN, "an owner and no expectation");
    ok(tsb_owner_split(rec.data, rec.len, &e, &elen, &h) == 0 && h != NULL
       && elen == 0, "... splits into the owner alone");

    /* truncated tags are refused, never read beyond the record */

    ok(tsb_owner_split(rec.data, TSB_OWNER_TAG_LEN - 1, &e, &elen, &h)
       == -1 && h == NULL && elen == 0, "a truncated tag: refused");
    ok(tsb_owner_split((const unsigned char *) "TO", 2, &e, &elen, &h)
       == -1, "\"TO\" alone: refused");
    tsb_buf_free(&rec);

    ok(tsb_owner_split((const unsigned char *) "T", 1, &e, &elen, &h) == 0
       && h == NULL && elen == 1, "one byte: no tag");
    ok(tsb_owner_split(NULL, 0, &e, &elen, &h) == 0 && h == NULL
       && elen == 0, "empty: no tag, no expectation");

    return done_testing();
}
