
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: post-issuance verification (tsb_verify.c).
 *
 * At start-up it makes, with OpenSSL and fixed Ed25519 keys (Ed25519
 * signatures are deterministic, so every run makes the same bytes and the
 * committed seeds stay valid): a CA, two CSRs (a server leaf with SANs of
 * every kind we keep, and an intermediate CA with a pathLenConstraint),
 * their expectations with tsb_expect_build_ex(), and a genuine certificate
 * for each, issued by the CA.  Each genuine certificate must verify
 * against its own expectation, with and without the issuer chain, and not
 * against the other's.
 *
 * The first input byte picks what the rest is:
 *   byte % 3 == 0  an expectation blob, checked against a genuine
 *                  certificate;
 *   byte % 3 == 1  a certificate (DER for tsb_expect_verify() itself; PEM,
 *                  DER or base64 through tsb_cert_load() as the glue does),
 *                  checked against a genuine expectation;
 *   byte % 3 == 2  an issuer chain file for tsb_chain_load_file(), written
 *                  to a memfd (no disk I/O) and read back through
 *                  /proc/self/fd; the chain loaded then goes through
 *                  tsb_chain_to_pem() and a second load, and is used to
 *                  check the genuine leaf.
 * Bit 2 picks the leaf or the CA pair, bit 3 whether the issuer chain
 * takes part.
 *
 * FUZZ_VERIFY_SEEDS=dir makes the target write its seed corpus there
 * (the genuine pairs and a set of near misses) at start-up.
 */


#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsb_verify.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_verify: assertion failed: %s (line %d)\n",  \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define fuzz_die(what)                                                        \
    do {                                                                      \
        fprintf(stderr, "fuzz_verify: %s failed (line %d)\n", what,           \
                __LINE__);                                                    \
        ERR_print_errors_fp(stderr);                                          \
        abort();                                                              \
    } while (0)


/* fixed keys: the bytes made from them must not change between runs */

