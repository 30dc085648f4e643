
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Post-issuance verification.  When the policy accepts a request, what it
 * accepted is written down as a small opaque "expectation"; when the TSB
 * hands back a certificate for it, the certificate is checked against the
 * expectation before anyone gets to see it.  The TSB signs what the HSM's
 * approvers approved, not necessarily what the gateway forwarded: this is
 * the check that both are the same.
 */


#ifndef _TSB_VERIFY_H_INCLUDED_
#define _TSB_VERIFY_H_INCLUDED_


#include "tsb_common.h"
#include "tsb_csr.h"
#include "tsb_json.h"
#include "tsb_cert.h"


/* the largest expectation tsb_expect_build() makes (100 SANs, long CN,
 * 16 subject attributes of up to 256 bytes, 32 extensions) */
#define TSB_EXPECT_MAX  12288

/*
 * Margins of the lifetime check, in seconds: the lifetime may exceed the
 * accepted one by TSB_VERIFY_SKEW (a CA rounding its times); notBefore
 * may precede the acceptance by TSB_VERIFY_BACKDATE (the TSB dates
 * certificates from midnight UTC of the day it signs them) plus the skew,
 * and follow the check by the skew (the TSB's clock against ours).
 */
#define TSB_VERIFY_SKEW      3600
#define TSB_VERIFY_BACKDATE  86400


/* issuer certificates, from a PEM file */
typedef struct {
    void        *certs;        /* STACK_OF(X509) *, owned */
    size_t       n;
} tsb_chain_t;


/*
 * Loads one or more PEM certificates (text between the blocks is allowed,
 * as in the files "openssl x509 -text" writes; any PEM block other than
 * CERTIFICATE is refused).  Every certificate must be a CA certificate.
 * Blocking file I/O: configuration time only.  On failure err->detail says
 * why (500 "config.issuer_chain").
 */
int tsb_chain_load_file(const char *path, tsb_chain_t *chain,
    tsb_error_t *err);

void tsb_chain_free(tsb_chain_t *chain);

/* the same certificates in the same order (NULL is the empty chain): 1/0 */
int tsb_chain_equal(const tsb_chain_t *a, const tsb_chain_t *b);

/*
 * Whether a TSB signatureAlgorithm ("SHA256_WITH_RSA", "SHA384_WITH_ECDSA",
 * ...) can be made with the key of one of the chain's certificates: 1 or
 * 0; 1 also for a name whose key family is not known (nothing to judge).
 */
int tsb_chain_fits_algorithm(const tsb_chain_t *chain, const char *alg);


/*
 * What the gateway accepted, from the CSR and the request as
 * tsb_policy_check() completed it: the SHA-256 of the CSR's public key,
 * the commonName, the SANs (the CSR's, and the CN as a DNS name, as a TSB
 * may copy it there), keyUsage, extendedKeyUsage, whether a CA was asked
 * for and its pathLenConstraint, the subject's other attributes.  SANs are
 * kept as 128-bit hashes, so the blob stays small (about 55 bytes, the
 * CN, 17 bytes per SAN, and the other subject attributes as text).
 * Returns 0, or -1 when out of memory or beyond TSB_EXPECT_MAX.
 */
int tsb_expect_build(const tsb_csr_t *csr, const tsb_sign_req_t *req,
    tsb_buf_t *blob);

/*
 * The same, with what issue 10 added: the lifetime accepted (the
 * request's validity in days, or max_validity seconds when it gave
 * none), when it was accepted (Unix time), and the extensions beyond
 * SAN, keyUsage, extendedKeyUsage and basicConstraints that the CSR
 * requested and the policy allowed.  tsb_expect_build() is this with
 * TSB_POLICY_MAX_VALIDITY and the current time.
 */
int tsb_expect_build_ex(const tsb_csr_t *csr, const tsb_sign_req_t *req,
    long max_validity, int64_t accepted_at, tsb_buf_t *blob);

/*
 * Checks an issued certificate (cert, as tsb_cert_load() made it, may be
 * NULL; der is the certificate itself) against an expectation:
 *   - the same public key as the CSR;
 *   - exactly one commonName, equal to the accepted one;
 *   - the other subject attributes those accepted, in any order, each in
 *     an RDN of its own (not checked for an expectation written before
 *     subjects were recorded);
 *   - every SAN among the accepted ones (DNS names compared
 *     case-insensitively, one trailing dot ignored); no other SAN types;
 *   - keyUsage and extendedKeyUsage within the accepted sets (a
 *     certificate without the extension, when the accepted set is not
 *     empty, is unrestricted and so refused);
 *   - a CA only if a CA was accepted, and then with a pathLenConstraint
 *     no larger than the accepted one;
 *   - when issuers is not NULL: signed by one of them (issuer name and
 *     signature);
 *   - no extension but the four above, the accepted ones, and those a CA
 *     adds itself (subject and authority key identifiers, authority
 *     information access, CRL distribution points, certificate policies,
 *     SCTs), none twice;
 *   - a lifetime within the accepted one and a notBefore within the
 *     TSB_VERIFY_* margins of the acceptance and of now.
 * Returns 0, or -1 with err set: 502 "issued.mismatch" naming the first
 * difference, 502 "upstream.certificate" for a certificate OpenSSL cannot
 * parse, 500 "internal.expect" for a blob that is not one of ours.
 */
int tsb_expect_verify(const unsigned char *blob, size_t len,
    const tsb_cert_t *cert, const unsigned char *der, size_t der_len,
    const tsb_chain_t *issuers, tsb_error_t *err);


/*
 * Only the issuer part of tsb_expect_verify(), for a certificate whose
 * accepted request the gateway has no record of.
 */
int tsb_chain_verify_issued(const tsb_chain_t *issuers,
    const unsigned char *der, size_t der_len, tsb_error_t *err);


/* the issuer certificates as PEM, in file order; empty for no chain */
int tsb_chain_to_pem(const tsb_chain_t *chain, tsb_buf_t *out);


#endif /* _TSB_VERIFY_H_INCLUDED_ */
