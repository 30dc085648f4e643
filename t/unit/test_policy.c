
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The issuance policy, one table row per rule: a CSR made with OpenSSL, a
 * request as the JSON envelope would give it, a policy variant, and the
 * answer the client must see.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "tap.h"
#include "tsb_test_csr.h"
#include "tsb_csr.h"
#include "tsb_policy.h"


enum {
    K_RSA2048 = 0,
    K_RSA1024,
    K_P256,
    K_P384,
    K_P192,
    K_K256,
    K_ED25519,
    K_ED448,
    K_N
};

static const char  *key_kinds[K_N] = {
    "RSA-2048", "RSA-1024", "EC-P-256", "EC-P-384", "EC-prime192v1",
    "EC-secp256k1", "ED25519", "ED448"
};

static EVP_PKEY  *keys[K_N];


/* policy variants of a row, or'ed */
#define P_ED25519       0x0001
#define P_CA            0x0002
#define P_CA_PATH1      0x0004
#define P_KCS_ALLOWED   0x0008
#define P_NO_SIGN_KEY   0x0010
#define P_KEY_PASSWORD  0x0020
#define P_SIG_ALGS      0x0040
#define P_SAN_IP        0x0080
#define P_MIN_RSA_3072  0x0100
#define P_NO_NAMES      0x0200
#define P_SUBJECT       0x0400

/* certificateAuthority in the request */
#define CA_ABSENT  0
#define CA_FALSE   1
#define CA_TRUE    2


typedef struct {
    const char  *name;

    int          key;
    const char  *md;
    const char  *cn;
    const char  *cn2;
    size_t       cn_len;
    int          cn_type;
    const char  *san;
    const char  *ku;
    const char  *eku;
    const char  *bc;
    const char  *subj;

    const char  *req_cn;
    const char  *req_key;
    const char  *req_alg;
    const char  *req_pw;
    int          req_ca;
    unsigned     req_ku;
    int          req_ku_set;
    unsigned     req_eku;
    int          req_eku_set;

    unsigned     pol;

    int          status;        /* 0: accepted */
    const char  *reason;
} row_t;


