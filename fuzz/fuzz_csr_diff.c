/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: differential test of tsb_csr_parse()'s fast path
 * (tsb_csr_parse_fast: no OpenSSL provider decoder for the public key)
 * against the reference path (tsb_csr_parse_reference: d2i_X509_REQ +
 * X509_REQ_verify).  For every input, and for the input's request signed
 * again by a harness key, it aborts when
 *   - the fast path accepts what the reference path refuses, or describes
 *     it differently (any fact, the DER, the PEM forwarded upstream);
 *   - the fast path refuses with anything but TSB_CSR_FALLBACK, or
 *     touches *out or the error when it falls back;
 *   - tsb_csr_parse() answers differently from the reference path
 *     (accept/refuse, status, reason, detail, facts).
 *
 * Re-signing keeps the request's own bytes: the CertificationRequestInfo
 * and the signature AlgorithmIdentifier are copied as received, only the
 * signature is new.  So a mutated SubjectPublicKeyInfo encoding
 * (parameters, BIT STRING unused bits, long lengths, a point format) of
 * a harness key still verifies, and reaches the key decoders of both
 * paths.  The harness keys are fixed (below) so that the seeds in
 * fuzz/corpus/fuzz_csr_diff/ carry them.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tsb_csr.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_csr_diff: difference: %s (line %d)\n",      \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


/* RSA-1024 keeps signing per input cheap; the paths do not judge bits */

