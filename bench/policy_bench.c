
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * What the policy gate costs on top of what any CSR intake must pay.
 *
 * For an RSA-2048 and a P-256 CSR made here with OpenSSL 3, in one
 * process, time-bounded and interleaved in BENCH_ROUNDS slices (verify,
 * full, verify, full, ...) so that frequency drift and other load hit both
 * sides alike; the ratio reported is the median of the slices' ratios,
 * the rates are totals:
 *
 *   verify  d2i_X509_REQ() + X509_REQ_verify() on the DER: the floor;
 *   full    tsb_csr_load() on the PEM (decode, parse, verify, facts) +
 *           tsb_policy_check() against a location policy with exact and
 *           wildcard names, a regex (compiled once, as the glue does),
 *           keyUsage and extendedKeyUsage sets.
 *
 * A second row per key has a SAN that only the policy's regex matches, to
 * show what a regex costs.  The target is full <= 1.25 x verify.
 *
 *   policy_bench [seconds-per-case]      (default 2)
 *
 * Prints a Markdown table on stdout; progress and the verdict on stderr.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsb_csr.h"
#include "tsb_json.h"
#include "tsb_policy.h"


#define BENCH_ROUNDS   20
#define BENCH_BATCH    16
#define BENCH_TARGET   1.25


typedef struct {
    unsigned char  *der;
    size_t          der_len;
    char           *pem;
    size_t          pem_len;
} bench_csr_t;


typedef struct {
    unsigned long   ops;
    double          secs;
} bench_tally_t;


static const tsb_name_pattern_t  bench_names[] = {
    { "api.example.com", sizeof("api.example.com") - 1 },
    { "*.svc.cluster.example", sizeof("*.svc.cluster.example") - 1 },
    { "*.apps.example.com", sizeof("*.apps.example.com") - 1 },
    { "~^[a-z0-9-]+\\.internal\\.example$",
      sizeof("~^[a-z0-9-]+\\.internal\\.example$") - 1 }
};

static const char *const  bench_sig_algs[] = {
    "SHA256_WITH_RSA", "SHA384_WITH_RSA", "SHA256_WITH_ECDSA",
    "SHA384_WITH_ECDSA", NULL
};

#define BENCH_N_NAMES  (sizeof(bench_names) / sizeof(bench_names[0]))

static void          *bench_regex[BENCH_N_NAMES];
static tsb_policy_t   bench_policy;