static const char  fuzz_key_subject[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJrKqnv6SOAhCrPUxzuL/NhlORdc5xNam+4MJCUYrIz1\n"
    "-----END PRIVATE KEY-----\n";

static const char  fuzz_key_ca[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEINpUHiZALwqyX1zBDuCBF38fnnyTLJVQNepesOeALOqr\n"
    "-----END PRIVATE KEY-----\n";

static const char  fuzz_key_other[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIOftBAuYPgTG1tHgr5DqB/7SPzvaGPh0TBfQRwNaKmrr\n"
    "-----END PRIVATE KEY-----\n";


#define FUZZ_LEAF_CN  "web-01.svc.example.com"
#define FUZZ_CA2_CN   "Issuing CA 2"


typedef struct {
    const char  *cn;
    const char  *cn2;
    const char  *san;          /* X509v3 config values, NULL: none */
    const char  *ku;
    const char  *eku;
    const char  *bc;
    const char  *nc;           /* nameConstraints, which nobody accepts */
    const char  *not_after;    /* NULL: the genuine ten years */
    EVP_PKEY    *key;          /* the subject's */
    EVP_PKEY    *signer;
    X509        *issuer;       /* NULL: self-signed */
    long         serial;
} fuzz_issue_t;


typedef struct {
    tsb_buf_t    blob;         /* the expectation */
    tsb_buf_t    der;          /* the genuine certificate */
    X509        *x;
} fuzz_pair_t;


static EVP_PKEY     *key_subject, *key_ca, *key_other;
static X509         *ca_cert, *other_ca_cert;
static fuzz_pair_t   pairs[2];            /* leaf, CA */
static tsb_chain_t   chain;
static int           chain_fd = -1;
static char          chain_path[64];


static EVP_PKEY *
fuzz_key(const char *pem)
{
    BIO       *bio;
    EVP_PKEY  *k;

    bio = BIO_new_mem_buf(pem, -1);
    k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);

    if (k == NULL) {
        fuzz_die("PEM_read_bio_PrivateKey");
    }

    return k;
}


static void
fuzz_ext(X509 *x, X509_REQ *req, STACK_OF(X509_EXTENSION) *sk, X509 *issuer,
    int nid, const char *value)
{
    X509V3_CTX       ctx;
    X509_EXTENSION  *ext;

    if (value == NULL) {
        return;
    }

    X509V3_set_ctx(&ctx, issuer, x, req, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);

    if (ext == NULL) {
        fuzz_die(value);
    }

    if (x != NULL) {
        if (X509_add_ext(x, ext, -1) != 1) {
            fuzz_die("X509_add_ext");
        }

        X509_EXTENSION_free(ext);

    } else if (!sk_X509_EXTENSION_push(sk, ext)) {
        fuzz_die("sk_X509_EXTENSION_push");
    }
}


static X509 *
fuzz_issue(const fuzz_issue_t *i)
{
    X509       *x, *issuer;
    X509_NAME  *name;

    x = X509_new();

    if (x == NULL || X509_set_version(x, 2) != 1
        || ASN1_INTEGER_set(X509_get_serialNumber(x), i->serial) != 1
        || ASN1_TIME_set_string_X509(X509_getm_notBefore(x),
                                     "20260101000000Z") != 1
        || ASN1_TIME_set_string_X509(X509_getm_notAfter(x),
                                     i->not_after ? i->not_after
                                                  : "20360101000000Z") != 1
        || X509_set_pubkey(x, i->key) != 1)
    {
        fuzz_die("X509_new");
    }

    name = X509_get_subject_name(x);

    if (i->cn && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                            (const unsigned char *) i->cn,
                                            -1, -1, 0) != 1)
    {
        fuzz_die("CN");
    }

    if (i->cn2 && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                             (const unsigned char *) i->cn2,
                                             -1, -1, 0) != 1)
    {
        fuzz_die("CN");
    }

    issuer = i->issuer ? i->issuer : x;

    if (X509_set_issuer_name(x, X509_get_subject_name(issuer)) != 1) {
        fuzz_die("X509_set_issuer_name");
    }

    fuzz_ext(x, NULL, NULL, issuer, NID_basic_constraints, i->bc);
    fuzz_ext(x, NULL, NULL, issuer, NID_key_usage, i->ku);
    fuzz_ext(x, NULL, NULL, issuer, NID_ext_key_usage, i->eku);
    fuzz_ext(x, NULL, NULL, issuer, NID_subject_alt_name, i->san);
    fuzz_ext(x, NULL, NULL, issuer, NID_name_constraints, i->nc);

    if (X509_sign(x, i->signer, NULL) <= 0) {
        fuzz_die("X509_sign");
    }

    return x;
}


static tsb_buf_t
fuzz_der(X509 *x)
{
    int             n;
    tsb_buf_t       b;
    unsigned char  *p;

    n = i2d_X509(x, NULL);
    b.data = malloc(n > 0 ? (size_t) n : 1);

    if (n <= 0 || b.data == NULL) {
        fuzz_die("i2d_X509");
    }

    p = b.data;
    i2d_X509(x, &p);
    b.len = (size_t) n;

    return b;
}


static tsb_buf_t
fuzz_pem(X509 *x)
{
    BIO        *bio;
    char       *data;
    long        n;
    tsb_buf_t   b;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1) {
        fuzz_die("PEM_write_bio_X509");
    }

    n = BIO_get_mem_data(bio, &data);
    b.data = malloc((size_t) n + 1);
    fuzz_assert(b.data != NULL);
    memcpy(b.data, data, (size_t) n);
    b.data[n] = '\0';
    b.len = (size_t) n;
    BIO_free(bio);

    return b;
}


