
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Issued certificates: PEM <-> DER, the facts we put into response headers,
 * and the check that an issued certificate carries the CSR's key.
 */


#ifndef _TSB_CERT_H_INCLUDED_
#define _TSB_CERT_H_INCLUDED_


#include <time.h>

#include "tsb_common.h"


typedef struct {
    tsb_buf_t    der;
    char         serial_hex[80];       /* upper-case hex, no separators,
                                          as BN_bn2hex(): "0A", zero "0" */
    time_t       not_before;
    time_t       not_after;
    unsigned char  spki_sha256[32];
    char        *subject_cn;           /* UTF-8 or NULL */
} tsb_cert_t;


/*
 * Exactly one certificate from PEM ("CERTIFICATE" label), DER, or bare
 * base64 DER; trailing garbage refused.  502 "upstream.certificate" when
 * the caller passes upstream data; the caller may remap the status.
 */
int tsb_cert_load(const unsigned char *in, size_t len, tsb_cert_t *cert,
    tsb_error_t *err);

void tsb_cert_free(tsb_cert_t *cert);

/* PEM text of DER, 64-column lines, trailing newline; NUL-terminated */
/*
 * The same into a buffer of tsb_cert_pem_len(len) + 1 bytes (the last one
 * for a NUL the encoder writes); returns the PEM's length, 0 for no DER.
 */
size_t tsb_cert_pem_len(size_t der_len);
size_t tsb_cert_pem_write(const unsigned char *der, size_t len,
    unsigned char *out);

int tsb_cert_der_to_pem(const unsigned char *der, size_t len,
    tsb_buf_t *pem);

/* base64 of DER without armor or newlines (import/plain); NUL-terminated */
int tsb_cert_der_to_base64(const unsigned char *der, size_t len,
    tsb_buf_t *b64);


#endif /* _TSB_CERT_H_INCLUDED_ */
