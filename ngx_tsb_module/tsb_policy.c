
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The issuance policy.  Every check only refuses; what the client left out
 * is filled from the policy, and nothing the client or the CSR asked for
 * is dropped quietly.  The request is changed only when every check
 * passed, so a refused request is left as the client sent it.
 */


#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>

#include "tsb_policy.h"
#include "tsb_name.h"


#define TSB_POLICY_QUOTE_MAX   64
#define TSB_POLICY_NAME_STACK  256
#define TSB_POLICY_RE_FLAGS    (REG_EXTENDED | REG_NOSUB | REG_ICASE)
#define TSB_POLICY_MIN_RSA     2048
#define TSB_POLICY_SIG_ALG     "SHA256_WITH_RSA"

#define TSB_TEXT_OK            0
#define TSB_TEXT_NUL           1
#define TSB_TEXT_CONTROL       2
#define TSB_TEXT_UTF8          3


static int tsb_policy_check_key(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_sig(const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_rsa(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_curve(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_exts(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_validity(const tsb_policy_t *policy,
    const tsb_sign_req_t *req, tsb_error_t *err);
static int tsb_policy_check_cn(const tsb_policy_t *policy,
    const tsb_csr_t *csr, const tsb_sign_req_t *req, const char **cn,
    tsb_error_t *err);
static int tsb_policy_check_sans(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_subject(const tsb_policy_t *policy,
    const tsb_csr_t *csr, tsb_error_t *err);
static int tsb_policy_check_ca(const tsb_policy_t *policy,
    const tsb_csr_t *csr, const tsb_sign_req_t *req, unsigned ku,
    int *is_ca, tsb_error_t *err);
static int tsb_policy_check_sig_alg(const tsb_policy_t *policy,
    const tsb_sign_req_t *req, const char **alg, tsb_error_t *err);
static int tsb_policy_names_match(const tsb_policy_t *policy,
    const char *name, size_t len, int regex_only);
static int tsb_policy_regex_match(const char *pattern, size_t plen,
    const regex_t *re, const char *name, size_t nlen);
static int tsb_policy_text(const unsigned char *s, size_t len);
static const char *tsb_policy_quote(const char *s, size_t len, char *buf,
    size_t size);
static int tsb_policy_casecmp(const char *a, const char *b, size_t n);
static unsigned tsb_policy_lowest_bit(unsigned mask);
static const char *tsb_policy_san_type_name(const tsb_san_t *san);


int
tsb_policy_check(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_sign_req_t *req, tsb_error_t *err)
{
    int          is_ca;
    char        *new_cn, *new_key, *new_alg;
    unsigned     ku, eku, bad;
    const char  *cn, *alg, *name;

    if (tsb_policy_check_key(policy, csr, err) != 0
        || tsb_policy_check_sig(csr, err) != 0
        || tsb_policy_check_cn(policy, csr, req, &cn, err) != 0
        || tsb_policy_check_subject(policy, csr, err) != 0
        || tsb_policy_check_sans(policy, csr, err) != 0)
    {
        return -1;
    }

    /* what else the CSR asks for, and for how long */

    if (tsb_policy_check_exts(policy, csr, err) != 0
        || tsb_policy_check_validity(policy, req, err) != 0)
    {
        return -1;
    }

    /*
     * What is issued is the union of what the envelope and the CSR ask
     * for: a keyUsage hidden in the CSR must be judged as well.
     */

    ku = 0;

    if (req->key_usage_present) {
        ku |= req->key_usage;
    }

    if (csr->has_key_usage) {
        ku |= csr->key_usage;
    }

    if (!req->key_usage_present && !csr->has_key_usage) {
        ku = policy->default_key_usage;
    }

    eku = 0;

    if (req->ext_key_usage_present) {
        eku |= req->ext_key_usage;
    }

    if (csr->has_ext_key_usage) {
        eku |= csr->ext_key_usage;
    }

    if (!req->ext_key_usage_present && !csr->has_ext_key_usage) {
        eku = policy->default_ext_key_usage;
    }

    /*
     * The CA question goes first: KEY_CERT_SIGN listed in
     * allowed_key_usage by mistake must not open CA issuance.
     */

    if (tsb_policy_check_ca(policy, csr, req, ku, &is_ca, err) != 0) {
        return -1;
    }

    bad = ku & ~policy->allowed_key_usage;

    if (bad) {
        name = tsb_key_usage_name(tsb_policy_lowest_bit(bad));
        tsb_error_set(err, 403, "policy.key_usage",
                      "keyUsage %s is not allowed here",
                      name ? name : "(unknown)");
        return -1;
    }

    if (csr->has_unknown_eku) {
        tsb_error_set(err, 403, "policy.extended_key_usage",
                      "the CSR requests an extendedKeyUsage that is not "
                      "allowed here");
        return -1;
    }

    bad = eku & ~policy->allowed_ext_key_usage;

    if (bad) {
        name = tsb_ext_key_usage_name(tsb_policy_lowest_bit(bad));
        tsb_error_set(err, 403, "policy.extended_key_usage",
                      "extendedKeyUsage %s is not allowed here",
                      name ? name : "(unknown)");
        return -1;
    }

    if (policy->sign_key_name != NULL && req->sign_key_name != NULL
        && strcmp(policy->sign_key_name, req->sign_key_name) != 0)
    {
        tsb_error_set(err, 403, "policy.sign_key_name",
                      "this location signs with its own key; leave "
                      "signKeyName out or name that key");
        return -1;
    }

    if (policy->sign_key_name == NULL && req->sign_key_name == NULL) {
        tsb_error_set(err, 400, "request.sign_key_name",
                      "signKeyName is required");
        return -1;
    }

    if (tsb_policy_check_sig_alg(policy, req, &alg, err) != 0) {
        return -1;
    }

    if (req->key_password_present && req->key_password != NULL
        && !policy->allow_key_password)
    {
        /* never a word of the password itself */
        tsb_error_set(err, 403, "policy.key_password",
                      "keyPassword is not accepted here");
        return -1;
    }

    /* all passed: fill in what the client left out */

    new_cn = NULL;
    new_key = NULL;
    new_alg = NULL;

    if (req->common_name == NULL) {
        new_cn = strdup(cn);
        if (new_cn == NULL) {
            goto nomem;
        }
    }

    if (req->sign_key_name == NULL) {
        new_key = strdup(policy->sign_key_name);
        if (new_key == NULL) {
            goto nomem;
        }
    }

    if (req->signature_algorithm == NULL) {
        new_alg = strdup(alg);
        if (new_alg == NULL) {
            goto nomem;
        }
    }

    if (new_cn) {
        req->common_name = new_cn;
    }

    if (new_key) {
        req->sign_key_name = new_key;
    }

    if (new_alg) {
        req->signature_algorithm = new_alg;
    }

    req->key_usage = ku;
    req->key_usage_present = 1;
    req->ext_key_usage = eku;
    req->ext_key_usage_present = 1;

    if (req->certificate_authority == -1) {
        req->certificate_authority = is_ca;
    }

    return 0;

nomem:

    free(new_cn);
    free(new_key);
    free(new_alg);

    tsb_error_set(err, 500, "internal.memory", "out of memory");

    return -1;
}


static int
tsb_policy_check_key(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    int  min;

    switch (csr->key_type) {

    case TSB_KEY_RSA:
        min = policy->min_rsa_bits > 0 ? policy->min_rsa_bits
                                       : TSB_POLICY_MIN_RSA;

        if (csr->key_bits < min) {
            tsb_error_set(err, 403, "policy.key_size",
                          "an RSA key of %d bits is below the minimum of %d",
                          csr->key_bits, min);
            return -1;
        }

        return tsb_policy_check_rsa(policy, csr, err);

    case TSB_KEY_EC:
        return tsb_policy_check_curve(policy, csr, err);

    case TSB_KEY_ED25519:
        if (policy->allow_ed25519) {
            return 0;
        }

        tsb_error_set(err, 403, "policy.key_type",
                      "Ed25519 keys are not allowed here");
        return -1;

    case TSB_KEY_ED448:
        tsb_error_set(err, 403, "policy.key_type",
                      "Ed448 keys are not allowed here");
        return -1;

    case TSB_KEY_DSA:
        tsb_error_set(err, 403, "policy.key_type",
                      "DSA keys are not allowed here");
        return -1;

    default:
        tsb_error_set(err, 403, "policy.key_type",
                      "the CSR's key type is not allowed here");
        return -1;
    }
}


/*
 * The upper bound keeps every use of the key affordable (a 16384-bit
 * modulus costs 64 times a 2048-bit one to verify with, and far more to
 * sign with); the exponent is 65537 unless the location lists others:
 * e = 3 is the classic of broken padding checks (Bleichenbacher 2006).
 */

static int
tsb_policy_check_rsa(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    int      max;
    size_t   i;

    max = policy->max_rsa_bits > 0 ? policy->max_rsa_bits
                                   : TSB_POLICY_MAX_RSA;

    if (csr->key_bits > max) {
        tsb_error_set(err, 403, "policy.key_size",
                      "an RSA key of %d bits is above the maximum of %d",
                      csr->key_bits, max);
        return -1;
    }

    if (policy->rsa_exponents == NULL) {
        if (csr->key_rsa_exponent == TSB_POLICY_RSA_E) {
            return 0;
        }

    } else {
        for (i = 0; i < policy->n_rsa_exponents; i++) {
            if (csr->key_rsa_exponent != 0
                && csr->key_rsa_exponent == policy->rsa_exponents[i])
            {
                return 0;
            }
        }
    }

    if (csr->key_rsa_exponent == 0) {
        tsb_error_set(err, 403, "policy.key_type",
                      "the RSA key's public exponent is not allowed here");

    } else {
        tsb_error_set(err, 403, "policy.key_type",
                      "an RSA public exponent of %lu is not allowed here%s",
                      csr->key_rsa_exponent,
                      policy->rsa_exponents ? "" : "; use 65537");
    }

    return -1;
}


static int
tsb_policy_check_curve(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    char         list[32], *p;
    unsigned     allowed, bit;
    const char  *c;

    allowed = policy->allowed_ec_curves
              ? policy->allowed_ec_curves
              : TSB_CURVE_P256 | TSB_CURVE_P384 | TSB_CURVE_P521;

    c = csr->key_curve;
    bit = 0;

    if (c != NULL) {
        if (strcmp(c, "P-256") == 0) {
            bit = TSB_CURVE_P256;

        } else if (strcmp(c, "P-384") == 0) {
            bit = TSB_CURVE_P384;

        } else if (strcmp(c, "P-521") == 0) {
            bit = TSB_CURVE_P521;
        }
    }

    if (bit & allowed) {
        return 0;
    }

    p = list;
    *p = '\0';

    if (allowed & TSB_CURVE_P256) {
        p += snprintf(p, list + sizeof(list) - p, "%sP-256",
                      p == list ? "" : " ");
    }

    if (allowed & TSB_CURVE_P384) {
        p += snprintf(p, list + sizeof(list) - p, "%sP-384",
                      p == list ? "" : " ");
    }

    if (allowed & TSB_CURVE_P521) {
        (void) snprintf(p, list + sizeof(list) - p, "%sP-521",
                        p == list ? "" : " ");
    }

    if (list[0] == '\0') {
        tsb_error_set(err, 403, "policy.key_type",
                      "EC keys are not allowed here");
        return -1;
    }

    /* key_curve is OpenSSL's static short name, safe to show */
    tsb_error_set(err, 403, "policy.key_type",
                  "EC curve %s is not allowed here; allowed: %s",
                  c ? c : "(explicit)", list);
    return -1;
}


/*
 * Extensions beyond the four judged above are an allow-list: anything
 * a CA might copy into the certificate (nameConstraints, OCSP no-check,
 * certificatePolicies, a private critical one) was judged by no one
 * unless the location names it.  subjectKeyIdentifier is the exception:
 * the TSB's own CSRs carry it, and a CA sets its own.
 */

static int
tsb_policy_check_exts(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    size_t                i;
    const char           *sn;
    const char *const    *a;
    const tsb_csr_ext_t  *e;

    for (i = 0; i < csr->n_exts; i++) {
        e = &csr->exts[i];

        if (e->nid == NID_subject_key_identifier && e->readable) {
            continue;
        }

        sn = (e->nid != NID_undef) ? OBJ_nid2ln(e->nid) : NULL;

        if (e->critical && !e->readable) {
            tsb_error_set(err, 403, "policy.extension",
                          "the CSR requests extension %s as critical, and "
                          "the gateway cannot read it", e->oid);
            return -1;
        }

        for (a = policy->allowed_extensions; a != NULL && *a != NULL; a++) {
            if (strcmp(*a, e->oid) == 0) {
                break;
            }
        }

        if (a == NULL || *a == NULL) {
            tsb_error_set(err, 403, "policy.extension",
                          "the CSR requests extension %s%s%s%s, which is "
                          "not allowed here", sn ? sn : e->oid,
                          sn ? " (" : "", sn ? e->oid : "", sn ? ")" : "");
            return -1;
        }
    }

    return 0;
}


long
tsb_policy_max_validity(const tsb_policy_t *policy)
{
    return policy->max_validity > 0 ? policy->max_validity
                                    : TSB_POLICY_MAX_VALIDITY;
}


/* the envelope's validity is days; the limit is seconds */

static int
tsb_policy_check_validity(const tsb_policy_t *policy,
    const tsb_sign_req_t *req, tsb_error_t *err)
{
    long  max;

    if (req->validity < 0) {
        return 0;
    }

    max = tsb_policy_max_validity(policy);

    if (req->validity == 0 || req->validity > max / 86400) {
        tsb_error_set(err, 403, "policy.validity",
                      "a validity of %ld days is not allowed here; at most "
                      "%ld", req->validity, max / 86400);
        return -1;
    }

    return 0;
}


int
tsb_policy_extension_check(const char *name, char *oid, size_t oidlen,
    char *errbuf, size_t errlen)
{
    int           n, nid;
    ASN1_OBJECT  *obj;

    if (errlen > 0) {
        errbuf[0] = '\0';
    }

    obj = (name != NULL && name[0] != '\0') ? OBJ_txt2obj(name, 0) : NULL;

    if (obj == NULL) {
        ERR_clear_error();
        snprintf(errbuf, errlen, "not an extension name or OID");
        return -1;
    }

    nid = OBJ_obj2nid(obj);
    n = OBJ_obj2txt(oid, (int) oidlen, obj, 1);
    ASN1_OBJECT_free(obj);

    if (n <= 0 || (size_t) n >= oidlen) {
        ERR_clear_error();
        snprintf(errbuf, errlen, "the OID is too long");
        return -1;
    }

    switch (nid) {

    case NID_subject_alt_name:
        snprintf(errbuf, errlen, "subjectAltName is judged by "
                 "tsb_allow_common_name and tsb_allow_san_types");
        return -1;

    case NID_key_usage:
        snprintf(errbuf, errlen, "keyUsage is judged by "
                 "tsb_allow_key_usage");
        return -1;

    case NID_ext_key_usage:
        snprintf(errbuf, errlen, "extendedKeyUsage is judged by "
                 "tsb_allow_extended_key_usage");
        return -1;

    case NID_basic_constraints:
        snprintf(errbuf, errlen, "basicConstraints is judged by "
                 "tsb_allow_ca and tsb_max_path_len");
        return -1;
    }

    return 0;
}


/*
 * An allow list of digests rather than a deny list: a digest we do not
 * know is not one we vouch for.  Only EdDSA signs without a separate one.
 */

static int
tsb_policy_check_sig(const tsb_csr_t *csr, tsb_error_t *err)
{
    const char  *sn;

    switch (csr->sig_md_nid) {

    case NID_sha224:
    case NID_sha256:
    case NID_sha384:
    case NID_sha512:
    case NID_sha512_224:
    case NID_sha512_256:
    case NID_sha3_224:
    case NID_sha3_256:
    case NID_sha3_384:
    case NID_sha3_512:
        return 0;

    case NID_undef:
        if (csr->key_type == TSB_KEY_ED25519
            || csr->key_type == TSB_KEY_ED448)
        {
            return 0;
        }

        tsb_error_set(err, 403, "policy.signature_algorithm",
                      "the CSR's signature digest cannot be determined");
        return -1;

    default:
        sn = OBJ_nid2sn(csr->sig_md_nid);
        tsb_error_set(err, 403, "policy.signature_algorithm",
                      "the CSR is signed with %s, which is not accepted; "
                      "use SHA-256 or stronger",
                      sn ? sn : "an unknown digest");
        return -1;
    }
}


static int
tsb_policy_check_cn(const tsb_policy_t *policy, const tsb_csr_t *csr,
    const tsb_sign_req_t *req, const char **cn, tsb_error_t *err)
{
    int          host;
    char         q1[TSB_POLICY_QUOTE_MAX + 8], q2[TSB_POLICY_QUOTE_MAX + 8];
    size_t       len;
    const char  *name, *why;

    *cn = NULL;

    if (csr->n_common_names == 0) {
        tsb_error_set(err, 400, "csr.common_name",
                      "the CSR has no commonName");
        return -1;
    }

    if (csr->n_common_names > 1) {
        tsb_error_set(err, 400, "csr.common_name",
                      "the CSR has %zu commonName attributes",
                      csr->n_common_names);
        return -1;
    }

    name = csr->common_names[0];
    len = csr->common_name_lens ? csr->common_name_lens[0] : strlen(name);

    switch (tsb_policy_text((const unsigned char *) name, len)) {

    case TSB_TEXT_OK:
        break;

    case TSB_TEXT_NUL:
        tsb_error_set(err, 400, "csr.common_name", "NUL in commonName");
        return -1;

    case TSB_TEXT_CONTROL:
        tsb_error_set(err, 400, "csr.common_name",
                      "control character in commonName");
        return -1;

    default:
        tsb_error_set(err, 400, "csr.common_name",
                      "the commonName is not valid UTF-8");
        return -1;
    }

    if (req->common_name != NULL && strcmp(req->common_name, name) != 0) {
        tsb_error_set(err, 400, "request.common_name",
                      "commonName %s does not match the CSR's CN %s",
                      tsb_policy_quote(req->common_name,
                                       strlen(req->common_name),
                                       q1, sizeof(q1)),
                      tsb_policy_quote(name, len, q2, sizeof(q2)));
        return -1;
    }

    /*
     * What is forwarded is what was judged: a trailing dot is refused, not
     * dropped, since the CSR itself, with its subject, goes to the TSB.
     */

    if (name[len - 1] == '.') {
        tsb_error_set(err, 400, "csr.common_name",
                      "commonName %s ends in a dot; leave the dot out",
                      tsb_policy_quote(name, len, q1, sizeof(q1)));
        return -1;
    }

    /*
     * Only a host name may be judged by a literal or wildcard pattern;
     * anything else ("Example Issuing CA 1") needs a "~regex" that says
     * so.
     */

    host = (tsb_name_host_check(name, len, 1, &why) == 0);

    if (!tsb_policy_names_match(policy, name, len, !host)) {

        if (!host) {
            tsb_error_set(err, 400, "csr.common_name",
                          "commonName %s is not a host name: %s",
                          tsb_policy_quote(name, len, q1, sizeof(q1)), why);
            return -1;
        }

        tsb_error_set(err, 403, "policy.common_name",
                      "commonName %s is not allowed here",
                      tsb_policy_quote(name, len, q1, sizeof(q1)));
        return -1;
    }

    *cn = name;

    return 0;
}


static int
tsb_policy_check_sans(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    char              q[TSB_POLICY_QUOTE_MAX + 8];
    size_t            i;
    unsigned          types;
    const char       *why;
    const tsb_san_t  *san;

    types = policy->allowed_san_types ? policy->allowed_san_types
                                      : 1u << TSB_SAN_DNS;

    /* the issued certificate is checked against them: keep that bounded */

    if (csr->n_sans > TSB_POLICY_MAX_SANS) {
        tsb_error_set(err, 403, "policy.san",
                      "the CSR asks for %zu subjectAltNames; at most %d are "
                      "issued", csr->n_sans, TSB_POLICY_MAX_SANS);
        return -1;
    }

    for (i = 0; i < csr->n_sans; i++) {
        san = &csr->sans[i];

        if (san->type == TSB_SAN_OTHER
            || san->type < 0 || san->type >= 32
            || !(types & (1u << san->type)))
        {
            tsb_error_set(err, 403, "policy.san_type",
                          "subjectAltName of type %s is not allowed here",
                          tsb_policy_san_type_name(san));
            return -1;
        }

        /* a DNS name is a host name, whatever pattern may match it */

        if (san->type == TSB_SAN_DNS
            && tsb_name_host_check(san->value, strlen(san->value), 1, &why)
               != 0)
        {
            tsb_error_set(err, 400, "csr.san",
                          "subjectAltName DNS:%s is not a host name: %s",
                          tsb_policy_quote(san->value, strlen(san->value),
                                           q, sizeof(q)), why);
            return -1;
        }

        /* every SAN, not just one of them, must be within the names */

        if (!tsb_policy_names_match(policy, san->value,
                                    strlen(san->value), 0))
        {
            tsb_error_set(err, 403, "policy.san",
                          "subjectAltName %s:%s is not allowed here",
                          tsb_policy_san_type_name(san),
                          tsb_policy_quote(san->value, strlen(san->value),
                                           q, sizeof(q)));
            return -1;
        }
    }

    return 0;
}


/*
 * The subject beyond the commonName.  A TSB may copy it into the
 * certificate, and to a relying party it can mean more than any name: an
 * O of "system:masters" makes a Kubernetes client certificate a cluster
 * administrator.  So every other attribute is refused unless the location
 * allows its type and value, and so is any RDN of several attributes
 * (the subject would not read as the policy read it).
 */

static int
tsb_policy_check_subject(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_error_t *err)
{
    char                       q[TSB_POLICY_QUOTE_MAX + 8];
    size_t                     i, j, k;
    const char                *type;
    const tsb_subject_attr_t  *a;
    const tsb_subject_rule_t  *rule;

    if (csr->subject_multi_rdn) {
        tsb_error_set(err, 403, "policy.subject",
                      "the CSR's subject has an RDN of several attributes; "
                      "give each attribute its own RDN");
        return -1;
    }

    if (csr->n_subject_attrs > TSB_POLICY_MAX_SUBJECT) {
        tsb_error_set(err, 403, "policy.subject",
                      "the CSR's subject has %zu attributes besides the "
                      "commonName; at most %d are issued",
                      csr->n_subject_attrs, TSB_POLICY_MAX_SUBJECT);
        return -1;
    }

    for (i = 0; i < csr->n_subject_attrs; i++) {
        a = &csr->subject_attrs[i];

        /* OpenSSL's static short name, or the OID's digits: safe to show */
        type = a->name ? a->name : (a->oid[0] ? a->oid : "(a long OID)");

        if (a->value == NULL
            || tsb_policy_text((const unsigned char *) a->value,
                               a->value_len)
               != TSB_TEXT_OK)
        {
            tsb_error_set(err, 403, "policy.subject",
                          "subject attribute %s is not clean text", type);
            return -1;
        }

        if (a->value_len > TSB_POLICY_MAX_SUBJECT_VALUE) {
            tsb_error_set(err, 403, "policy.subject",
                          "subject attribute %s is longer than %d bytes",
                          type, TSB_POLICY_MAX_SUBJECT_VALUE);
            return -1;
        }

        rule = NULL;

        for (j = 0; j < policy->n_subject_rules && a->oid[0]; j++) {
            if (strcmp(policy->subject_rules[j].oid, a->oid) != 0) {
                continue;
            }

            rule = &policy->subject_rules[j];

            for (k = 0; k < rule->n_values; k++) {
                if (tsb_policy_value_match(&rule->values[k], a->value,
                                           a->value_len))
                {
                    goto next;
                }
            }
        }

        if (rule == NULL) {
            tsb_error_set(err, 403, "policy.subject",
                          "subject attribute %s is not allowed here; only "
                          "the commonName is, unless "
                          "tsb_allow_subject_attribute allows more", type);
            return -1;
        }

        tsb_error_set(err, 403, "policy.subject",
                      "subject attribute %s=%s is not allowed here", type,
                      tsb_policy_quote(a->value, a->value_len, q,
                                       sizeof(q)));
        return -1;

    next:

        continue;
    }

    return 0;
}


int
tsb_policy_value_match(const tsb_subject_value_t *v, const char *value,
    size_t len)
{
    int       rc;
    char     *p;
    regex_t   tmp;

    if (v == NULL || value == NULL || memchr(value, '\0', len) != NULL) {
        return 0;
    }

    if (!v->is_regex) {
        return v->len > 0 && v->len == len
               && memcmp(v->value, value, len) == 0;
    }

    /* value is NUL-terminated (tsb_subject_attr_t) and holds no NUL */

    if (v->regex != NULL) {
        return regexec(v->regex, value, 0, NULL, 0) == 0;
    }

    if (v->len == 0 || memchr(v->value, '\0', v->len) != NULL) {
        return 0;
    }

    p = malloc(v->len + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p, v->value, v->len);
    p[v->len] = '\0';

    rc = regcomp(&tmp, p, REG_EXTENDED | REG_NOSUB);
    free(p);

    if (rc != 0) {
        return 0;
    }

    rc = regexec(&tmp, value, 0, NULL, 0);
    regfree(&tmp);

    return rc == 0;
}


int
tsb_policy_value_regex_compile(const char *src, size_t len, void **re,
    char *errbuf, size_t errlen)
{
    int       rc;
    char     *p;
    regex_t  *r;

    *re = NULL;

    if (len == 0 || memchr(src, '\0', len) != NULL) {
        snprintf(errbuf, errlen, "empty regex");
        return -1;
    }

    p = malloc(len + 1);
    r = malloc(sizeof(regex_t));

    if (p == NULL || r == NULL) {
        free(p);
        free(r);
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }

    memcpy(p, src, len);
    p[len] = '\0';

    rc = regcomp(r, p, REG_EXTENDED | REG_NOSUB);
    free(p);

    if (rc != 0) {
        regerror(rc, r, errbuf, errlen);
        free(r);
        return -1;
    }

    *re = r;

    return 0;
}


static int
tsb_policy_check_ca(const tsb_policy_t *policy, const tsb_csr_t *csr,
    const tsb_sign_req_t *req, unsigned ku, int *is_ca, tsb_error_t *err)
{
    const char  *why;

    why = NULL;

    if (req->certificate_authority == 1) {
        why = "the request sets certificateAuthority";

    } else if (csr->has_basic_constraints && csr->basic_ca) {
        why = "the CSR asks for basicConstraints CA:TRUE";

    } else if (ku & TSB_KU_KEY_CERT_SIGN) {
        why = "keyUsage KEY_CERT_SIGN is requested";

    } else if (ku & TSB_KU_CRL_SIGN) {
        why = "keyUsage CRL_SIGN is requested";
    }

    /*
     * When the client leaves certificateAuthority out, a CA request that
     * passed is issued as one: a keyCertSign certificate without CA:TRUE
     * would be useless, and silently so.
     */

    *is_ca = (why != NULL);

    if (why == NULL) {
        return 0;
    }

    if (!policy->allow_ca) {
        tsb_error_set(err, 403, "policy.ca",
                      "CA certificates are not issued here (%s)", why);
        return -1;
    }

    if (policy->max_path_len < 0) {
        return 0;
    }

    /*
     * A CA without a pathLenConstraint may sign further CAs to any depth:
     * with a maximum configured, its absence is no default to fill in but
     * the widest request there is.
     */

    if (!csr->has_basic_constraints || !csr->basic_ca
        || csr->basic_pathlen < 0)
    {
        tsb_error_set(err, 403, "policy.ca",
                      "CA certificates are issued here with a "
                      "pathLenConstraint of at most %ld; the CSR must ask "
                      "for basicConstraints CA:TRUE with one",
                      policy->max_path_len);
        return -1;
    }

    if (csr->basic_pathlen > policy->max_path_len) {
        tsb_error_set(err, 403, "policy.ca",
                      "pathLenConstraint %ld exceeds the maximum of %ld",
                      csr->basic_pathlen, policy->max_path_len);
        return -1;
    }

    return 0;
}


static int
tsb_policy_check_sig_alg(const tsb_policy_t *policy,
    const tsb_sign_req_t *req, const char **alg, tsb_error_t *err)
{
    char                 q[TSB_POLICY_QUOTE_MAX + 8];
    const char          *def;
    const char *const   *a;

    def = policy->signature_algorithm ? policy->signature_algorithm
                                      : TSB_POLICY_SIG_ALG;
    *alg = def;

    if (req->signature_algorithm == NULL) {
        return 0;
    }

    if (policy->allowed_signature_algorithms == NULL) {
        if (strcmp(req->signature_algorithm, def) == 0) {
            return 0;
        }

    } else {
        for (a = policy->allowed_signature_algorithms; *a; a++) {
            if (strcmp(req->signature_algorithm, *a) == 0) {
                return 0;
            }
        }
    }

    tsb_error_set(err, 403, "policy.signature_algorithm",
                  "signatureAlgorithm %s is not allowed here",
                  tsb_policy_quote(req->signature_algorithm,
                                   strlen(req->signature_algorithm),
                                   q, sizeof(q)));
    return -1;
}


static int
tsb_policy_names_match(const tsb_policy_t *policy, const char *name,
    size_t len, int regex_only)
{
    size_t  i;

    for (i = 0; i < policy->n_names; i++) {
        if (regex_only && (policy->names[i].len == 0
                           || policy->names[i].pattern[0] != '~'))
        {
            continue;
        }

        if (tsb_policy_name_match_re(policy->names[i].pattern,
                                     policy->names[i].len,
                                     policy->name_regex
                                     ? policy->name_regex[i] : NULL,
                                     name, len))
        {
            return 1;
        }
    }

    return 0;
}


int
tsb_policy_name_match(const char *pattern, size_t plen, const char *name,
    size_t nlen)
{
    return tsb_policy_name_match_re(pattern, plen, NULL, name, nlen);
}


int
tsb_policy_name_match_re(const char *pattern, size_t plen, const void *re,
    const char *name, size_t nlen)
{
    const char  *dot;

    if (pattern == NULL || name == NULL || plen == 0 || nlen == 0
        || memchr(name, '\0', nlen) != NULL)
    {
        return 0;
    }

    /* a name's trailing dot is no longer dropped: "a.example." is refused */

    if (pattern[0] == '~') {
        return tsb_policy_regex_match(pattern + 1, plen - 1, re, name, nlen);
    }

    if (pattern[plen - 1] == '.') {
        plen--;
    }

    if (plen == 0) {
        return 0;
    }

    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {

        if (memchr(pattern + 1, '*', plen - 1) != NULL) {
            return 0;
        }

        /* exactly one non-empty label, itself no wildcard */

        dot = memchr(name, '.', nlen);

        if (dot == NULL || dot == name
            || memchr(name, '*', dot - name) != NULL)
        {
            return 0;
        }

        return (size_t) (name + nlen - dot) == plen - 1
               && tsb_policy_casecmp(dot, pattern + 1, plen - 1) == 0;
    }

    /* a '*' anywhere else is no wildcard we support: it matches nothing */

    if (memchr(pattern, '*', plen) != NULL) {
        return 0;
    }

    return nlen == plen && tsb_policy_casecmp(name, pattern, plen) == 0;
}


int
tsb_policy_pattern_check(const char *pattern, size_t plen, char *errbuf,
    size_t errlen)
{
    int          rc;
    char        *p;
    regex_t      re;
    const char  *why;

    if (errlen > 0) {
        errbuf[0] = '\0';
    }

    if (pattern == NULL || plen == 0 || memchr(pattern, '\0', plen)) {
        snprintf(errbuf, errlen, "empty name pattern");
        return -1;
    }

    if (pattern[0] == '~') {
        p = malloc(plen);
        if (p == NULL) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }

        memcpy(p, pattern + 1, plen - 1);
        p[plen - 1] = '\0';

        rc = regcomp(&re, p, TSB_POLICY_RE_FLAGS);
        free(p);

        if (rc != 0) {
            regerror(rc, &re, errbuf, errlen);
            return -1;
        }

        regfree(&re);
        return 0;
    }

    if (pattern[plen - 1] == '.') {
        plen--;
    }

    if (plen == 0) {
        snprintf(errbuf, errlen, "empty name pattern");
        return -1;
    }

    if (pattern[0] == '*' && (plen < 3 || pattern[1] != '.')) {
        snprintf(errbuf, errlen,
                 "\"*\" must be the whole leftmost label, as in "
                 "\"*.example.com\"");
        return -1;
    }

    if (memchr(pattern + 1, '*', plen - 1) != NULL) {
        snprintf(errbuf, errlen,
                 "\"*\" is allowed only as the whole leftmost label");
        return -1;
    }

    /*
     * An exact or wildcard pattern only ever matches a host name (or,
     * with '@' or ':', an email address, an IPv6 address, a URI): one
     * that is none of them would silently match nothing.
     */

    if (memchr(pattern, '@', plen) == NULL
        && memchr(pattern, ':', plen) == NULL
        && tsb_name_host_check(pattern, plen, 1, &why) != 0)
    {
        snprintf(errbuf, errlen,
                 "an exact or \"*.\" pattern must be a host name, and "
                 "%s; a commonName that is no host name needs a \"~regex\" "
                 "pattern", why);
        return -1;
    }

    return 0;
}


int
tsb_policy_regex_compile(const char *pattern, size_t plen, void **re,
    char *errbuf, size_t errlen)
{
    int       rc;
    char     *p;
    regex_t  *r;

    *re = NULL;

    if (tsb_policy_pattern_check(pattern, plen, errbuf, errlen) != 0) {
        return -1;
    }

    if (pattern[0] != '~') {
        return 0;
    }

    p = malloc(plen);
    r = malloc(sizeof(regex_t));

    if (p == NULL || r == NULL) {
        free(p);
        free(r);
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }

    memcpy(p, pattern + 1, plen - 1);
    p[plen - 1] = '\0';

    rc = regcomp(r, p, TSB_POLICY_RE_FLAGS);
    free(p);

    if (rc != 0) {
        regerror(rc, r, errbuf, errlen);
        free(r);
        return -1;
    }

    *re = r;

    return 0;
}


void
tsb_policy_regex_free(void *re)
{
    if (re != NULL) {
        regfree(re);
        free(re);
    }
}


/*
 * With a compiled regex only the name is copied (regexec() wants it
 * NUL-terminated); without one, as the
 * fuzzers and tools call it, the pattern is compiled for this call.
 */

static int
tsb_policy_regex_match(const char *pattern, size_t plen, const regex_t *re,
    const char *name, size_t nlen)
{
    int       rc;
    char     *p, *n, buf[TSB_POLICY_NAME_STACK];
    regex_t   tmp;

    if (plen == 0 || memchr(pattern, '\0', plen) != NULL) {
        return 0;
    }

    n = (nlen < sizeof(buf)) ? buf : malloc(nlen + 1);
    if (n == NULL) {
        return 0;
    }

    memcpy(n, name, nlen);
    n[nlen] = '\0';

    if (re == NULL) {
        p = malloc(plen + 1);
        if (p == NULL) {
            rc = -1;
            goto done;
        }

        memcpy(p, pattern, plen);
        p[plen] = '\0';

        rc = regcomp(&tmp, p, TSB_POLICY_RE_FLAGS);
        free(p);

        if (rc != 0) {
            rc = -1;
            goto done;
        }

        rc = regexec(&tmp, n, 0, NULL, 0);
        regfree(&tmp);

    } else {
        rc = regexec(re, n, 0, NULL, 0);
    }

done:

    if (n != buf) {
        free(n);
    }

    return rc == 0;
}


/* NUL, C0/C1 controls and DEL, and strict UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF) */

static int
tsb_policy_text(const unsigned char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    if (memchr(s, '\0', len) != NULL) {
        return TSB_TEXT_NUL;
    }

    for (i = 0; i < len; i += n) {
        c = s[i];

        if (c < 0x20 || c == 0x7f) {
            return TSB_TEXT_CONTROL;
        }

        n = tsb_utf8_sequence(s + i, len - i);

        if (n == 0) {
            return TSB_TEXT_UTF8;
        }

        /* U+0080..U+009F, the C1 controls */

        if (c == 0xc2 && s[i + 1] <= 0x9f) {
            return TSB_TEXT_CONTROL;
        }
    }

    return TSB_TEXT_OK;
}


/*
 * A value fit for a detail: quoted, cut at a character boundary when
 * long, and replaced by a placeholder when it is not clean text.
 */

static const char *
tsb_policy_quote(const char *s, size_t len, char *buf, size_t size)
{
    size_t  n;

    if (tsb_policy_text((const unsigned char *) s, len) != TSB_TEXT_OK
        || size < TSB_POLICY_QUOTE_MAX + 8)
    {
        return "(a value with unprintable characters)";
    }

    n = len;

    if (n > TSB_POLICY_QUOTE_MAX) {
        n = TSB_POLICY_QUOTE_MAX;

        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    snprintf(buf, size, "\"%.*s\"%s", (int) n, s, n < len ? "..." : "");

    return buf;
}


/* ASCII only: no locale may change what a name matches */

static int
tsb_policy_casecmp(const char *a, const char *b, size_t n)
{
    size_t         i;
    unsigned char  ca, cb;

    for (i = 0; i < n; i++) {
        ca = (unsigned char) a[i];
        cb = (unsigned char) b[i];

        if (ca >= 'A' && ca <= 'Z') {
            ca |= 0x20;
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb |= 0x20;
        }

        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }

    return 0;
}


static unsigned
tsb_policy_lowest_bit(unsigned mask)
{
    return mask & (~mask + 1);
}


static const char *
tsb_policy_san_type_name(const tsb_san_t *san)
{
    switch (san->type) {
    case TSB_SAN_DNS:
        return "DNS";
    case TSB_SAN_IP:
        return "IP";
    case TSB_SAN_EMAIL:
        return "email";
    case TSB_SAN_URI:
        return "URI";
    default:
        /* for TSB_SAN_OTHER the value is our own static kind name */
        return (san->type == TSB_SAN_OTHER && san->value) ? san->value
                                                           : "other";
    }
}
