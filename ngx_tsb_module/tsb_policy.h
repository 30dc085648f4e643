
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The issuance policy of one location, evaluated against a parsed CSR and
 * the request the client asked for.  The policy only ever restricts: a
 * request that names something outside the allowed sets is refused, never
 * narrowed silently.
 */


#ifndef _TSB_POLICY_H_INCLUDED_
#define _TSB_POLICY_H_INCLUDED_


#include "tsb_common.h"
#include "tsb_csr.h"
#include "tsb_json.h"


/* more SANs than this in one CSR are refused (403 "policy.san") */
#define TSB_POLICY_MAX_SANS  100

/* defaults of the lifetime and key limits (a 0 in tsb_policy_t) */
#define TSB_POLICY_MAX_VALIDITY  (397L * 86400)    /* seconds */
#define TSB_POLICY_MAX_RSA       8192
#define TSB_POLICY_RSA_E         65537UL

/* EC curves, for allowed_ec_curves */
#define TSB_CURVE_P256           0x01
#define TSB_CURVE_P384           0x02
#define TSB_CURVE_P521           0x04


/*
 * One commonName / SAN pattern, already expanded (nginx variables are
 * resolved by the glue before evaluation):
 *   "host.example"     exact, case-insensitive (the pattern's trailing
 *                      dot is ignored; a name with one is refused);
 *   "*.svc.example"    exactly one label in place of '*';
 *   "~regex"           POSIX extended regex, anchored by the writer.
 * A pattern of length 0 matches nothing (the glue uses that for a pattern
 * whose variables had no usable value in this request).
 */
typedef struct {
    const char  *pattern;
    size_t       len;
} tsb_name_pattern_t;


/* more subject attributes than this besides the CN are refused */
#define TSB_POLICY_MAX_SUBJECT  16
/* and longer values (in UTF-8 bytes) */
#define TSB_POLICY_MAX_SUBJECT_VALUE  256


/*
 * One allowed value of a subject attribute: exact (byte for byte, case
 * included: "system:masters" is not "System:Masters" to every consumer),
 * or a POSIX extended regex, case-sensitive, anchored by the writer.
 * Whether it is a regex is the configuration's word, never the value's: a
 * variable that expands to "~.*" is an exact value.  An empty exact value
 * matches nothing.
 */
typedef struct {
    const char  *value;        /* exact value, or the regex's source */
    size_t       len;
    int          is_regex;
    const void  *regex;        /* tsb_policy_value_regex_compile(); NULL:
                                  compiled on each match */
} tsb_subject_value_t;


/* an attribute type a location allows in the subject, with its values */
typedef struct {
    const char                 *oid;       /* dotted, "2.5.4.10" */
    const char                 *name;      /* as configured, for details */
    const tsb_subject_value_t  *values;
    size_t                      n_values;
} tsb_subject_rule_t;


typedef struct {
    const tsb_name_pattern_t  *names;      /* allowed CN / DNS SAN names */
    size_t                     n_names;    /* 0: any name refused */

    /*
     * NULL, or n_names entries: names[i]'s regex compiled once by
     * tsb_policy_regex_compile() (NULL for the other patterns).  Without
     * it a "~regex" is compiled on every match.
     */
    void *const               *name_regex;

    /*
     * Subject attributes other than commonName: each must be of a type
     * one of these rules names and have one of its values; with none,
     * any such attribute is refused (403 "policy.subject").
     */
    const tsb_subject_rule_t  *subject_rules;
    size_t                     n_subject_rules;

    unsigned     allowed_key_usage;        /* TSB_KU_* mask */
    unsigned     default_key_usage;        /* used when the client gives none */
    unsigned     allowed_ext_key_usage;    /* TSB_EKU_* mask */
    unsigned     default_ext_key_usage;

    int          allow_ca;                 /* CA issuance allowed */
    long         max_path_len;             /* with allow_ca; -1 unlimited;
                                              otherwise a CA request must
                                              carry a pathLenConstraint of
                                              at most this */

    int          min_rsa_bits;             /* default 2048 */
    int          allow_ed25519;

    const char  *sign_key_name;            /* fixed by the location */
    const char  *signature_algorithm;      /* default when the client gives
                                              none; NULL: "SHA256_WITH_RSA" */
    const char *const  *allowed_signature_algorithms;  /* NULL-terminated;
                                              NULL: only the default */
    int          allow_key_password;       /* client keyPassword allowed */

    /*
     * SAN kinds a CSR may carry, as a mask of 1 << TSB_SAN_*; 0 means
     * 1 << TSB_SAN_DNS, and 1 (no TSB_SAN_* bit) allows no SAN at all.
     * Every allowed SAN's value must still match one
     * of names (an IP in text form, a whole email address, a whole URI,
     * so these need exact or "~regex" patterns); TSB_SAN_OTHER is never
     * accepted, whatever the mask says.
     */
    unsigned     allowed_san_types;

    /*
     * Requested extensions other than subjectAltName, keyUsage,
     * extendedKeyUsage and basicConstraints: dotted OIDs, NULL-terminated;
     * NULL allows none.  subjectKeyIdentifier is always allowed (the
     * TSB's own CSRs carry one; the CA sets its own anyway).  An
     * extension OpenSSL cannot read is accepted only when listed and not
     * critical.
     */
    const char *const  *allowed_extensions;

    /* lifetime: a requested validity (days) above it is refused; 0 is
       TSB_POLICY_MAX_VALIDITY (seconds) */
    long         max_validity;

    unsigned     allowed_ec_curves;        /* TSB_CURVE_*; 0: all three */
    int          max_rsa_bits;             /* 0: TSB_POLICY_MAX_RSA */
    const unsigned long  *rsa_exponents;   /* allowed public exponents;
                                              NULL: 65537 only */
    size_t       n_rsa_exponents;
} tsb_policy_t;


