
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: issued certificates as the TSB returns them
 * (tsb_cert_load: PEM, DER, bare base64).  What loads must survive our own
 * PEM and base64 encodings unchanged, byte for byte and fact for fact.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_cert.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_cert: assertion failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


static void
fuzz_same_cert(const tsb_cert_t *a, const tsb_cert_t *b)
{
    fuzz_assert(a->der.len == b->der.len);
    fuzz_assert(memcmp(a->der.data, b->der.data, a->der.len) == 0);
    fuzz_assert(strcmp(a->serial_hex, b->serial_hex) == 0);
    fuzz_assert(a->not_before == b->not_before);
    fuzz_assert(a->not_after == b->not_after);
    fuzz_assert(memcmp(a->spki_sha256, b->spki_sha256, 32) == 0);

    if (a->subject_cn == NULL || b->subject_cn == NULL) {
        fuzz_assert(a->subject_cn == b->subject_cn);

    } else {
        fuzz_assert(strcmp(a->subject_cn, b->subject_cn) == 0);
    }
}


static void
fuzz_reload(const tsb_cert_t *cert, const tsb_buf_t *enc, const char *what)
{
    tsb_cert_t   again;
    tsb_error_t  err;

    if (tsb_cert_load(enc->data, enc->len, &again, &err) != 0) {
        fprintf(stderr, "fuzz_cert: our own %s does not load: %s: %s\n",
                what, err.reason, err.detail);
        abort();
    }

    fuzz_same_cert(cert, &again);
    tsb_cert_free(&again);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsb_buf_t    pem, b64;
    tsb_cert_t   cert;
    tsb_error_t  err;

    memset(&err, 0, sizeof(tsb_error_t));

    if (tsb_cert_load(data, size, &cert, &err) != 0) {
        fuzz_assert(cert.der.data == NULL && cert.subject_cn == NULL);
        fuzz_assert(err.status == 502);
        fuzz_assert(err.reason != NULL);
        fuzz_assert(memchr(err.detail, '\0', sizeof(err.detail)) != NULL);
        return 0;
    }

    fuzz_assert(cert.der.len > 0);
    fuzz_assert(cert.serial_hex[0] != '\0');

    fuzz_assert(tsb_cert_der_to_pem(cert.der.data, cert.der.len, &pem) == 0);
    fuzz_assert(pem.data[pem.len] == '\0');
    fuzz_reload(&cert, &pem, "PEM");
    tsb_buf_free(&pem);

    fuzz_assert(tsb_cert_der_to_base64(cert.der.data, cert.der.len, &b64)
                == 0);
    fuzz_assert(b64.data[b64.len] == '\0');
    fuzz_reload(&cert, &b64, "base64");
    tsb_buf_free(&b64);

    tsb_cert_free(&cert);

    return 0;
}
