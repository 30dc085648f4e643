
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Issued certificates: one certificate in, exact DER out, and the facts
 * the gateway puts into headers and logs.
 */


/* timegm() is a GNU/BSD extension; nginx builds define this anyway */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif


#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tsb_cert.h"


#define TSB_CERT_REASON  "upstream.certificate"


static int
tsb_cert_fail(tsb_error_t *err, const char *detail)
{
    /* never leave an OpenSSL error behind for nginx to trip over */
    ERR_clear_error();
    tsb_error_set(err, 502, TSB_CERT_REASON, "%s", detail);

    return -1;
}


static int
tsb_cert_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


static int
tsb_cert_blank(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!tsb_cert_space(p[i])) {
            return 0;
        }
    }

    return 1;
}


/*
 * PEM: exactly one block labelled CERTIFICATE, no encryption headers, and
 * nothing but whitespace after it.  A chain is refused rather than having
 * its first certificate silently taken for the issued one.
 */
static int
tsb_cert_from_pem(const unsigned char *in, size_t len, tsb_buf_t *der,
    tsb_error_t *err)
{
    int             rc;
    BIO            *bio;
    long            dlen, rest_len;
    char           *name, *header, *rest;
    unsigned char  *data;

    if (len > INT_MAX) {
        return tsb_cert_fail(err, "certificate is too large");
    }

    bio = BIO_new_mem_buf(in, (int) len);
    if (bio == NULL) {
        return tsb_cert_fail(err, "out of memory");
    }

    name = NULL;
    header = NULL;
    data = NULL;
    rc = -1;

    if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
        tsb_cert_fail(err, "certificate PEM cannot be decoded");
        goto done;
    }

    if (strcmp(name, "CERTIFICATE") != 0) {
        tsb_cert_fail(err, "PEM block is not labelled CERTIFICATE");
        goto done;
    }

    if (header[0] != '\0') {
        tsb_cert_fail(err, "certificate PEM has headers");
        goto done;
    }

    /* what PEM_read_bio() left unread */
    rest_len = BIO_get_mem_data(bio, &rest);

    if (rest_len > 0 && !tsb_cert_blank((unsigned char *) rest,
                                        (size_t) rest_len))
    {
        if (memmem(rest, rest_len, "-----BEGIN", 10) != NULL) {
            tsb_cert_fail(err, "more than one PEM block where one "
                               "certificate was expected");

        } else {
            tsb_cert_fail(err, "trailing data after the certificate PEM");
        }

        goto done;
    }

    if (dlen <= 0) {
        tsb_cert_fail(err, "certificate PEM is empty");
        goto done;
    }

    der->data = malloc((size_t) dlen);
    if (der->data == NULL) {
        tsb_cert_fail(err, "out of memory");
        goto done;
    }

    memcpy(der->data, data, (size_t) dlen);
    der->len = (size_t) dlen;
    rc = 0;

done:

    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);

    return rc;
}


static int
tsb_cert_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}


/*
 * Bare base64 DER (what import/plain takes), possibly wrapped in lines.
 * Checked by hand first: EVP_DecodeBlock() alone accepts padding in the
 * middle and does not say how many of the bytes it returns are padding.
 */
static int
tsb_cert_from_base64(const unsigned char *in, size_t len, tsb_buf_t *der,
    tsb_error_t *err)
{
    int             n;
    size_t          i, m, pad;
    unsigned char  *b64;

    if (len > INT_MAX) {
        return tsb_cert_fail(err, "certificate is too large");
    }

    b64 = malloc(len + 1);
    if (b64 == NULL) {
        return tsb_cert_fail(err, "out of memory");
    }

    m = 0;
    pad = 0;

    for (i = 0; i < len; i++) {
        if (tsb_cert_space(in[i])) {
            continue;
        }

        if (in[i] == '=') {
            pad++;

        } else if (!tsb_cert_b64_char(in[i]) || pad) {
            free(b64);
            return tsb_cert_fail(err, "certificate is neither PEM, DER "
                                      "nor base64 DER");
        }

        b64[m++] = in[i];
    }

    if (m == 0 || m % 4 != 0 || pad > 2) {
        free(b64);
        return tsb_cert_fail(err, "certificate base64 is malformed");
    }

    b64[m] = '\0';

    der->data = malloc(m / 4 * 3);
    if (der->data == NULL) {
        free(b64);
        return tsb_cert_fail(err, "out of memory");
    }

    n = EVP_DecodeBlock(der->data, b64, (int) m);
    free(b64);

    if (n < 0 || (size_t) n != m / 4 * 3 || (size_t) n <= pad) {
        tsb_buf_free(der);
        return tsb_cert_fail(err, "certificate base64 is malformed");
    }

    der->len = (size_t) n - pad;

    return 0;
}


