
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The owner tag of an accepted request's record (see tsb_owner.h).
 *
 * The hash is not keyed: the gateway must compare identities across
 * workers, reloads and restarts (tsb_store keeps the records), and a key
 * would have to be configured and kept as long as the records.  It keeps
 * client names out of the zone and the store directory, not secret from
 * someone who can read the store and guess names: it is an identity tag,
 * not a credential.  The domain label keeps it from equalling a hash of
 * the same bytes made for anything else.
 */


#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "tsb_owner.h"


static const char  tsb_owner_label[] = "ngx_tsb_module owner v1";


int
tsb_owner_hash(const unsigned char *identity, size_t len,
    unsigned char hash[TSB_OWNER_HASH_LEN])
{
    int           rc;
    unsigned int  n;
    EVP_MD_CTX   *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return -1;
    }

    /* the label with its NUL: no identity can run into it */
    rc = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
         && EVP_DigestUpdate(md, tsb_owner_label, sizeof(tsb_owner_label))
            == 1
         && (len == 0 || EVP_DigestUpdate(md, identity, len) == 1)
         && EVP_DigestFinal_ex(md, hash, &n) == 1
         && n == TSB_OWNER_HASH_LEN;

    EVP_MD_CTX_free(md);

    return rc ? 0 : -1;
}


int
tsb_owner_wrap(const unsigned char hash[TSB_OWNER_HASH_LEN],
    const unsigned char *expect, size_t len, tsb_buf_t *out)
{
    size_t          tag;
    unsigned char  *p;

    out->data = NULL;
    out->len = 0;

    tag = hash ? TSB_OWNER_TAG_LEN : 0;

    if (len > (size_t) -1 - tag) {
        return -1;
    }

    p = malloc(tag + len + 1);
    if (p == NULL) {
        return -1;
    }

    if (hash) {
        p[0] = 'T';
        p[1] = 'O';
        memcpy(p + 2, hash, TSB_OWNER_HASH_LEN);
    }

    if (len) {
        memcpy(p + tag, expect, len);
    }

    out->data = p;
    out->len = tag + len;

    return 0;
}


int
tsb_owner_split(const unsigned char *rec, size_t len,
    const unsigned char **expect, size_t *expect_len,
    const unsigned char **hash)
{
    *hash = NULL;
    *expect = rec;
    *expect_len = len;

    if (len < 2 || rec[0] != 'T' || rec[1] != 'O') {
        /* no tag: an expectation alone ("TX..."), as before owners */
        return 0;
    }

    if (len < TSB_OWNER_TAG_LEN) {
        *expect_len = 0;
        return -1;
    }

    *hash = rec + 2;
    *expect = rec + TSB_OWNER_TAG_LEN;
    *expect_len = len - TSB_OWNER_TAG_LEN;

    return 0;
}


int
tsb_owner_equal(const unsigned char *a, const unsigned char *b)
{
    return CRYPTO_memcmp(a, b, TSB_OWNER_HASH_LEN) == 0;
}