static const row_t  rows[] = {

    /* keys */

    { .name = "RSA-2048 leaf", .key = K_RSA2048, .cn = "a.svc.example",
      .san = "DNS:a.svc.example" },
    { .name = "P-256", .key = K_P256, .cn = "a.svc.example" },
    { .name = "P-384", .key = K_P384, .cn = "a.svc.example" },
    { .name = "RSA-1024", .key = K_RSA1024, .cn = "a.svc.example",
      .status = 403, .reason = "policy.key_size" },
    { .name = "RSA-2048 under a 3072 minimum", .key = K_RSA2048,
      .cn = "a.svc.example", .pol = P_MIN_RSA_3072,
      .status = 403, .reason = "policy.key_size" },
    { .name = "P-192", .key = K_P192, .cn = "a.svc.example",
      .status = 403, .reason = "policy.key_type" },
    { .name = "secp256k1", .key = K_K256, .cn = "a.svc.example",
      .status = 403, .reason = "policy.key_type" },
    { .name = "Ed25519 not allowed", .key = K_ED25519, .md = "none",
      .cn = "a.svc.example", .status = 403, .reason = "policy.key_type" },
    { .name = "Ed25519 allowed", .key = K_ED25519, .md = "none",
      .cn = "a.svc.example", .pol = P_ED25519 },
    { .name = "Ed448", .key = K_ED448, .md = "none", .cn = "a.svc.example",
      .pol = P_ED25519, .status = 403, .reason = "policy.key_type" },

    /* the CSR's own signature */

    { .name = "SHA-1 signed CSR", .key = K_RSA2048, .md = "sha1",
      .cn = "a.svc.example",
      .status = 403, .reason = "policy.signature_algorithm" },
    { .name = "SHA-1 signed EC CSR", .key = K_P256, .md = "sha1",
      .cn = "a.svc.example",
      .status = 403, .reason = "policy.signature_algorithm" },

    /* commonName */

    { .name = "two CNs", .key = K_P256, .cn = "a.svc.example",
      .cn2 = "b.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "no CN", .key = K_P256,
      .status = 400, .reason = "csr.common_name" },
    { .name = "NUL in CN", .key = K_P256, .cn = "a.svc.example\0.evil",
      .cn_len = 19, .status = 400, .reason = "csr.common_name" },
    { .name = "control character in CN", .key = K_P256,
      .cn = "a\x01.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "DEL in CN", .key = K_P256,
      .cn = "a\x7f.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "C1 control in CN", .key = K_P256,
      .cn = "a\xc2\x85.svc.example",
      .status = 400, .reason = "csr.common_name" },
    { .name = "CN not in the names", .key = K_P256, .cn = "evil.example",
      .status = 403, .reason = "policy.common_name" },
    { .name = "CN two labels under the wildcard", .key = K_P256,
      .cn = "a.b.svc.example", .status = 403, .reason = "policy.common_name" },
    { .name = "CN is the wildcard's parent", .key = K_P256,
      .cn = "svc.example", .status = 403, .reason = "policy.common_name" },
    { .name = "CN asks for a wildcard", .key = K_P256, .cn = "*.svc.example",
      .status = 403, .reason = "policy.common_name" },
    { .name = "CN upper case", .key = K_P256, .cn = "A.SVC.Example" },
    { .name = "CN with trailing dot", .key = K_P256,
      .cn = "a.svc.example.", .status = 400, .reason = "csr.common_name" },
    { .name = "CN exact name with trailing dot", .key = K_P256,
      .cn = "host.example.", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with a space under the wildcard", .key = K_P256,
      .cn = "a b.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with a slash under the wildcard", .key = K_P256,
      .cn = "x/y.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with an at sign under the wildcard", .key = K_P256,
      .cn = "x@y.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with an underscore under the wildcard", .key = K_P256,
      .cn = "_x.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with a Cyrillic look-alike", .key = K_P256,
      .cn = "\xd0\xb0.svc.example", .status = 400,
      .reason = "csr.common_name" },
    { .name = "CN with a full-width letter", .key = K_P256,
      .cn = "\xef\xbd\x81.svc.example", .status = 400,
      .reason = "csr.common_name" },
    { .name = "CN with a leading hyphen", .key = K_P256,
      .cn = "-a.svc.example", .status = 400, .reason = "csr.common_name" },
    { .name = "CN with a 64-octet label", .key = K_P256,
      .cn = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            ".svc.example", .cn_type = V_ASN1_UTF8STRING,
      .status = 400, .reason = "csr.common_name" },
    { .name = "CN a valid A-label", .key = K_P256,
      .cn = "xn--bcher-kva.svc.example" },
    { .name = "CN a bogus A-label", .key = K_P256,
      .cn = "xn--zz.svc.example", .status = 400,
      .reason = "csr.common_name" },
    { .name = "CN an A-label of a mixed-script look-alike", .key = K_P256,
      .cn = "xn--pple-43d.svc.example", .status = 400,
      .reason = "csr.common_name" },
    { .name = "CN not a host name, matched by a regex", .key = K_P256,
      .cn = "Example Issuing CA 7" },
    { .name = "CN not a host name, not matched by the regex", .key = K_P256,
      .cn = "Example Issuing CA x", .status = 400,
      .reason = "csr.common_name" },
    { .name = "CN exact name", .key = K_P256, .cn = "host.example" },
    { .name = "CN by regex", .key = K_P256, .cn = "api-12.example" },
    { .name = "CN not matching the regex", .key = K_P256,
      .cn = "api-12.example.evil",
      .status = 403, .reason = "policy.common_name" },
    { .name = "no names configured", .key = K_P256, .cn = "a.svc.example",
      .pol = P_NO_NAMES, .status = 403, .reason = "policy.common_name" },
    { .name = "JSON commonName matches", .key = K_P256,
      .cn = "a.svc.example", .req_cn = "a.svc.example" },
    { .name = "JSON commonName differs", .key = K_P256,
      .cn = "a.svc.example", .req_cn = "b.svc.example",
      .status = 400, .reason = "request.common_name" },
    { .name = "JSON commonName differs in case only", .key = K_P256,
      .cn = "a.svc.example", .req_cn = "A.svc.example",
      .status = 400, .reason = "request.common_name" },

    /* the rest of the subject */

    { .name = "O refused by default", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=system:masters", .status = 403, .reason = "policy.subject" },
    { .name = "OU refused by default", .key = K_P256, .cn = "a.svc.example",
      .subj = "OU=x", .status = 403, .reason = "policy.subject" },
    { .name = "emailAddress refused by default", .key = K_P256,
      .cn = "a.svc.example", .subj = "emailAddress=a@svc.example",
      .status = 403, .reason = "policy.subject" },
    { .name = "serialNumber refused by default", .key = K_P256,
      .cn = "a.svc.example", .subj = "serialNumber=1",
      .status = 403, .reason = "policy.subject" },
    { .name = "an unnamed OID refused by default", .key = K_P256,
      .cn = "a.svc.example", .subj = "1.2.3.4=x",
      .status = 403, .reason = "policy.subject" },
    { .name = "multi-valued RDN CN+O", .key = K_P256, .cn = "a.svc.example",
      .subj = "+O=Example Corp", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },
    { .name = "allowed O and C", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=Example Corp/C=CH", .pol = P_SUBJECT },
    { .name = "allowed O twice", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=Example Corp/O=Team 7", .pol = P_SUBJECT },
    { .name = "O by the regex", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=Team 12", .pol = P_SUBJECT },
    { .name = "O the regex leaves out", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=Team 12 and admins", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },
    { .name = "O in another case", .key = K_P256, .cn = "a.svc.example",
      .subj = "O=example corp", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },
    { .name = "O=system:masters besides an allowed O", .key = K_P256,
      .cn = "a.svc.example", .subj = "O=Example Corp/O=system:masters",
      .pol = P_SUBJECT, .status = 403, .reason = "policy.subject" },
    { .name = "an exact \".*\" is no regex", .key = K_P256,
      .cn = "a.svc.example", .subj = "O=anything", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },
    { .name = "an exact \".*\" matches itself", .key = K_P256,
      .cn = "a.svc.example", .subj = "O=.*", .pol = P_SUBJECT },
    { .name = "C not allowed with this value", .key = K_P256,
      .cn = "a.svc.example", .subj = "C=DE", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },
    { .name = "a type no rule names", .key = K_P256, .cn = "a.svc.example",
      .subj = "OU=Example Corp", .pol = P_SUBJECT,
      .status = 403, .reason = "policy.subject" },

    /* subjectAltName */

    { .name = "SANs all inside", .key = K_P256, .cn = "a.svc.example",
      .san = "DNS:a.svc.example,DNS:b.svc.example,DNS:host.example" },
    { .name = "one SAN good, one bad", .key = K_P256, .cn = "a.svc.example",
      .san = "DNS:a.svc.example,DNS:evil.example",
      .status = 403, .reason = "policy.san" },
    { .name = "SAN two labels deep", .key = K_P256, .cn = "a.svc.example",
      .san = "DNS:x.a.svc.example", .status = 403, .reason = "policy.san" },
    { .name = "DNS SAN with an underscore", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:_a.svc.example",
      .status = 400, .reason = "csr.san" },
    { .name = "DNS SAN with a space", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:a b.svc.example",
      .status = 400, .reason = "csr.san" },
    { .name = "DNS SAN with a leading hyphen", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:-a.svc.example",
      .status = 400, .reason = "csr.san" },
    { .name = "DNS SAN with a trailing dot", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:a.svc.example.",
      .status = 400, .reason = "csr.san" },
    { .name = "DNS SAN with a misplaced wildcard", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:a*.svc.example",
      .status = 400, .reason = "csr.san" },
    { .name = "DNS SAN upper case", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:B.SVC.EXAMPLE" },
    { .name = "IP SAN", .key = K_P256, .cn = "a.svc.example",
      .san = "IP:10.0.0.1", .status = 403, .reason = "policy.san_type" },
    { .name = "IP SAN allowed by type and name", .key = K_P256,
      .cn = "a.svc.example", .san = "DNS:a.svc.example,IP:10.0.0.1",
      .pol = P_SAN_IP },
    { .name = "IP SAN allowed by type, not by name", .key = K_P256,
      .cn = "a.svc.example", .san = "IP:10.0.0.2", .pol = P_SAN_IP,
      .status = 403, .reason = "policy.san" },
    { .name = "email SAN", .key = K_P256, .cn = "a.svc.example",
      .san = "email:a@svc.example", .status = 403,
      .reason = "policy.san_type" },
    { .name = "URI SAN", .key = K_P256, .cn = "a.svc.example",
      .san = "URI:https://a.svc.example/", .status = 403,
      .reason = "policy.san_type" },
    { .name = "registeredID SAN", .key = K_P256, .cn = "a.svc.example",
      .san = "RID:1.2.3.4", .pol = P_SAN_IP, .status = 403,
      .reason = "policy.san_type" },

    /* CA */

    { .name = "basicConstraints CA:TRUE in a leaf policy", .key = K_P256,
      .cn = "a.svc.example", .bc = "critical,CA:TRUE",
      .status = 403, .reason = "policy.ca" },
    { .name = "basicConstraints CA:FALSE", .key = K_P256,
      .cn = "a.svc.example", .bc = "critical,CA:FALSE" },
    { .name = "keyCertSign requested", .key = K_P256, .cn = "a.svc.example",
      .ku = "digitalSignature,keyCertSign",
      .status = 403, .reason = "policy.ca" },
    { .name = "keyCertSign listed as allowed by mistake", .key = K_P256,
      .cn = "a.svc.example", .ku = "keyCertSign", .pol = P_KCS_ALLOWED,
      .status = 403, .reason = "policy.ca" },
    { .name = "cRLSign requested in JSON", .key = K_P256,
      .cn = "a.svc.example", .req_ku = TSB_KU_CRL_SIGN, .req_ku_set = 1,
      .status = 403, .reason = "policy.ca" },
    { .name = "certificateAuthority true in JSON", .key = K_P256,
      .cn = "a.svc.example", .req_ca = CA_TRUE,
      .status = 403, .reason = "policy.ca" },
    { .name = "certificateAuthority false in JSON", .key = K_P256,
      .cn = "a.svc.example", .req_ca = CA_FALSE },
    { .name = "CA allowed", .key = K_P256, .cn = "a.svc.example",
      .bc = "critical,CA:TRUE,pathlen:0", .ku = "keyCertSign,cRLSign",
      .pol = P_CA | P_KCS_ALLOWED },
    { .name = "CA allowed, pathlen over the maximum", .key = K_P256,
      .cn = "a.svc.example", .bc = "critical,CA:TRUE,pathlen:2",
      .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED,
      .status = 403, .reason = "policy.ca" },
    { .name = "CA allowed, pathlen at the maximum", .key = K_P256,
      .cn = "a.svc.example", .bc = "critical,CA:TRUE,pathlen:1",
      .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED },
    { .name = "CA allowed with a maximum, no pathlen in the CSR",
      .key = K_P256, .cn = "a.svc.example", .bc = "critical,CA:TRUE",
      .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED,
      .status = 403, .reason = "policy.ca" },
    { .name = "CA allowed with a maximum, certificateAuthority alone",
      .key = K_P256, .cn = "a.svc.example", .req_ca = CA_TRUE,
      .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED,
      .status = 403, .reason = "policy.ca" },
    { .name = "CA allowed with a maximum, keyCertSign alone",
      .key = K_P256, .cn = "a.svc.example", .ku = "keyCertSign",
      .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED,
      .status = 403, .reason = "policy.ca" },
    { .name = "CA allowed with a maximum, pathlen 0", .key = K_P256,
      .cn = "a.svc.example", .bc = "critical,CA:TRUE,pathlen:0",
      .ku = "keyCertSign", .pol = P_CA | P_CA_PATH1 | P_KCS_ALLOWED },
    { .name = "CA allowed but keyCertSign not in the usages",
      .key = K_P256, .cn = "a.svc.example", .bc = "CA:TRUE",
      .ku = "keyCertSign", .pol = P_CA,
      .status = 403, .reason = "policy.key_usage" },

    /* keyUsage and extendedKeyUsage */

    { .name = "KU inside", .key = K_P256, .cn = "a.svc.example",
      .ku = "critical,digitalSignature,keyAgreement" },
    { .name = "KU outside in the CSR", .key = K_P256, .cn = "a.svc.example",
      .ku = "digitalSignature,dataEncipherment",
      .status = 403, .reason = "policy.key_usage" },
    { .name = "KU outside in JSON", .key = K_P256, .cn = "a.svc.example",
      .req_ku = TSB_KU_CONTENT_COMMITMENT, .req_ku_set = 1,
      .status = 403, .reason = "policy.key_usage" },
    { .name = "EKU inside", .key = K_P256, .cn = "a.svc.example",
      .eku = "serverAuth,clientAuth" },
    { .name = "EKU outside the set", .key = K_P256, .cn = "a.svc.example",
      .eku = "serverAuth,codeSigning",
      .status = 403, .reason = "policy.extended_key_usage" },
    { .name = "EKU with an unknown OID", .key = K_P256,
      .cn = "a.svc.example", .eku = "serverAuth,1.3.6.1.4.1.99999.7",
      .status = 403, .reason = "policy.extended_key_usage" },
    { .name = "EKU outside in JSON", .key = K_P256, .cn = "a.svc.example",
      .req_eku = TSB_EKU_TIME_STAMPING, .req_eku_set = 1,
      .status = 403, .reason = "policy.extended_key_usage" },
    { .name = "anyExtendedKeyUsage", .key = K_P256, .cn = "a.svc.example",
      .eku = "anyExtendedKeyUsage",
      .status = 403, .reason = "policy.extended_key_usage" },

    /* signKeyName, signatureAlgorithm, keyPassword */

    { .name = "signKeyName as the location's", .key = K_P256,
      .cn = "a.svc.example", .req_key = "CA-Key" },
    { .name = "signKeyName differs", .key = K_P256, .cn = "a.svc.example",
      .req_key = "Other-Key", .status = 403,
      .reason = "policy.sign_key_name" },
    { .name = "no signKeyName anywhere", .key = K_P256,
      .cn = "a.svc.example", .pol = P_NO_SIGN_KEY,
      .status = 400, .reason = "request.sign_key_name" },
    { .name = "signKeyName from the client only", .key = K_P256,
      .cn = "a.svc.example", .req_key = "Client-Key", .pol = P_NO_SIGN_KEY },
    { .name = "signatureAlgorithm the default", .key = K_P256,
      .cn = "a.svc.example", .req_alg = "SHA256_WITH_RSA" },
    { .name = "signatureAlgorithm other than the default", .key = K_P256,
      .cn = "a.svc.example", .req_alg = "SHA512_WITH_RSA",
      .status = 403, .reason = "policy.signature_algorithm" },
    { .name = "signatureAlgorithm in the list", .key = K_P256,
      .cn = "a.svc.example", .req_alg = "SHA384_WITH_RSA",
      .pol = P_SIG_ALGS },
    { .name = "signatureAlgorithm not in the list", .key = K_P256,
      .cn = "a.svc.example", .req_alg = "SHA1_WITH_RSA", .pol = P_SIG_ALGS,
      .status = 403, .reason = "policy.signature_algorithm" },
    { .name = "keyPassword refused", .key = K_P256, .cn = "a.svc.example",
      .req_pw = "s3cret-Passw0rd", .status = 403,
      .reason = "policy.key_password" },
    { .name = "keyPassword allowed", .key = K_P256, .cn = "a.svc.example",
      .req_pw = "s3cret-Passw0rd", .pol = P_KEY_PASSWORD },
};


static const tsb_name_pattern_t  names[] = {
    { "*.svc.example", sizeof("*.svc.example") - 1 },
    { "host.example", sizeof("host.example") - 1 },
    { "~^api-[0-9]+\\.example$", sizeof("~^api-[0-9]+\\.example$") - 1 },
    { "10.0.0.1", sizeof("10.0.0.1") - 1 },
    { "~^Example Issuing CA [0-9]+$",
      sizeof("~^Example Issuing CA [0-9]+$") - 1 }
};

/* tsb_allow_subject_attribute O "Example Corp" "~^Team [0-9]+$"; C CH */
static const tsb_subject_value_t  subject_o[] = {
    { "Example Corp", sizeof("Example Corp") - 1, 0, NULL },
    { "^Team [0-9]+$", sizeof("^Team [0-9]+$") - 1, 1, NULL },
    /* as a variable could expand: an exact value, not a regex */
    { ".*", 2, 0, NULL },
    /* an empty value (a variable with none) matches nothing */
    { "", 0, 0, NULL }
};

static const tsb_subject_value_t  subject_c[] = {
    { "CH", 2, 0, NULL }
};

static const tsb_subject_rule_t  subject_rules[] = {
    { "2.5.4.10", "O", subject_o, sizeof(subject_o) / sizeof(subject_o[0]) },
    { "2.5.4.6", "C", subject_c, 1 }
};

static const char *const  sig_algs[] = {
    "SHA256_WITH_RSA", "SHA384_WITH_RSA", NULL
};


static void
policy_init(tsb_policy_t *p, unsigned flags)
{
    memset(p, 0, sizeof(tsb_policy_t));

    p->names = names;
    p->n_names = (flags & P_NO_NAMES) ? 0 : sizeof(names) / sizeof(names[0]);

    if (flags & P_SUBJECT) {
        p->subject_rules = subject_rules;
        p->n_subject_rules = 2;
    }

    p->allowed_key_usage = TSB_KU_DIGITAL_SIGNATURE
                           | TSB_KU_KEY_ENCIPHERMENT | TSB_KU_KEY_AGREEMENT;
    p->default_key_usage = TSB_KU_DIGITAL_SIGNATURE
                           | TSB_KU_KEY_ENCIPHERMENT;
    p->allowed_ext_key_usage = TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH;
    p->default_ext_key_usage = TSB_EKU_SERVER_AUTH;

    if (flags & P_KCS_ALLOWED) {
        p->allowed_key_usage |= TSB_KU_KEY_CERT_SIGN | TSB_KU_CRL_SIGN;
    }

    p->allow_ca = (flags & P_CA) ? 1 : 0;
    p->max_path_len = (flags & P_CA_PATH1) ? 1 : -1;
    p->min_rsa_bits = (flags & P_MIN_RSA_3072) ? 3072 : 0;
    p->allow_ed25519 = (flags & P_ED25519) ? 1 : 0;
    p->sign_key_name = (flags & P_NO_SIGN_KEY) ? NULL : "CA-Key";
    p->signature_algorithm = NULL;
    p->allowed_signature_algorithms = (flags & P_SIG_ALGS) ? sig_algs : NULL;
    p->allow_key_password = (flags & P_KEY_PASSWORD) ? 1 : 0;
    p->allowed_san_types = (flags & P_SAN_IP)
                           ? (1u << TSB_SAN_DNS) | (1u << TSB_SAN_IP) : 0;
}


static char *
req_dup(const char *s)
{
    char  *d;

    if (s == NULL) {
        return NULL;
    }

    d = strdup(s);
    if (d == NULL) {
        tt_die("strdup");
    }

    return d;
}


static void
req_init(tsb_sign_req_t *req)
{
    memset(req, 0, sizeof(tsb_sign_req_t));
    req->certificate_authority = -1;
    req->validity = -1;
}


/* what tsb_sign_req_free() does, without linking tsb_json.c */
static void
req_clear(tsb_sign_req_t *req)
{
    free(req->sign_key_name);
    free(req->signature_algorithm);
    free(req->common_name);
    free(req->csr);

    if (req->key_password) {
        tsb_secure_zero(req->key_password, req->key_password_len);
        free(req->key_password);
    }

    free(req->meta_data);
    free(req->meta_data_signature);
    req_init(req);
}


static tsb_csr_t *
make_csr(const row_t *r)
{
    char         *pem;
    tt_csr_t      g;
    tsb_csr_t    *csr;
    tsb_error_t   err;

    memset(&g, 0, sizeof(g));

    g.key = keys[r->key];
    g.md = r->md;
    g.cn[0] = r->cn;
    g.cn_len[0] = r->cn_len;
    g.cn_type[0] = r->cn_type;
    g.cn[1] = r->cn ? r->cn2 : NULL;
    g.san = r->san;
    g.subj = r->subj;
    g.ku = r->ku;
    g.eku = r->eku;
    g.bc = r->bc;

    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        printf("#   %s: CSR does not load: %s %s\n", r->name, err.reason,
               err.detail);
        csr = NULL;
    }

    free(pem);

    return csr;
}


static void
test_rows(void)
{
    int              rc;
    size_t           i;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    const row_t     *r;
    tsb_sign_req_t   req;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        r = &rows[i];

        csr = make_csr(r);
        ok(csr != NULL, "%s: CSR made and loaded", r->name);

        if (csr == NULL) {
            continue;
        }

        policy_init(&policy, r->pol);
        req_init(&req);

        req.common_name = req_dup(r->req_cn);
        req.sign_key_name = req_dup(r->req_key);
        req.signature_algorithm = req_dup(r->req_alg);

        if (r->req_pw) {
            req.key_password_present = 1;
            req.key_password = req_dup(r->req_pw);
            req.key_password_len = strlen(r->req_pw);
        }

        if (r->req_ca != CA_ABSENT) {
            req.certificate_authority = (r->req_ca == CA_TRUE);
        }

        req.key_usage = r->req_ku;
        req.key_usage_present = r->req_ku_set;
        req.ext_key_usage = r->req_eku;
        req.ext_key_usage_present = r->req_eku_set;

        memset(&err, 0, sizeof(err));
        rc = tsb_policy_check(&policy, csr, &req, &err);

        if (r->status == 0) {
            is_int(rc, 0, "%s: accepted", r->name);

            if (rc != 0) {
                printf("#   %d %s: %s\n", err.status, err.reason,
                       err.detail);
            }

            ok(req.common_name && req.sign_key_name
               && req.signature_algorithm && req.key_usage_present
               && req.ext_key_usage_present
               && req.certificate_authority != -1,
               "%s: request complete for the upstream", r->name);

            ok((req.key_usage & ~policy.allowed_key_usage) == 0
               && (req.ext_key_usage & ~policy.allowed_ext_key_usage) == 0,
               "%s: usages within the policy", r->name);

        } else {
            is_int(rc, -1, "%s: refused", r->name);
            is_int(err.status, r->status, "%s: status %d", r->name,
                   r->status);
            is_str(err.reason, r->reason, "%s: reason %s", r->name,
                   r->reason);
            printf("#   detail: %s\n", err.detail);

            ok(req.common_name == NULL || r->req_cn != NULL,
               "%s: request left as sent", r->name);
        }

        ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear",
           r->name);

        req_clear(&req);
        tsb_csr_free(csr);
    }
}


/* what gets filled in, and how the usages combine */
static void
test_fill(void)
{
    row_t            r;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    memset(&r, 0, sizeof(r));
    r.name = "defaults";
    r.key = K_RSA2048;
    r.cn = "a.svc.example";

    csr = make_csr(&r);
    policy_init(&policy, 0);
    req_init(&req);

    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "defaults: accepted");
    is_str(req.common_name, "a.svc.example", "defaults: CN from the CSR");
    is_str(req.sign_key_name, "CA-Key", "defaults: the location's key");
    is_str(req.signature_algorithm, "SHA256_WITH_RSA",
           "defaults: SHA256_WITH_RSA");
    is_int(req.key_usage, policy.default_key_usage, "defaults: keyUsage");
    is_int(req.key_usage_present, 1, "defaults: keyUsage present");
    is_int(req.ext_key_usage, TSB_EKU_SERVER_AUTH,
           "defaults: extendedKeyUsage");
    is_int(req.ext_key_usage_present, 1, "defaults: EKU present");
    is_int(req.certificate_authority, 0, "defaults: not a CA");
    req_clear(&req);

    /* the location's own signature algorithm */

    policy.signature_algorithm = "SHA384_WITH_ECDSA";
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "location algorithm: accepted");
    is_str(req.signature_algorithm, "SHA384_WITH_ECDSA",
           "location algorithm filled in");
    req_clear(&req);

    req.signature_algorithm = req_dup("SHA384_WITH_ECDSA");
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "location algorithm named by the client: accepted");
    req_clear(&req);

    tsb_csr_free(csr);

    /* union of JSON and CSR keyUsage; the CSR's alone beats the default */

    r.ku = "keyAgreement";
    r.eku = "clientAuth";
    csr = make_csr(&r);
    policy_init(&policy, 0);

    req.key_usage = TSB_KU_DIGITAL_SIGNATURE;
    req.key_usage_present = 1;
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "union: accepted");
    is_int(req.key_usage, TSB_KU_DIGITAL_SIGNATURE | TSB_KU_KEY_AGREEMENT,
           "union: JSON and CSR keyUsage together");
    is_int(req.ext_key_usage, TSB_EKU_CLIENT_AUTH,
           "union: the CSR's EKU, not the default");
    req_clear(&req);

    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "CSR usages only: accepted");
    is_int(req.key_usage, TSB_KU_KEY_AGREEMENT,
           "CSR keyUsage only: not widened by the default");
    req_clear(&req);

    /* an explicitly empty JSON list is the client's choice, not absent */

    req.key_usage_present = 1;
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "empty JSON keyUsage: accepted");
    is_int(req.key_usage, TSB_KU_KEY_AGREEMENT,
           "empty JSON keyUsage plus the CSR's");
    req_clear(&req);

    tsb_csr_free(csr);

    /* an allowed CA request is issued as a CA */

    memset(&r, 0, sizeof(r));
    r.name = "CA";
    r.key = K_P256;
    r.cn = "a.svc.example";
    r.bc = "critical,CA:TRUE";
    r.ku = "keyCertSign";
    csr = make_csr(&r);
    policy_init(&policy, P_CA | P_KCS_ALLOWED);

    is_int(tsb_policy_check(&policy, csr, &req, &err), 0, "CA: accepted");
    is_int(req.certificate_authority, 1, "CA: certificateAuthority set");
    req_clear(&req);

    req.certificate_authority = 0;
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "CA with certificateAuthority false: accepted");
    is_int(req.certificate_authority, 0,
           "CA: the client's explicit false is kept");
    req_clear(&req);

    tsb_csr_free(csr);

    /* a refusal leaves the request untouched */

    memset(&r, 0, sizeof(r));
    r.name = "refused";
    r.key = K_P256;
    r.cn = "a.svc.example";
    r.eku = "codeSigning";
    csr = make_csr(&r);
    policy_init(&policy, 0);

    is_int(tsb_policy_check(&policy, csr, &req, &err), -1,
           "refused late (EKU)");
    ok(req.common_name == NULL && req.sign_key_name == NULL
       && req.signature_algorithm == NULL && req.key_usage_present == 0
       && req.certificate_authority == -1,
       "refused: nothing filled in");
    is_str(err.detail, "extendedKeyUsage CODE_SIGNING is not allowed here",
           "refused: the EKU is named");
    req_clear(&req);

    tsb_csr_free(csr);
}


