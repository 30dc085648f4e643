
/*
 * Copyright (C) ngx_tsb_module authors
 */


#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "tsb_etag.h"


int
tsb_status_etag(const unsigned char *json, size_t json_len,
    const unsigned char *der, size_t der_len, unsigned char *out)
{
    int            rc;
    size_t         i;
    uint64_t       n;
    EVP_MD_CTX    *md;
    unsigned char  len[8], digest[EVP_MAX_MD_SIZE];

    static const char  hex[] = "0123456789abcdef";

    /* the length first: no document and certificate split the same bytes */
    n = json_len;

    for (i = 0; i < 8; i++) {
        len[7 - i] = (unsigned char) (n & 0xff);
        n >>= 8;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return -1;
    }

    rc = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
         && EVP_DigestUpdate(md, len, sizeof(len)) == 1
         && (json_len == 0 || EVP_DigestUpdate(md, json, json_len) == 1)
         && (der_len == 0 || EVP_DigestUpdate(md, der, der_len) == 1)
         && EVP_DigestFinal_ex(md, digest, NULL) == 1;

    EVP_MD_CTX_free(md);

    if (!rc) {
        ERR_clear_error();
        return -1;
    }

    *out++ = '"';

    for (i = 0; i < 8; i++) {
        *out++ = hex[digest[i] >> 4];
        *out++ = hex[digest[i] & 0xf];
    }

    memcpy(out, "-json\"", sizeof("-json\"") - 1);

    return 0;
}


int
tsb_etag_match(const unsigned char *value, size_t len,
    const unsigned char *etag, size_t etag_len)
{
    const unsigned char  *p, *last, *start;

    p = value;
    last = value + len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == ',' || *p == '\t')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if (p - start == 1 && *start == '*') {
            return 1;
        }

        /* a weak tag matches too: If-None-Match compares weakly */
        if (p - start > 2 && start[0] == 'W' && start[1] == '/') {
            start += 2;
        }

        if (etag_len && (size_t) (p - start) == etag_len
            && memcmp(start, etag, etag_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
