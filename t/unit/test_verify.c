
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Post-issuance verification: a CA made here with OpenSSL issues the
 * certificate the gateway expects, and then one wrong thing at a time.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tap.h"
#include "tsb_test_csr.h"
#include "tsb_csr.h"
#include "tsb_policy.h"
#include "tsb_cert.h"
#include "tsb_verify.h"


typedef struct {
    EVP_PKEY    *key;
    X509        *cert;
} ca_t;


/* what the issuing CA puts into a certificate; NULL: left out */
typedef struct {
    EVP_PKEY    *key;           /* the subject's key */
    const char  *cn;
    const char  *cn2;
    const char  *san;
    const char  *ku;
    const char  *eku;
    const char  *bc;
    int          v1;            /* no extensions at all, version 1 */
    const char  *subj;          /* after the CN: "O=x/C=CH"; "+" joins the
                                   RDN before */
} issue_t;


static char  tmpdir[] = "/tmp/test_verify.XXXXXX";

static EVP_PKEY  *key_a, *key_b, *key_ca;

static ca_t  ca, root_ca, other_ca, same_name_ca;


static void
ca_make(ca_t *c, const char *cn, EVP_PKEY *key)
{
    X509            *x;
    X509V3_CTX       ctx;
    X509_NAME       *name;
    X509_EXTENSION  *ext;

    x = X509_new();

    if (x == NULL || X509_set_version(x, 2) != 1
        || ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1
        || X509_gmtime_adj(X509_getm_notBefore(x), -60) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL
        || X509_set_pubkey(x, key) != 1)
    {
        tt_die("CA certificate");
    }

    name = X509_get_subject_name(x);

    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   (const unsigned char *) cn, -1, -1, 0)
        != 1
        || X509_set_issuer_name(x, name) != 1)
    {
        tt_die("CA name");
    }

    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);

    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                              "critical,CA:TRUE");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        tt_die("CA basicConstraints");
    }

    X509_EXTENSION_free(ext);

    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
                              "critical,keyCertSign,cRLSign");
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        tt_die("CA keyUsage");
    }

    X509_EXTENSION_free(ext);

    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        tt_die("CA sign");
    }

    c->key = key;
    c->cert = x;
}


static void
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION  *ext;

    if (value == NULL) {
        return;
    }

    ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        tt_die(value);
    }

    X509_EXTENSION_free(ext);
}


/* DER of a certificate the CA issues; heap */
static tsb_buf_t
issue(const ca_t *c, const issue_t *i)
{
    int              n;
    X509            *x;
    tsb_buf_t        b;
    X509V3_CTX       ctx;
    X509_NAME       *name;
    unsigned char   *p;

    x = X509_new();

    if (x == NULL || X509_set_version(x, i->v1 ? 0 : 2) != 1
        || ASN1_INTEGER_set(X509_get_serialNumber(x), 2) != 1
        || X509_gmtime_adj(X509_getm_notBefore(x), -60) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL
        || X509_set_pubkey(x, i->key) != 1
        || X509_set_issuer_name(x, X509_get_subject_name(c->cert)) != 1)
    {
        tt_die("certificate");
    }

    name = X509_get_subject_name(x);

    if (i->cn && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                            (const unsigned char *) i->cn,
                                            -1, -1, 0)
                 != 1)
    {
        tt_die("CN");
    }

    if (i->cn2 && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                             (const unsigned char *) i->cn2,
                                             -1, -1, 0)
                  != 1)
    {
        tt_die("CN 2");
    }

    if (i->subj) {
        char  buf[256], *p, *eq, *next;
        int   set;

        snprintf(buf, sizeof(buf), "%s", i->subj);

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
                tt_die("subj");
            }

            *eq++ = '\0';

            if (X509_NAME_add_entry_by_txt(name, p, MBSTRING_UTF8,
                                           (const unsigned char *) eq, -1,
                                           -1, set)
                != 1)
            {
                tt_die("subj entry");
            }
        }
    }

    if (!i->v1) {
        X509V3_set_ctx(&ctx, c->cert, x, NULL, NULL, 0);
        add_ext(x, &ctx, NID_basic_constraints, i->bc);
        add_ext(x, &ctx, NID_key_usage, i->ku);
        add_ext(x, &ctx, NID_ext_key_usage, i->eku);
        add_ext(x, &ctx, NID_subject_alt_name, i->san);
    }

    if (X509_sign(x, c->key, EVP_sha256()) <= 0) {
        tt_die("sign");
    }

    n = i2d_X509(x, NULL);
    b.data = malloc((size_t) n);
    if (n <= 0 || b.data == NULL) {
        tt_die("i2d_X509");
    }

    p = b.data;
    i2d_X509(x, &p);
    b.len = (size_t) n;

    X509_free(x);

    return b;
}


static void
req_init(tsb_sign_req_t *req)
{
    memset(req, 0, sizeof(tsb_sign_req_t));
    req->certificate_authority = -1;
    req->validity = -1;
}


static const tsb_name_pattern_t  names[] = {
    { "*.svc.example", sizeof("*.svc.example") - 1 },
    { "10.0.0.1", sizeof("10.0.0.1") - 1 },
    { "ops@Svc.Example", sizeof("ops@Svc.Example") - 1 },
};