/* what the details say, and what they must not */
static void
test_details(void)
{
    char             cn[201];
    row_t            r;
    size_t           n;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    policy_init(&policy, 0);
    req_init(&req);

    memset(&r, 0, sizeof(r));
    r.key = K_P256;
    r.name = "details";

    r.cn = "evil.example";
    csr = make_csr(&r);
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.detail, "commonName \"evil.example\" is not allowed here",
           "CN quoted in the detail");

    req.common_name = req_dup("other.svc.example");
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.detail, "commonName \"other.svc.example\" does not match "
           "the CSR's CN \"evil.example\"", "mismatch names both");
    req_clear(&req);

    req.common_name = req_dup("bad\x1b[2J");
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.reason, "request.common_name", "mismatch with escape codes");
    ok(strchr(err.detail, 0x1b) == NULL,
       "an unclean JSON commonName is not echoed: %s", err.detail);
    req_clear(&req);
    tsb_csr_free(csr);

    /* a long CN is cut, at a character boundary */

    memset(cn, 'a', 200);
    memcpy(cn + 62, "\xc3\xa9", 2);     /* 'é' across the cut at 64 */
    memcpy(cn + 190, ".svc.evil", 9);
    cn[199] = '\0';
    r.cn = cn;
    r.cn_type = V_ASN1_UTF8STRING;      /* past OpenSSL's 64 limit */
    csr = make_csr(&r);
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.reason, "csr.common_name", "long non-ASCII CN refused");
    n = strlen(err.detail);
    ok(n < 200 && strstr(err.detail, "...\"") == NULL
       && strstr(err.detail, "\"...") != NULL,
       "long CN truncated: %s", err.detail);
    ok(strstr(err.detail, "\xc3\xa9\"") != NULL,
       "truncation keeps the whole character");
    tsb_csr_free(csr);

    /* the first bad SAN is the one named */

    r.cn = "a.svc.example";
    r.cn_type = 0;
    r.san = "DNS:a.svc.example,DNS:first.evil,DNS:second.evil";
    csr = make_csr(&r);
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.detail, "subjectAltName DNS:\"first.evil\" is not allowed here",
           "first bad SAN named");
    tsb_csr_free(csr);

    /* the password never shows */

    r.san = NULL;
    csr = make_csr(&r);
    req.key_password_present = 1;
    req.key_password = req_dup("hunter2-very-secret");
    req.key_password_len = strlen(req.key_password);
    tsb_policy_check(&policy, csr, &req, &err);
    is_str(err.reason, "policy.key_password", "keyPassword refused");
    ok(strstr(err.detail, "hunter2") == NULL, "password not in the detail");
    req_clear(&req);

    /* a null keyPassword is no password */

    req.key_password_present = 1;
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "keyPassword null: accepted");
    req_clear(&req);

    tsb_csr_free(csr);
}


