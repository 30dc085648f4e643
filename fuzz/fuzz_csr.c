
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: CSR intake (tsb_csr_load: PEM with either label, DER,
 * bare base64), the policy against a permissive and a strict location,
 * and the PEM we forward upstream, which must load again to the same
 * facts.
 *
 * Almost every mutation of a CSR breaks its self-signature, which would
 * keep the fuzzer in front of the facts and the policy forever.  So an
 * input refused with "csr.signature" is signed again with a key of the
 * harness (same key family, same digest where OpenSSL knows it) and fed
 * through tsb_csr_parse() and the policy as well: the mutated subject,
 * attributes and extensions get through, only the key is ours.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "tsb_csr.h"
#include "tsb_policy.h"
#include "tsb_json.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_csr: assertion failed: %s (line %d)\n",     \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


static const tsb_name_pattern_t  fuzz_any_names[] = {
    { "~^.*$", sizeof("~^.*$") - 1 }
};

static const tsb_name_pattern_t  fuzz_strict_names[] = {
    { "host.example.com", sizeof("host.example.com") - 1 },
    { "*.svc.example.com", sizeof("*.svc.example.com") - 1 },
    { "10.0.0.1", sizeof("10.0.0.1") - 1 },
    { "~^api-[0-9]+\\.example\\.com$",
      sizeof("~^api-[0-9]+\\.example\\.com$") - 1 }
};

/* the permissive location allows two extensions beyond the four */
static const char *const  fuzz_any_exts[] = {
    "2.5.29.32", "1.2.3.4.5", NULL
};

static const unsigned long  fuzz_any_exponents[] = { 3, 65537 };

static const char *const  fuzz_sig_algs[] = {
    "SHA256_WITH_RSA", "SHA384_WITH_RSA", "SHA256_WITH_ECDSA", NULL
};


#define FUZZ_N_STRICT                                                         \
    (sizeof(fuzz_strict_names) / sizeof(fuzz_strict_names[0]))

static EVP_PKEY  *fuzz_key_ec, *fuzz_key_ed, *fuzz_key_rsa;

/*
 * The strict policy's regexes are compiled once, as the glue does; the
 * permissive one's is compiled per match: both paths are fuzzed.
 */
static void      *fuzz_strict_regex[FUZZ_N_STRICT];


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char    errbuf[128];
    size_t  i;

    (void) argc;
    (void) argv;

    for (i = 0; i < FUZZ_N_STRICT; i++) {
        if (tsb_policy_regex_compile(fuzz_strict_names[i].pattern,
                                     fuzz_strict_names[i].len,
                                     &fuzz_strict_regex[i], errbuf,
                                     sizeof(errbuf))
            != 0)
        {
            fprintf(stderr, "fuzz_csr: %s\n", errbuf);
            abort();
        }
    }

    /* RSA-1024: signing per input must stay cheap; policies judge bits */
    fuzz_key_ec = EVP_EC_gen("P-256");
    fuzz_key_ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    fuzz_key_rsa = EVP_RSA_gen(1024);

    if (fuzz_key_ec == NULL || fuzz_key_ed == NULL || fuzz_key_rsa == NULL)
    {
        fprintf(stderr, "fuzz_csr: key generation failed\n");
        abort();
    }

    return 0;
}


