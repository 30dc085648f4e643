
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * CSR intake: decode what a client sent (PEM with either label, DER, bare
 * base64), parse it with OpenSSL, verify its self-signature and describe it
 * as plain facts the policy engine can judge.
 */


#ifndef _TSB_CSR_H_INCLUDED_
#define _TSB_CSR_H_INCLUDED_


#include "tsb_common.h"


#define TSB_KEY_UNKNOWN  0
#define TSB_KEY_RSA      1
#define TSB_KEY_EC       2
#define TSB_KEY_ED25519  3
#define TSB_KEY_ED448    4
#define TSB_KEY_DSA      5

#define TSB_SAN_DNS      1
#define TSB_SAN_IP       2
#define TSB_SAN_EMAIL    3
#define TSB_SAN_URI      4
#define TSB_SAN_OTHER    5     /* otherName, dirName, RID, x400, ... */

/* the longest dotted OID kept; a longer one is refused ("csr.extensions") */
#define TSB_OID_MAX      80

/* more requested extensions than this are refused ("csr.extensions") */
#define TSB_CSR_MAX_EXTS 32


typedef struct {
    int          type;         /* TSB_SAN_* */
    char        *value;        /* NUL-terminated; DNS, email and URI are
                                  printable ASCII (anything else is refused
                                  with 400 "csr.san"); IPs in text form;
                                  for TSB_SAN_OTHER the kind of name
                                  ("otherName", "directoryName", ...) */
} tsb_san_t;


/* a subject attribute other than commonName */
#define TSB_SUBJECT_OID_MAX  64

typedef struct {
    char         oid[TSB_SUBJECT_OID_MAX];  /* dotted, "2.5.4.10"; "" when
                                               longer than fits */
    const char  *name;         /* OpenSSL's short name ("O"), or NULL;
                                  static */
    char        *value;        /* UTF-8, NUL-terminated; NULL when the value
                                  is no string OpenSSL converts */
    size_t       value_len;    /* raw length (a NUL inside stays visible) */
} tsb_subject_attr_t;

/*
 * A requested extension other than subjectAltName, keyUsage,
 * extendedKeyUsage and basicConstraints (which have facts of their own):
 * the policy allows these one by one.
 */
typedef struct {
    char         oid[TSB_OID_MAX];     /* dotted, NUL-terminated */
    int          nid;                  /* NID_undef when OpenSSL has none */
    int          critical;
    int          readable;             /* OpenSSL knows and decoded it */
} tsb_csr_ext_t;


typedef struct {
    void        *req;          /* X509_REQ *, owned; a request taken by
                                  the fast path has its public key left
                                  undecoded (X509_REQ_get0_pubkey() gives
                                  NULL): use the facts below */
    tsb_buf_t    der;          /* the CSR as DER, owned */

    /* subject commonName attributes, UTF-8 (ASN1_STRING_to_UTF8) */
    char       **common_names;
    size_t       n_common_names;
    size_t      *common_name_lens;      /* raw UTF-8 lengths: a NUL inside
                                           a CN makes strlen() shorter */
    int          cn_has_nul;            /* some CN holds a NUL byte */

    /* the rest of the subject, in order: every attribute but the CNs */
    tsb_subject_attr_t  *subject_attrs;
    size_t               n_subject_attrs;
    int                  subject_multi_rdn;  /* an RDN of several
                                                attributes (CN+O, ...) */

    tsb_san_t   *sans;
    size_t       n_sans;

    int          key_type;     /* TSB_KEY_* */
    int          key_bits;     /* RSA modulus / EC field size */
    const char  *key_curve;    /* "P-256", "P-384", "P-521", other short name
                                  or NULL; static string */
    unsigned long  key_rsa_exponent;    /* RSA public exponent; 0 when it
                                           does not fit an unsigned long */
    int          sig_nid;      /* signature algorithm NID */
    int          sig_md_nid;   /* its digest NID (NID_undef for EdDSA) */

    /* extensions requested in the CSR (extensionRequest attribute) */
    unsigned     key_usage;    /* TSB_KU_* bits */
    int          has_key_usage;
    unsigned     ext_key_usage;         /* TSB_EKU_* bits */
    int          has_ext_key_usage;
    int          has_unknown_eku;       /* an EKU OID we have no name for */
    int          basic_ca;              /* basicConstraints CA:TRUE */
    int          has_basic_constraints;
    long         basic_pathlen;         /* -1 when absent */
    tsb_csr_ext_t  *exts;               /* every other requested one */
    size_t       n_exts;

    unsigned char  spki_sha256[32];     /* SHA-256 of the DER SPKI */
} tsb_csr_t;


/*
 * Turns a client body into exactly one DER CSR.  Accepts:
 *   - PEM, label "CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST";
 *   - DER (first byte 0x30);
 *   - bare base64 of DER (whitespace allowed).
 * Anything after the CSR other than whitespace is refused (400,
 * "csr.trailing_data"); two PEM blocks are refused ("csr.multiple").
 * Errors: 400 "csr.encoding".
 */
int tsb_csr_decode(const unsigned char *in, size_t len, tsb_buf_t *der,
    tsb_error_t *err);

/*
 * Parses DER (exactly, no trailing bytes), verifies the self-signature
 * (400 "csr.signature"), and fills the facts.  Returns 0 and a new
 * tsb_csr_t in *out, or -1 with err set (400 "csr.parse", ...).  Clears the
 * OpenSSL error queue on failure.  Other reasons: "csr.key" (a public key
 * OpenSSL cannot decode), "csr.extensions" (a malformed, repeated or
 * doubly requested extension, an unknown keyUsage bit, more than
 * TSB_CSR_MAX_EXTS extensions, an OID longer than TSB_OID_MAX),
 * "csr.common_name" (a CN that does not convert to UTF-8), "csr.san" (a
 * SAN with NUL, control or non-ASCII bytes, a malformed IP address), 500
 * "internal.memory".
 */
int tsb_csr_parse(const unsigned char *der, size_t len, tsb_csr_t **out,
    tsb_error_t *err);

/*
 * For tests and fuzzing: the two ways tsb_csr_parse() works.  The fast
 * path skips OpenSSL 3.0's provider decoder for RSA, EC P-256/384/521 and
 * Ed25519 keys and only ever succeeds: anything else, and every refusal,
 * returns TSB_CSR_FALLBACK with *out NULL and err untouched.  The
 * reference path is d2i_X509_REQ() + X509_REQ_verify(); tsb_csr_parse()
 * runs it whenever the fast path falls back.
 */
#define TSB_CSR_FALLBACK  -2

int tsb_csr_parse_fast(const unsigned char *der, size_t len, tsb_csr_t **out,
    tsb_error_t *err);
int tsb_csr_parse_reference(const unsigned char *der, size_t len,
    tsb_csr_t **out, tsb_error_t *err);

/* decode + parse in one call */
int tsb_csr_load(const unsigned char *in, size_t len, tsb_csr_t **out,
    tsb_error_t *err);

void tsb_csr_free(tsb_csr_t *csr);

/*
 * Frees what the fast path keeps for the process (its library context);
 * at process exit.  CSRs parsed after it take the reference path.
 */
void tsb_csr_cleanup(void);

/* PEM with the standard "CERTIFICATE REQUEST" label, NUL-terminated */
int tsb_csr_to_pem(const tsb_csr_t *csr, tsb_buf_t *pem);


#endif /* _TSB_CSR_H_INCLUDED_ */
