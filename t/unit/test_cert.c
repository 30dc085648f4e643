
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Unit tests of certificate loading and encoding (tsb_cert.c).
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tsb_cert.h"
#include "tap.h"
#include "fixture.h"


/* SHA-256 of the seed certificate's (and the TSB CSR's) DER SPKI */
static const char  *seed_spki_sha256 =
    "c833b142b6133f70a83f15f3ea1ad897c6d2b947998e0922fb4e8bc865385a60";


static void
hex(const unsigned char *p, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }

    out[2 * n] = '\0';
}


/* a copy of a (NUL-terminated) string with a suffix */
static unsigned char *
concat(const char *a, size_t alen, const char *b, size_t *len)
{
    size_t          blen;
    unsigned char  *p;

    blen = strlen(b);
    p = malloc(alen + blen + 1);
    memcpy(p, a, alen);
    memcpy(p + alen, b, blen + 1);
    *len = alen + blen;

    return p;
}


static void
refused(const char *name, const unsigned char *in, size_t len,
    const char *want_detail)
{
    int          rc;
    tsb_cert_t   cert;
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));
    ERR_clear_error();

    rc = tsb_cert_load(in, len, &cert, &err);

    ok(rc == -1 && err.status == 502 && err.reason
       && strcmp(err.reason, "upstream.certificate") == 0
       && cert.der.data == NULL && cert.subject_cn == NULL
       && (want_detail == NULL || strstr(err.detail, want_detail) != NULL),
       "%s: refused", name);
    printf("#   %d %s: %s\n", err.status, err.reason ? err.reason : "-",
           err.detail);
    ok(ERR_peek_error() == 0, "%s: no OpenSSL error left behind", name);

    if (rc == 0) {
        tsb_cert_free(&cert);
    }
}


static void
check_seed_facts(const tsb_cert_t *cert, const char *name)
{
    char  h[65];

    /*
     * The serial is 0: BN_bn2hex() writes zero as "0" (other values as
     * whole bytes, "0A"), which is what the serial header carries.
     */
    is_str(cert->serial_hex, "0", "%s: serial 0 is \"0\"", name);
    is_int(cert->not_before, 1705968000, "%s: notBefore 2024-01-23", name);
    is_int(cert->not_after, 1713744000, "%s: notAfter 2024-04-22", name);
    is_str(cert->subject_cn, "Approver-Intermediate-SUB", "%s: CN", name);
    hex(cert->spki_sha256, 32, h);
    is_str(h, seed_spki_sha256, "%s: SPKI SHA-256", name);
    is_int(cert->der.len, 758, "%s: DER length", name);
    ok(cert->der.data && cert->der.data[0] == 0x30, "%s: DER", name);
}


static int
pem_lines_ok(const char *pem, size_t len)
{
    const char  *p, *nl, *end;

    if (strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) != 0
        || len < 26
        || strcmp(pem + len - 26, "-----END CERTIFICATE-----\n") != 0
        || strlen(pem) != len)
    {
        return 0;
    }

    p = pem + 28;
    end = pem + len - 26;

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL || nl - p > 64 || nl == p) {
            return 0;
        }

        /* every line but the last is full */
        if (nl + 1 < end && nl - p != 64) {
            return 0;
        }

        p = nl + 1;
    }

    return 1;
}


static int
same_as_openssl(const tsb_cert_t *cert, const tsb_buf_t *pem)
{
    int                   eq;
    BIO                  *bio;
    X509                 *x;
    char                 *p;
    long                  n;
    const unsigned char  *d;

    d = cert->der.data;
    x = d2i_X509(NULL, &d, (long) cert->der.len);
    bio = BIO_new(BIO_s_mem());

    eq = x != NULL && bio != NULL && PEM_write_bio_X509(bio, x) == 1
         && (n = BIO_get_mem_data(bio, &p)) > 0 && (size_t) n == pem->len
         && memcmp(p, pem->data, n) == 0;

    BIO_free(bio);
    X509_free(x);

    return eq;
}