/* a CSR made and loaded as a client's would be, and its expectation */
static tsb_buf_t
fuzz_expect(const char *cn, const char *san, const char *ku,
    const char *bc, int ca, unsigned req_ku, unsigned req_eku)
{
    int                        n;
    X509_REQ                  *req;
    tsb_buf_t                  blob;
    tsb_csr_t                 *csr;
    tsb_error_t                err;
    unsigned char             *der, *p;
    tsb_sign_req_t             sr;
    STACK_OF(X509_EXTENSION)  *exts;

    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();

    if (req == NULL || exts == NULL || X509_REQ_set_version(req, 0) != 1
        || X509_REQ_set_pubkey(req, key_subject) != 1
        || X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN",
                                      MBSTRING_UTF8,
                                      (const unsigned char *) cn, -1, -1, 0)
           != 1)
    {
        fuzz_die("X509_REQ_new");
    }

    fuzz_ext(NULL, req, exts, NULL, NID_subject_alt_name, san);
    fuzz_ext(NULL, req, exts, NULL, NID_key_usage, ku);
    fuzz_ext(NULL, req, exts, NULL, NID_basic_constraints, bc);

    if (X509_REQ_add_extensions(req, exts) != 1
        || X509_REQ_sign(req, key_subject, NULL) <= 0)
    {
        fuzz_die("X509_REQ_sign");
    }

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    n = i2d_X509_REQ(req, NULL);
    der = malloc(n > 0 ? (size_t) n : 1);
    fuzz_assert(n > 0 && der != NULL);
    p = der;
    i2d_X509_REQ(req, &p);
    X509_REQ_free(req);

    if (tsb_csr_load(der, (size_t) n, &csr, &err) != 0) {
        fprintf(stderr, "fuzz_verify: our CSR does not load: %s: %s\n",
                err.reason, err.detail);
        abort();
    }

    free(der);

    memset(&sr, 0, sizeof(tsb_sign_req_t));
    sr.certificate_authority = ca;
    sr.key_usage = req_ku;
    sr.key_usage_present = 1;
    sr.ext_key_usage = req_eku;
    sr.ext_key_usage_present = req_eku != 0;
    sr.validity = -1;

    /*
     * Accepted when the genuine certificates' fixed notBefore says, for
     * as long as they last (ten years), so that their lifetime fits.
     */

    if (tsb_expect_build_ex(csr, &sr, 3653L * 86400, 1767225600, &blob)
        != 0)
    {
        fuzz_die("tsb_expect_build_ex");
    }

    tsb_csr_free(csr);

    return blob;
}


static int
fuzz_verify_ok(const tsb_buf_t *blob, const tsb_buf_t *der,
    const tsb_chain_t *issuers)
{
    tsb_error_t  err;

    memset(&err, 0, sizeof(tsb_error_t));

    if (tsb_expect_verify(blob->data, blob->len, NULL, der->data, der->len,
                          issuers, &err) != 0)
    {
        return 0;
    }

    return 1;
}


static void
fuzz_chain_write(const unsigned char *data, size_t len)
{
    fuzz_assert(ftruncate(chain_fd, 0) == 0);
    fuzz_assert(pwrite(chain_fd, data, len, 0) == (ssize_t) len);
}


static void
fuzz_seed(const char *dir, const char *name, int mode, int pair, int chain,
    const unsigned char *data, size_t len)
{
    int    b;
    char   path[512];
    FILE  *f;

    /* the first byte value that says so */

    for (b = 0; b < 256; b++) {
        if (b % 3 == mode && ((b >> 2) & 1) == pair
            && ((b >> 3) & 1) == chain)
        {
            break;
        }
    }

    fuzz_assert(b < 256);

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "wb");
    if (f == NULL || fputc(b, f) == EOF
        || fwrite(data, 1, len, f) != len || fclose(f) != 0)
    {
        fuzz_die(path);
    }
}


static void
fuzz_seed_cert(const char *dir, const char *name, int pair,
    const fuzz_issue_t *is, int as_pem)
{
    X509       *x;
    tsb_buf_t   b;

    x = fuzz_issue(is);
    b = as_pem ? fuzz_pem(x) : fuzz_der(x);
    fuzz_seed(dir, name, 1, pair, 1, b.data, b.len);
    tsb_buf_free(&b);
    X509_free(x);
}