static const char  fuzz_pem_rsa[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALZ4wSwNr5ni6Sjb\n"
    "IUjXQrXEqUzzUO3UmXk6dXs8Y3SY9bL+r3K2oSOcKH63wjNT2T6/kIVkcdHAAYAr\n"
    "NM6QplMN4ytPBQ9MOk75c+R1Eu+JCZMvKwOJP1kKNrAVWUe4QkPHUQfUbz6D6Eas\n"
    "wWpg2AbpXiVz81v6amNhaEu5T4GHAgMBAAECgYAhHmO5UjaYELZPAw7UgLWL9kjg\n"
    "PZ1nvVmpxjGCj6Bhjk2yEkXX5Uv0Aajb7xBhbouUtwJNI8EA1/+tuqnYACsfwwgf\n"
    "UEmQ705m9mBGla2VlhkXfMKIvnuKG4dQ2jmQr51cS1jObpG33njuu/28JMeJ8GCl\n"
    "lGwPI1bbBvFFMuDI4QJBAPGqx0KK6L/gJxcDzeAejve3hbPpjr2AcDVmDJp2D+0M\n"
    "BetrHUksJQ94osnRUbzySaIDYfB3UlVJ0YU6SH96ITcCQQDBSzb+v7msSHWPmIy8\n"
    "mAWqxBrT/S3Ap+7mIXy6u7pGkq3Xp/tNIDmVIbo0wMnsqz/lOYkEK5PkOpTgoNlc\n"
    "9QoxAkEA7Udry6cN7c8NMmi2zDXU094qdcJ9Nw0Tnypqd4IyEuH6MfKC16RzYuRk\n"
    "mVlfMvCFYYCGug6+FSWchX37TsbAMwJAdcriTsiD2+ukSMfMLDnwaiprtvg444jz\n"
    "WybZHeq9D7jfW+awjEWxEaKmGPPLmgCaRZSUXQg5bgINK/6Zt75UYQJAHh2Pk9K/\n"
    "tdyo3EYtTU6yENyPREVXrU9S6yEIXhqx4GR1GDthindy7aanyG3Wk/qvMvplpfUa\n"
    "fYloIRLvDtdV2Q==\n"
    "-----END PRIVATE KEY-----\n"
    ;

static const char  fuzz_pem_p_256[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3FOHgINp5QIXvoOs\n"
    "/2RRXZHn0WBeXJhHV6hbeVbH6pShRANCAAQpKcpIF2m5/Iw7KHKMHapDH7Ztf0iX\n"
    "07eIjXTR8+m6SZvGvfqh7Z7NoMnZrlDB0NpZqFx6Qp61LOsF8BCfCW86\n"
    "-----END PRIVATE KEY-----\n"
    ;

static const char  fuzz_pem_p_384[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDZ5+K2ISoEHhxPEyU7\n"
    "xcRaWV0Ay5lm8gH8FQL7iH5EmGRWB9DiL6yAjHNzXPV7gMahZANiAAS11EAZu8yr\n"
    "QKI093OSm+UwJYHKlUja4QVcySNaPLcrSnqTnEvzjywzfDKRteOEAwq7wVlBfegP\n"
    "WDHhAX9VTnzooAxBIjItmMg5FhTlOQFekaYw/0WF0L9cScf7H9uqCWE=\n"
    "-----END PRIVATE KEY-----\n"
    ;

static const char  fuzz_pem_p_521[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIBu3hMzM3LGmaZ5ct6\n"
    "/xprvmL9vDpo6Y4bfIHDn18AgzvhiYAE+Pxnj2EQt6WUOOk+2FqTXliGtrZaHTKu\n"
    "9PhZ+5qhgYkDgYYABAAmQVSu/0HxTbd/+QHJPUBfdk+hgkEvo511Uq2X8WO8tHuJ\n"
    "hDikIRJuqDoNZX13uM/9Cu9yPR4acJLKZ5iUQqfcWwB6mphPLIBkHZDxtAJfpoua\n"
    "635Dl8xXD081KPdud7UodRGxGAqmFKbw6szJtVHlIFD6myth3KsyMWJoEzK5abLK\n"
    "dg==\n"
    "-----END PRIVATE KEY-----\n"
    ;

static const char  fuzz_pem_ed[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIEUBknQAra+kR96rUJ0vwmh3BEhBxZZ91zliSwzqSMet\n"
    "-----END PRIVATE KEY-----\n"
    ;


#define FUZZ_N_KEYS  5

static const char *const  fuzz_pems[FUZZ_N_KEYS] = {
    fuzz_pem_rsa, fuzz_pem_p_256, fuzz_pem_p_384, fuzz_pem_p_521,
    fuzz_pem_ed
};

static EVP_PKEY       *fuzz_keys[FUZZ_N_KEYS];

/* each key's public key as a BIT STRING holds it (EC: both point forms) */
static unsigned char  *fuzz_pubs[2 * FUZZ_N_KEYS];
static size_t          fuzz_pub_lens[2 * FUZZ_N_KEYS];
static int             fuzz_pub_keys[2 * FUZZ_N_KEYS];
static int             fuzz_n_pubs;

/* FUZZ_CSR_DIFF_VERBOSE=1: one line per request compared */
static int             fuzz_verbose;

static unsigned long   fuzz_n_parsed, fuzz_n_fast, fuzz_n_ref_ok,
                       fuzz_n_resigned;


static void
fuzz_add_pub(int key, const unsigned char *pk, size_t len)
{
    fuzz_pubs[fuzz_n_pubs] = malloc(len);
    fuzz_assert(fuzz_pubs[fuzz_n_pubs] != NULL);
    memcpy(fuzz_pubs[fuzz_n_pubs], pk, len);
    fuzz_pub_lens[fuzz_n_pubs] = len;
    fuzz_pub_keys[fuzz_n_pubs] = key;
    fuzz_n_pubs++;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int                   i, n, plen;
    BIO                  *bio;
    size_t                clen;
    EVP_PKEY             *dup;
    X509_PUBKEY          *xpk;
    unsigned char        *der, comp[256];
    const unsigned char  *p, *pk;

    (void) argc;
    (void) argv;

    fuzz_verbose = getenv("FUZZ_CSR_DIFF_VERBOSE") != NULL;

    for (i = 0; i < FUZZ_N_KEYS; i++) {
        bio = BIO_new_mem_buf(fuzz_pems[i], -1);
        fuzz_keys[i] = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);

        der = NULL;
        n = fuzz_keys[i] ? i2d_PUBKEY(fuzz_keys[i], &der) : -1;
        p = der;
        xpk = n > 0 ? d2i_X509_PUBKEY(NULL, &p, n) : NULL;

        if (xpk == NULL
            || X509_PUBKEY_get0_param(NULL, &pk, &plen, NULL, xpk) != 1)
        {
            fprintf(stderr, "fuzz_csr_diff: cannot load key %d\n", i);
            abort();
        }

        fuzz_add_pub(i, pk, (size_t) plen);

        if (EVP_PKEY_is_a(fuzz_keys[i], "EC")) {
            dup = EVP_PKEY_dup(fuzz_keys[i]);

            if (dup == NULL
                || EVP_PKEY_set_utf8_string_param(dup,
                       OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                       "compressed") != 1
                || EVP_PKEY_get_octet_string_param(dup,
                       OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, comp,
                       sizeof(comp), &clen) != 1)
            {
                fprintf(stderr, "fuzz_csr_diff: cannot compress key %d\n",
                        i);
                abort();
            }

            fuzz_add_pub(i, comp, clen);
            EVP_PKEY_free(dup);
        }

        X509_PUBKEY_free(xpk);
        OPENSSL_free(der);
    }

    return 0;
}


static int
fuzz_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


static void
fuzz_same(const tsb_csr_t *a, const tsb_csr_t *b)
{
    int        ra, rb;
    size_t     i;
    tsb_buf_t  pa, pb;

    fuzz_assert(a != NULL && b != NULL);
    fuzz_assert(a->req != NULL && b->req != NULL);

    fuzz_assert(a->der.len == b->der.len);
    fuzz_assert(memcmp(a->der.data, b->der.data, a->der.len) == 0);

    fuzz_assert(a->n_common_names == b->n_common_names);
    fuzz_assert(a->cn_has_nul == b->cn_has_nul);

    for (i = 0; i < a->n_common_names; i++) {
        fuzz_assert(a->common_name_lens[i] == b->common_name_lens[i]);
        fuzz_assert(memcmp(a->common_names[i], b->common_names[i],
                           a->common_name_lens[i] + 1) == 0);
    }

    fuzz_assert(a->n_sans == b->n_sans);

    for (i = 0; i < a->n_sans; i++) {
        fuzz_assert(a->sans[i].type == b->sans[i].type);
        fuzz_assert(fuzz_str_eq(a->sans[i].value, b->sans[i].value));
    }

    fuzz_assert(a->key_type == b->key_type);
    fuzz_assert(a->key_bits == b->key_bits);
    fuzz_assert(fuzz_str_eq(a->key_curve, b->key_curve));
    fuzz_assert(a->sig_nid == b->sig_nid);
    fuzz_assert(a->sig_md_nid == b->sig_md_nid);
    fuzz_assert(a->key_usage == b->key_usage);
    fuzz_assert(a->has_key_usage == b->has_key_usage);
    fuzz_assert(a->ext_key_usage == b->ext_key_usage);
    fuzz_assert(a->has_ext_key_usage == b->has_ext_key_usage);
    fuzz_assert(a->has_unknown_eku == b->has_unknown_eku);
    fuzz_assert(a->basic_ca == b->basic_ca);
    fuzz_assert(a->has_basic_constraints == b->has_basic_constraints);
    fuzz_assert(a->basic_pathlen == b->basic_pathlen);
    fuzz_assert(memcmp(a->spki_sha256, b->spki_sha256, 32) == 0);
    fuzz_assert(a->key_rsa_exponent == b->key_rsa_exponent);
    fuzz_assert(a->n_exts == b->n_exts);

    for (i = 0; i < a->n_exts; i++) {
        fuzz_assert(strcmp(a->exts[i].oid, b->exts[i].oid) == 0);
        fuzz_assert(a->exts[i].nid == b->exts[i].nid);
        fuzz_assert(a->exts[i].critical == b->exts[i].critical);
        fuzz_assert(a->exts[i].readable == b->exts[i].readable);
    }

    /* what goes upstream */

    ra = tsb_csr_to_pem(a, &pa);
    rb = tsb_csr_to_pem(b, &pb);

    fuzz_assert(ra == rb);

    if (ra == 0) {
        fuzz_assert(pa.len == pb.len);
        fuzz_assert(memcmp(pa.data, pb.data, pa.len) == 0);
        tsb_buf_free(&pa);
        tsb_buf_free(&pb);
    }
}


static void
fuzz_compare(const unsigned char *der, size_t len)
{
    int           rf, rr, rp;
    tsb_csr_t    *cf, *cr, *cp;
    tsb_error_t   ef, er, ep;

    memset(&ef, 0, sizeof(tsb_error_t));
    memset(&er, 0, sizeof(tsb_error_t));
    memset(&ep, 0, sizeof(tsb_error_t));
    ef.status = 999;
    ef.reason = "untouched";

    cf = (tsb_csr_t *) &ef;
    rf = tsb_csr_parse_fast(der, len, &cf, &ef);
    rr = tsb_csr_parse_reference(der, len, &cr, &er);
    rp = tsb_csr_parse(der, len, &cp, &ep);

    fuzz_n_parsed++;
    fuzz_n_fast += (rf == 0);
    fuzz_n_ref_ok += (rr == 0);

    fuzz_assert(rf == 0 || rf == TSB_CSR_FALLBACK);

    if (rf == 0) {
        fuzz_assert(rr == 0);
        fuzz_same(cf, cr);
        tsb_csr_free(cf);

    } else {
        fuzz_assert(cf == NULL);
        fuzz_assert(ef.status == 999 && strcmp(ef.reason, "untouched") == 0
                    && ef.detail[0] == '\0');
    }

    fuzz_assert(rp == rr);

    if (rr == 0) {
        fuzz_same(cp, cr);
        tsb_csr_free(cp);
        tsb_csr_free(cr);

    } else {
        fuzz_assert(rr == -1 && cp == NULL && cr == NULL);
        fuzz_assert(ep.status == er.status);
        fuzz_assert(fuzz_str_eq(ep.reason, er.reason));
        fuzz_assert(strcmp(ep.detail, er.detail) == 0);
    }

    fuzz_assert(ERR_peek_error() == 0);

    if (fuzz_verbose) {
        fprintf(stderr, "fuzz_csr_diff: %zu bytes: fast %s, reference %s\n",
                len, rf == 0 ? "accepts" : "falls back",
                rr == 0 ? "accepts" : er.reason);
    }

    if ((fuzz_n_parsed & 0x3fff) == 0) {
        fprintf(stderr, "fuzz_csr_diff: %lu parsed (%lu signed again), "
                "%lu by the fast path, %lu accepted\n", fuzz_n_parsed,
                fuzz_n_resigned, fuzz_n_fast, fuzz_n_ref_ok);
    }
}


/* one definite-length TLV at *p within end: its start and total size */

static int
fuzz_tlv(const unsigned char **p, const unsigned char *end,
    const unsigned char **start, size_t *size)
{
    int                   rc, tag, xclass;
    long                  len;
    const unsigned char  *q;

    if (*p >= end) {
        return -1;
    }

    q = *p;
    rc = ASN1_get_object(&q, &len, &tag, &xclass, (long) (end - *p));

    if ((rc & 0x80) || (rc & 0x01) || len < 0 || len > end - q) {
        ERR_clear_error();
        return -1;
    }

    *start = *p;
    *size = (size_t) (q - *p) + (size_t) len;
    *p = q + len;

    return 0;
}


static size_t
fuzz_len_size(size_t len)
{
    return len < 0x80 ? 1 : len < 0x100 ? 2 : len < 0x10000 ? 3 : 4;
}


static size_t
fuzz_put_len(unsigned char *out, size_t len)
{
    if (len < 0x80) {
        out[0] = (unsigned char) len;
        return 1;
    }

    if (len < 0x100) {
        out[0] = 0x81;
        out[1] = (unsigned char) len;
        return 2;
    }

    if (len < 0x10000) {
        out[0] = 0x82;
        out[1] = (unsigned char) (len >> 8);
        out[2] = (unsigned char) len;
        return 3;
    }

    out[0] = 0x83;
    out[1] = (unsigned char) (len >> 16);
    out[2] = (unsigned char) (len >> 8);
    out[3] = (unsigned char) len;
    return 4;
}


/* signs data with key as the AlgorithmIdentifier alg says */

static int
fuzz_sign(EVP_PKEY *key, const X509_ALGOR *alg, const unsigned char *data,
    size_t len, unsigned char **sig, size_t *siglen)
{
    int                   rc, nid, md_nid, pk_nid, ptype;
    long                  salt;
    EVP_MD_CTX           *mctx;
    const EVP_MD         *md, *mgf1;
    EVP_PKEY_CTX         *pctx;
    X509_ALGOR           *mgf1_alg;
    RSA_PSS_PARAMS       *pss;
    const void           *pval;
    const ASN1_OBJECT    *obj;
    const unsigned char  *p;

    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    nid = OBJ_obj2nid(obj);

    pss = NULL;
    md = NULL;
    mgf1 = NULL;
    salt = 20;

    if (nid == NID_rsassaPss) {
        if (ptype != V_ASN1_SEQUENCE || pval == NULL) {
            return -1;
        }

        p = ASN1_STRING_get0_data(pval);
        pss = d2i_RSA_PSS_PARAMS(NULL, &p, ASN1_STRING_length(pval));

        if (pss == NULL) {
            return -1;
        }

        md = pss->hashAlgorithm
             ? EVP_get_digestbyobj(pss->hashAlgorithm->algorithm)
             : EVP_sha1();
        mgf1 = EVP_sha1();

        /* MGF1's digest: the parameter of maskGenAlgorithm */

        if (pss->maskGenAlgorithm != NULL
            && pss->maskGenAlgorithm->parameter != NULL
            && pss->maskGenAlgorithm->parameter->type == V_ASN1_SEQUENCE)
        {
            p = ASN1_STRING_get0_data(
                    pss->maskGenAlgorithm->parameter->value.sequence);
            mgf1_alg = d2i_X509_ALGOR(NULL, &p, ASN1_STRING_length(
                    pss->maskGenAlgorithm->parameter->value.sequence));
            mgf1 = mgf1_alg ? EVP_get_digestbyobj(mgf1_alg->algorithm)
                            : NULL;
            X509_ALGOR_free(mgf1_alg);
        }

        if (pss->saltLength != NULL) {
            salt = ASN1_INTEGER_get(pss->saltLength);
        }

        RSA_PSS_PARAMS_free(pss);

        if (md == NULL || mgf1 == NULL || salt < 0 || salt > 512) {
            return -1;
        }

    } else if (OBJ_find_sigid_algs(nid, &md_nid, &pk_nid) == 1) {
        if (md_nid != NID_undef) {
            md = EVP_get_digestbynid(md_nid);

            if (md == NULL) {
                return -1;
            }
        }

    } else {
        return -1;
    }

    mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        return -1;
    }

    rc = -1;
    *sig = NULL;

    if (EVP_DigestSignInit(mctx, &pctx, md, NULL, key) != 1) {
        goto done;
    }

    if (nid == NID_rsassaPss
        && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, mgf1) <= 0
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, (int) salt) <= 0))
    {
        goto done;
    }

    if (EVP_DigestSign(mctx, NULL, siglen, data, len) != 1) {
        goto done;
    }

    *sig = malloc(*siglen);

    if (*sig == NULL
        || EVP_DigestSign(mctx, *sig, siglen, data, len) != 1)
    {
        free(*sig);
        *sig = NULL;
        goto done;
    }

    rc = 0;

done:

    EVP_MD_CTX_free(mctx);

    return rc;
}