static void
test_seed(void)
{
    char            *b64_fixture, *p, *q;
    size_t           len, n;
    tsb_buf_t        pem, b64, pem2;
    tsb_cert_t       cert, cert2;
    tsb_error_t      err;
    unsigned char   *buf, *in;

    buf = read_fixture("seed-certificate.pem", &len);
    ok(buf != NULL, "read the seed certificate");
    if (buf == NULL) {
        return;
    }

    memset(&err, 0, sizeof(err));
    ERR_clear_error();
    ok(tsb_cert_load(buf, len, &cert, &err) == 0, "seed PEM loads %s",
       err.detail);
    ok(ERR_peek_error() == 0, "no OpenSSL error left behind on success");
    check_seed_facts(&cert, "PEM");

    /* DER -> PEM: 64-column lines, as PEM_write_bio_X509() writes */
    ok(tsb_cert_der_to_pem(cert.der.data, cert.der.len, &pem) == 0,
       "DER to PEM");
    ok(pem_lines_ok((char *) pem.data, pem.len),
       "PEM has header, 64-column lines, footer and a final newline");
    ok(same_as_openssl(&cert, &pem), "PEM equals PEM_write_bio_X509()");

    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(pem.data, pem.len, &cert2, &err) == 0,
       "our PEM loads");
    ok(cert2.der.len == cert.der.len
       && memcmp(cert2.der.data, cert.der.data, cert.der.len) == 0,
       "PEM -> DER -> PEM -> DER is the same DER");
    ok(tsb_cert_der_to_pem(cert2.der.data, cert2.der.len, &pem2) == 0
       && pem2.len == pem.len && memcmp(pem2.data, pem.data, pem.len) == 0,
       "and the same PEM");
    tsb_buf_free(&pem2);
    tsb_cert_free(&cert2);

    /* DER in */
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(cert.der.data, cert.der.len, &cert2, &err) == 0,
       "DER loads");
    check_seed_facts(&cert2, "DER");
    tsb_cert_free(&cert2);

    /* base64 out: one line, the fixture's body (itself one line) */
    ok(tsb_cert_der_to_base64(cert.der.data, cert.der.len, &b64) == 0,
       "DER to base64");
    ok(strchr((char *) b64.data, '\n') == NULL
       && strlen((char *) b64.data) == b64.len && b64.len == 1012,
       "base64 is a single NUL-terminated line");

    p = strchr((char *) buf, '\n') + 1;
    q = strstr(p, "\n-----END");
    b64_fixture = malloc(q - p + 1);
    memcpy(b64_fixture, p, q - p);
    b64_fixture[q - p] = '\0';
    is_str((char *) b64.data, b64_fixture, "base64 equals the PEM body");
    free(b64_fixture);

    /* base64 in: one line, wrapped lines, surrounding whitespace */
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(b64.data, b64.len, &cert2, &err) == 0,
       "bare base64 DER loads");
    check_seed_facts(&cert2, "base64");
    tsb_cert_free(&cert2);

    p = strchr((char *) pem.data, '\n') + 1;
    n = strstr(p, "-----END") - p;
    in = malloc(n + 8);
    memcpy(in, " \r\n", 3);
    memcpy(in + 3, p, n);
    memcpy(in + 3 + n, "\r\n \n", 5);
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(in, n + 7, &cert2, &err) == 0,
       "base64 in 64-column lines with whitespace loads %s", err.detail);
    ok(cert2.der.len == cert.der.len
       && memcmp(cert2.der.data, cert.der.data, cert.der.len) == 0,
       "same DER");
    tsb_cert_free(&cert2);
    free(in);

    /* PEM variants */

    in = concat("\n\n  ", 4, (char *) pem.data, &len);
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(in, len, &cert2, &err) == 0,
       "leading whitespace before PEM");
    tsb_cert_free(&cert2);
    free(in);

    in = concat((char *) pem.data, pem.len - 1, "", &len);
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(in, len, &cert2, &err) == 0,
       "PEM without the final newline (as in the status JSON)");
    tsb_cert_free(&cert2);
    free(in);

    in = concat((char *) pem.data, pem.len, "\n\n  \n", &len);
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(in, len, &cert2, &err) == 0,
       "trailing whitespace after PEM");
    tsb_cert_free(&cert2);
    free(in);

    in = malloc(2 * pem.len + 1);
    for (n = 0, len = 0; n < pem.len; n++) {
        if (pem.data[n] == '\n') {
            in[len++] = '\r';
        }

        in[len++] = pem.data[n];
    }
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(in, len, &cert2, &err) == 0, "PEM with CRLF");
    tsb_cert_free(&cert2);
    free(in);

    /* refusals */

    in = concat((char *) pem.data, pem.len, (char *) pem.data, &len);
    refused("two certificates", in, len, "more than one PEM block");
    free(in);

    in = concat((char *) buf, strlen((char *) buf), "garbage\n", &len);
    refused("PEM followed by garbage", in, len, "trailing data");
    free(in);

    in = concat((char *) pem.data, pem.len, "\x00", &len);
    in[len++] = '\0';
    refused("PEM followed by a NUL byte", in, len, "trailing data");
    free(in);

    in = concat("hello ", 6, (char *) pem.data, &len);
    refused("text before PEM", in, len, NULL);
    free(in);

    in = concat((char *) cert.der.data, cert.der.len, "", &len);
    in = realloc(in, len + 1);
    in[len++] = 0x00;
    refused("DER with a trailing byte", in, len, "trailing data");
    refused("DER cut short", in, cert.der.len - 1, "cannot be parsed");
    in[0] = 0x31;
    refused("not DER, not base64", in, cert.der.len, NULL);
    free(in);

    in = concat((char *) b64.data, b64.len, "\nAAAA", &len);
    refused("base64 going on after its padding", in, len, NULL);
    free(in);

    in = concat((char *) cert.der.data, cert.der.len, "", &len);
    in = realloc(in, len + 3);
    memcpy(in + len, "\x05\x00\x00", 3);
    ok(tsb_cert_der_to_base64(in, len + 3, &pem2) == 0, "base64 of DER+3");
    refused("base64 of DER with trailing bytes", pem2.data, pem2.len,
            "trailing data");
    tsb_buf_free(&pem2);
    free(in);

    in = concat((char *) b64.data, 12, "", &len);
    in[8] = '=';
    refused("base64 with padding in the middle", in, len, NULL);
    free(in);

    in = concat((char *) b64.data, 12, "*", &len);
    refused("base64 with a stray character", in, len, NULL);
    free(in);

    in = concat((char *) b64.data, b64.len - 1, "", &len);
    refused("base64 cut short", in, len, NULL);
    free(in);

    in = concat("", 0, "-----BEGIN CERTIFICATE-----\nMIIC\n"
                "-----END CERTIFICATE-----\n", &len);
    refused("PEM with a truncated body", in, len, NULL);
    free(in);

    p = "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n"
        "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n";
    in = concat(p, strlen(p), (char *) pem.data + 28, &len);
    refused("PEM with encryption headers", in, len, "headers");
    free(in);

    refused("empty", (unsigned char *) "", 0, "empty");
    refused("NULL", NULL, 0, "empty");
    refused("whitespace", (unsigned char *) " \n\t ", 4, "empty");
    refused("garbage", (unsigned char *) "hello world", 11, NULL);
    refused("JSON", (unsigned char *) "{\"certificate\": 1}", 18, NULL);

    tsb_buf_free(&b64);
    tsb_buf_free(&pem);
    tsb_cert_free(&cert);
    ok(cert.der.data == NULL && cert.subject_cn == NULL,
       "free clears the certificate");
    free(buf);

    ok(tsb_cert_der_to_pem(NULL, 0, &pem) == -1 && pem.data == NULL,
       "no PEM of nothing");
    ok(tsb_cert_der_to_base64((unsigned char *) "", 0, &b64) == -1
       && b64.data == NULL, "no base64 of nothing");
    ok(tsb_cert_der_to_base64((unsigned char *) "\x30\x00\xff", 3, &b64)
       == 0 && strcmp((char *) b64.data, "MAD/") == 0 && b64.len == 4,
       "base64 of three bytes");
    tsb_buf_free(&b64);
    ok(tsb_cert_der_to_base64((unsigned char *) "\x30\x00", 2, &b64) == 0
       && strcmp((char *) b64.data, "MAA=") == 0 && b64.len == 4,
       "base64 with padding");
    tsb_buf_free(&b64);
}


