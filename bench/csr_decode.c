
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Where a CSR's intake time goes with this OpenSSL, for bench/sign_bench.pl:
 * d2i_X509_REQ() of a DER CSR, the same CSR's public key decoded alone
 * (d2i_PUBKEY(): the provider decoder path OpenSSL 3 takes inside
 * d2i_X509_REQ(); d2i_RSA_PUBKEY(): the legacy one), and
 * X509_REQ_verify() with the one key (OpenSSL keeps the key's Montgomery
 * context from call to call), the same with a key made afresh from its
 * modulus and exponent each time (EVP_PKEY_fromdata(), as for every new
 * CSR: the least a gateway must spend to check a CSR it has not seen),
 * and tsb_csr_parse(): the gateway's own intake of the DER CSR (decode,
 * self-signature check, the facts the policy reads).  Prints one line of
 * microseconds.
 *
 *   csr_decode file.der [iterations]
 */


/* d2i_RSA_PUBKEY() is deprecated in OpenSSL 3: it is the point of comparison */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tsb_csr.h"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


int
main(int argc, char **argv)
{
    int                   i, n, len, spki_len;
    FILE                 *fp;
    double                t0, t1, t2, t3, t4, t5, t6, t7, t8;
    RSA                  *rsa0;
    OSSL_PARAM           *params;
    EVP_PKEY_CTX         *pctx;
    const BIGNUM         *bn_n, *bn_e;
    OSSL_PARAM_BLD       *bld;
    X509_REQ             *req;
    EVP_PKEY             *pkey;
    unsigned char         buf[16384], *spki;
    const unsigned char  *p;

    if (argc < 2 || (fp = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: csr_decode file.der [iterations]\n");
        return 2;
    }

    len = (int) fread(buf, 1, sizeof(buf), fp);
    fclose(fp);

    n = argc > 2 ? atoi(argv[2]) : 2000;

    p = buf;
    req = d2i_X509_REQ(NULL, &p, len);
    if (req == NULL) {
        fprintf(stderr, "not a DER CSR\n");
        return 1;
    }

    spki = NULL;
    spki_len = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);
    pkey = X509_REQ_get0_pubkey(req);

    t0 = now();

    for (i = 0; i < n; i++) {
        X509_REQ  *r;

        p = buf;
        r = d2i_X509_REQ(NULL, &p, len);
        X509_REQ_free(r);
    }

    t1 = now();

    for (i = 0; i < n; i++) {
        EVP_PKEY  *k;

        /* d2i_PUBKEY: the provider decoders, as inside d2i_X509_REQ() */
        p = spki;
        k = d2i_PUBKEY(NULL, &p, spki_len);
        EVP_PKEY_free(k);
    }

    t2 = now();

    for (i = 0; i < n && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA; i++) {
        RSA  *rsa;

        /* the legacy, type-specific decoder: no provider lookups */
        p = spki;
        rsa = d2i_RSA_PUBKEY(NULL, &p, spki_len);
        RSA_free(rsa);
    }

    t3 = now();

    for (i = 0; i < n; i++) {
        (void) X509_REQ_verify(req, pkey);
    }

    t4 = now();

    /* the modulus and exponent once; the key object afresh every time */

    params = NULL;
    p = spki;
    rsa0 = d2i_RSA_PUBKEY(NULL, &p, spki_len);
    bld = OSSL_PARAM_BLD_new();

    if (rsa0 != NULL && bld != NULL) {
        RSA_get0_key(rsa0, &bn_n, &bn_e, NULL);

        if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1
            && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
        {
            params = OSSL_PARAM_BLD_to_param(bld);
        }
    }

    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);

    if (params == NULL || pctx == NULL) {
        fprintf(stderr, "not an RSA key\n");
        return 1;
    }

    t5 = now();

    for (i = 0; i < n; i++) {
        EVP_PKEY  *k;

        k = NULL;

        if (EVP_PKEY_fromdata_init(pctx) != 1
            || EVP_PKEY_fromdata(pctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1
            || X509_REQ_verify(req, k) != 1)
        {
            fprintf(stderr, "the fresh key does not verify the CSR\n");
            return 1;
        }

        EVP_PKEY_free(k);
    }

    t6 = now();

    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    RSA_free(rsa0);

    t7 = now();

    for (i = 0; i < n; i++) {
        tsb_csr_t    *csr;
        tsb_error_t   err;

        if (tsb_csr_parse(buf, (size_t) len, &csr, &err) != 0) {
            fprintf(stderr, "tsb_csr_parse() refused the CSR\n");
            return 1;
        }

        tsb_csr_free(csr);
    }

    t8 = now();

    printf("d2i_X509_REQ %.1f us, d2i_PUBKEY %.1f us, d2i_RSA_PUBKEY "
           "%.1f us, X509_REQ_verify %.1f us, fresh key + X509_REQ_verify "
           "%.1f us, tsb_csr_parse %.1f us\n",
           (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, (t3 - t2) / n * 1e6,
           (t4 - t3) / n * 1e6, (t6 - t5) / n * 1e6, (t8 - t7) / n * 1e6);

    OPENSSL_free(spki);
    X509_REQ_free(req);

    return 0;
}