static void
policy_init(tsb_policy_t *p, int ca_allowed)
{
    memset(p, 0, sizeof(tsb_policy_t));

    p->names = names;
    p->n_names = sizeof(names) / sizeof(names[0]);
    p->allowed_key_usage = TSB_KU_DIGITAL_SIGNATURE
                           | TSB_KU_KEY_ENCIPHERMENT;
    p->default_key_usage = TSB_KU_DIGITAL_SIGNATURE;
    p->allowed_ext_key_usage = TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH;
    p->default_ext_key_usage = TSB_EKU_SERVER_AUTH;
    p->max_path_len = -1;
    p->sign_key_name = "CA-Key";
    p->allowed_san_types = (1u << TSB_SAN_DNS) | (1u << TSB_SAN_IP)
                           | (1u << TSB_SAN_EMAIL);

    if (ca_allowed) {
        p->allow_ca = 1;
        p->max_path_len = 1;
        p->allowed_key_usage |= TSB_KU_KEY_CERT_SIGN | TSB_KU_CRL_SIGN;
    }
}


/*
 * The expectation for a CSR of key with the given CN / SAN / extensions,
 * as the sign handler builds it after the policy accepted the request.
 */
static tsb_buf_t
expect_for(EVP_PKEY *key, const char *cn, const char *san, const char *bc,
    const char *ku, int ca_allowed)
{
    char            *pem;
    tt_csr_t         g;
    tsb_buf_t        blob;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    memset(&g, 0, sizeof(g));
    g.key = key;
    g.cn[0] = cn;
    g.san = san;
    g.bc = bc;
    g.ku = ku;

    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        printf("# %s %s\n", err.reason, err.detail);
        tt_die("tsb_csr_load");
    }

    free(pem);

    policy_init(&policy, ca_allowed);
    req_init(&req);

    if (tsb_policy_check(&policy, csr, &req, &err) != 0) {
        printf("# %s %s\n", err.reason, err.detail);
        tt_die("tsb_policy_check");
    }

    if (tsb_expect_build(csr, &req, &blob) != 0) {
        tt_die("tsb_expect_build");
    }

    tsb_sign_req_free(&req);
    tsb_csr_free(csr);

    return blob;
}


/* one check: the verdict, and for a refusal the reason and the detail */
static void
check(const char *name, const tsb_buf_t *blob, const ca_t *c,
    const issue_t *i, const tsb_chain_t *issuers, const char *reason,
    const char *detail_part)
{
    int          rc;
    tsb_buf_t    der;
    tsb_error_t  err;

    der = issue(c, i);
    memset(&err, 0, sizeof(err));

    rc = tsb_expect_verify(blob->data, blob->len, NULL, der.data, der.len,
                           issuers, &err);

    if (reason == NULL) {
        is_int(rc, 0, "%s: accepted", name);

        if (rc != 0) {
            printf("#   %d %s: %s\n", err.status, err.reason, err.detail);
        }

    } else {
        is_int(rc, -1, "%s: refused", name);
        is_int(err.status, 502, "%s: 502", name);
        is_str(err.reason, reason, "%s: %s", name, reason);
        ok(detail_part == NULL || strstr(err.detail, detail_part) != NULL,
           "%s: detail names it: %s", name, err.detail);
    }

    ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear", name);

    free(der.data);
}


static const char  *files[] = {
    "chain.pem", "one.pem", "again.pem", "reversed.pem", "empty.pem",
    "text.pem", "key.pem", "broken.pem", "leaf.pem"
};


static void
cleanup(void)
{
    char    path[sizeof(tmpdir) + 32];
    size_t  i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        (void) unlink(path);
    }

    (void) rmdir(tmpdir);
}


static char *
write_file(const char *name, const char *data)
{
    FILE  *f;
    char  *path;

    path = malloc(strlen(tmpdir) + strlen(name) + 2);
    if (path == NULL) {
        tt_die("malloc");
    }

    sprintf(path, "%s/%s", tmpdir, name);

    f = fopen(path, "w");
    if (f == NULL || fputs(data, f) < 0 || fclose(f) != 0) {
        tt_die(path);
    }

    return path;
}


static char *
pem_of(X509 *x)
{
    BIO   *bio;
    char  *data, *s;
    long   n;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1) {
        tt_die("PEM_write_bio_X509");
    }

    n = BIO_get_mem_data(bio, &data);
    s = malloc((size_t) n + 1);
    if (s == NULL) {
        tt_die("malloc");
    }

    memcpy(s, data, (size_t) n);
    s[n] = '\0';
    BIO_free(bio);

    return s;
}


