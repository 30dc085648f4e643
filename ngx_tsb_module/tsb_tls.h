
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The gateway's own TLS material for talking to the TSB, loaded and checked
 * once at configuration time, so that a worker never reads a file when it
 * opens a connection and a mistake stops nginx from starting instead of
 * failing the first request: the trusted CA bundle, the client certificate
 * and its key (decrypted with a password file), the TSB's pinned public key,
 * and the secrets sent in headers.
 *
 * Every function here does blocking file I/O: configuration time only.  On
 * failure err->detail says what is wrong without quoting a secret.
 */


#ifndef _TSB_TLS_H_INCLUDED_
#define _TSB_TLS_H_INCLUDED_


#include "tsb_common.h"


/* more than this many certificates in one CA file is refused */
#define TSB_TLS_MAX_CA  1024

/* a secret file (API key, bearer token, password) larger than this */
#define TSB_TLS_SECRET_MAX  16384


/*
 * The CERTIFICATE blocks of a PEM file, re-encoded (text between blocks,
 * as "openssl x509 -text" writes it, is dropped); at least one, every one
 * must parse.  *n is the number of certificates.
 */
int tsb_tls_load_ca_file(const char *path, tsb_buf_t *pem, size_t *n,
    tsb_error_t *err);

/*
 * The client certificate (a PEM chain, leaf first) and its private key
 * (PEM, encrypted or not, any type OpenSSL reads).  An encrypted key is
 * decrypted with each line of password_file in turn (may be NULL).  The key
 * must belong to the leaf certificate.  key_pem is the key as unencrypted
 * PKCS#8 PEM: wipe it (tsb_secure_zero) before tsb_buf_free().
 */
int tsb_tls_load_client(const char *cert_path, const char *key_path,
    const char *password_file, tsb_buf_t *cert_pem, tsb_buf_t *key_pem,
    tsb_error_t *err);

/*
 * A public key pin for libcurl (CURLOPT_PINNEDPUBLICKEY): the value as
 * given when it is a list of "sha256//<base64 of 32 bytes>" separated by
 * ';', or else the name of a file with a public key or a certificate (PEM
 * or DER), whose SubjectPublicKeyInfo is hashed here.
 */
int tsb_tls_pin(const char *value, size_t len, tsb_buf_t *pin,
    tsb_error_t *err);

/*
 * The first line of a secret file, trailing white space removed; it must be
 * a header-safe token (printable ASCII, no spaces) of 1 to
 * TSB_TLS_SECRET_MAX bytes.  Wipe it before tsb_buf_free().
 */
int tsb_tls_load_secret(const char *path, tsb_buf_t *secret,
    tsb_error_t *err);

/* 1 when s can go into an HTTP header as a credential: printable, no SP */
int tsb_tls_secret_valid(const unsigned char *s, size_t len);


#endif /* _TSB_TLS_H_INCLUDED_ */
