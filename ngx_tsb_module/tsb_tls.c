
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * TLS material and secrets for the upstream client, read at configuration
 * time with OpenSSL.  See tsb_tls.h.
 */


#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tsb_tls.h"


#define TSB_TLS_REASON  "config.tls"

/* a password file holds a few short lines */
#define TSB_TLS_PASSWORDS_MAX  16


typedef struct {
    char    *lines[TSB_TLS_PASSWORDS_MAX];
    size_t   n;
    size_t   next;
} tsb_tls_passwords_t;


static int tsb_tls_fail(tsb_error_t *err, const char *fmt, const char *arg);
static int tsb_tls_read_file(const char *path, tsb_buf_t *out,
    size_t max, tsb_error_t *err);
static int tsb_tls_passwords_load(const char *path, tsb_tls_passwords_t *pw,
    tsb_error_t *err);
static void tsb_tls_passwords_free(tsb_tls_passwords_t *pw);
static int tsb_tls_password_cb(char *buf, int size, int rwflag,
    void *userdata);
static int tsb_tls_bio_out(BIO *bio, tsb_buf_t *out);
static int tsb_tls_pin_list_valid(const char *s, size_t len);


static int
tsb_tls_fail(tsb_error_t *err, const char *fmt, const char *arg)
{
    unsigned long  e;
    char           why[160];

    /* OpenSSL's reason helps an operator; it never holds key material */
    e = ERR_peek_last_error();
    why[0] = '\0';

    if (e) {
        ERR_error_string_n(e, why, sizeof(why));
    }

    ERR_clear_error();

    if (why[0]) {
        char  what[TSB_DETAIL_MAX];

        snprintf(what, sizeof(what), fmt, arg);
        tsb_error_set(err, 500, TSB_TLS_REASON, "%s (%s)", what, why);

    } else {
        tsb_error_set(err, 500, TSB_TLS_REASON, fmt, arg);
    }

    return -1;
}


static int
tsb_tls_read_file(const char *path, tsb_buf_t *out, size_t max,
    tsb_error_t *err)
{
    FILE    *fp;
    size_t   n, cap;
    unsigned char  *p;

    out->data = NULL;
    out->len = 0;

    fp = fopen(path, "rb");
    if (fp == NULL) {
        tsb_error_set(err, 500, TSB_TLS_REASON, "cannot open \"%s\": %s",
                      path, strerror(errno));
        return -1;
    }

    cap = 4096;
    p = malloc(cap + 1);
    if (p == NULL) {
        fclose(fp);
        tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
        return -1;
    }

    for ( ;; ) {
        n = fread(p + out->len, 1, cap - out->len, fp);
        out->len += n;

        if (out->len < cap) {
            break;
        }

        if (cap >= max) {
            tsb_secure_zero(p, out->len);
            free(p);
            fclose(fp);
            out->len = 0;
            tsb_error_set(err, 500, TSB_TLS_REASON,
                          "\"%s\" is larger than %zu bytes", path, max);
            return -1;
        }

        cap *= 2;

        {
            /* grow by hand: realloc() would leave a copy of a secret */
            unsigned char  *q = malloc(cap + 1);

            if (q == NULL) {
                tsb_secure_zero(p, out->len);
                free(p);
                fclose(fp);
                out->len = 0;
                tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
                return -1;
            }

            memcpy(q, p, out->len);
            tsb_secure_zero(p, out->len);
            free(p);
            p = q;
        }
    }

    if (ferror(fp)) {
        tsb_secure_zero(p, out->len);
        free(p);
        fclose(fp);
        out->len = 0;
        tsb_error_set(err, 500, TSB_TLS_REASON, "cannot read \"%s\"", path);
        return -1;
    }

    fclose(fp);

    p[out->len] = '\0';
    out->data = p;

    return 0;
}


static int
tsb_tls_bio_out(BIO *bio, tsb_buf_t *out)
{
    char  *p;
    long   n;

    n = BIO_get_mem_data(bio, &p);
    if (n <= 0) {
        return -1;
    }

    out->data = malloc((size_t) n + 1);
    if (out->data == NULL) {
        return -1;
    }

    memcpy(out->data, p, (size_t) n);
    out->data[n] = '\0';
    out->len = (size_t) n;

    return 0;
}