static void
bench_die(const char *what)
{
    fprintf(stderr, "policy_bench: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}


static double
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static void
bench_policy_init(void)
{
    char           errbuf[128];
    size_t         i;
    tsb_policy_t  *p;

    p = &bench_policy;
    memset(p, 0, sizeof(tsb_policy_t));

    /* what the glue does at configuration time */

    for (i = 0; i < BENCH_N_NAMES; i++) {
        if (tsb_policy_regex_compile(bench_names[i].pattern,
                                     bench_names[i].len, &bench_regex[i],
                                     errbuf, sizeof(errbuf))
            != 0)
        {
            fprintf(stderr, "policy_bench: %s\n", errbuf);
            exit(2);
        }
    }

    p->names = bench_names;
    p->n_names = BENCH_N_NAMES;
    p->name_regex = bench_regex;
    p->allowed_key_usage = TSB_KU_DIGITAL_SIGNATURE
                           | TSB_KU_KEY_ENCIPHERMENT | TSB_KU_KEY_AGREEMENT;
    p->default_key_usage = TSB_KU_DIGITAL_SIGNATURE;
    p->allowed_ext_key_usage = TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH;
    p->default_ext_key_usage = TSB_EKU_SERVER_AUTH;
    p->allow_ca = 0;
    p->max_path_len = -1;
    p->min_rsa_bits = 2048;
    p->sign_key_name = "CA-Key";
    p->allowed_signature_algorithms = bench_sig_algs;
    p->allowed_san_types = 1u << TSB_SAN_DNS;
}


static void
bench_csr_make(EVP_PKEY *key, const char *san, const char *ku,
    bench_csr_t *out)
{
    int                        n;
    BIO                       *bio;
    char                      *data;
    long                       len;
    X509_REQ                  *req;
    X509_NAME                 *name;
    X509V3_CTX                 ctx;
    unsigned char             *p;
    X509_EXTENSION            *ext;
    STACK_OF(X509_EXTENSION)  *exts;

    req = X509_REQ_new();
    if (req == NULL || X509_REQ_set_version(req, 0) != 1) {
        bench_die("X509_REQ_new");
    }

    name = X509_REQ_get_subject_name(req);

    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   (const unsigned char *) "Example", -1,
                                   -1, 0) != 1
        || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
               (const unsigned char *) "web-01.svc.cluster.example", -1,
               -1, 0) != 1
        || X509_REQ_set_pubkey(req, key) != 1)
    {
        bench_die("subject");
    }

    exts = sk_X509_EXTENSION_new_null();
    if (exts == NULL) {
        bench_die("sk_X509_EXTENSION_new_null");
    }

    X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);

    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        bench_die("subjectAltName");
    }

    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, ku);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        bench_die("keyUsage");
    }

    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage,
                              "serverAuth,clientAuth");
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        bench_die("extendedKeyUsage");
    }

    if (X509_REQ_add_extensions(req, exts) != 1) {
        bench_die("X509_REQ_add_extensions");
    }

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        bench_die("X509_REQ_sign");
    }

    n = i2d_X509_REQ(req, NULL);
    out->der = malloc((size_t) n);
    if (n <= 0 || out->der == NULL) {
        bench_die("i2d_X509_REQ");
    }

    p = out->der;
    i2d_X509_REQ(req, &p);
    out->der_len = (size_t) n;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509_REQ(bio, req) != 1) {
        bench_die("PEM_write_bio_X509_REQ");
    }

    len = BIO_get_mem_data(bio, &data);
    out->pem = malloc((size_t) len + 1);
    if (out->pem == NULL) {
        bench_die("malloc");
    }

    memcpy(out->pem, data, (size_t) len);
    out->pem[len] = '\0';
    out->pem_len = (size_t) len;

    BIO_free(bio);
    X509_REQ_free(req);
}


/* one CSR intake as the pre-policy world would do it: parse and verify */

static int
bench_verify_once(const bench_csr_t *c)
{
    int                   rc;
    X509_REQ             *req;
    EVP_PKEY             *pkey;
    const unsigned char  *p;

    p = c->der;
    req = d2i_X509_REQ(NULL, &p, (long) c->der_len);
    if (req == NULL) {
        return -1;
    }

    pkey = X509_REQ_get0_pubkey(req);
    rc = (pkey != NULL && X509_REQ_verify(req, pkey) == 1) ? 0 : -1;

    X509_REQ_free(req);

    return rc;
}


/* one CSR intake as the gateway does it */

static int
bench_full_once(const bench_csr_t *c, tsb_error_t *err)
{
    int              rc;
    tsb_csr_t       *csr;
    tsb_sign_req_t   req;

    if (tsb_csr_load((const unsigned char *) c->pem, c->pem_len, &csr, err)
        != 0)
    {
        return -1;
    }

    memset(&req, 0, sizeof(tsb_sign_req_t));
    req.certificate_authority = -1;
    req.validity = -1;

    rc = tsb_policy_check(&bench_policy, csr, &req, err);

    tsb_sign_req_free(&req);
    tsb_csr_free(csr);

    return rc;
}


static void
bench_run(const bench_csr_t *c, int full, double secs, bench_tally_t *t)
{
    int           i;
    double        start, now;
    tsb_error_t   err;

    start = bench_now();

    do {
        for (i = 0; i < BENCH_BATCH; i++) {
            if ((full ? bench_full_once(c, &err)
                      : bench_verify_once(c)) != 0)
            {
                fprintf(stderr, "policy_bench: %s refused the CSR: %s %s\n",
                        full ? "full" : "verify", full ? err.reason : "",
                        full ? err.detail : "");
                exit(2);
            }
        }

        t->ops += BENCH_BATCH;
        now = bench_now();

    } while (now - start < secs);

    t->secs += now - start;
}


static int
bench_cmp(const void *a, const void *b)
{
    double  x, y;

    x = *(const double *) a;
    y = *(const double *) b;

    return (x > y) - (x < y);
}