static void
test_chain(tsb_chain_t *chain)
{
    int           rc;
    char         *a, *b, *both, *path, *leaf_pem;
    tsb_buf_t     der;
    tsb_error_t   err;
    tsb_chain_t   c;
    issue_t       leaf;
    X509         *x;

    const unsigned char  *p;

    a = pem_of(ca.cert);
    b = pem_of(root_ca.cert);

    both = malloc(strlen(a) + strlen(b) + 64);
    if (both == NULL) {
        tt_die("malloc");
    }

    /* text between the blocks, as "openssl x509 -text" leaves it */
    sprintf(both, "subject=CN = Test CA\n%s\nsubject=CN = Test Root\n%s", a, b);

    path = write_file("chain.pem", both);
    rc = tsb_chain_load_file(path, chain, &err);
    is_int(rc, 0, "chain: two certificates load");
    is_int(chain->n, 2, "chain: two certificates");
    free(path);

    path = write_file("one.pem", a);
    is_int(tsb_chain_load_file(path, &c, &err), 0, "chain: one loads");
    is_int(c.n, 1, "chain: one certificate");
    ok(tsb_chain_equal(&c, &c) && tsb_chain_equal(NULL, NULL),
       "chain: equal to itself, none equal to none");
    ok(!tsb_chain_equal(&c, chain) && !tsb_chain_equal(chain, &c),
       "chain: one certificate is not the chain of two");
    ok(!tsb_chain_equal(&c, NULL) && !tsb_chain_equal(NULL, &c),
       "chain: one certificate is not no chain");
    tsb_chain_free(&c);
    ok(c.certs == NULL && c.n == 0, "chain: freed and cleared");
    tsb_chain_free(&c);
    free(path);

    path = write_file("again.pem", both);
    is_int(tsb_chain_load_file(path, &c, &err), 0, "chain: loads again");
    ok(tsb_chain_equal(&c, chain), "chain: the same file, equal");
    tsb_chain_free(&c);
    free(path);

    sprintf(both, "%s%s", b, a);
    path = write_file("reversed.pem", both);
    is_int(tsb_chain_load_file(path, &c, &err), 0, "chain: reversed loads");
    ok(!tsb_chain_equal(&c, chain), "chain: another order, not equal");
    tsb_chain_free(&c);
    free(path);

    rc = tsb_chain_load_file("/nonexistent/chain.pem", &c, &err);
    is_int(rc, -1, "chain: a missing file is refused");
    is_str(err.reason, "config.issuer_chain", "chain: missing file reason");
    ok(strstr(err.detail, "/nonexistent/chain.pem") != NULL,
       "chain: the path is named: %s", err.detail);

    path = write_file("empty.pem", "");
    is_int(tsb_chain_load_file(path, &c, &err), -1,
           "chain: an empty file is refused");
    ok(strstr(err.detail, "no certificate") != NULL, "chain: %s",
       err.detail);
    free(path);

    path = write_file("text.pem", "just some text\n");
    is_int(tsb_chain_load_file(path, &c, &err), -1,
           "chain: a file of text is refused");
    free(path);

    path = write_file("key.pem", "-----BEGIN PRIVATE KEY-----\n"
                      "MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                      "AAAAAAAAAAA\n-----END PRIVATE KEY-----\n");
    is_int(tsb_chain_load_file(path, &c, &err), -1,
           "chain: a private key block is refused");
    ok(strstr(err.detail, "PRIVATE KEY") != NULL, "chain: %s", err.detail);
    free(path);

    path = write_file("broken.pem", "-----BEGIN CERTIFICATE-----\n"
                      "bm90IGEgY2VydGlmaWNhdGU=\n"
                      "-----END CERTIFICATE-----\n");
    is_int(tsb_chain_load_file(path, &c, &err), -1,
           "chain: a broken certificate is refused");
    free(path);

    /* a leaf is no issuer */

    memset(&leaf, 0, sizeof(leaf));
    leaf.key = key_a;
    leaf.cn = "leaf.svc.example";
    leaf.bc = "critical,CA:FALSE";
    leaf.ku = "critical,digitalSignature";
    der = issue(&ca, &leaf);
    p = der.data;
    x = d2i_X509(NULL, &p, (long) der.len);
    leaf_pem = pem_of(x);
    X509_free(x);
    free(der.data);

    path = write_file("leaf.pem", leaf_pem);
    is_int(tsb_chain_load_file(path, &c, &err), -1,
           "chain: a leaf certificate is refused");
    ok(strstr(err.detail, "not a CA") != NULL
       && strstr(err.detail, "leaf.svc.example") != NULL,
       "chain: %s", err.detail);
    free(path);

    ok(ERR_peek_error() == 0, "chain: OpenSSL error queue is clear");

    free(leaf_pem);
    free(both);
    free(a);
    free(b);
}


static void
test_leaf(const tsb_chain_t *chain)
{
    tsb_buf_t    blob, der;
    tsb_cert_t   cert;
    tsb_error_t  err;
    issue_t      i, good;

    blob = expect_for(key_a, "a.svc.example",
                      "DNS:a.svc.example,DNS:b.svc.example,IP:10.0.0.1",
                      NULL, NULL, 0);

    ok(blob.len < 200, "the expectation is small: %zu bytes", blob.len);

    memset(&good, 0, sizeof(good));
    good.key = key_a;
    good.cn = "a.svc.example";
    good.san = "DNS:a.svc.example,DNS:b.svc.example,IP:10.0.0.1";
    good.ku = "critical,digitalSignature";
    good.eku = "serverAuth";
    good.bc = "critical,CA:FALSE";

    check("match", &blob, &ca, &good, chain, NULL, NULL);
    check("match, no issuer check", &blob, &ca, &good, NULL, NULL, NULL);

    i = good;
    i.san = "DNS:B.SVC.Example.,DNS:a.svc.example";
    check("SANs in another case, trailing dot, a subset", &blob, &ca, &i,
          chain, NULL, NULL);

    i = good;
    i.san = NULL;
    check("no SANs at all", &blob, &ca, &i, chain, NULL, NULL);

    i = good;
    i.bc = NULL;
    check("no basicConstraints", &blob, &ca, &i, chain, NULL, NULL);

    i = good;
    i.key = key_b;
    check("other key", &blob, &ca, &i, chain, "issued.mismatch",
          "public key");

    i = good;
    i.cn = "mismatch.invalid";
    check("other CN", &blob, &ca, &i, chain, "issued.mismatch",
          "\"mismatch.invalid\" is not the accepted \"a.svc.example\"");

    i = good;
    i.cn = "A.svc.example";
    check("CN in another case", &blob, &ca, &i, chain, "issued.mismatch",
          "commonName");

    i = good;
    i.cn2 = "b.svc.example";
    check("two CNs", &blob, &ca, &i, chain, "issued.mismatch",
          "2 commonNames");

    i = good;
    i.cn = NULL;
    check("no CN", &blob, &ca, &i, chain, "issued.mismatch",
          "0 commonNames");

    i = good;
    i.san = "DNS:a.svc.example,DNS:evil.example";
    check("extra SAN", &blob, &ca, &i, chain, "issued.mismatch",
          "DNS:\"evil.example\" was not accepted");

    i = good;
    i.san = "DNS:a.svc.example,IP:10.0.0.2";
    check("extra IP SAN", &blob, &ca, &i, chain, "issued.mismatch",
          "IP:\"10.0.0.2\"");

    i = good;
    i.san = "DNS:10.0.0.1";
    check("an accepted value under another SAN type", &blob, &ca, &i,
          chain, "issued.mismatch", "DNS:\"10.0.0.1\"");

    i = good;
    i.san = "email:ops@svc.example";
    check("email SAN that was not asked for", &blob, &ca, &i, chain,
          "issued.mismatch", "email:");

    i = good;
    i.san = "DNS:a.svc.example,RID:1.2.3.4";
    check("registeredID SAN", &blob, &ca, &i, chain, "issued.mismatch",
          "registeredID");

    i = good;
    i.eku = "serverAuth,codeSigning";
    check("extra EKU", &blob, &ca, &i, chain, "issued.mismatch",
          "CODE_SIGNING");

    i = good;
    i.eku = "serverAuth,clientAuth";
    check("EKU allowed but not accepted", &blob, &ca, &i, chain,
          "issued.mismatch", "CLIENT_AUTH");

    i = good;
    i.eku = "serverAuth,1.3.6.1.4.1.99999.1";
    check("unknown EKU OID", &blob, &ca, &i, chain, "issued.mismatch",
          "1.3.6.1.4.1.99999.1");

    i = good;
    i.eku = NULL;
    check("no EKU extension", &blob, &ca, &i, chain, "issued.mismatch",
          "no extendedKeyUsage");

    i = good;
    i.ku = "critical,digitalSignature,keyEncipherment";
    check("extra KU", &blob, &ca, &i, chain, "issued.mismatch",
          "KEY_ENCIPHERMENT");

    i = good;
    i.ku = "critical,digitalSignature,keyCertSign";
    check("keyCertSign", &blob, &ca, &i, chain, "issued.mismatch",
          "KEY_CERT_SIGN");

    i = good;
    i.ku = NULL;
    check("no KU extension", &blob, &ca, &i, chain, "issued.mismatch",
          "no keyUsage");

    i = good;
    i.bc = "critical,CA:TRUE";
    check("CA:TRUE", &blob, &ca, &i, chain, "issued.mismatch",
          "is a CA certificate");

    check("wrong issuer", &blob, &other_ca, &good, chain, "issued.mismatch",
          "not in the issuer chain");
    check("issuer name right, key wrong", &blob, &same_name_ca, &good, chain,
          "issued.mismatch", "does not verify");

    check("wrong issuer without an issuer chain", &blob, &other_ca, &good,
          NULL, NULL, NULL);

    /* with the tsb_cert_t the gateway loaded anyway */

    der = issue(&ca, &good);
    is_int(tsb_cert_load(der.data, der.len, &cert, &err), 0, "cert loads");
    is_int(tsb_expect_verify(blob.data, blob.len, &cert, NULL, 0, chain,
                             &err),
           0, "verified from a tsb_cert_t alone");
    tsb_cert_free(&cert);

    /* not a certificate, or not only one */

    is_int(tsb_expect_verify(blob.data, blob.len, NULL,
                             (const unsigned char *) "\x30\x03\x02\x01\x01",
                             5, chain, &err),
           -1, "garbage DER refused");
    is_str(err.reason, "upstream.certificate", "garbage DER reason");

    der.data = realloc(der.data, der.len + 1);
    der.data[der.len] = 0;
    is_int(tsb_expect_verify(blob.data, blob.len, NULL, der.data,
                             der.len + 1, chain, &err),
           -1, "trailing byte after the DER refused");
    is_str(err.reason, "upstream.certificate", "trailing byte reason");

    /* blobs that are not ours */

    is_int(tsb_expect_verify(blob.data, blob.len - 1, NULL, der.data,
                             der.len, chain, &err),
           -1, "truncated expectation refused");
    is_str(err.reason, "internal.expect", "truncated expectation reason");
    is_int(err.status, 500, "truncated expectation is our problem: 500");

    blob.data[0] = 'X';
    is_int(tsb_expect_verify(blob.data, blob.len, NULL, der.data, der.len,
                             chain, &err),
           -1, "bad magic refused");
    is_str(err.reason, "internal.expect", "bad magic reason");

    is_int(tsb_expect_verify(NULL, 0, NULL, der.data, der.len, chain, &err),
           -1, "no expectation refused");

    ok(ERR_peek_error() == 0, "OpenSSL error queue is clear");

    free(der.data);
    tsb_buf_free(&blob);

    /* the CN copied into the SANs by the TSB */

    blob = expect_for(key_a, "c.svc.example", NULL, NULL, NULL, 0);

    i = good;
    i.cn = "c.svc.example";
    i.san = "DNS:c.svc.example";
    check("CN copied into a DNS SAN", &blob, &ca, &i, chain, NULL, NULL);

    i.san = "DNS:d.svc.example";
    check("another DNS SAN", &blob, &ca, &i, chain, "issued.mismatch",
          "d.svc.example");

    i.san = NULL;
    i.v1 = 1;
    check("a v1 certificate without extensions", &blob, &ca, &i, chain,
          "issued.mismatch", "keyUsage");

    tsb_buf_free(&blob);

    /* an email SAN: the domain is folded, the local part is not */

    blob = expect_for(key_a, "e.svc.example", "email:ops@Svc.Example", NULL,
                      NULL, 0);

    i = good;
    i.cn = "e.svc.example";
    i.san = "email:ops@svc.example";
    check("email SAN with the domain in another case", &blob, &ca, &i,
          chain, NULL, NULL);

    i.san = "email:OPS@svc.example";
    check("email SAN with the local part in another case", &blob, &ca, &i,
          chain, "issued.mismatch", "OPS@svc.example");

    tsb_buf_free(&blob);
}


static void
test_ca(const tsb_chain_t *chain)
{
    tsb_buf_t  blob;
    issue_t    i, good;

    blob = expect_for(key_a, "sub.svc.example", NULL, "critical,CA:TRUE,"
                      "pathlen:0", "critical,keyCertSign,cRLSign", 1);

    memset(&good, 0, sizeof(good));
    good.key = key_a;
    good.cn = "sub.svc.example";
    good.ku = "critical,keyCertSign,cRLSign";
    good.eku = "serverAuth";
    good.bc = "critical,CA:TRUE,pathlen:0";

    check("CA with pathlen 0", &blob, &ca, &good, chain, NULL, NULL);

    i = good;
    i.bc = "critical,CA:TRUE";
    check("CA without pathlen", &blob, &ca, &i, chain, "issued.mismatch",
          "no pathLenConstraint");

    i = good;
    i.bc = "critical,CA:TRUE,pathlen:1";
    check("CA with a larger pathlen", &blob, &ca, &i, chain,
          "issued.mismatch", "pathLenConstraint");

    i = good;
    i.bc = "critical,CA:FALSE";
    i.ku = "critical,keyCertSign";
    check("a leaf where a CA was accepted", &blob, &ca, &i, chain, NULL,
          NULL);

    i = good;
    i.ku = "critical,keyCertSign,cRLSign,digitalSignature";
    check("CA with a KU that was not accepted", &blob, &ca, &i, chain,
          "issued.mismatch", "DIGITAL_SIGNATURE");

    tsb_buf_free(&blob);
}


/* "fit the CA key": test CA is RSA, test root is EC */
static void
test_algorithms(const tsb_chain_t *chain)
{
    tsb_chain_t      rsa_only;
    STACK_OF(X509)  *sk;

    ok(tsb_chain_fits_algorithm(chain, "SHA256_WITH_RSA"),
       "RSA fits a chain with an RSA CA");
    ok(tsb_chain_fits_algorithm(chain, "SHA384_WITH_ECDSA"),
       "ECDSA fits a chain with an EC CA");
    ok(!tsb_chain_fits_algorithm(chain, "ED25519"),
       "Ed25519 fits neither");
    ok(tsb_chain_fits_algorithm(chain, "SOMETHING_NEW"),
       "an unknown family is not judged");
    ok(tsb_chain_fits_algorithm(NULL, "SHA256_WITH_ECDSA"),
       "no chain, nothing to judge");

    sk = sk_X509_new_null();
    if (sk == NULL || !sk_X509_push(sk, ca.cert)) {
        tt_die("sk_X509_push");
    }

    rsa_only.certs = sk;
    rsa_only.n = 1;

    ok(tsb_chain_fits_algorithm(&rsa_only, "SHA512_WITH_RSA"),
       "RSA CA: SHA512_WITH_RSA fits");
    ok(tsb_chain_fits_algorithm(&rsa_only, "SHA256_WITH_RSA_PSS"),
       "RSA CA: RSA-PSS fits");
    ok(!tsb_chain_fits_algorithm(&rsa_only, "SHA256_WITH_ECDSA"),
       "RSA CA: ECDSA does not fit");

    sk_X509_free(sk);
}


/* the size stays bounded with as many SANs as the policy lets through */
static void
test_size(void)
{
    int              i;
    char             san[TSB_POLICY_MAX_SANS * 40], *p, *pem;
    tt_csr_t         g;
    tsb_buf_t        blob;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_sign_req_t   req;

    p = san;

    for (i = 0; i < TSB_POLICY_MAX_SANS; i++) {
        p += sprintf(p, "%sDNS:host-%03d.svc.example", i ? "," : "", i);
    }

    memset(&g, 0, sizeof(g));
    g.key = key_a;
    g.cn[0] = "a.svc.example";
    g.san = san;
    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        tt_die("tsb_csr_load");
    }

    free(pem);

    req_init(&req);
    req.common_name = strdup("a.svc.example");

    is_int(tsb_expect_build(csr, &req, &blob), 0,
           "expectation with %d SANs", TSB_POLICY_MAX_SANS);
    ok(blob.len <= TSB_EXPECT_MAX, "%zu bytes, within %d", blob.len,
       TSB_EXPECT_MAX);

    tsb_buf_free(&blob);
    tsb_sign_req_free(&req);
    tsb_csr_free(csr);
}