int
tsb_tls_load_ca_file(const char *path, tsb_buf_t *pem, size_t *n,
    tsb_error_t *err)
{
    BIO        *in, *out;
    X509       *x;
    tsb_buf_t   raw;
    int         rc;

    pem->data = NULL;
    pem->len = 0;
    *n = 0;

    if (tsb_tls_read_file(path, &raw, 16 * 1024 * 1024, err) != 0) {
        return -1;
    }

    in = BIO_new_mem_buf(raw.data, (int) raw.len);
    out = BIO_new(BIO_s_mem());
    rc = -1;

    if (in == NULL || out == NULL) {
        tsb_tls_fail(err, "out of memory reading \"%s\"", path);
        goto done;
    }

    for ( ;; ) {
        x = PEM_read_bio_X509(in, NULL, NULL, NULL);

        if (x == NULL) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE
                && *n > 0)
            {
                /* the end of the file, after at least one certificate */
                ERR_clear_error();
                break;
            }

            if (*n == 0) {
                tsb_tls_fail(err, "\"%s\" holds no PEM certificate", path);

            } else {
                tsb_tls_fail(err, "a certificate in \"%s\" cannot be read",
                             path);
            }

            goto done;
        }

        if (PEM_write_bio_X509(out, x) != 1) {
            X509_free(x);
            tsb_tls_fail(err, "out of memory reading \"%s\"", path);
            goto done;
        }

        X509_free(x);

        if (++*n > TSB_TLS_MAX_CA) {
            tsb_error_set(err, 500, TSB_TLS_REASON,
                          "\"%s\" holds more than %d certificates", path,
                          TSB_TLS_MAX_CA);
            goto done;
        }
    }

    if (tsb_tls_bio_out(out, pem) != 0) {
        tsb_tls_fail(err, "out of memory reading \"%s\"", path);
        goto done;
    }

    rc = 0;

done:

    BIO_free(in);
    BIO_free(out);
    tsb_buf_free(&raw);

    if (rc != 0) {
        *n = 0;
    }

    return rc;
}


static int
tsb_tls_passwords_load(const char *path, tsb_tls_passwords_t *pw,
    tsb_error_t *err)
{
    unsigned char     *p, *end, *line;
    size_t      len;
    tsb_buf_t   raw;

    memset(pw, 0, sizeof(tsb_tls_passwords_t));

    if (tsb_tls_read_file(path, &raw, TSB_TLS_SECRET_MAX, err) != 0) {
        return -1;
    }

    p = raw.data;
    end = raw.data + raw.len;

    while (p < end && pw->n < TSB_TLS_PASSWORDS_MAX) {
        line = p;

        while (p < end && *p != '\n') {
            p++;
        }

        len = p - line;

        if (len && line[len - 1] == '\r') {
            len--;
        }

        if (p < end) {
            p++;
        }

        /* as nginx's ssl_password_file: one password a line */
        pw->lines[pw->n] = malloc(len + 1);
        if (pw->lines[pw->n] == NULL) {
            tsb_secure_zero(raw.data, raw.len);
            tsb_buf_free(&raw);
            tsb_tls_passwords_free(pw);
            tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
            return -1;
        }

        memcpy(pw->lines[pw->n], line, len);
        pw->lines[pw->n][len] = '\0';
        pw->n++;
    }

    tsb_secure_zero(raw.data, raw.len);
    tsb_buf_free(&raw);

    if (pw->n == 0) {
        tsb_error_set(err, 500, TSB_TLS_REASON, "\"%s\" holds no password",
                      path);
        return -1;
    }

    return 0;
}


static void
tsb_tls_passwords_free(tsb_tls_passwords_t *pw)
{
    size_t  i;

    for (i = 0; i < pw->n; i++) {
        tsb_secure_zero(pw->lines[i], strlen(pw->lines[i]));
        free(pw->lines[i]);
    }

    pw->n = 0;
}


static int
tsb_tls_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    size_t                len;
    const char           *s;
    tsb_tls_passwords_t  *pw = userdata;

    (void) rwflag;

    /* no password file: an encrypted key cannot be used */
    if (pw == NULL || pw->next == 0 || pw->next > pw->n) {
        return -1;
    }

    s = pw->lines[pw->next - 1];
    len = strlen(s);

    if (size <= 0 || len > (size_t) size) {
        return -1;
    }

    memcpy(buf, s, len);

    return (int) len;
}