#define S(s)  s, sizeof(s) - 1


/*
 * Facts OpenSSL would never produce (d2i refuses bad UTF-8 before us):
 * the policy checks them anyway, since the facts are a plain struct.
 */
static void
test_fake_facts(void)
{
    size_t           i;
    char            *cns[1];
    size_t           lens[1];
    tsb_csr_t        csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    static const struct {
        const char  *cn;
        size_t       len;
        const char  *detail;
    } bad[] = {
        { S("a\xff.svc.example"), "the commonName is not valid UTF-8" },
        { S("a\xc0\xae.svc.example"), "the commonName is not valid UTF-8" },
        { S("a\xed\xa0\x80.svc.example"),
          "the commonName is not valid UTF-8" },
        { S("a\xf4\x90\x80\x80.svc.example"),
          "the commonName is not valid UTF-8" },
        { S("a.svc.example\xe2\x82"), "the commonName is not valid UTF-8" },
        { S("a\0.svc.example"), "NUL in commonName" },
        { S("a\t.svc.example"), "control character in commonName" },
        /* good UTF-8, but no host name */
        { S("\xe2\x82\xac.svc.example"), NULL },
        { S("\xf0\x9f\x94\x91.svc.example"), NULL },
    };

    policy_init(&policy, 0);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&csr, 0, sizeof(csr));
        csr.key_type = TSB_KEY_EC;
        csr.key_curve = "P-256";
        csr.key_bits = 256;
        csr.sig_md_nid = NID_sha256;
        csr.basic_pathlen = -1;
        cns[0] = (char *) bad[i].cn;
        lens[0] = bad[i].len;
        csr.common_names = cns;
        csr.common_name_lens = lens;
        csr.n_common_names = 1;

        req_init(&req);
        memset(&err, 0, sizeof(err));

        if (bad[i].detail) {
            is_int(tsb_policy_check(&policy, &csr, &req, &err), -1,
                   "fake CN %zu refused", i);
            is_str(err.reason, "csr.common_name", "fake CN %zu reason", i);
            is_str(err.detail, bad[i].detail, "fake CN %zu detail", i);

        } else {
            is_int(tsb_policy_check(&policy, &csr, &req, &err), -1,
                   "fake CN %zu with good UTF-8 refused", i);
            is_str(err.reason, "csr.common_name", "fake CN %zu reason", i);
            ok(strstr(err.detail, "is not a host name") != NULL,
               "fake CN %zu: %s", i, err.detail);
        }

        req_clear(&req);
    }

    /* DSA, unknown keys and undeterminable digests */

    memset(&csr, 0, sizeof(csr));
    cns[0] = "a.svc.example";
    lens[0] = 13;
    csr.common_names = cns;
    csr.common_name_lens = lens;
    csr.n_common_names = 1;
    csr.basic_pathlen = -1;
    csr.sig_md_nid = NID_sha256;

    csr.key_type = TSB_KEY_DSA;
    csr.key_bits = 3072;
    tsb_policy_check(&policy, &csr, &req, &err);
    is_str(err.reason, "policy.key_type", "DSA refused");

    csr.key_type = TSB_KEY_UNKNOWN;
    tsb_policy_check(&policy, &csr, &req, &err);
    is_str(err.reason, "policy.key_type", "unknown key type refused");

    csr.key_type = TSB_KEY_EC;
    csr.key_curve = NULL;
    tsb_policy_check(&policy, &csr, &req, &err);
    is_str(err.reason, "policy.key_type", "EC without a named curve refused");

    csr.key_type = TSB_KEY_RSA;
    csr.key_bits = 2048;
    csr.key_rsa_exponent = 65537;
    csr.sig_md_nid = NID_undef;
    tsb_policy_check(&policy, &csr, &req, &err);
    is_str(err.reason, "policy.signature_algorithm",
           "RSA with no known digest refused");

    csr.sig_md_nid = NID_md5;
    tsb_policy_check(&policy, &csr, &req, &err);
    is_str(err.reason, "policy.signature_algorithm", "MD5 refused");

    csr.sig_md_nid = NID_sha384;
    is_int(tsb_policy_check(&policy, &csr, &req, &err), 0, "SHA-384 fine");
    req_clear(&req);
}