/*
 * Issue 10, parts 4 and 5: the issued certificate's extensions and its
 * lifetime against what was accepted.
 */

typedef struct {
    const char  *name;      /* OpenSSL config name, or a dotted OID */
    const char  *value;     /* NULL: a DER NULL under that OID */
} ext_t;


static X509_EXTENSION *
ext_conf(const ca_t *c, X509 *x, const ext_t *e)
{
    X509V3_CTX          ctx;
    ASN1_OBJECT        *obj;
    X509_EXTENSION     *ext;
    ASN1_OCTET_STRING  *os;

    if (e->value != NULL) {
        X509V3_set_ctx(&ctx, c->cert, x, NULL, NULL, 0);
        X509V3_set_ctx_nodb(&ctx);
        ext = X509V3_EXT_conf(NULL, &ctx, e->name, e->value);
        if (ext == NULL) {
            tt_die(e->name);
        }

        return ext;
    }

    obj = OBJ_txt2obj(e->name, 0);
    os = ASN1_OCTET_STRING_new();

    if (obj == NULL || os == NULL
        || ASN1_OCTET_STRING_set(os, (const unsigned char *) "\x05\x00", 2)
           != 1)
    {
        tt_die(e->name);
    }

    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os);
    if (ext == NULL) {
        tt_die(e->name);
    }

    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(os);

    return ext;
}