static void
fuzz_write_seeds(const char *dir)
{
    size_t          n;
    tsb_buf_t       a, b, c;
    unsigned char  *p, buf[8192];
    fuzz_issue_t    is;

    /* mode 0: the genuine expectations, and one cut short */

    fuzz_seed(dir, "blob-leaf", 0, 0, 0, pairs[0].blob.data,
              pairs[0].blob.len);
    fuzz_seed(dir, "blob-leaf-chain", 0, 0, 1, pairs[0].blob.data,
              pairs[0].blob.len);
    fuzz_seed(dir, "blob-ca", 0, 1, 1, pairs[1].blob.data,
              pairs[1].blob.len);
    fuzz_seed(dir, "blob-leaf-cut", 0, 0, 0, pairs[0].blob.data,
              pairs[0].blob.len - 9);
    fuzz_seed(dir, "blob-ca-for-leaf", 0, 0, 0, pairs[1].blob.data,
              pairs[1].blob.len);

    /* mode 1: the genuine certificates, and near misses */

    fuzz_seed(dir, "cert-leaf", 1, 0, 1, pairs[0].der.data,
              pairs[0].der.len);
    fuzz_seed(dir, "cert-ca", 1, 1, 1, pairs[1].der.data, pairs[1].der.len);
    a = fuzz_pem(pairs[0].x);
    fuzz_seed(dir, "cert-leaf-pem", 1, 0, 0, a.data, a.len);
    tsb_buf_free(&a);

    memset(&is, 0, sizeof(fuzz_issue_t));
    is.cn = FUZZ_LEAF_CN;
    is.san = "DNS:WEB-01.svc.example.com.,IP:10.0.0.1,email:pki@example.com";
    is.ku = "critical,digitalSignature";
    is.eku = "serverAuth";
    is.key = key_subject;
    is.signer = key_ca;
    is.issuer = ca_cert;
    is.serial = 100;

    is.nc = "critical,permitted;DNS:.example.com";
    fuzz_seed_cert(dir, "cert-leaf-name-constraints", 0, &is, 0);
    is.nc = NULL;
    is.not_after = "20460101000000Z";
    fuzz_seed_cert(dir, "cert-leaf-longer", 0, &is, 0);
    is.not_after = NULL;

    is.san = "DNS:web-01.svc.example.com,DNS:evil.example.com";
    fuzz_seed_cert(dir, "cert-leaf-extra-san", 0, &is, 0);
    is.san = "RID:1.2.3.4,otherName:1.2.3.4;UTF8:x";
    fuzz_seed_cert(dir, "cert-leaf-rid-san", 0, &is, 0);
    is.san = "IP:2001:db8::1,URI:https://svc.example.com/x";
    fuzz_seed_cert(dir, "cert-leaf-ip6-uri", 0, &is, 0);
    is.san = NULL;
    is.bc = "critical,CA:TRUE";
    fuzz_seed_cert(dir, "cert-leaf-ca", 0, &is, 0);
    is.bc = NULL;
    is.ku = NULL;
    fuzz_seed_cert(dir, "cert-leaf-no-ku", 0, &is, 0);
    is.ku = "critical,digitalSignature,keyCertSign,decipherOnly";
    fuzz_seed_cert(dir, "cert-leaf-more-ku", 0, &is, 0);
    is.ku = "digitalSignature";
    is.eku = "serverAuth,codeSigning,1.2.3.4.5";
    fuzz_seed_cert(dir, "cert-leaf-more-eku", 0, &is, 0);
    is.eku = NULL;
    fuzz_seed_cert(dir, "cert-leaf-no-eku", 0, &is, 0);
    is.eku = "clientAuth";
    is.cn2 = "other.example.com";
    fuzz_seed_cert(dir, "cert-leaf-two-cn", 0, &is, 0);
    is.cn2 = NULL;
    is.cn = "Web-01.svc.example.com";
    fuzz_seed_cert(dir, "cert-leaf-cn-case", 0, &is, 0);
    is.cn = FUZZ_LEAF_CN;
    is.key = key_other;
    fuzz_seed_cert(dir, "cert-leaf-other-key", 0, &is, 0);
    is.key = key_subject;
    is.signer = key_other;
    fuzz_seed_cert(dir, "cert-leaf-bad-signature", 0, &is, 0);
    is.issuer = other_ca_cert;
    fuzz_seed_cert(dir, "cert-leaf-other-issuer", 0, &is, 1);

    memset(&is, 0, sizeof(fuzz_issue_t));
    is.cn = FUZZ_CA2_CN;
    is.ku = "critical,keyCertSign,cRLSign";
    is.key = key_subject;
    is.signer = key_ca;
    is.issuer = ca_cert;
    is.serial = 200;

    is.bc = "critical,CA:TRUE,pathlen:2";
    fuzz_seed_cert(dir, "cert-ca-pathlen2", 1, &is, 0);
    is.bc = "critical,CA:TRUE";
    fuzz_seed_cert(dir, "cert-ca-no-pathlen", 1, &is, 0);
    is.bc = "critical,CA:FALSE";
    fuzz_seed_cert(dir, "cert-ca-false", 1, &is, 0);

    /* mode 2: issuer chains */

    a = fuzz_pem(ca_cert);
    b = fuzz_pem(other_ca_cert);
    c = fuzz_pem(pairs[0].x);

    fuzz_seed(dir, "chain-ca", 2, 0, 0, a.data, a.len);

    fuzz_assert(a.len + b.len + 64 < sizeof(buf));
    p = buf;
    p += sprintf((char *) p, "subject=CN = Fuzz Root CA\n");
    memcpy(p, a.data, a.len);
    p += a.len;
    p += sprintf((char *) p, "\nsome text between\n");
    memcpy(p, b.data, b.len);
    p += b.len;
    n = (size_t) (p - buf);
    fuzz_seed(dir, "chain-two-text", 2, 0, 0, buf, n);

    fuzz_seed(dir, "chain-leaf", 2, 0, 0, c.data, c.len);

    n = (size_t) snprintf((char *) buf, sizeof(buf),
                          "-----BEGIN PRIVATE KEY-----\n%s"
                          "-----END PRIVATE KEY-----\n",
                          "MC4CAQAwBQYDK2VwBCIEIOftBAuYPgTG1tHgr5DqB/7SPzvaGP"
                          "h0TBfQRwNaKmrr\n");
    fuzz_seed(dir, "chain-key", 2, 0, 0, buf, n);

    p = (unsigned char *) strstr((char *) a.data, "\n") + 1;
    n = (size_t) snprintf((char *) buf, sizeof(buf),
                          "-----BEGIN CERTIFICATE-----\n"
                          "Proc-Type: 4,ENCRYPTED\n\n%s",
                          (char *) p);
    fuzz_seed(dir, "chain-headers", 2, 0, 0, buf, n);

    fuzz_seed(dir, "chain-empty", 2, 0, 0, (const unsigned char *) "", 0);

    tsb_buf_free(&a);
    tsb_buf_free(&b);
    tsb_buf_free(&c);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tsb_buf_t     pem;
    tsb_error_t   err;
    const char   *dir;
    fuzz_issue_t  is;
    STACK_OF(X509)  *sk;

    (void) argc;
    (void) argv;

    key_subject = fuzz_key(fuzz_key_subject);
    key_ca = fuzz_key(fuzz_key_ca);
    key_other = fuzz_key(fuzz_key_other);

    /* the CA, and another with a name of its own */

    memset(&is, 0, sizeof(fuzz_issue_t));
    is.cn = "Fuzz Root CA";
    is.bc = "critical,CA:TRUE";
    is.ku = "critical,keyCertSign,cRLSign";
    is.key = key_ca;
    is.signer = key_ca;
    is.serial = 1;
    ca_cert = fuzz_issue(&is);

    is.cn = "Other CA";
    is.key = key_other;
    is.signer = key_other;
    other_ca_cert = fuzz_issue(&is);

    /* the leaf: the expectation, and a certificate within it */

    pairs[0].blob = fuzz_expect(FUZZ_LEAF_CN,
                                "DNS:web-01.svc.example.com,"
                                "DNS:Alt.Example.com.,IP:10.0.0.1,"
                                "IP:2001:db8::1,email:pki@Example.COM,"
                                "URI:https://svc.example.com/x",
                                "critical,digitalSignature", NULL, 0,
                                TSB_KU_DIGITAL_SIGNATURE
                                | TSB_KU_CONTENT_COMMITMENT,
                                TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH);

    memset(&is, 0, sizeof(fuzz_issue_t));
    is.cn = FUZZ_LEAF_CN;
    is.san = "DNS:WEB-01.svc.example.com.,IP:10.0.0.1,email:pki@example.com,"
             "DNS:alt.example.com";
    is.ku = "critical,digitalSignature";
    is.eku = "serverAuth";
    is.key = key_subject;
    is.signer = key_ca;
    is.issuer = ca_cert;
    is.serial = 10;
    pairs[0].x = fuzz_issue(&is);
    pairs[0].der = fuzz_der(pairs[0].x);

    /* the intermediate CA: pathlen 1 accepted, 0 issued */

    pairs[1].blob = fuzz_expect(FUZZ_CA2_CN, NULL,
                                "critical,keyCertSign,cRLSign",
                                "critical,CA:TRUE,pathlen:1", 1,
                                TSB_KU_KEY_CERT_SIGN | TSB_KU_CRL_SIGN, 0);

    memset(&is, 0, sizeof(fuzz_issue_t));
    is.cn = FUZZ_CA2_CN;
    is.bc = "critical,CA:TRUE,pathlen:0";
    is.ku = "critical,keyCertSign,cRLSign";
    is.key = key_subject;
    is.signer = key_ca;
    is.issuer = ca_cert;
    is.serial = 11;
    pairs[1].x = fuzz_issue(&is);
    pairs[1].der = fuzz_der(pairs[1].x);

    /* the issuer chain, through the file loader on a memfd */

    chain_fd = memfd_create("fuzz_verify_chain", 0);
    if (chain_fd < 0) {
        fuzz_die("memfd_create");
    }

    snprintf(chain_path, sizeof(chain_path), "/proc/self/fd/%d", chain_fd);

    pem = fuzz_pem(ca_cert);
    fuzz_chain_write(pem.data, pem.len);
    tsb_buf_free(&pem);

    if (tsb_chain_load_file(chain_path, &chain, &err) != 0) {
        fprintf(stderr, "fuzz_verify: the CA does not load: %s\n",
                err.detail);
        abort();
    }

    fuzz_assert(chain.n == 1);

    /* the genuine pairs verify, crossed pairs do not */

    fuzz_assert(fuzz_verify_ok(&pairs[0].blob, &pairs[0].der, NULL));
    fuzz_assert(fuzz_verify_ok(&pairs[0].blob, &pairs[0].der, &chain));
    fuzz_assert(fuzz_verify_ok(&pairs[1].blob, &pairs[1].der, NULL));
    fuzz_assert(fuzz_verify_ok(&pairs[1].blob, &pairs[1].der, &chain));
    fuzz_assert(!fuzz_verify_ok(&pairs[0].blob, &pairs[1].der, NULL));
    fuzz_assert(!fuzz_verify_ok(&pairs[1].blob, &pairs[0].der, NULL));

    /* a chain of the other CA does not vouch for them */

    sk = sk_X509_new_null();
    fuzz_assert(sk != NULL && sk_X509_push(sk, other_ca_cert));
    {
        tsb_chain_t  other;

        other.certs = sk;
        other.n = 1;
        fuzz_assert(!fuzz_verify_ok(&pairs[0].blob, &pairs[0].der, &other));
    }
    sk_X509_free(sk);

    dir = getenv("FUZZ_VERIFY_SEEDS");

    if (dir != NULL) {
        fuzz_write_seeds(dir);
    }

    return 0;
}