/*
 * The request with its CertificationRequestInfo and signature algorithm
 * kept byte for byte, signed by the harness key whose public key it
 * carries.
 */

static void
fuzz_resign(const unsigned char *der, size_t len)
{
    int                   k, rc, tag, xclass;
    long                  l;
    size_t                info_len, alg_len, siglen, bits_len, i;
    X509_ALGOR           *alg;
    unsigned char        *sig, *out, *w;
    const unsigned char  *p, *end, *info, *algp, *q;

    /* inside the outer SEQUENCE: the info and the algorithm, as sent */

    p = der;
    rc = ASN1_get_object(&p, &l, &tag, &xclass, (long) len);

    if ((rc & 0x80) || (rc & 0x01) || tag != V_ASN1_SEQUENCE
        || l > der + len - p)
    {
        ERR_clear_error();
        return;
    }

    end = p + l;

    if (fuzz_tlv(&p, end, &info, &info_len) != 0
        || fuzz_tlv(&p, end, &algp, &alg_len) != 0)
    {
        return;
    }

    k = -1;

    for (i = 0; i < (size_t) fuzz_n_pubs; i++) {
        if (fuzz_pub_lens[i] <= info_len
            && memmem(info, info_len, fuzz_pubs[i], fuzz_pub_lens[i])
               != NULL)
        {
            k = fuzz_pub_keys[i];
            break;
        }
    }

    if (k < 0) {
        return;
    }

    q = algp;
    alg = d2i_X509_ALGOR(NULL, &q, (long) alg_len);

    if (alg == NULL) {
        ERR_clear_error();
        return;
    }

    if (fuzz_sign(fuzz_keys[k], alg, info, info_len, &sig, &siglen) != 0) {
        X509_ALGOR_free(alg);
        ERR_clear_error();
        return;
    }

    X509_ALGOR_free(alg);

    bits_len = 1 + siglen;
    out = malloc(info_len + alg_len + bits_len + 16);
    fuzz_assert(out != NULL);

    w = out;
    *w++ = 0x30;
    w += fuzz_put_len(w, info_len + alg_len + 1 + fuzz_len_size(bits_len)
                         + bits_len);
    memcpy(w, info, info_len);
    w += info_len;
    memcpy(w, algp, alg_len);
    w += alg_len;
    *w++ = 0x03;
    w += fuzz_put_len(w, bits_len);
    *w++ = 0x00;
    memcpy(w, sig, siglen);
    w += siglen;

    free(sig);

    fuzz_n_resigned++;
    fuzz_compare(out, (size_t) (w - out));

    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsb_buf_t    der;
    tsb_error_t  err;

    memset(&err, 0, sizeof(tsb_error_t));

    /*
     * The input as DER, as it is: most mutations break the outer length,
     * which tsb_csr_decode() refuses before any parsing; the parse paths
     * take any bytes and must agree on them too.
     */

    if (size > 0 && data[0] == 0x30) {
        fuzz_compare(data, size);
        fuzz_resign(data, size);
        return 0;
    }

    /* PEM, base64 */

    if (tsb_csr_decode(data, size, &der, &err) != 0) {
        return 0;
    }

    fuzz_compare(der.data, der.len);
    fuzz_resign(der.data, der.len);

    tsb_buf_free(&der);

    return 0;
}