/* a leaf for key_a, CN a.svc.example, the given times and extensions */
static tsb_buf_t
issue_ext(long nb, long na, const ext_t *exts)
{
    int              n;
    X509            *x;
    tsb_buf_t        b;
    X509_NAME       *name;
    unsigned char   *p;
    X509_EXTENSION  *ext;

    x = X509_new();

    if (x == NULL || X509_set_version(x, 2) != 1
        || ASN1_INTEGER_set(X509_get_serialNumber(x), 3) != 1
        || X509_gmtime_adj(X509_getm_notBefore(x), nb) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), na) == NULL
        || X509_set_pubkey(x, key_a) != 1
        || X509_set_issuer_name(x, X509_get_subject_name(ca.cert)) != 1)
    {
        tt_die("certificate");
    }

    name = X509_get_subject_name(x);

    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *) "a.svc.example",
                                   -1, -1, 0)
        != 1)
    {
        tt_die("CN");
    }

    for ( /* void */ ; exts && exts->name; exts++) {
        ext = ext_conf(&ca, x, exts);

        if (X509_add_ext(x, ext, -1) != 1) {
            tt_die("X509_add_ext");
        }

        X509_EXTENSION_free(ext);
    }

    if (X509_sign(x, ca.key, EVP_sha256()) <= 0) {
        tt_die("sign");
    }

    n = i2d_X509(x, NULL);
    b.data = malloc((size_t) n);
    if (n <= 0 || b.data == NULL) {
        tt_die("i2d_X509");
    }

    p = b.data;
    i2d_X509(x, &p);
    b.len = (size_t) n;

    X509_free(x);

    return b;
}