static void
test_name_match(void)
{
    size_t  i;

    static const struct {
        const char  *pattern;
        const char  *name;
        size_t       nlen;          /* 0: strlen */
        int          match;
    } t[] = {
        { "host.example", "host.example", 0, 1 },
        { "host.example", "HOST.Example", 0, 1 },
        { "HOST.EXAMPLE", "host.example", 0, 1 },
        { "host.example", "host.example.", 0, 0 },
        { "host.example.", "host.example", 0, 1 },
        { "host.example.", "host.example.", 0, 0 },
        { "host.example", "host.example..", 0, 0 },
        { "host.example", "ahost.example", 0, 0 },
        { "host.example", "host.exampl", 0, 0 },
        { "host.example", "host.example.com", 0, 0 },
        { "host.example", "", 0, 0 },
        { "host.example", ".", 0, 0 },
        { "", "host.example", 0, 0 },
        { "host.example", "host.example\0.evil", 18, 0 },
        { "h\xc3\xa9.example", "H\xc3\xa9.example", 0, 1 },
        { "h\xc3\xa9.example", "h\xc3\x89.example", 0, 0 },

        { "*.svc.example", "a.svc.example", 0, 1 },
        { "*.svc.example", "A-1.SVC.Example", 0, 1 },
        { "*.svc.example", "a.svc.example.", 0, 0 },
        { "*.svc.example.", "a.svc.example", 0, 1 },
        { "*.svc.example", "a.b.svc.example", 0, 0 },
        { "*.svc.example", "svc.example", 0, 0 },
        { "*.svc.example", ".svc.example", 0, 0 },
        { "*.svc.example", "*.svc.example", 0, 0 },
        { "*.svc.example", "a*.svc.example", 0, 0 },
        { "*.svc.example", "a.svc.example.evil", 0, 0 },
        { "*.svc.example", "a.svcXexample", 0, 0 },
        { "*.svc.example", "asvc.example", 0, 0 },
        { "a.*.example", "a.b.example", 0, 0 },
        { "a.*.example", "a.*.example", 0, 0 },
        { "*a.example", "ba.example", 0, 0 },
        { "*.*.example", "a.b.example", 0, 0 },
        { "*", "x", 0, 0 },
        { "*.", "x.", 0, 0 },

        { "~^api-[0-9]+\\.example$", "api-1.example", 0, 1 },
        { "~^api-[0-9]+\\.example$", "API-12.Example", 0, 1 },
        { "~^api-[0-9]+\\.example$", "api-12.example.", 0, 0 },
        { "~^api-[0-9]+\\.example$", "api-x.example", 0, 0 },
        { "~^api-[0-9]+\\.example$", "xapi-1.example", 0, 0 },
        { "~^api-[0-9]+\\.example$", "api-1.example.evil", 0, 0 },
        { "~^(a|b)\\.svc\\.example$", "b.svc.example", 0, 1 },
        { "~^\\*\\.svc\\.example$", "*.svc.example", 0, 1 },
        { "~(", "(", 0, 0 },
        { "~^.*$", "", 0, 0 },
        { "~", "anything", 0, 0 },
        { "~^a", "a\0b", 3, 0 },
    };

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        is_int(tsb_policy_name_match(t[i].pattern, strlen(t[i].pattern),
                                     t[i].name,
                                     t[i].nlen ? t[i].nlen
                                               : strlen(t[i].name)),
               t[i].match, "name_match('%s', '%s') = %d", t[i].pattern,
               t[i].name, t[i].match);
    }

    is_int(tsb_policy_name_match(NULL, 0, "a", 1), 0, "NULL pattern");
    is_int(tsb_policy_name_match("a", 1, NULL, 0), 0, "NULL name");
}


