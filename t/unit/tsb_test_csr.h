
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Makes keys and CSRs for the unit tests with OpenSSL 3, so each test can
 * describe the CSR it needs in a table row instead of carrying fixtures.
 */


#ifndef _TSB_TEST_CSR_H_INCLUDED_
#define _TSB_TEST_CSR_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ec.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsb_common.h"


#ifdef __GNUC__
#define TT_UNUSED  __attribute__((unused))
#else
#define TT_UNUSED
#endif


#define TT_MAX_CN  4


typedef struct {
    EVP_PKEY        *key;
    const char      *md;            /* "sha256" (NULL), "sha1", "none" */
    const char      *cn[TT_MAX_CN]; /* NULL-terminated; none: no CN */
    size_t           cn_len[TT_MAX_CN];  /* 0: strlen */
    int              cn_type[TT_MAX_CN]; /* 0: MBSTRING_UTF8; V_ASN1_*
                                            sets the bytes unchecked */
    const char      *san;           /* "DNS:a.example,IP:10.0.0.1" */
    const char      *ku;            /* "critical,digitalSignature" */
    const char      *eku;           /* "serverAuth,1.2.3.4" */
    const char      *bc;            /* "critical,CA:TRUE,pathlen:1" */
    X509_EXTENSION  *raw[3];        /* added as they are, then freed */
    const char      *subj;          /* more subject attributes, after the
                                       CNs: "O=Example Corp/C=CH"; "+"
                                       before one joins the RDN before */
} tt_csr_t;


TT_UNUSED static void
tt_die(const char *what)
{
    fprintf(stderr, "# test setup failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}


TT_UNUSED static X509_REQ *
tt_csr_req(const tt_csr_t *g)
{
    int                        i, n;
    X509_REQ                  *req;
    X509_NAME                 *name;
    X509V3_CTX                 ctx;
    const EVP_MD              *md;
    X509_EXTENSION            *ext;
    STACK_OF(X509_EXTENSION)  *exts;
    static const int           nids[] = { NID_subject_alt_name,
                                          NID_key_usage, NID_ext_key_usage,
                                          NID_basic_constraints };
    const char                *vals[4];

    req = X509_REQ_new();
    if (req == NULL || X509_REQ_set_version(req, 0) != 1) {
        tt_die("X509_REQ_new");
    }

    name = X509_REQ_get_subject_name(req);

    for (i = 0; i < TT_MAX_CN && g->cn[i]; i++) {
        n = g->cn_len[i] ? (int) g->cn_len[i] : -1;

        if (X509_NAME_add_entry_by_txt(name, "CN",
                                       g->cn_type[i] ? g->cn_type[i]
                                                     : MBSTRING_UTF8,
                                       (const unsigned char *) g->cn[i],
                                       n, -1, 0) != 1)
        {
            tt_die("X509_NAME_add_entry_by_txt");
        }
    }

    if (g->subj != NULL) {
        char  buf[256], *p, *eq, *next;
        int   set;

        snprintf(buf, sizeof(buf), "%s", g->subj);

        for (p = buf; p != NULL && *p; p = next) {
            next = strchr(p, '/');
            if (next) {
                *next++ = '\0';
            }

            set = 0;
            if (*p == '+') {
                set = -1;
                p++;
            }

            eq = strchr(p, '=');
            if (eq == NULL) {
                tt_die("subj: no '='");
            }

            *eq++ = '\0';

            if (X509_NAME_add_entry_by_txt(name, p, MBSTRING_UTF8,
                                           (const unsigned char *) eq,
                                           -1, -1, set) != 1)
            {
                tt_die("X509_NAME_add_entry_by_txt subj");
            }
        }
    }

    /* a subject without a CN still gets some name */

    if (g->cn[0] == NULL
        && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                      (const unsigned char *) "Test Org",
                                      -1, -1, 0) != 1)
    {
        tt_die("X509_NAME_add_entry_by_txt O");
    }

    if (X509_REQ_set_pubkey(req, g->key) != 1) {
        tt_die("X509_REQ_set_pubkey");
    }

    exts = sk_X509_EXTENSION_new_null();
    if (exts == NULL) {
        tt_die("sk_X509_EXTENSION_new_null");
    }

    X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);

    vals[0] = g->san;
    vals[1] = g->ku;
    vals[2] = g->eku;
    vals[3] = g->bc;

    for (i = 0; i < 4; i++) {
        if (vals[i] == NULL) {
            continue;
        }

        ext = X509V3_EXT_conf_nid(NULL, &ctx, nids[i], vals[i]);
        if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
            tt_die(vals[i]);
        }
    }

    for (i = 0; i < 3 && g->raw[i]; i++) {
        if (!sk_X509_EXTENSION_push(exts, g->raw[i])) {
            tt_die("push raw");
        }
    }

    if (sk_X509_EXTENSION_num(exts) > 0
        && X509_REQ_add_extensions(req, exts) != 1)
    {
        tt_die("X509_REQ_add_extensions");
    }

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    if (g->md != NULL && strcmp(g->md, "none") == 0) {
        md = NULL;

    } else if (g->md != NULL && strcmp(g->md, "sha1") == 0) {
        md = EVP_sha1();

    } else {
        md = EVP_sha256();
    }

    if (X509_REQ_sign(req, g->key, md) <= 0) {
        tt_die("X509_REQ_sign");
    }

    return req;
}