/* the blob for a CSR of key_a, a.svc.example, maybe one extra extension */
static tsb_buf_t
expect_ext(const ext_t *requested, long validity, long max_validity,
    int64_t accepted_at)
{
    char                    *pem;
    tt_csr_t                 g;
    tsb_buf_t                blob;
    tsb_csr_t               *csr;
    tsb_error_t              err;
    tsb_policy_t             policy;
    tsb_sign_req_t           req;
    static const char *const  allowed[] = { "1.2.3.4.5", NULL };

    memset(&g, 0, sizeof(g));
    g.key = key_a;
    g.cn[0] = "a.svc.example";

    if (requested) {
        g.raw[0] = ext_conf(&ca, NULL, requested);
    }

    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        printf("# %s %s\n", err.reason, err.detail);
        tt_die("tsb_csr_load");
    }

    free(pem);

    policy_init(&policy, 0);
    policy.allowed_extensions = allowed;
    policy.max_validity = max_validity;
    policy.default_key_usage = 0;           /* the leaves carry none */
    policy.default_ext_key_usage = 0;
    req_init(&req);
    req.validity = validity;

    if (tsb_policy_check(&policy, csr, &req, &err) != 0) {
        printf("# %s %s\n", err.reason, err.detail);
        tt_die("tsb_policy_check");
    }

    if (tsb_expect_build_ex(csr, &req, max_validity, accepted_at, &blob)
        != 0)
    {
        tt_die("tsb_expect_build_ex");
    }

    tsb_sign_req_free(&req);
    tsb_csr_free(csr);

    return blob;
}


static void
verdict(const char *name, const tsb_buf_t *blob, tsb_buf_t der,
    const char *reason, const char *detail_part)
{
    int          rc;
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));

    rc = tsb_expect_verify(blob->data, blob->len, NULL, der.data, der.len,
                           NULL, &err);

    if (reason == NULL) {
        is_int(rc, 0, "%s: accepted", name);

        if (rc != 0) {
            printf("#   %d %s: %s\n", err.status, err.reason, err.detail);
        }

    } else {
        is_int(rc, -1, "%s: refused", name);
        is_str(err.reason, reason, "%s: %s", name, reason);
        ok(detail_part == NULL || strstr(err.detail, detail_part) != NULL,
           "%s: detail names it: %s", name, err.detail);
    }

    ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear", name);

    free(der.data);
}