static void
test_value_match(void)
{
    void                 *re;
    char                  buf[128];
    tsb_subject_value_t   v;

    v.value = "";
    v.len = 0;
    v.is_regex = 0;
    v.regex = NULL;
    is_int(tsb_policy_value_match(&v, "", 0), 0,
           "an empty exact value matches not even an empty one");

    v.value = "Example Corp";
    v.len = 12;
    is_int(tsb_policy_value_match(&v, "Example Corp", 12), 1, "exact");
    is_int(tsb_policy_value_match(&v, "Example Corp\0x", 14), 0,
           "a NUL in the value never matches");
    is_int(tsb_policy_value_match(&v, "Example Cor", 11), 0, "a prefix");

    v.value = "^a|b$";
    v.len = 5;
    is_int(tsb_policy_value_match(&v, "^a|b$", 5), 1,
           "a regex-looking exact value is exact");
    is_int(tsb_policy_value_match(&v, "a", 1), 0, "and no regex");

    v.is_regex = 1;
    is_int(tsb_policy_value_match(&v, "a", 1), 1,
           "the same as a regex, compiled per call");

    ok(tsb_policy_value_regex_compile("^Team [0-9]+$", 13, &re, buf,
                                      sizeof(buf)) == 0 && re != NULL,
       "value regex compiles");
    v.value = "^Team [0-9]+$";
    v.len = 13;
    v.regex = re;
    is_int(tsb_policy_value_match(&v, "Team 7", 6), 1, "compiled regex");
    is_int(tsb_policy_value_match(&v, "team 7", 6), 0,
           "a value regex is case-sensitive");
    tsb_policy_regex_free(re);

    ok(tsb_policy_value_regex_compile("(", 1, &re, buf, sizeof(buf)) == -1
       && re == NULL && buf[0] != '\0', "a bad value regex: %s", buf);
}


static void
test_pattern_check(void)
{
    size_t  i;
    char    buf[128];

    static const struct {
        const char  *pattern;
        int          rc;
    } t[] = {
        { "host.example", 0 },
        { "host.example.", 0 },
        { "*.svc.example", 0 },
        { "~^a\\.example$", 0 },
        { "", -1 },
        { ".", -1 },
        { "*", -1 },
        { "*.", -1 },
        { "*a.example", -1 },
        { "a.*.example", -1 },
        { "*.*.example", -1 },
        { "~(", -1 },
        { "~a[", -1 },
        { "John Doe", -1 },
        { "a_b.example", -1 },
        { "-a.example", -1 },
        { "a..example", -1 },
        { "xn--zz.example", -1 },
        { "xn--bcher-kva.example", 0 },
        { "10.0.0.1", 0 },
        { "ops@svc.example", 0 },
        { "2001:db8::1", 0 },
        { "https://a.example/x", 0 },
    };

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        buf[0] = '\0';
        is_int(tsb_policy_pattern_check(t[i].pattern, strlen(t[i].pattern),
                                        buf, sizeof(buf)),
               t[i].rc, "pattern_check('%s') = %d", t[i].pattern, t[i].rc);

        if (t[i].rc != 0) {
            ok(buf[0] != '\0', "pattern_check('%s') says why: %s",
               t[i].pattern, buf);
        }
    }
}


/* precompiled regexes answer as the per-call ones do */
static void
test_regex_compile(void)
{
    int              rc, a, b;
    char             buf[128];
    void            *re, *res[5];
    row_t            r;
    size_t           i, j;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    static const char  *patterns[] = {
        "~^api-[0-9]+\\.example$", "~^(a|b)\\.svc\\.example$", "~^.*$",
        "~\\.evil$"
    };

    static const char  *probes[] = {
        "api-1.example", "API-12.Example.", "api-x.example", "b.svc.example",
        "c.svc.example", "x.evil", "x.evil.", "", "a\xc3\xa9.evil"
    };

    for (i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        rc = tsb_policy_regex_compile(patterns[i], strlen(patterns[i]), &re,
                                      buf, sizeof(buf));
        is_int(rc, 0, "regex_compile('%s')", patterns[i]);
        ok(re != NULL, "regex_compile('%s') gives a regex", patterns[i]);

        for (j = 0; j < sizeof(probes) / sizeof(probes[0]); j++) {
            a = tsb_policy_name_match(patterns[i], strlen(patterns[i]),
                                      probes[j], strlen(probes[j]));
            b = tsb_policy_name_match_re(patterns[i], strlen(patterns[i]),
                                         re, probes[j], strlen(probes[j]));
            is_int(b, a, "compiled '%s' on '%s' = %d", patterns[i],
                   probes[j], a);
        }

        tsb_policy_regex_free(re);
    }

    /* a name longer than the stack copy */

    memset(buf, 'a', 120);
    strcpy(buf + 120, ".evil");
    rc = tsb_policy_regex_compile("~\\.evil$", 8, &re, NULL, 0);
    is_int(rc, 0, "regex_compile without an error buffer");
    is_int(tsb_policy_name_match_re("~\\.evil$", 8, re, buf, strlen(buf)),
           1, "compiled regex on a long name");
    tsb_policy_regex_free(re);

    rc = tsb_policy_regex_compile("*.svc.example", 13, &re, buf,
                                  sizeof(buf));
    ok(rc == 0 && re == NULL, "regex_compile on a wildcard: no regex");

    rc = tsb_policy_regex_compile("~(", 2, &re, buf, sizeof(buf));
    ok(rc == -1 && re == NULL && buf[0] != '\0',
       "regex_compile('~(') refused: %s", buf);

    rc = tsb_policy_regex_compile("a.*.example", 11, &re, buf, sizeof(buf));
    ok(rc == -1 && re == NULL, "regex_compile('a.*.example') refused: %s",
       buf);

    tsb_policy_regex_free(NULL);

    /* a policy with its regexes compiled, and an empty (dropped) pattern */

    policy_init(&policy, 0);

    for (i = 0; i < 5; i++) {
        res[i] = NULL;

        if (tsb_policy_regex_compile(names[i].pattern, names[i].len, &res[i],
                                     buf, sizeof(buf))
            != 0)
        {
            tt_die(buf);
        }
    }

    policy.name_regex = res;

    memset(&r, 0, sizeof(r));
    r.key = K_P256;
    r.name = "compiled";

    r.cn = "api-7.example";
    csr = make_csr(&r);
    req_init(&req);
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "compiled policy: regex CN accepted");
    req_clear(&req);
    tsb_csr_free(csr);

    r.cn = "api-7.example.evil";
    csr = make_csr(&r);
    is_int(tsb_policy_check(&policy, csr, &req, &err), -1,
           "compiled policy: regex CN refused");
    is_str(err.reason, "policy.common_name", "compiled policy: reason");
    req_clear(&req);
    tsb_csr_free(csr);

    for (i = 0; i < 5; i++) {
        tsb_policy_regex_free(res[i]);
    }

    /* a zero-length pattern matches nothing, not even an empty name */

    is_int(tsb_policy_name_match("", 0, "", 0), 0, "empty pattern, empty name");
    is_int(tsb_policy_name_match("", 0, "a", 1), 0, "empty pattern");
}


/* more SANs than TSB_POLICY_MAX_SANS */
static void
test_san_count(void)
{
    int              i;
    char             san[(TSB_POLICY_MAX_SANS + 1) * 32], *p;
    row_t            r;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    policy_init(&policy, 0);
    memset(&r, 0, sizeof(r));
    r.key = K_P256;
    r.name = "SAN count";
    r.cn = "a.svc.example";

    p = san;

    for (i = 0; i < TSB_POLICY_MAX_SANS; i++) {
        p += sprintf(p, "%sDNS:h%d.svc.example", i ? "," : "", i);
    }

    r.san = san;
    csr = make_csr(&r);
    req_init(&req);
    is_int(tsb_policy_check(&policy, csr, &req, &err), 0,
           "%d SANs accepted", TSB_POLICY_MAX_SANS);
    req_clear(&req);
    tsb_csr_free(csr);

    sprintf(p, ",DNS:h%d.svc.example", i);
    csr = make_csr(&r);
    is_int(tsb_policy_check(&policy, csr, &req, &err), -1,
           "%d SANs refused", TSB_POLICY_MAX_SANS + 1);
    is_str(err.reason, "policy.san", "too many SANs: reason");
    is_int(err.status, 403, "too many SANs: 403");
    printf("#   detail: %s\n", err.detail);
    req_clear(&req);
    tsb_csr_free(csr);
}


