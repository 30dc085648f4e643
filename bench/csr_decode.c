
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Where a CSR's intake time goes with this OpenSSL, for bench/sign_bench.pl:
 * d2i_X509_REQ() of a DER CSR, the same CSR's public key decoded alone
 * (d2i_PUBKEY(): the provider decoder path OpenSSL 3 takes inside
 * d2i_X509_REQ(); d2i_RSA_PUBKEY(): the legacy one), and
 * X509_REQ_verify().  Prints one line of microseconds.
 *
 *   csr_decode file.der [iterations]
 */


/* d2i_RSA_PUBKEY() is deprecated in OpenSSL 3: it is the point of comparison */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>


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
    double                t0, t1, t2, t3, t4;
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

    printf("d2i_X509_REQ %.1f us, d2i_PUBKEY %.1f us, d2i_RSA_PUBKEY "
           "%.1f us, X509_REQ_verify %.1f us\n", (t1 - t0) / n * 1e6,
           (t2 - t1) / n * 1e6, (t3 - t2) / n * 1e6, (t4 - t3) / n * 1e6);

    OPENSSL_free(spki);
    X509_REQ_free(req);

    return 0;
}