/*
 * Judges the request.  On success (0) fills in what the client left out
 * (commonName from the CSR, keyUsage/extendedKeyUsage defaults,
 * signKeyName, signatureAlgorithm, certificateAuthority=false) so the caller
 * can build the upstream body from req.  On refusal (-1) err is set:
 * 403 "policy.*" for a rule, 400 for an inconsistent request.
 */
int tsb_policy_check(const tsb_policy_t *policy, const tsb_csr_t *csr,
    tsb_sign_req_t *req, tsb_error_t *err);

/* the lifetime limit in seconds: max_validity, or its default */
long tsb_policy_max_validity(const tsb_policy_t *policy);

/*
 * Whether an extension may be named in tsb_allow_extension: 0, or -1 with
 * a message (one of the four judged by their own directives, or an OID
 * that does not parse).  On 0 the dotted form is in oid.
 */
int tsb_policy_extension_check(const char *name, char *oid, size_t oidlen,
    char *errbuf, size_t errlen);

/*
 * One pattern against one name: 1 match, 0 no match.  An empty name, or a
 * name with a NUL byte, never matches.  A name holding '*' never matches a
 * wildcard pattern (it would ask for a wildcard certificate); allow those
 * with a "~regex".  A trailing dot of the name is kept: "a.example." does
 * not match "a.example".  This is matching only: tsb_policy_check() first
 * requires a commonName judged by a literal or wildcard pattern, and every
 * DNS subjectAltName, to be a host name (tsb_name_host_check()).  The
 * regex is compiled on each call: the glue compiles its patterns once with
 * tsb_policy_regex_compile() instead.
 */
int tsb_policy_name_match(const char *pattern, size_t plen,
    const char *name, size_t nlen);

/*
 * Configuration-time check of one pattern: 0 when usable, -1 with a
 * message in errbuf ('*' elsewhere than as the whole leftmost label, an
 * empty pattern, a regex that does not compile).
 */
int tsb_policy_pattern_check(const char *pattern, size_t plen, char *errbuf,
    size_t errlen);

/*
 * Compiles a "~regex" pattern once for policy->name_regex: 0 and *re set
 * (NULL when the pattern is no regex), or -1 with a message in errbuf.
 * Free with tsb_policy_regex_free().
 */
int tsb_policy_regex_compile(const char *pattern, size_t plen, void **re,
    char *errbuf, size_t errlen);

void tsb_policy_regex_free(void *re);

/*
 * A subject value's regex (the source without its '~'), compiled once;
 * free with tsb_policy_regex_free().  0, or -1 with a message in errbuf.
 */
int tsb_policy_value_regex_compile(const char *src, size_t len, void **re,
    char *errbuf, size_t errlen);

/* one allowed value against one attribute value: 1 match, 0 no match */
int tsb_policy_value_match(const tsb_subject_value_t *v, const char *value,
    size_t len);

/* as tsb_policy_name_match(), with the pattern's compiled regex (or NULL) */
int tsb_policy_name_match_re(const char *pattern, size_t plen,
    const void *re, const char *name, size_t nlen);


#endif /* _TSB_POLICY_H_INCLUDED_ */