static void
fuzz_error_ok(const tsb_error_t *err)
{
    fuzz_assert(err->reason != NULL);
    fuzz_assert(memchr(err->detail, '\0', sizeof(err->detail)) != NULL);
    fuzz_assert(err->detail[0] != '\0');

    if (strcmp(err->reason, "internal.expect") == 0
        || strcmp(err->reason, "internal.memory") == 0)
    {
        fuzz_assert(err->status == 500);

    } else {
        fuzz_assert(err->status == 502);
        fuzz_assert(strcmp(err->reason, "issued.mismatch") == 0
                    || strcmp(err->reason, "upstream.certificate") == 0);
    }
}


/* the input is an expectation; the certificate is genuine */
static void
fuzz_blob(const uint8_t *data, size_t size, const fuzz_pair_t *pr,
    const tsb_chain_t *issuers)
{
    int          rc;
    tsb_error_t  err;

    memset(&err, 0, sizeof(tsb_error_t));

    rc = tsb_expect_verify(data, size, NULL, pr->der.data, pr->der.len,
                           issuers, &err);

    if (size == pr->blob.len && memcmp(data, pr->blob.data, size) == 0) {
        fuzz_assert(rc == 0);
    }

    if (rc != 0) {
        fuzz_error_ok(&err);
        fuzz_assert(strcmp(err.reason, "upstream.certificate") != 0);
        return;
    }

    /* what verified names this key and exactly this commonName */

    fuzz_assert(size >= 48 && data[0] == 'T' && data[1] == 'X');
    fuzz_assert(memcmp(data + 12, pr->blob.data + 12, 32) == 0);
    fuzz_assert(((size_t) data[44] << 8 | data[45])
                == ((size_t) pr->blob.data[44] << 8 | pr->blob.data[45]));
    fuzz_assert(memcmp(data + 46, pr->blob.data + 46,
                       (size_t) data[44] << 8 | data[45]) == 0);
}