/*
 * The refusals issue 3 lists, each from a PEM through tsb_csr_load() and
 * tsb_policy_check() as the sign handler runs them, against a leaf
 * location: none may pass, each must name its rule.
 */
static void
test_issue_refusals(void)
{
    int              rc;
    char            *pem;
    size_t           i;
    tt_csr_t         g;
    tsb_buf_t        der;
    tsb_csr_t       *csr;
    tsb_error_t      err;
    tsb_policy_t     policy;
    tsb_sign_req_t   req;

    static const struct {
        const char  *name;
        int          key;
        const char  *md;
        const char  *cn;
        size_t       cn_len;
        const char  *cn2;
        const char  *san;
        const char  *ku;
        const char  *eku;
        const char  *bc;
        int          flip;          /* corrupt the signature */
        int          status;
        const char  *reason;
    } t[] = {
        { "bad signature", K_RSA2048, NULL, "a.svc.example", 0, NULL, NULL,
          NULL, NULL, NULL, 1, 400, "csr.signature" },
        { "RSA-1024", K_RSA1024, NULL, "a.svc.example", 0, NULL, NULL,
          NULL, NULL, NULL, 0, 403, "policy.key_size" },
        { "SHA-1", K_RSA2048, "sha1", "a.svc.example", 0, NULL, NULL,
          NULL, NULL, NULL, 0, 403, "policy.signature_algorithm" },
        { "two CNs", K_P256, NULL, "a.svc.example", 0, "b.svc.example",
          NULL, NULL, NULL, NULL, 0, 400, "csr.common_name" },
        { "NUL in CN", K_P256, NULL, "a.svc.example\0.evil", 19, NULL,
          NULL, NULL, NULL, NULL, 0, 400, "csr.common_name" },
        { "SAN outside the names", K_P256, NULL, "a.svc.example", 0, NULL,
          "DNS:a.svc.example,DNS:www.evil.example", NULL, NULL, NULL, 0,
          403, "policy.san" },
        { "CA:TRUE in a leaf location", K_P256, NULL, "a.svc.example", 0,
          NULL, NULL, NULL, NULL, "critical,CA:TRUE", 0, 403, "policy.ca" },
        { "keyCertSign", K_P256, NULL, "a.svc.example", 0, NULL, NULL,
          "critical,digitalSignature,keyCertSign", NULL, NULL, 0, 403,
          "policy.ca" },
        { "EKU outside the set", K_P256, NULL, "a.svc.example", 0, NULL,
          NULL, NULL, "serverAuth,emailProtection", NULL, 0, 403,
          "policy.extended_key_usage" },
        { "Ed25519 where not allowed", K_ED25519, "none", "a.svc.example",
          0, NULL, NULL, NULL, NULL, NULL, 0, 403, "policy.key_type" },
    };

    policy_init(&policy, 0);

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(&g, 0, sizeof(g));
        g.key = keys[t[i].key];
        g.md = t[i].md;
        g.cn[0] = t[i].cn;
        g.cn_len[0] = t[i].cn_len;
        g.cn[1] = t[i].cn2;
        g.san = t[i].san;
        g.ku = t[i].ku;
        g.eku = t[i].eku;
        g.bc = t[i].bc;

        der = tt_csr_der(&g);

        if (t[i].flip) {
            der.data[der.len - 5] ^= 0x01;
        }

        pem = tt_der_to_pem(der.data, der.len);
        free(der.data);

        memset(&err, 0, sizeof(err));
        req_init(&req);

        rc = tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err);

        if (rc == 0) {
            rc = tsb_policy_check(&policy, csr, &req, &err);
            tsb_csr_free(csr);
        }

        is_int(rc, -1, "issue 3: %s refused", t[i].name);
        is_int(err.status, t[i].status, "issue 3: %s: %d", t[i].name,
               t[i].status);
        is_str(err.reason, t[i].reason, "issue 3: %s: %s", t[i].name,
               t[i].reason);
        ok(err.detail[0] != '\0', "issue 3: %s: %s", t[i].name, err.detail);
        ok(ERR_peek_error() == 0, "issue 3: %s: OpenSSL queue clear",
           t[i].name);

        req_clear(&req);
        free(pem);
    }
}


/*
 * Issue 10, parts 4 and 5: the extensions a CSR requests are an
 * allow-list, and the lifetime, RSA modulus and exponent, and EC curve
 * have limits of their own.
 */

static X509_EXTENSION *ext_make_der(const char *name,
    const unsigned char *der, int len, int critical);


/* certificatePolicies { policyIdentifier 1.3.6.1.4.1.99.1 } */
static const unsigned char  cert_policies_der[] = {
    0x30, 0x0b, 0x30, 0x09, 0x06, 0x07,
    0x2b, 0x06, 0x01, 0x04, 0x01, 0x63, 0x01
};


static X509_EXTENSION *
ext_make(const char *name, const char *value, int critical)
{
    X509V3_CTX          ctx;
    X509_EXTENSION     *ext;

    if (value != NULL) {
        X509V3_set_ctx(&ctx, NULL, NULL, NULL, NULL, 0);
        X509V3_set_ctx_nodb(&ctx);
        ext = X509V3_EXT_conf(NULL, &ctx, name, value);
        if (ext == NULL) {
            tt_die(name);
        }

        return ext;
    }

    /* an OID OpenSSL has no method for, holding a DER NULL */

    return ext_make_der(name, (const unsigned char *) "\x05\x00", 2,
                        critical);
}


static X509_EXTENSION *
ext_make_der(const char *name, const unsigned char *der, int len,
    int critical)
{
    X509_EXTENSION     *ext;
    ASN1_OBJECT        *obj;
    ASN1_OCTET_STRING  *os;

    obj = OBJ_txt2obj(name, 0);
    os = ASN1_OCTET_STRING_new();

    if (obj == NULL || os == NULL || ASN1_OCTET_STRING_set(os, der, len) != 1)
    {
        tt_die(name);
    }

    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, critical, os);
    if (ext == NULL) {
        tt_die(name);
    }

    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(os);

    return ext;
}


static tsb_csr_t *
csr_with(EVP_PKEY *key, X509_EXTENSION *e1, X509_EXTENSION *e2)
{
    char         *pem;
    tt_csr_t      g;
    tsb_csr_t    *csr;
    tsb_error_t   err;

    memset(&g, 0, sizeof(g));

    g.key = key;
    g.cn[0] = "a.svc.example";
    g.san = "DNS:a.svc.example";
    g.raw[0] = e1;
    g.raw[1] = e1 ? e2 : NULL;

    pem = tt_csr_pem(&g);

    if (tsb_csr_load((unsigned char *) pem, strlen(pem), &csr, &err) != 0) {
        printf("#   CSR does not load: %s %s\n", err.reason, err.detail);
        csr = NULL;
    }

    free(pem);

    return csr;
}


static void
judge(const char *name, const tsb_policy_t *policy, tsb_csr_t *csr,
    long validity, int status, const char *reason)
{
    int             rc;
    tsb_error_t     err;
    tsb_sign_req_t  req;

    if (csr == NULL) {
        ok(0, "%s: the CSR loads", name);
        return;
    }

    req_init(&req);
    req.validity = validity;
    memset(&err, 0, sizeof(err));

    rc = tsb_policy_check(policy, csr, &req, &err);

    if (status == 0) {
        is_int(rc, 0, "%s: accepted", name);
        if (rc != 0) {
            printf("#   %s %s\n", err.reason, err.detail);
        }

    } else {
        is_int(rc, -1, "%s: refused", name);
        is_int(err.status, status, "%s: status %d", name, status);
        is_str(err.reason, reason, "%s: %s", name, reason);
    }

    req_clear(&req);
}


