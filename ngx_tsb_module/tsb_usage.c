
/*
 * Copyright (C) ngx_tsb_module authors
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>

#include "tsb_common.h"


typedef struct {
    const char  *name;
    unsigned     bit;
    int          nid;
} tsb_usage_name_t;


static const tsb_usage_name_t  tsb_key_usages[] = {
    { "DIGITAL_SIGNATURE",  TSB_KU_DIGITAL_SIGNATURE,  0 },
    { "CONTENT_COMMITMENT", TSB_KU_CONTENT_COMMITMENT, 0 },
    { "KEY_ENCIPHERMENT",   TSB_KU_KEY_ENCIPHERMENT,   0 },
    { "DATA_ENCIPHERMENT",  TSB_KU_DATA_ENCIPHERMENT,  0 },
    { "KEY_AGREEMENT",      TSB_KU_KEY_AGREEMENT,      0 },
    { "KEY_CERT_SIGN",      TSB_KU_KEY_CERT_SIGN,      0 },
    { "CRL_SIGN",           TSB_KU_CRL_SIGN,           0 },
    { "ENCIPHER_ONLY",      TSB_KU_ENCIPHER_ONLY,      0 },
    { "DECIPHER_ONLY",      TSB_KU_DECIPHER_ONLY,      0 },
    { NULL, 0, 0 }
};


static const tsb_usage_name_t  tsb_ext_key_usages[] = {
    { "ANY_EXTENDED_KEY_USAGE", TSB_EKU_ANY, NID_anyExtendedKeyUsage },
    { "SERVER_AUTH", TSB_EKU_SERVER_AUTH, NID_server_auth },
    { "CLIENT_AUTH", TSB_EKU_CLIENT_AUTH, NID_client_auth },
    { "CODE_SIGNING", TSB_EKU_CODE_SIGNING, NID_code_sign },
    { "EMAIL_PROTECTION", TSB_EKU_EMAIL_PROTECTION, NID_email_protect },
    { "TIME_STAMPING", TSB_EKU_TIME_STAMPING, NID_time_stamp },
    { "OCSP_SIGNING", TSB_EKU_OCSP_SIGNING, NID_OCSP_sign },
    { NULL, 0, 0 }
};


void
tsb_error_set(tsb_error_t *err, int status, const char *reason,
    const char *fmt, ...)
{
    va_list  args;

    if (err == NULL) {
        return;
    }

    err->status = status;
    err->reason = reason;

    va_start(args, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, args);
    va_end(args);
}


void
tsb_buf_free(tsb_buf_t *b)
{
    if (b == NULL) {
        return;
    }

    free(b->data);
    b->data = NULL;
    b->len = 0;
}


/*
 * memset() called through a volatile pointer: the compiler cannot know
 * it is memset(), so it cannot drop the call as a store to memory that
 * is about to be freed, and the wiping runs at memset()'s speed rather
 * than a byte at a time.
 */
static void *(*const volatile tsb_memset)(void *, int, size_t) = memset;


void
tsb_secure_zero(void *p, size_t n)
{
    if (p == NULL || n == 0) {
        return;
    }

    tsb_memset(p, 0, n);
}


static unsigned
tsb_usage_lookup(const tsb_usage_name_t *t, const char *name, size_t len)
{
    for ( /* void */ ; t->name; t++) {
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0) {
            return t->bit;
        }
    }

    return 0;
}


static const char *
tsb_usage_name(const tsb_usage_name_t *t, unsigned bit)
{
    for ( /* void */ ; t->name; t++) {
        if (t->bit == bit) {
            return t->name;
        }
    }

    return NULL;
}


unsigned
tsb_key_usage_bit(const char *name, size_t len)
{
    return tsb_usage_lookup(tsb_key_usages, name, len);
}


unsigned
tsb_ext_key_usage_bit(const char *name, size_t len)
{
    return tsb_usage_lookup(tsb_ext_key_usages, name, len);
}


const char *
tsb_key_usage_name(unsigned bit)
{
    return tsb_usage_name(tsb_key_usages, bit);
}