static void
test_extensions_lifetime(void)
{
    int64_t         now;
    tsb_buf_t       blob, v1;
    const long      day = 86400;
    static const ext_t  ca_own[] = {
        { "subjectKeyIdentifier", "hash" },
        { "authorityKeyIdentifier", "issuer:always" },
        { "authorityInfoAccess", "OCSP;URI:http://ocsp.example/" },
        { "crlDistributionPoints", "URI:http://crl.example/ca.crl" },
        { "1.3.6.1.4.1.11129.2.4.2", NULL },
        { NULL, NULL }
    };
    static const ext_t  nc[] = {
        { "nameConstraints", "permitted;DNS:.example" }, { NULL, NULL }
    };
    static const ext_t  nocheck[] = {
        { "noCheck", "ignored" }, { NULL, NULL }
    };
    static const ext_t  unknown[] = {
        { "1.2.3.4.5", NULL }, { NULL, NULL }
    };
    static const ext_t  twice[] = {
        { "authorityInfoAccess", "OCSP;URI:http://ocsp.example/" },
        { "authorityInfoAccess", "OCSP;URI:http://other.example/" },
        { NULL, NULL }
    };

    now = (int64_t) time(NULL);

    /* extensions */

    blob = expect_ext(NULL, -1, 0, now);

    verdict("the CA's own extensions", &blob, issue_ext(-60, day, ca_own),
            NULL, NULL);
    verdict("nameConstraints added", &blob, issue_ext(-60, day, nc),
            "issued.mismatch", "Name Constraints");
    verdict("OCSP no-check added", &blob, issue_ext(-60, day, nocheck),
            "issued.mismatch", "1.3.6.1.5.5.7.48.1.5");
    verdict("an unknown extension added", &blob,
            issue_ext(-60, day, unknown), "issued.mismatch", "1.2.3.4.5");
    verdict("an extension twice", &blob, issue_ext(-60, day, twice),
            "issued.mismatch", "twice");
    tsb_buf_free(&blob);

    blob = expect_ext(&unknown[0], -1, 0, now);
    verdict("an unknown extension requested and allowed", &blob,
            issue_ext(-60, day, unknown), NULL, NULL);
    verdict("... but not another one", &blob, issue_ext(-60, day, nc),
            "issued.mismatch", "Name Constraints");

    /* a version 1 blob (tsb_store from before): no lifetime, no extras */

    /* the empty 'S', the 'L' and the one 'E' (a 9-byte OID) at the end */
    v1.len = blob.len - (5 + 3 + 14 + 3 + 9);
    v1.data = malloc(v1.len);
    if (v1.data == NULL) {
        tt_die("malloc");
    }

    memcpy(v1.data, blob.data, v1.len);
    v1.data[2] = 1;
    verdict("v1: a long lifetime is not checked", &v1,
            issue_ext(-60, 800 * day, NULL), NULL, NULL);
    verdict("v1: an added extension is", &v1, issue_ext(-60, day, unknown),
            "issued.mismatch", "1.2.3.4.5");

    /* records that are not ours */

    blob.data[blob.len - 12] = 'X';
    verdict("an unknown record", &blob, issue_ext(-60, day, NULL),
            "internal.expect", NULL);
    v1.data[2] = 2;
    verdict("version 2 without its subject and lifetime records", &v1,
            issue_ext(-60, day, NULL), "internal.expect", NULL);
    tsb_buf_free(&v1);
    tsb_buf_free(&blob);

    /* lifetime: requested */

    blob = expect_ext(NULL, 10, 30 * day, now);
    verdict("10 days as requested", &blob, issue_ext(-60, 10 * day, NULL),
            NULL, NULL);
    verdict("10 days and 30 minutes", &blob,
            issue_ext(0, 10 * day + 1800, NULL), NULL, NULL);
    verdict("10 days and 2 hours", &blob,
            issue_ext(0, 10 * day + 7200, NULL), "issued.mismatch",
            "10 days were accepted");
    verdict("dated from midnight, up to a day back", &blob,
            issue_ext(-23 * 3600, 10 * day - 23 * 3600, NULL), NULL, NULL);
    verdict("backdated two days", &blob,
            issue_ext(-2 * day, 8 * day, NULL), "issued.mismatch",
            "before the request was accepted");
    verdict("valid only from tomorrow", &blob,
            issue_ext(day, 10 * day, NULL), "issued.mismatch",
            "in the future");
    tsb_buf_free(&blob);

    /* lifetime: none requested, tsb_max_validity */

    blob = expect_ext(NULL, -1, 30 * day, now);
    verdict("30 days of a 30 day maximum", &blob,
            issue_ext(-60, 30 * day, NULL), NULL, NULL);
    verdict("31 days of a 30 day maximum", &blob,
            issue_ext(-60, 31 * day, NULL), "issued.mismatch",
            "tsb_max_validity");
    tsb_buf_free(&blob);

    /* accepted a week ago, issued now: fine */

    blob = expect_ext(NULL, 10, 0, now - 7 * day);
    verdict("approved a week after the request", &blob,
            issue_ext(-60, 10 * day, NULL), NULL, NULL);
    tsb_buf_free(&blob);
}