int
tsb_tls_load_client(const char *cert_path, const char *key_path,
    const char *password_file, tsb_buf_t *cert_pem, tsb_buf_t *key_pem,
    tsb_error_t *err)
{
    int                   rc;
    BIO                  *in, *out;
    X509                 *x;
    size_t                ncerts;
    EVP_PKEY             *pkey;
    tsb_buf_t             raw;
    tsb_tls_passwords_t   pw, *pwp;

    cert_pem->data = NULL;
    cert_pem->len = 0;
    key_pem->data = NULL;
    key_pem->len = 0;

    memset(&pw, 0, sizeof(tsb_tls_passwords_t));
    pwp = NULL;
    in = NULL;
    out = NULL;
    x = NULL;
    pkey = NULL;
    rc = -1;

    /* the certificate chain: leaf first, as a TLS client sends it */

    if (tsb_tls_load_ca_file(cert_path, cert_pem, &ncerts, err) != 0) {
        return -1;
    }

    in = BIO_new_mem_buf(cert_pem->data, (int) cert_pem->len);
    if (in == NULL) {
        tsb_tls_fail(err, "out of memory reading \"%s\"", cert_path);
        goto done;
    }

    x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    BIO_free(in);
    in = NULL;

    if (x == NULL) {
        tsb_tls_fail(err, "\"%s\" holds no certificate", cert_path);
        goto done;
    }

    /* the key, tried with each password in turn when it is encrypted */

    if (password_file) {
        if (tsb_tls_passwords_load(password_file, &pw, err) != 0) {
            goto done;
        }

        pwp = &pw;
    }

    if (tsb_tls_read_file(key_path, &raw, 1024 * 1024, err) != 0) {
        goto done;
    }

    for (pw.next = 1; ; pw.next++) {
        in = BIO_new_mem_buf(raw.data, (int) raw.len);
        if (in == NULL) {
            break;
        }

        pkey = PEM_read_bio_PrivateKey(in, NULL, tsb_tls_password_cb, pwp);
        BIO_free(in);
        in = NULL;

        if (pkey || pwp == NULL || pw.next >= pw.n) {
            break;
        }

        ERR_clear_error();
    }

    tsb_secure_zero(raw.data, raw.len);
    tsb_buf_free(&raw);

    if (pkey == NULL) {
        tsb_tls_fail(err, password_file
                     ? "cannot read the private key \"%s\" (not PEM, or no "
                       "password in the password file fits)"
                     : "cannot read the private key \"%s\" (not PEM, or "
                       "encrypted: set tsb_ssl_password_file)",
                     key_path);
        goto done;
    }

    if (X509_check_private_key(x, pkey) != 1) {
        tsb_tls_fail(err, "the private key \"%s\" does not belong to the "
                     "certificate", key_path);
        goto done;
    }

    /* unencrypted PKCS#8 in memory: curl gets it without a password */

    out = BIO_new(BIO_s_secmem());
    if (out == NULL) {
        out = BIO_new(BIO_s_mem());
    }

    if (out == NULL
        || PEM_write_bio_PKCS8PrivateKey(out, pkey, NULL, NULL, 0, NULL,
                                         NULL) != 1
        || tsb_tls_bio_out(out, key_pem) != 0)
    {
        tsb_tls_fail(err, "cannot re-encode the private key \"%s\"",
                     key_path);
        goto done;
    }

    rc = 0;

done:

    if (out) {
        /* BIO_s_mem frees its buffer without wiping it */
        char  *p;
        long   n = BIO_get_mem_data(out, &p);

        if (n > 0) {
            tsb_secure_zero(p, (size_t) n);
        }

        BIO_free(out);
    }

    EVP_PKEY_free(pkey);
    X509_free(x);
    tsb_tls_passwords_free(&pw);
    ERR_clear_error();

    if (rc != 0) {
        tsb_buf_free(cert_pem);

        if (key_pem->data) {
            tsb_secure_zero(key_pem->data, key_pem->len);
            tsb_buf_free(key_pem);
        }
    }

    return rc;
}


/* "sha256//<44 base64 chars>" separated by ';' */

static int
tsb_tls_pin_list_valid(const char *s, size_t len)
{
    size_t       i, n;
    const char  *end;

    end = s + len;

    while (s < end) {
        if ((size_t) (end - s) < sizeof("sha256//") - 1
            || memcmp(s, "sha256//", sizeof("sha256//") - 1) != 0)
        {
            return 0;
        }

        s += sizeof("sha256//") - 1;

        for (n = 0; s + n < end && s[n] != ';'; n++) {
            /* void */
        }

        /* 32 bytes in base64: 43 characters and one '=' */
        if (n != 44 || s[43] != '=') {
            return 0;
        }

        for (i = 0; i < 43; i++) {
            char  c = s[i];

            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                  || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            {
                return 0;
            }
        }

        s += n;

        if (s < end) {
            s++;                        /* ';' */

            if (s == end) {
                return 0;
            }
        }
    }

    return 1;
}