/* DER of the CSR, heap */
TT_UNUSED static tsb_buf_t
tt_csr_der(const tt_csr_t *g)
{
    int             n;
    X509_REQ       *req;
    tsb_buf_t       b;
    unsigned char  *p;

    req = tt_csr_req(g);

    n = i2d_X509_REQ(req, NULL);
    if (n <= 0) {
        tt_die("i2d_X509_REQ");
    }

    b.data = malloc((size_t) n);
    if (b.data == NULL) {
        tt_die("malloc");
    }

    p = b.data;
    i2d_X509_REQ(req, &p);
    b.len = (size_t) n;

    X509_REQ_free(req);

    return b;
}


/* PEM text (standard label) of DER, NUL-terminated heap string */
TT_UNUSED static char *
tt_der_to_pem(const unsigned char *der, size_t len)
{
    BIO       *bio;
    char      *data, *s;
    long       n;
    X509_REQ  *req;

    req = d2i_X509_REQ(NULL, &der, (long) len);
    bio = BIO_new(BIO_s_mem());

    if (req == NULL || bio == NULL || PEM_write_bio_X509_REQ(bio, req) != 1)
    {
        tt_die("PEM_write_bio_X509_REQ");
    }

    n = BIO_get_mem_data(bio, &data);

    s = malloc((size_t) n + 1);
    if (s == NULL) {
        tt_die("malloc");
    }

    memcpy(s, data, (size_t) n);
    s[n] = '\0';

    BIO_free(bio);
    X509_REQ_free(req);

    return s;
}


TT_UNUSED static char *
tt_csr_pem(const tt_csr_t *g)
{
    char       *s;
    tsb_buf_t   der;

    der = tt_csr_der(g);
    s = tt_der_to_pem(der.data, der.len);
    free(der.data);

    return s;
}


TT_UNUSED static EVP_PKEY *
tt_key(const char *kind)
{
    EVP_PKEY  *k;

    if (strncmp(kind, "RSA-", 4) == 0) {
        k = EVP_RSA_gen((unsigned) atoi(kind + 4));

    } else if (strncmp(kind, "EC-", 3) == 0) {
        k = EVP_EC_gen(kind + 3);

    } else {
        k = EVP_PKEY_Q_keygen(NULL, NULL, kind);
    }

    if (k == NULL) {
        tt_die(kind);
    }

    return k;
}


/* the whole file, NUL-terminated; NULL when it cannot be read */
TT_UNUSED static char *
tt_read_file(const char *dir, const char *name, size_t *len)
{
    FILE    *f;
    char     path[1024], *buf;
    long     n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        return NULL;
    }

    buf = malloc((size_t) n + 1);
    if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n) {
        free(buf);
        fclose(f);
        return NULL;
    }

    buf[n] = '\0';
    *len = (size_t) n;
    fclose(f);

    return buf;
}


/* s with every "from" replaced by "to"; heap */
TT_UNUSED static char *
tt_replace(const char *s, const char *from, const char *to)
{
    char        *out, *o;
    size_t       n, fl, tl;
    const char  *p, *q;

    fl = strlen(from);
    tl = strlen(to);

    n = 0;
    for (p = s; (q = strstr(p, from)) != NULL; p = q + fl) {
        n++;
    }

    out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1);
    if (out == NULL) {
        tt_die("malloc");
    }

    o = out;

    for (p = s; (q = strstr(p, from)) != NULL; p = q + fl) {
        memcpy(o, p, (size_t) (q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
    }

    strcpy(o, p);

    return out;
}


#endif /* _TSB_TEST_CSR_H_INCLUDED_ */