static void
test_extensions(void)
{
    char                 oid[TSB_OID_MAX], errbuf[128];
    tsb_csr_t           *csr;
    tsb_policy_t         policy, open;
    static const char   *allowed[] = { "2.5.29.32", "1.2.3.4.5", NULL };

    policy_init(&policy, 0);
    policy_init(&open, 0);
    open.allowed_extensions = allowed;

    csr = csr_with(keys[K_P256],
                   ext_make("nameConstraints",
                            "permitted;DNS:.svc.example", 0), NULL);
    judge("nameConstraints", &policy, csr, -1, 403, "policy.extension");
    judge("nameConstraints, not in the list", &open, csr, -1, 403,
          "policy.extension");
    ok(csr && csr->n_exts == 1 && strcmp(csr->exts[0].oid, "2.5.29.30") == 0
       && csr->exts[0].readable && !csr->exts[0].critical,
       "nameConstraints is a fact: OID, readable, not critical");
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256],
                   ext_make_der("certificatePolicies", cert_policies_der,
                                sizeof(cert_policies_der), 0),
                   NULL);
    judge("certificatePolicies", &policy, csr, -1, 403, "policy.extension");
    judge("certificatePolicies, allowed", &open, csr, -1, 0, NULL);
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256], ext_make("noCheck", "ignored", 0), NULL);
    judge("OCSP no-check", &policy, csr, -1, 403, "policy.extension");
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256], ext_make("1.2.3.4.5", NULL, 0), NULL);
    judge("unknown extension", &policy, csr, -1, 403, "policy.extension");
    judge("unknown extension, allowed", &open, csr, -1, 0, NULL);
    ok(csr && csr->n_exts == 1 && !csr->exts[0].readable,
       "an unknown extension is kept as unreadable");
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256], ext_make("1.2.3.4.5", NULL, 1), NULL);
    judge("unknown critical extension", &policy, csr, -1, 403,
          "policy.extension");
    judge("unknown critical extension, even when listed", &open, csr, -1,
          403, "policy.extension");
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256], ext_make("subjectKeyIdentifier",
                                          "00112233445566778899", 0),
                   ext_make("1.2.3.4.6", NULL, 0));
    judge("subjectKeyIdentifier and an unknown one", &policy, csr, -1, 403,
          "policy.extension");
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P256], ext_make("subjectKeyIdentifier",
                                          "00112233445566778899", 0), NULL);
    judge("subjectKeyIdentifier alone", &policy, csr, -1, 0, NULL);
    tsb_csr_free(csr);

    /* the directive's names */

    is_int(tsb_policy_extension_check("certificatePolicies", oid,
                                      sizeof(oid), errbuf, sizeof(errbuf)),
           0, "extension_check: a long name");
    is_str(oid, "2.5.29.32", "extension_check: its OID");
    is_int(tsb_policy_extension_check("1.3.6.1.4.1.99.7", oid, sizeof(oid),
                                      errbuf, sizeof(errbuf)),
           0, "extension_check: a dotted OID");
    is_str(oid, "1.3.6.1.4.1.99.7", "extension_check: the same OID");
    is_int(tsb_policy_extension_check("subjectAltName", oid, sizeof(oid),
                                      errbuf, sizeof(errbuf)),
           -1, "extension_check: subjectAltName has its own directives");
    is_int(tsb_policy_extension_check("basicConstraints", oid, sizeof(oid),
                                      errbuf, sizeof(errbuf)),
           -1, "extension_check: basicConstraints too");
    is_int(tsb_policy_extension_check("no such thing", oid, sizeof(oid),
                                      errbuf, sizeof(errbuf)),
           -1, "extension_check: an unknown name");
}


static void
test_limits(void)
{
    BIGNUM        *e;
    EVP_PKEY      *e3, *p521;
    tsb_csr_t     *csr;
    EVP_PKEY_CTX  *pctx;
    tsb_policy_t   policy;
    unsigned long  exps[2] = { 3, 65537 };

    policy_init(&policy, 0);

    /* validity */

    csr = csr_with(keys[K_P256], NULL, NULL);
    judge("no validity", &policy, csr, -1, 0, NULL);
    judge("397 days", &policy, csr, 397, 0, NULL);
    judge("398 days", &policy, csr, 398, 403, "policy.validity");
    judge("36500 days", &policy, csr, 36500, 403, "policy.validity");
    judge("0 days", &policy, csr, 0, 403, "policy.validity");
    policy.max_validity = 30 * 86400;
    judge("30 days of 30", &policy, csr, 30, 0, NULL);
    judge("31 days of 30", &policy, csr, 31, 403, "policy.validity");
    policy.max_validity = 0;

    /* EC curves: all three by default, as before */

    policy.allowed_ec_curves = TSB_CURVE_P256;
    judge("P-256 where only P-256 is allowed", &policy, csr, -1, 0, NULL);
    tsb_csr_free(csr);

    csr = csr_with(keys[K_P384], NULL, NULL);
    judge("P-384 where only P-256 is allowed", &policy, csr, -1, 403,
          "policy.key_type");
    tsb_csr_free(csr);

    p521 = tt_key("EC-P-521");
    csr = csr_with(p521, NULL, NULL);
    judge("P-521 where only P-256 is allowed", &policy, csr, -1, 403,
          "policy.key_type");
    policy.allowed_ec_curves = 0;
    judge("P-521 by default", &policy, csr, -1, 0, NULL);
    policy.allowed_ec_curves = TSB_CURVE_P256 | TSB_CURVE_P384;
    judge("P-521 where P-256 and P-384 are allowed", &policy, csr, -1, 403,
          "policy.key_type");
    policy.allowed_ec_curves = 0x100;      /* tsb_allow_ec_curves none */
    judge("P-521 where no curve is allowed", &policy, csr, -1, 403,
          "policy.key_type");
    policy.allowed_ec_curves = 0;
    tsb_csr_free(csr);
    EVP_PKEY_free(p521);

    /* RSA: the modulus bound, the exponent */

    csr = csr_with(keys[K_RSA2048], NULL, NULL);
    ok(csr && csr->key_rsa_exponent == 65537, "RSA exponent 65537 read");
    judge("RSA-2048 e=65537", &policy, csr, -1, 0, NULL);
    policy.max_rsa_bits = 2047;
    judge("RSA-2048 above a 2047-bit maximum", &policy, csr, -1, 403,
          "policy.key_size");
    policy.max_rsa_bits = 0;
    tsb_csr_free(csr);

    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    e = BN_new();
    e3 = NULL;

    if (pctx == NULL || e == NULL || BN_set_word(e, 3) != 1
        || EVP_PKEY_keygen_init(pctx) != 1
        || EVP_PKEY_CTX_set_rsa_keygen_bits(pctx, 2048) != 1
        || EVP_PKEY_CTX_set1_rsa_keygen_pubexp(pctx, e) != 1
        || EVP_PKEY_keygen(pctx, &e3) != 1)
    {
        tt_die("RSA e=3 key");
    }

    EVP_PKEY_CTX_free(pctx);
    BN_free(e);

    csr = csr_with(e3, NULL, NULL);
    ok(csr && csr->key_rsa_exponent == 3, "RSA exponent 3 read");
    judge("RSA e=3", &policy, csr, -1, 403, "policy.key_type");
    policy.rsa_exponents = exps;
    policy.n_rsa_exponents = 2;
    judge("RSA e=3 where 3 is listed", &policy, csr, -1, 0, NULL);
    policy.n_rsa_exponents = 1;
    judge("RSA e=3 where it is listed alone", &policy, csr, -1, 0, NULL);
    policy.rsa_exponents = exps + 1;
    judge("RSA e=3 where only 65537 is listed", &policy, csr, -1, 403,
          "policy.key_type");
    policy.rsa_exponents = NULL;
    policy.n_rsa_exponents = 0;
    tsb_csr_free(csr);
    EVP_PKEY_free(e3);
}


int
main(void)
{
    int  i;

    for (i = 0; i < K_N; i++) {
        keys[i] = tt_key(key_kinds[i]);
    }

    test_name_match();
    test_value_match();
    test_pattern_check();
    test_rows();
    test_fill();
    test_details();
    test_fake_facts();
    test_regex_compile();
    test_san_count();
    test_issue_refusals();
    test_extensions();
    test_limits();

    for (i = 0; i < K_N; i++) {
        EVP_PKEY_free(keys[i]);
    }

    return done_testing();
}