static int
tsb_cert_time(const ASN1_TIME *t, time_t *out)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(struct tm));

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }

    *out = timegm(&tm);

    return 0;
}


static int
tsb_cert_facts(X509 *x, tsb_cert_t *cert, tsb_error_t *err)
{
    int               n, idx;
    char             *hex;
    BIGNUM           *bn;
    X509_NAME        *subject;
    unsigned char    *p;
    ASN1_STRING      *s;
    X509_NAME_ENTRY  *e;

    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (bn == NULL) {
        return tsb_cert_fail(err, "certificate serial number is invalid");
    }

    /* upper-case, whole bytes ("0A"); zero is "0" */
    hex = BN_bn2hex(bn);
    BN_free(bn);

    if (hex == NULL) {
        return tsb_cert_fail(err, "out of memory");
    }

    if (strlen(hex) >= sizeof(cert->serial_hex)) {
        OPENSSL_free(hex);
        return tsb_cert_fail(err, "certificate serial number is too long");
    }

    strcpy(cert->serial_hex, hex);
    OPENSSL_free(hex);

    if (tsb_cert_time(X509_get0_notBefore(x), &cert->not_before) != 0
        || tsb_cert_time(X509_get0_notAfter(x), &cert->not_after) != 0)
    {
        return tsb_cert_fail(err, "certificate validity is invalid");
    }

    p = NULL;
    n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &p);

    if (n <= 0) {
        return tsb_cert_fail(err, "certificate public key is invalid");
    }

    if (EVP_Digest(p, (size_t) n, cert->spki_sha256, NULL, EVP_sha256(),
                   NULL)
        != 1)
    {
        OPENSSL_free(p);
        return tsb_cert_fail(err, "SHA-256 failed");
    }

    OPENSSL_free(p);

    subject = X509_get_subject_name(x);
    idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);

    if (idx < 0) {
        return 0;
    }

    e = X509_NAME_get_entry(subject, idx);
    s = X509_NAME_ENTRY_get_data(e);

    /* BMPString and friends come out as UTF-8; bad UTF8String fails */
    p = NULL;
    n = ASN1_STRING_to_UTF8(&p, s);

    if (n < 0) {
        return tsb_cert_fail(err, "certificate subject CN is not text");
    }

    /* a NUL would cut the CN short wherever it is shown */
    if (memchr(p, '\0', (size_t) n) != NULL) {
        OPENSSL_free(p);
        return tsb_cert_fail(err, "certificate subject CN contains NUL");
    }

    cert->subject_cn = malloc((size_t) n + 1);
    if (cert->subject_cn == NULL) {
        OPENSSL_free(p);
        return tsb_cert_fail(err, "out of memory");
    }

    memcpy(cert->subject_cn, p, (size_t) n);
    cert->subject_cn[n] = '\0';
    OPENSSL_free(p);

    return 0;
}


int
tsb_cert_load(const unsigned char *in, size_t len, tsb_cert_t *cert,
    tsb_error_t *err)
{
    X509                 *x;
    size_t                i;
    const unsigned char  *p;

    memset(cert, 0, sizeof(tsb_cert_t));

    if (in == NULL || len == 0) {
        return tsb_cert_fail(err, "certificate is empty");
    }

    if (in[0] == 0x30) {
        cert->der.data = malloc(len);
        if (cert->der.data == NULL) {
            return tsb_cert_fail(err, "out of memory");
        }

        memcpy(cert->der.data, in, len);
        cert->der.len = len;

    } else {
        for (i = 0; i < len && tsb_cert_space(in[i]); i++) {
            /* void */
        }

        if (i == len) {
            return tsb_cert_fail(err, "certificate is empty");
        }

        if (len - i > 11 && memcmp(in + i, "-----BEGIN ", 11) == 0) {
            if (tsb_cert_from_pem(in + i, len - i, &cert->der, err) != 0) {
                return -1;
            }

        } else if (tsb_cert_from_base64(in + i, len - i, &cert->der, err)
                   != 0)
        {
            return -1;
        }
    }

    if (cert->der.len > LONG_MAX) {
        tsb_cert_free(cert);
        return tsb_cert_fail(err, "certificate is too large");
    }

    p = cert->der.data;
    x = d2i_X509(NULL, &p, (long) cert->der.len);

    if (x == NULL) {
        tsb_cert_free(cert);
        return tsb_cert_fail(err, "certificate DER cannot be parsed");
    }

    /* d2i stops at the end of the first object: the rest must be nothing */
    if (p != cert->der.data + cert->der.len) {
        X509_free(x);
        tsb_cert_free(cert);
        return tsb_cert_fail(err, "trailing data after the certificate DER");
    }

    if (tsb_cert_facts(x, cert, err) != 0) {
        X509_free(x);
        tsb_cert_free(cert);
        return -1;
    }

    X509_free(x);

    return 0;
}


