
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Types shared by the plain C parts of the module (CSR intake, policy,
 * JSON codecs, certificates).  Nothing here knows about nginx: these files
 * are built into the unit tests and the fuzzers as they are.
 */


#ifndef _TSB_COMMON_H_INCLUDED_
#define _TSB_COMMON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define TSB_DETAIL_MAX  256


/*
 * A refusal: the HTTP status to answer, a stable machine-readable reason
 * ("csr.signature", "policy.common_name", "json.syntax", ...) and a human
 * detail.  The detail never carries secrets and never echoes raw client
 * bytes that were not validated (it may quote a commonName that passed the
 * UTF-8 and control character checks).
 */
typedef struct {
    int          status;
    const char  *reason;
    char         detail[TSB_DETAIL_MAX];
    long         retry_after;   /* seconds, for a 429 or 503; else 0 */
} tsb_error_t;


/* a heap buffer owned by whoever holds it; free with tsb_buf_free() */
typedef struct {
    unsigned char  *data;
    size_t          len;
} tsb_buf_t;


void tsb_error_set(tsb_error_t *err, int status, const char *reason,
    const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 4, 5)))
#endif
    ;

void tsb_buf_free(tsb_buf_t *b);

/* zero a secret before freeing it; the compiler may not elide this */
void tsb_secure_zero(void *p, size_t n);

/* ASCII only, whatever the locale: no 'ſ' or Kelvin sign becomes a letter */
static inline unsigned char
tsb_ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;
}

/*
 * The length of the well-formed UTF-8 sequence at s (len > 0 bytes left),
 * or 0: no overlong forms, surrogates or code points above U+10FFFF.
 */
size_t tsb_utf8_sequence(const unsigned char *s, size_t len);


/* keyUsage bits, named as the TSB names them */
#define TSB_KU_DIGITAL_SIGNATURE   0x0001
#define TSB_KU_CONTENT_COMMITMENT  0x0002
#define TSB_KU_KEY_ENCIPHERMENT    0x0004
#define TSB_KU_DATA_ENCIPHERMENT   0x0008
#define TSB_KU_KEY_AGREEMENT       0x0010
#define TSB_KU_KEY_CERT_SIGN       0x0020
#define TSB_KU_CRL_SIGN            0x0040
#define TSB_KU_ENCIPHER_ONLY       0x0080
#define TSB_KU_DECIPHER_ONLY       0x0100

/* extendedKeyUsage bits */
#define TSB_EKU_ANY                0x0001
#define TSB_EKU_SERVER_AUTH        0x0002
#define TSB_EKU_CLIENT_AUTH        0x0004
#define TSB_EKU_CODE_SIGNING       0x0008
#define TSB_EKU_EMAIL_PROTECTION   0x0010
#define TSB_EKU_TIME_STAMPING      0x0020
#define TSB_EKU_OCSP_SIGNING       0x0040


/*
 * Name <-> bit tables (tsb_usage.c).  Lookups are exact and case-sensitive,
 * as the TSB is; they return 0 for an unknown name.  The *_name() functions
 * return NULL for a value that is not exactly one known bit.
 */
unsigned tsb_key_usage_bit(const char *name, size_t len);
unsigned tsb_ext_key_usage_bit(const char *name, size_t len);
const char *tsb_key_usage_name(unsigned bit);
const char *tsb_ext_key_usage_name(unsigned bit);

/* the OpenSSL NID of an EKU bit, and back (0 when unknown) */
int tsb_ext_key_usage_nid(unsigned bit);
unsigned tsb_ext_key_usage_from_nid(int nid);

/*
 * Parses a space or comma separated list of names ("DIGITAL_SIGNATURE
 * KEY_ENCIPHERMENT") into a mask; returns -1 and points *bad at the first
 * unknown name.
 */
long tsb_key_usage_parse_list(const char *s, size_t len, const char **bad,
    size_t *bad_len);
long tsb_ext_key_usage_parse_list(const char *s, size_t len,
    const char **bad, size_t *bad_len);

/*
 * One keyUsage / extendedKeyUsage element of a sign request: a name,
 * names joined by commas ("DIGITAL_SIGNATURE,KEY_ENCIPHERMENT", as the
 * vendor's clients send several), or "" for none (mask 0).  -1 with *bad
 * at the first piece that is not a known name (an empty piece between
 * commas is not).
 */
long tsb_key_usage_element(const char *s, size_t len, const char **bad,
    size_t *bad_len);
long tsb_ext_key_usage_element(const char *s, size_t len, const char **bad,
    size_t *bad_len);


#endif /* _TSB_COMMON_H_INCLUDED_ */