int
tsb_tls_pin(const char *value, size_t len, tsb_buf_t *pin, tsb_error_t *err)
{
    int             rc, dlen;
    BIO            *in;
    X509           *x;
    EVP_PKEY       *pkey;
    tsb_buf_t       raw;
    unsigned char  *der, *p, md[32];
    unsigned int    mdlen;
    char            path[4096];
    const unsigned char  *cp;

    pin->data = NULL;
    pin->len = 0;

    if (len >= sizeof("sha256//") - 1
        && memcmp(value, "sha256//", sizeof("sha256//") - 1) == 0)
    {
        if (!tsb_tls_pin_list_valid(value, len)) {
            tsb_error_set(err, 500, TSB_TLS_REASON,
                          "a pin must be \"sha256//\" and the base64 of a "
                          "SHA-256 hash, several separated by \";\"");
            return -1;
        }

        pin->data = malloc(len + 1);
        if (pin->data == NULL) {
            tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
            return -1;
        }

        memcpy(pin->data, value, len);
        pin->data[len] = '\0';
        pin->len = len;

        return 0;
    }

    if (len == 0 || len >= sizeof(path)) {
        tsb_error_set(err, 500, TSB_TLS_REASON, "invalid pin file name");
        return -1;
    }

    memcpy(path, value, len);
    path[len] = '\0';

    if (tsb_tls_read_file(path, &raw, 1024 * 1024, err) != 0) {
        return -1;
    }

    x = NULL;
    pkey = NULL;
    rc = -1;

    /* PEM public key, PEM certificate, DER public key, DER certificate */

    in = BIO_new_mem_buf(raw.data, (int) raw.len);
    if (in) {
        pkey = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
        BIO_free(in);
    }

    if (pkey == NULL) {
        ERR_clear_error();
        in = BIO_new_mem_buf(raw.data, (int) raw.len);

        if (in) {
            x = PEM_read_bio_X509(in, NULL, NULL, NULL);
            BIO_free(in);
        }
    }

    if (pkey == NULL && x == NULL) {
        ERR_clear_error();
        cp = raw.data;
        pkey = d2i_PUBKEY(NULL, &cp, (long) raw.len);
    }

    if (pkey == NULL && x == NULL) {
        ERR_clear_error();
        cp = raw.data;
        x = d2i_X509(NULL, &cp, (long) raw.len);
    }

    if (x) {
        pkey = X509_get_pubkey(x);
    }

    if (pkey == NULL) {
        tsb_tls_fail(err, "\"%s\" holds no public key or certificate", path);
        goto done;
    }

    dlen = i2d_PUBKEY(pkey, NULL);
    if (dlen <= 0) {
        tsb_tls_fail(err, "cannot encode the public key in \"%s\"", path);
        goto done;
    }

    der = malloc((size_t) dlen);
    if (der == NULL) {
        tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
        goto done;
    }

    p = der;
    i2d_PUBKEY(pkey, &p);

    if (EVP_Digest(der, (size_t) dlen, md, &mdlen, EVP_sha256(), NULL) != 1
        || mdlen != sizeof(md))
    {
        free(der);
        tsb_tls_fail(err, "cannot hash the public key in \"%s\"", path);
        goto done;
    }

    free(der);

    pin->data = malloc(sizeof("sha256//") - 1 + 44 + 1);
    if (pin->data == NULL) {
        tsb_error_set(err, 500, TSB_TLS_REASON, "out of memory");
        goto done;
    }

    memcpy(pin->data, "sha256//", sizeof("sha256//") - 1);
    EVP_EncodeBlock(pin->data + sizeof("sha256//") - 1, md, sizeof(md));
    pin->len = sizeof("sha256//") - 1 + 44;

    rc = 0;

done:

    EVP_PKEY_free(pkey);
    X509_free(x);
    tsb_buf_free(&raw);
    ERR_clear_error();

    return rc;
}


int
tsb_tls_secret_valid(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > TSB_TLS_SECRET_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


int
tsb_tls_load_secret(const char *path, tsb_buf_t *secret, tsb_error_t *err)
{
    size_t     len;
    tsb_buf_t  raw;

    secret->data = NULL;
    secret->len = 0;

    if (tsb_tls_read_file(path, &raw, TSB_TLS_SECRET_MAX, err) != 0) {
        return -1;
    }

    for (len = 0; len < raw.len && raw.data[len] != '\n'; len++) {
        /* void */
    }

    while (len && (raw.data[len - 1] == '\r' || raw.data[len - 1] == ' '
                   || raw.data[len - 1] == '\t'))
    {
        len--;
    }

    if (!tsb_tls_secret_valid(raw.data, len)) {
        tsb_secure_zero(raw.data, raw.len);
        tsb_buf_free(&raw);
        tsb_error_set(err, 500, TSB_TLS_REASON,
                      "the first line of \"%s\" must be the secret alone: "
                      "printable ASCII without spaces", path);
        return -1;
    }

    /* keep only the secret: the rest of the file is wiped */
    tsb_secure_zero(raw.data + len, raw.len - len);
    raw.data[len] = '\0';
    raw.len = len;

    *secret = raw;

    return 0;
}