const char *
tsb_ext_key_usage_name(unsigned bit)
{
    return tsb_usage_name(tsb_ext_key_usages, bit);
}


int
tsb_ext_key_usage_nid(unsigned bit)
{
    const tsb_usage_name_t  *t;

    for (t = tsb_ext_key_usages; t->name; t++) {
        if (t->bit == bit) {
            return t->nid;
        }
    }

    return 0;
}


unsigned
tsb_ext_key_usage_from_nid(int nid)
{
    const tsb_usage_name_t  *t;

    for (t = tsb_ext_key_usages; t->name; t++) {
        if (t->nid == nid) {
            return t->bit;
        }
    }

    return 0;
}


static long
tsb_usage_parse_list(const tsb_usage_name_t *t, const char *s, size_t len,
    const char **bad, size_t *bad_len)
{
    long         mask;
    size_t       i, start;
    unsigned     bit;

    mask = 0;
    i = 0;

    while (i < len) {

        while (i < len && (s[i] == ' ' || s[i] == ',' || s[i] == '\t')) {
            i++;
        }

        start = i;

        while (i < len && s[i] != ' ' && s[i] != ',' && s[i] != '\t') {
            i++;
        }

        if (i == start) {
            break;
        }

        bit = tsb_usage_lookup(t, s + start, i - start);

        if (bit == 0) {
            if (bad) {
                *bad = s + start;
                *bad_len = i - start;
            }

            return -1;
        }

        mask |= bit;
    }

    return mask;
}


long
tsb_key_usage_parse_list(const char *s, size_t len, const char **bad,
    size_t *bad_len)
{
    return tsb_usage_parse_list(tsb_key_usages, s, len, bad, bad_len);
}


long
tsb_ext_key_usage_parse_list(const char *s, size_t len, const char **bad,
    size_t *bad_len)
{
    return tsb_usage_parse_list(tsb_ext_key_usages, s, len, bad, bad_len);
}


/*
 * One element of a keyUsage or extendedKeyUsage array as the vendor's own
 * clients write it: the Go client and the Vault plugin join several names
 * with commas into one string and send "" for none.  Unlike the
 * directive lists above, nothing but a comma separates, and an empty piece
 * ("A,,B", "A,") is refused: the TSB would not read it as a name either.
 */
static long
tsb_usage_element(const tsb_usage_name_t *t, const char *s, size_t len,
    const char **bad, size_t *bad_len)
{
    long       mask;
    size_t     i, start;
    unsigned   bit;

    mask = 0;

    if (len == 0) {
        return 0;
    }

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != ',') {
            continue;
        }

        bit = (i > start) ? tsb_usage_lookup(t, s + start, i - start) : 0;

        if (bit == 0) {
            if (bad) {
                *bad = s + start;
                *bad_len = i - start;
            }

            return -1;
        }

        mask |= bit;
        start = i + 1;
    }

    return mask;
}


long
tsb_key_usage_element(const char *s, size_t len, const char **bad,
    size_t *bad_len)
{
    return tsb_usage_element(tsb_key_usages, s, len, bad, bad_len);
}


long
tsb_ext_key_usage_element(const char *s, size_t len, const char **bad,
    size_t *bad_len)
{
    return tsb_usage_element(tsb_ext_key_usages, s, len, bad, bad_len);
}


/*
 * The length of the well-formed UTF-8 sequence at s, or 0.  Stricter than
 * yajl's own check, which lets overlong forms (C0 80 is a hidden NUL),
 * UTF-16 surrogates and code points above U+10FFFF through.
 */
size_t
tsb_utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char  c, lo, hi;
    size_t         n, i;

    c = s[0];

    if (c < 0x80) {
        return 1;
    }

    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;

        if (c == 0xe0) {
            lo = 0xa0;

        } else if (c == 0xed) {
            hi = 0x9f;
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;

        if (c == 0xf0) {
            lo = 0x90;

        } else if (c == 0xf4) {
            hi = 0x8f;
        }

    } else {
        return 0;
    }

    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    return n;
}