static void
fuzz_policies(tsb_policy_t *any, tsb_policy_t *strict)
{
    memset(any, 0, sizeof(tsb_policy_t));

    any->names = fuzz_any_names;
    any->n_names = 1;
    any->allowed_key_usage = 0x1ff;
    any->allowed_ext_key_usage = 0x7f;
    any->allow_ca = 1;
    any->max_path_len = -1;
    any->min_rsa_bits = 512;
    any->allow_ed25519 = 1;
    any->sign_key_name = "fuzz-key";
    any->allowed_signature_algorithms = fuzz_sig_algs;
    any->allow_key_password = 1;
    any->allowed_san_types = 0xffffffff;
    any->allowed_extensions = fuzz_any_exts;
    any->max_rsa_bits = 16384;
    any->rsa_exponents = fuzz_any_exponents;
    any->n_rsa_exponents = 2;
    any->max_validity = 36500L * 86400;

    memset(strict, 0, sizeof(tsb_policy_t));

    strict->names = fuzz_strict_names;
    strict->n_names = FUZZ_N_STRICT;
    strict->name_regex = fuzz_strict_regex;
    strict->allowed_key_usage = TSB_KU_DIGITAL_SIGNATURE
                                | TSB_KU_KEY_ENCIPHERMENT;
    strict->default_key_usage = TSB_KU_DIGITAL_SIGNATURE;
    strict->allowed_ext_key_usage = TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH;
    strict->default_ext_key_usage = TSB_EKU_SERVER_AUTH;
    strict->allow_ca = 0;
    strict->max_path_len = 0;
    strict->min_rsa_bits = 3072;
    strict->sign_key_name = "CA-Key";
    strict->allowed_san_types = (1u << TSB_SAN_DNS) | (1u << TSB_SAN_IP);
    strict->allowed_ec_curves = TSB_CURVE_P256 | TSB_CURVE_P384;
    strict->max_validity = 90L * 86400;
}


static void
fuzz_req_init(tsb_sign_req_t *req)
{
    memset(req, 0, sizeof(tsb_sign_req_t));
    req->certificate_authority = -1;
    req->validity = -1;
}


static void
fuzz_check(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_sign_req_t *req)
{
    int                 rc;
    size_t              i;
    tsb_error_t         err;
    const char *const  *a;

    memset(&err, 0, sizeof(tsb_error_t));

    rc = tsb_policy_check(policy, csr, req, &err);

    if (rc == 0) {
        /* what the upstream body is built from must be complete */
        fuzz_assert(req->common_name != NULL);
        fuzz_assert(req->sign_key_name != NULL);
        fuzz_assert(req->signature_algorithm != NULL);
        fuzz_assert(req->certificate_authority == 0
                    || req->certificate_authority == 1);
        fuzz_assert((req->key_usage & ~policy->allowed_key_usage) == 0);
        fuzz_assert((req->ext_key_usage & ~policy->allowed_ext_key_usage)
                    == 0);

        /* every other extension was judged: SKI, or on the list */

        for (i = 0; i < csr->n_exts; i++) {
            fuzz_assert(csr->exts[i].oid[0] != '\0');

            if (csr->exts[i].nid == NID_subject_key_identifier
                && csr->exts[i].readable)
            {
                continue;
            }

            fuzz_assert(!(csr->exts[i].critical && !csr->exts[i].readable));

            for (a = policy->allowed_extensions; a && *a; a++) {
                if (strcmp(*a, csr->exts[i].oid) == 0) {
                    break;
                }
            }

            fuzz_assert(a != NULL && *a != NULL);
        }

        if (csr->key_type == TSB_KEY_RSA) {
            fuzz_assert(policy->rsa_exponents != NULL
                        || csr->key_rsa_exponent == 65537);
        }

        fuzz_assert(req->validity < 0
                    || req->validity * 86400 <= policy->max_validity);

    } else {
        fuzz_assert(rc == -1);
        fuzz_assert(err.status >= 400 && err.status < 600);
        fuzz_assert(err.reason != NULL);
        fuzz_assert(memchr(err.detail, '\0', sizeof(err.detail)) != NULL);
    }

    tsb_sign_req_free(req);
}


/* the policies, then the PEM forwarded upstream must load again */