static void
test_other_labels(void)
{
    size_t          len, n;
    tsb_cert_t      cert;
    tsb_error_t     err;
    unsigned char  *buf, *p;

    buf = read_fixture("tsb-csr-new-label.pem", &len);
    ok(buf != NULL, "read the TSB CSR");
    if (buf == NULL) {
        return;
    }

    refused("a CSR is not a certificate", buf, len, "CERTIFICATE");
    free(buf);

    /* the status fixture's result, with its "\n" escapes decoded */
    buf = read_fixture("tsb-status-executed.json", &len);
    ok(buf != NULL, "read the status fixture");
    if (buf == NULL) {
        return;
    }

    p = (unsigned char *) strstr((char *) buf, "-----BEGIN");
    for (n = 0; p[n] != '"'; n++) {
        /* void */
    }

    p[n] = '\0';
    p = (unsigned char *) strdup((char *) p);

    for (n = 0, len = 0; p[n]; n++) {
        if (p[n] == '\\' && p[n + 1] == 'n') {
            p[len++] = '\n';
            n++;
            continue;
        }

        p[len++] = p[n];
    }

    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(p, len, &cert, &err) == 0,
       "status result loads (no final newline) %s", err.detail);
    check_seed_facts(&cert, "status result");
    tsb_cert_free(&cert);
    free(p);
    free(buf);
}