void
tsb_cert_free(tsb_cert_t *cert)
{
    if (cert == NULL) {
        return;
    }

    tsb_buf_free(&cert->der);
    free(cert->subject_cn);

    memset(cert, 0, sizeof(tsb_cert_t));
}


#define TSB_PEM_BEGIN  "-----BEGIN CERTIFICATE-----\n"
#define TSB_PEM_END    "-----END CERTIFICATE-----\n"


/*
 * PEM as PEM_write_bio_X509() writes it (64-column base64 lines), but
 * straight into the caller's buffer: this runs for every cached
 * certificate served, so no BIO, no encoder context, no extra copy.
 */

size_t
tsb_cert_pem_len(size_t der_len)
{
    if (der_len == 0 || der_len > (size_t) INT_MAX / 4) {
        return 0;
    }

    return sizeof(TSB_PEM_BEGIN) - 1
           + (der_len + 2) / 3 * 4 + (der_len + 47) / 48
           + sizeof(TSB_PEM_END) - 1;
}


size_t
tsb_cert_pem_write(const unsigned char *der, size_t len, unsigned char *out)
{
    int             n;
    size_t          chunk;
    unsigned char  *p;

    p = out;

    memcpy(p, TSB_PEM_BEGIN, sizeof(TSB_PEM_BEGIN) - 1);
    p += sizeof(TSB_PEM_BEGIN) - 1;

    while (len) {
        chunk = len < 48 ? len : 48;

        /* 64 characters for 48 bytes, and a NUL we overwrite */
        n = EVP_EncodeBlock(p, der, (int) chunk);
        p += n;
        *p++ = '\n';

        der += chunk;
        len -= chunk;
    }

    memcpy(p, TSB_PEM_END, sizeof(TSB_PEM_END) - 1);
    p += sizeof(TSB_PEM_END) - 1;

    return (size_t) (p - out);
}


int
tsb_cert_der_to_pem(const unsigned char *der, size_t len, tsb_buf_t *pem)
{
    size_t  size;

    pem->data = NULL;
    pem->len = 0;

    size = (der == NULL) ? 0 : tsb_cert_pem_len(len);
    if (size == 0) {
        return -1;
    }

    /* EVP_EncodeBlock() ends each line with a NUL: one byte to spare */
    pem->data = malloc(size + 1);
    if (pem->data == NULL) {
        return -1;
    }

    pem->len = tsb_cert_pem_write(der, len, pem->data);
    pem->data[pem->len] = '\0';

    return 0;
}


int
tsb_cert_der_to_base64(const unsigned char *der, size_t len,
    tsb_buf_t *b64)
{
    int     n;
    size_t  size;

    b64->data = NULL;
    b64->len = 0;

    /* EVP_EncodeBlock() counts in int */
    if (der == NULL || len == 0 || len > (size_t) INT_MAX / 4 * 3 - 3) {
        return -1;
    }

    size = (len + 2) / 3 * 4 + 1;

    b64->data = malloc(size);
    if (b64->data == NULL) {
        return -1;
    }

    /* EVP_EncodeBlock() writes no newlines and NUL-terminates */
    n = EVP_EncodeBlock(b64->data, der, (int) len);

    if (n < 0 || (size_t) n + 1 != size) {
        tsb_buf_free(b64);
        return -1;
    }

    b64->len = (size_t) n;

    return 0;
}