static double
bench_case(const char *label, const bench_csr_t *c, double secs)
{
    int            r;
    double         v, f, ratio, ratios[BENCH_ROUNDS];
    bench_tally_t  tv, tf, sv, sf;

    memset(&tv, 0, sizeof(bench_tally_t));
    memset(&tf, 0, sizeof(bench_tally_t));

    /* warm up caches, the allocator and OpenSSL's lazy provider tables */
    bench_run(c, 0, 0.05, &tv);
    bench_run(c, 1, 0.05, &tf);
    memset(&tv, 0, sizeof(bench_tally_t));
    memset(&tf, 0, sizeof(bench_tally_t));

    for (r = 0; r < BENCH_ROUNDS; r++) {
        memset(&sv, 0, sizeof(bench_tally_t));
        memset(&sf, 0, sizeof(bench_tally_t));

        bench_run(c, 0, secs / BENCH_ROUNDS, &sv);
        bench_run(c, 1, secs / BENCH_ROUNDS, &sf);

        /* time per full op over time per verify op, in this slice */
        ratios[r] = (sf.secs / sf.ops) / (sv.secs / sv.ops);

        tv.ops += sv.ops;
        tv.secs += sv.secs;
        tf.ops += sf.ops;
        tf.secs += sf.secs;
    }

    qsort(ratios, BENCH_ROUNDS, sizeof(double), bench_cmp);

    v = (double) tv.ops / tv.secs;
    f = (double) tf.ops / tf.secs;
    ratio = (ratios[BENCH_ROUNDS / 2 - 1] + ratios[BENCH_ROUNDS / 2]) / 2;

    printf("| %s | %.0f | %.1f | %.0f | %.1f | %.2fx |\n",
           label, v, 1e6 / v, f, 1e6 / f, ratio);
    fflush(stdout);

    fprintf(stderr, "policy_bench: %s: verify %.0f/s, full %.0f/s, "
            "full/verify %.2fx (median of %d slices, %.2f to %.2f; "
            "%lu + %lu ops)\n",
            label, v, f, ratio, BENCH_ROUNDS, ratios[0],
            ratios[BENCH_ROUNDS - 1], tv.ops, tf.ops);

    return ratio;
}


int
main(int argc, char **argv)
{
    int          i, missed;
    char         label[64];
    double       secs, ratio;
    EVP_PKEY    *key;
    bench_csr_t  plain, regex;

    static const struct {
        const char  *kind;
        const char  *ku;
    } keys[] = {
        { "RSA-2048", "critical,digitalSignature,keyEncipherment" },
        { "P-256", "critical,digitalSignature,keyAgreement" }
    };

    secs = (argc > 1) ? atof(argv[1]) : 2.0;
    if (secs <= 0) {
        fprintf(stderr, "usage: %s [seconds-per-case]\n", argv[0]);
        return 2;
    }

    bench_policy_init();
    missed = 0;

    printf("| CSR | verify-only ops/s | µs/op | full ops/s | µs/op "
           "| full/verify |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");

    for (i = 0; i < 2; i++) {
        key = (i == 0) ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
        if (key == NULL) {
            bench_die(keys[i].kind);
        }

        /* names matched by the exact and wildcard patterns */
        bench_csr_make(key, "DNS:web-01.svc.cluster.example,"
                            "DNS:web-01.apps.example.com,"
                            "DNS:api.example.com", keys[i].ku, &plain);

        /* one name that only the "~regex" pattern matches */
        bench_csr_make(key, "DNS:web-01.svc.cluster.example,"
                            "DNS:db-01.internal.example", keys[i].ku,
                       &regex);

        ratio = bench_case(keys[i].kind, &plain, secs);

        if (ratio > BENCH_TARGET) {
            missed++;
        }

        snprintf(label, sizeof(label), "%s, a SAN matched by regex",
                 keys[i].kind);
        bench_case(label, &regex, secs);

        free(plain.der);
        free(plain.pem);
        free(regex.der);
        free(regex.pem);
        EVP_PKEY_free(key);
    }

    for (i = 0; i < (int) BENCH_N_NAMES; i++) {
        tsb_policy_regex_free(bench_regex[i]);
    }

    fprintf(stderr, "policy_bench: target full/verify <= %.2fx: %s\n",
            BENCH_TARGET, missed ? "MISSED" : "met");

    return 0;
}