/* the subject beyond the CN: exactly the accepted attributes */
static void
test_subject(const tsb_chain_t *chain)
{
    char            *pem;
    size_t           n;
    tt_csr_t         g;
    issue_t          good, i;
    tsb_buf_t        blob, old, der;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    unsigned char   *b;
    tsb_sign_req_t   req;

    static const tsb_subject_value_t  o[] = {
        { "Example Corp", 12, 0, NULL }, { "Team 7", 6, 0, NULL }
    };
    static const tsb_subject_value_t  c[] = { { "CH", 2, 0, NULL } };
    static const tsb_subject_rule_t   rules[] = {
        { "2.5.4.10", "O", o, 2 }, { "2.5.4.6", "C", c, 1 }
    };

    memset(&g, 0, sizeof(g));
    g.key = key_a;
    g.cn[0] = "a.svc.example";
    g.subj = "O=Example Corp/C=CH/O=Team 7";

    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        tt_die("tsb_csr_load subject");
    }

    free(pem);

    is_int(csr->n_subject_attrs, 3, "the CSR's other attributes: 3");
    is_str(csr->subject_attrs[0].oid, "2.5.4.10", "the first is an O");
    is_str(csr->subject_attrs[0].name, "O", "named O");
    is_str(csr->subject_attrs[1].value, "CH", "then C=CH");
    is_int(csr->subject_multi_rdn, 0, "no multi-valued RDN");

    policy_init(&policy, 0);
    policy.subject_rules = rules;
    policy.n_subject_rules = 2;
    req_init(&req);

    if (tsb_policy_check(&policy, csr, &req, &err) != 0) {
        printf("# %s %s\n", err.reason, err.detail);
        tt_die("tsb_policy_check subject");
    }

    if (tsb_expect_build(csr, &req, &blob) != 0) {
        tt_die("tsb_expect_build subject");
    }

    tsb_sign_req_free(&req);
    tsb_csr_free(csr);

    memset(&good, 0, sizeof(good));
    good.key = key_a;
    good.cn = "a.svc.example";
    good.subj = "O=Example Corp/C=CH/O=Team 7";
    good.ku = "critical,digitalSignature";
    good.eku = "serverAuth";

    check("subject: the same", &blob, &ca, &good, chain, NULL, NULL);

    i = good;
    i.subj = "C=CH/O=Team 7/O=Example Corp";
    check("subject: another order", &blob, &ca, &i, chain, NULL, NULL);

    i = good;
    i.subj = "O=Example Corp/C=CH/O=Team 7/O=system:masters";
    check("subject: O=system:masters added", &blob, &ca, &i, chain,
          "issued.mismatch", "O=\"system:masters\", which was not accepted");

    i = good;
    i.subj = "O=Example Corp/C=CH";
    check("subject: an accepted O dropped", &blob, &ca, &i, chain,
          "issued.mismatch", "lacks the accepted O=\"Team 7\"");

    i = good;
    i.subj = "O=Example Corp/C=DE/O=Team 7";
    check("subject: a value changed", &blob, &ca, &i, chain,
          "issued.mismatch", "C=\"DE\"");

    i = good;
    i.subj = "O=Example Corp/C=CH/O=Example Corp";
    check("subject: one accepted O twice, the other dropped", &blob, &ca,
          &i, chain, "issued.mismatch", "O=\"Example Corp\"");

    i = good;
    i.subj = "O=Example Corp/+C=CH/O=Team 7";
    check("subject: a multi-valued RDN", &blob, &ca, &i, chain,
          "issued.mismatch", "several attributes");

    i = good;
    i.subj = "O=example corp/C=CH/O=Team 7";
    check("subject: a value in another case", &blob, &ca, &i, chain,
          "issued.mismatch", "O=\"example corp\"");

    /* a record of an unknown tag: the blob is no expectation */

    b = malloc(blob.len + 4);
    if (b == NULL) {
        tt_die("malloc");
    }

    memcpy(b, blob.data, blob.len);
    memcpy(b + blob.len, "Z\x00\x01\x07", 4);
    old.data = b;
    old.len = blob.len + 4;
    der = issue(&ca, &good);
    ok(tsb_expect_verify(old.data, old.len, NULL, der.data, der.len, chain,
                         &err) == -1
       && strcmp(err.reason, "internal.expect") == 0,
       "subject: an unknown record makes the blob unreadable");
    free(der.data);

    /* cut short, a section is no expectation */

    old.len = blob.len + 3;
    der = issue(&ca, &good);
    ok(tsb_expect_verify(old.data, old.len, NULL, der.data, der.len, chain,
                         &err) == -1
       && strcmp(err.reason, "internal.expect") == 0,
       "subject: a section cut short is refused as internal.expect");
    free(der.data);
    free(b);
    free(blob.data);

    /*
     * A blob written before the subject was recorded (version 1, no
     * records) is checked as before: the CN only.  A version 2 one has
     * the empty 'S' (length 2, count 0) before its 'L' record (17 bytes).
     */

    blob = expect_for(key_a, "a.svc.example", NULL, NULL, NULL, 0);
    n = blob.len;
    ok(n > 22 && blob.data[n - 22] == 'S' && blob.data[n - 20] == 2
       && blob.data[n - 18] == 0 && blob.data[n - 17] == 'L',
       "a CN-only blob has an empty 'S' before its 'L'");

    i = good;
    i.subj = "O=system:masters";
    check("CN-only blob: O=system:masters added", &blob, &ca, &i, chain,
          "issued.mismatch", "system:masters");

    old.data = blob.data;
    old.len = n - 22;
    blob.data[2] = 1;
    check("a version 1 blob: the CN only is checked", &old, &ca, &i,
          chain, NULL, NULL);

    free(blob.data);
}


int
main(void)
{
    tsb_chain_t  chain;

    if (mkdtemp(tmpdir) == NULL) {
        tt_die("mkdtemp");
    }

    key_a = tt_key("EC-P-256");
    key_b = tt_key("EC-P-256");
    key_ca = tt_key("RSA-2048");

    ca_make(&ca, "Test CA", key_ca);
    ca_make(&root_ca, "Test Root", tt_key("EC-P-256"));
    ca_make(&other_ca, "Other CA", tt_key("EC-P-256"));
    ca_make(&same_name_ca, "Test CA", tt_key("EC-P-256"));

    test_chain(&chain);
    test_leaf(&chain);
    test_ca(&chain);
    test_algorithms(&chain);
    test_size();
    test_extensions_lifetime();
    test_subject(&chain);

    tsb_chain_free(&chain);

    X509_free(ca.cert);
    X509_free(root_ca.cert);
    EVP_PKEY_free(root_ca.key);
    X509_free(other_ca.cert);
    EVP_PKEY_free(other_ca.key);
    X509_free(same_name_ca.cert);
    EVP_PKEY_free(same_name_ca.key);
    EVP_PKEY_free(key_a);
    EVP_PKEY_free(key_b);
    EVP_PKEY_free(key_ca);

    cleanup();

    return done_testing();
}
