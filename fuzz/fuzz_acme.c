
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: what an ACME client sends (tsb_jws.c, tsb_acme.c).
 * The same bytes go to the JWS parser (both kinds, and verification when
 * it parsed), to every ACME payload parser, and to the record decoders;
 * a record that decodes must encode, and decode again to the same text.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_jws.h"
#include "tsb_acme.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_acme: assertion failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                    *acct, tok[TSB_ACME_TOKEN_MAX];
    size_t                   k;
    tsb_buf_t                der, out, out2;
    tsb_jwk_t                key;
    tsb_jws_t                jws;
    tsb_error_t              err;
    tsb_acme_order_t         o, o2;
    tsb_acme_account_t       a;
    tsb_acme_order_req_t     oreq;
    tsb_acme_account_req_t   areq;

    memset(&err, 0, sizeof(err));

    if (tsb_jws_parse(data, size, TSB_JWS_ACME, &jws, &err) == 0) {
        fuzz_assert(jws.url != NULL && jws.nonce != NULL);
        fuzz_assert((jws.kid == NULL) == (jws.has_jwk == 1));

        if (jws.has_jwk) {
            (void) tsb_jws_verify(&jws, NULL, &err);
        }

        tsb_jws_free(&jws);

    } else {
        fuzz_assert(err.reason != NULL && err.status >= 400);
    }

    if (tsb_jws_parse(data, size, TSB_JWS_EAB, &jws, &err) == 0) {
        fuzz_assert(jws.kid != NULL && jws.nonce == NULL);
        (void) tsb_jws_verify_hmac(&jws, (const unsigned char *) "k", 1,
                                   &err);
        tsb_jws_free(&jws);
    }

    if (tsb_acme_account_req_parse(data, size, TSB_ACME_NEW_ACCOUNT, &areq,
                                   &err) == 0)
    {
        tsb_acme_account_req_free(&areq);
    }

    if (tsb_acme_account_req_parse(data, size, TSB_ACME_UPDATE, &areq, &err)
        == 0)
    {
        tsb_acme_account_req_free(&areq);
    }

    if (tsb_acme_order_req_parse(data, size, &oreq, &err) == 0) {
        fuzz_assert(oreq.n > 0 && oreq.n <= TSB_ACME_MAX_IDENTS);
        tsb_acme_order_req_free(&oreq);
    }

    if (tsb_acme_finalize_parse(data, size, &der, &err) == 0) {
        fuzz_assert(der.len > 0);
        tsb_buf_free(&der);
    }

    if (tsb_acme_key_change_parse(data, size, &acct, &key, &err) == 0) {
        free(acct);
        tsb_jwk_free(&key);
    }

    if (tsb_jwk_parse(data, size, &key, &err) == 0) {
        fuzz_assert(strlen(key.thumb) == TSB_JWK_THUMB_LEN);
        tsb_jwk_free(&key);
    }

    if (tsb_acme_order_decode(data, size, &o, &err) == 0) {
        fuzz_assert(tsb_acme_order_encode(&o, &out) == 0);
        fuzz_assert(tsb_acme_order_decode(out.data, out.len, &o2, &err)
                    == 0);
        fuzz_assert(tsb_acme_order_encode(&o2, &out2) == 0);
        fuzz_assert(out.len == out2.len
                    && memcmp(out.data, out2.data, out.len) == 0);
        tsb_buf_free(&out2);

        if (tsb_acme_order_build(&o, "https://ca/acme/", "x", &out2) == 0) {
            tsb_buf_free(&out2);
        }

        /* authorizations and challenges of every identifier (http-01) */
        for (k = 0; k < o.n; k++) {
            if (tsb_acme_authz_build(&o, k, "https://ca/acme/", "x", &out2)
                == 0)
            {
                tsb_buf_free(&out2);
            }

            fuzz_assert(tsb_acme_challenge_token(&o, k, "x", tok,
                                                 sizeof(tok)) == 0
                        || o.token != NULL);
        }

        tsb_buf_free(&out);
        tsb_acme_order_free(&o);
        tsb_acme_order_free(&o2);
    }

    /* an http-01 answer: any bytes, never read beyond them */
    if (tsb_acme_http01_check(data, size, "tok", "thumb", &err) == 0) {
        fuzz_assert(size >= 9 && memcmp(data, "tok.thumb", 9) == 0);
    }

    if (tsb_acme_account_decode(data, size, &a, &err) == 0) {
        fuzz_assert(tsb_acme_account_encode(&a, &out) == 0);
        tsb_buf_free(&out);
        tsb_acme_account_free(&a);
    }

    return 0;
}