/* the input is a certificate; the expectation is genuine */
static void
fuzz_cert(const uint8_t *data, size_t size, const fuzz_pair_t *pr,
    const tsb_chain_t *issuers, int ca)
{
    int                   rc, rc2, rc3;
    X509                 *x;
    tsb_cert_t            cert;
    tsb_error_t           err, err2, err3;
    const unsigned char  *p;

    memset(&err, 0, sizeof(tsb_error_t));

    rc = tsb_expect_verify(pr->blob.data, pr->blob.len, NULL, data, size,
                           issuers, &err);

    if (size == pr->der.len && memcmp(data, pr->der.data, size) == 0) {
        fuzz_assert(rc == 0);
    }

    if (rc != 0) {
        fuzz_error_ok(&err);
        fuzz_assert(strcmp(err.reason, "internal.expect") != 0);

    } else {
        /* an accepted certificate is what it must be, by OpenSSL's word */

        p = data;
        x = d2i_X509(NULL, &p, (long) size);
        fuzz_assert(x != NULL && p == data + size);

        if (!ca) {
            fuzz_assert(X509_check_ca(x) == 0);
        }

        if (issuers != NULL) {
            fuzz_assert(X509_verify(x, X509_get0_pubkey(ca_cert)) == 1);
            fuzz_assert(tsb_chain_verify_issued(issuers, data, size, &err2)
                        == 0);

        } else {
            /* the chain is an extra condition, never a relaxation */
            rc2 = tsb_expect_verify(pr->blob.data, pr->blob.len, NULL, data,
                                    size, &chain, &err2);
            fuzz_assert(rc2 == 0
                        || strcmp(err2.reason, "issued.mismatch") == 0);
        }

        X509_free(x);
        ERR_clear_error();
    }

    /* the glue's way: tsb_cert_load() first, then the facts it found */

    memset(&err3, 0, sizeof(tsb_error_t));

    if (tsb_cert_load(data, size, &cert, &err3) != 0) {
        return;
    }

    rc3 = tsb_expect_verify(pr->blob.data, pr->blob.len, &cert, NULL, 0,
                            issuers, &err3);

    if (rc3 != 0) {
        fuzz_error_ok(&err3);
    }

    /* DER in, DER out: both ways must agree */

    if (cert.der.len == size && memcmp(cert.der.data, data, size) == 0) {
        fuzz_assert((rc == 0) == (rc3 == 0));

        if (rc != 0) {
            fuzz_assert(strcmp(err.reason, err3.reason) == 0);
        }
    }

    tsb_cert_free(&cert);
}