/*
 * A certificate made here: a 20-byte serial, a BMPString CN, a notAfter in
 * GeneralizedTime, and an EC key whose SPKI hash we compute ourselves.
 */
static void
test_generated(void)
{
    X509            *x;
    BIGNUM          *bn;
    EVP_PKEY        *pk;
    X509_NAME       *name;
    tsb_cert_t       cert;
    tsb_error_t      err;
    unsigned char    bmp[] = { 0x00, 'Z', 0x00, 0xfc, 0x00, 'r', 0x00, 'i',
                               0x00, 'c', 0x00, 'h' };
    unsigned char   *der, *spki, md[32];
    int              len, n;
    unsigned int     mdlen;

    pk = EVP_EC_gen("P-256");
    x = X509_new();
    bn = NULL;
    BN_hex2bn(&bn, "0A1B2C3D4E5F60718293A4B5C6D7E8F901020304");

    ok(pk && x && bn
       && X509_set_version(x, 2)
       && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))
       && ASN1_TIME_set_string(X509_getm_notBefore(x), "240101120000Z")
       && ASN1_TIME_set_string(X509_getm_notAfter(x), "21000101000000Z")
       && X509_set_pubkey(x, pk), "make a certificate");

    name = X509_get_subject_name(x);
    ok(X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC,
                                  (unsigned char *) "Org", -1, -1, 0)
       && X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_BMPSTRING,
                                     bmp, sizeof(bmp), -1, 0)
       && X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                     (unsigned char *) "second", -1, -1, 0)
       && X509_set_issuer_name(x, name)
       && X509_sign(x, pk, EVP_sha256()) > 0, "sign it");

    der = NULL;
    len = i2d_X509(x, &der);

    memset(&err, 0, sizeof(err));
    ok(len > 0 && tsb_cert_load(der, len, &cert, &err) == 0,
       "generated certificate loads %s", err.detail);
    is_str(cert.serial_hex, "0A1B2C3D4E5F60718293A4B5C6D7E8F901020304",
           "20-byte serial, upper-case hex");
    is_int(cert.not_before, 1704110400, "UTCTime notBefore");
    is_int(cert.not_after, 4102444800LL, "GeneralizedTime notAfter 2100");
    is_str(cert.subject_cn, "Z\xc3\xbcrich", "BMPString CN as UTF-8, first");

    spki = NULL;
    n = i2d_PUBKEY(pk, &spki);
    ok(n > 0 && EVP_Digest(spki, n, md, &mdlen, EVP_sha256(), NULL)
       && memcmp(md, cert.spki_sha256, 32) == 0,
       "SPKI SHA-256 matches the key");
    OPENSSL_free(spki);
    tsb_cert_free(&cert);
    OPENSSL_free(der);

    /* no CN at all */
    name = X509_NAME_new();
    X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC,
                               (unsigned char *) "Org", -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_NAME_free(name);
    X509_sign(x, pk, EVP_sha256());

    der = NULL;
    len = i2d_X509(x, &der);
    memset(&err, 0, sizeof(err));
    ok(tsb_cert_load(der, len, &cert, &err) == 0 && cert.subject_cn == NULL,
       "no CN: subject_cn NULL");
    tsb_cert_free(&cert);
    OPENSSL_free(der);

    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pk);
}


/* every length, against OpenSSL's own PEM writer */
static void
test_pem_lengths(void)
{
    int             bad;
    BIO            *bio;
    char           *p;
    long            n;
    size_t          len;
    tsb_buf_t       pem;
    unsigned char   der[300];

    bad = 0;

    for (len = 0; len < sizeof(der); len++) {
        der[len] = (unsigned char) (len * 37 + 11);
    }

    for (len = 1; len <= sizeof(der); len++) {
        bio = BIO_new(BIO_s_mem());

        if (bio == NULL
            || PEM_write_bio(bio, "CERTIFICATE", "", der, (long) len) <= 0
            || tsb_cert_der_to_pem(der, len, &pem) != 0)
        {
            bad++;
            BIO_free(bio);
            continue;
        }

        n = BIO_get_mem_data(bio, &p);

        if ((size_t) n != pem.len || memcmp(p, pem.data, pem.len) != 0
            || pem.len != tsb_cert_pem_len(len) || pem.data[pem.len] != '\0')
        {
            bad++;
        }

        tsb_buf_free(&pem);
        BIO_free(bio);
    }

    is_int(bad, 0, "PEM of 1..300 bytes equals PEM_write_bio(), length "
           "predicted");

    ok(tsb_cert_der_to_pem(der, 0, &pem) == -1, "no PEM of nothing");
}


int
main(void)
{
    test_seed();
    test_other_labels();
    test_generated();

    test_pem_lengths();

    return done_testing();
}