static void
fuzz_accepted(tsb_csr_t *csr)
{
    size_t           i;
    tsb_buf_t        pem;
    tsb_csr_t       *again;
    tsb_error_t      err;
    tsb_policy_t     any, strict;
    tsb_sign_req_t   req;

    fuzz_policies(&any, &strict);
    memset(&err, 0, sizeof(tsb_error_t));

    fuzz_assert(csr != NULL && csr->req != NULL && csr->der.len > 0);

    for (i = 0; i < csr->n_sans; i++) {
        fuzz_assert(csr->sans[i].value != NULL);
    }

    fuzz_req_init(&req);
    fuzz_check(&any, csr, &req);

    fuzz_req_init(&req);
    fuzz_check(&strict, csr, &req);

    /* a request that names everything itself */

    fuzz_req_init(&req);

    if (csr->n_common_names > 0) {
        req.common_name = strdup(csr->common_names[0]);
    }

    req.sign_key_name = strdup("CA-Key");
    req.signature_algorithm = strdup("SHA256_WITH_RSA");
    req.key_usage = TSB_KU_DIGITAL_SIGNATURE;
    req.key_usage_present = 1;
    req.ext_key_usage = TSB_EKU_CLIENT_AUTH;
    req.ext_key_usage_present = 1;
    req.certificate_authority = 0;
    req.validity = 91;                  /* above the strict 90 days */

    fuzz_check(&strict, csr, &req);

    fuzz_assert(tsb_csr_to_pem(csr, &pem) == 0);
    fuzz_assert(pem.len > 0 && pem.data[pem.len] == '\0');

    if (tsb_csr_load(pem.data, pem.len, &again, &err) != 0) {
        fprintf(stderr, "fuzz_csr: re-encoded CSR refused: %s: %s\n",
                err.reason, err.detail);
        abort();
    }

    fuzz_assert(memcmp(again->spki_sha256, csr->spki_sha256, 32) == 0);
    fuzz_assert(again->n_common_names == csr->n_common_names);
    fuzz_assert(again->n_sans == csr->n_sans);
    fuzz_assert(again->key_usage == csr->key_usage);
    fuzz_assert(again->ext_key_usage == csr->ext_key_usage);
    fuzz_assert(again->basic_ca == csr->basic_ca);
    fuzz_assert(again->key_type == csr->key_type);

    tsb_csr_free(again);
    tsb_buf_free(&pem);
}


/* the input's request, signed again by a harness key, parsed for real */

static void
fuzz_resign(const uint8_t *data, size_t size)
{
    int                   n, md_nid, pk_nid;
    tsb_buf_t             der;
    X509_REQ             *req;
    EVP_PKEY             *key;
    tsb_csr_t            *csr;
    tsb_error_t           err;
    const EVP_MD         *md;
    unsigned char        *p;
    const unsigned char  *q;

    if (tsb_csr_decode(data, size, &der, &err) != 0) {
        return;
    }

    q = der.data;
    req = d2i_X509_REQ(NULL, &q, (long) der.len);
    tsb_buf_free(&der);

    if (req == NULL) {
        ERR_clear_error();
        return;
    }

    md = EVP_sha256();
    key = fuzz_key_ec;

    if (OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md_nid,
                            &pk_nid) == 1)
    {
        if (pk_nid == NID_rsaEncryption || pk_nid == NID_rsassaPss) {
            key = fuzz_key_rsa;
        }

        if (md_nid != NID_undef && EVP_get_digestbynid(md_nid) != NULL) {
            md = EVP_get_digestbynid(md_nid);
        }

        if (pk_nid == NID_ED25519 || pk_nid == NID_ED448) {
            key = fuzz_key_ed;
            md = NULL;
        }
    }

    p = NULL;

    if (X509_REQ_set_pubkey(req, key) != 1
        || X509_REQ_sign(req, key, md) <= 0
        || (n = i2d_X509_REQ(req, &p)) <= 0)
    {
        ERR_clear_error();
        X509_REQ_free(req);
        return;
    }

    X509_REQ_free(req);

    if (tsb_csr_parse(p, (size_t) n, &csr, &err) == 0) {
        fuzz_accepted(csr);
        tsb_csr_free(csr);

    } else {
        fuzz_assert(csr == NULL);
        fuzz_assert(strcmp(err.reason, "csr.signature") != 0);
    }

    OPENSSL_free(p);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsb_csr_t    *csr;
    tsb_error_t   err;

    memset(&err, 0, sizeof(tsb_error_t));

    if (tsb_csr_load(data, size, &csr, &err) != 0) {
        fuzz_assert(csr == NULL);
        fuzz_assert(err.status == 400 || err.status == 500);
        fuzz_assert(err.reason != NULL);
        fuzz_assert(memchr(err.detail, '\0', sizeof(err.detail)) != NULL);

        if (strcmp(err.reason, "csr.signature") == 0) {
            fuzz_resign(data, size);
        }

        return 0;
    }

    fuzz_accepted(csr);
    tsb_csr_free(csr);

    return 0;
}