/* the input is an issuer chain file */
static void
fuzz_chain(const uint8_t *data, size_t size)
{
    size_t       i;
    tsb_buf_t    pem, pem2;
    tsb_chain_t  c, c2;
    tsb_error_t  err;

    fuzz_chain_write(data, size);

    memset(&err, 0, sizeof(tsb_error_t));

    if (tsb_chain_load_file(chain_path, &c, &err) != 0) {
        fuzz_assert(c.certs == NULL && c.n == 0);
        fuzz_assert(err.status == 500 && err.reason != NULL);
        fuzz_assert(strcmp(err.reason, "config.issuer_chain") == 0
                    || strcmp(err.reason, "internal.memory") == 0);
        fuzz_assert(memchr(err.detail, '\0', sizeof(err.detail)) != NULL);
        return;
    }

    fuzz_assert(c.certs != NULL && c.n >= 1);
    fuzz_assert((size_t) sk_X509_num(c.certs) == c.n);

    for (i = 0; i < c.n; i++) {
        fuzz_assert(X509_check_ca(sk_X509_value(c.certs, i)) >= 1);
    }

    (void) tsb_chain_fits_algorithm(&c, "SHA256_WITH_RSA");
    (void) tsb_chain_fits_algorithm(&c, "EDDSA");
    fuzz_assert(tsb_chain_fits_algorithm(&c, "NO_SUCH_ALGORITHM") == 1);

    /* our own PEM of it loads again, to the same PEM */

    fuzz_assert(tsb_chain_to_pem(&c, &pem) == 0);
    fuzz_chain_write(pem.data, pem.len);

    if (tsb_chain_load_file(chain_path, &c2, &err) != 0) {
        fprintf(stderr, "fuzz_verify: our own chain PEM does not load: %s\n",
                err.detail);
        abort();
    }

    fuzz_assert(c2.n == c.n);
    fuzz_assert(tsb_chain_to_pem(&c2, &pem2) == 0);
    fuzz_assert(pem2.len == pem.len
                && memcmp(pem2.data, pem.data, pem.len) == 0);
    tsb_buf_free(&pem2);
    tsb_chain_free(&c2);
    tsb_buf_free(&pem);

    /* the genuine leaf, against whatever CAs this is */

    if (tsb_expect_verify(pairs[0].blob.data, pairs[0].blob.len, NULL,
                          pairs[0].der.data, pairs[0].der.len, &c, &err)
        != 0)
    {
        fuzz_error_ok(&err);
        fuzz_assert(strcmp(err.reason, "issued.mismatch") == 0);
    }

    tsb_chain_free(&c);
    fuzz_assert(c.certs == NULL && c.n == 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned             b;
    const fuzz_pair_t   *pr;
    const tsb_chain_t   *issuers;

    if (size == 0) {
        return 0;
    }

    b = data[0];
    pr = &pairs[(b >> 2) & 1];
    issuers = ((b >> 3) & 1) ? &chain : NULL;

    switch (b % 3) {
    case 0:
        fuzz_blob(data + 1, size - 1, pr, issuers);
        break;
    case 1:
        fuzz_cert(data + 1, size - 1, pr, issuers, (b >> 2) & 1);
        break;
    default:
        fuzz_chain(data + 1, size - 1);
        break;
    }

    return 0;
}
