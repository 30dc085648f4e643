
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libFuzzer target: the client's JSON envelope (tsb_sign_req_parse).
 * Whatever it accepts must build into an upstream body (tsb_sign_req_build)
 * that parses again to the same request.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsb_json.h"


#define fuzz_assert(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_sign_req: assertion failed: %s "            \
                    "(line %d)\n", #cond, __LINE__);                          \
            abort();                                                          \
        }                                                                     \
    } while (0)


static int
fuzz_same(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsb_buf_t       body;
    tsb_error_t     err;
    tsb_sign_req_t  req, again;

    memset(&err, 0, sizeof(tsb_error_t));

    if (tsb_sign_req_parse(data, size, &req, &err) != 0) {
        fuzz_assert(err.status == 400 || err.status == 500);
        fuzz_assert(err.reason != NULL);
        fuzz_assert(memchr(err.detail, '\0', sizeof(err.detail)) != NULL);
        fuzz_assert(req.csr == NULL && req.key_password == NULL);
        return 0;
    }

    fuzz_assert(req.csr != NULL);

    if (tsb_sign_req_build(&req, &body) != 0) {
        fprintf(stderr, "fuzz_sign_req: an accepted request does not "
                "build\n");
        abort();
    }

    if (tsb_sign_req_parse(body.data, body.len, &again, &err) != 0) {
        fprintf(stderr, "fuzz_sign_req: the built body does not parse: "
                "%s: %s\n", err.reason, err.detail);
        abort();
    }

    fuzz_assert(fuzz_same(again.sign_key_name, req.sign_key_name));
    fuzz_assert(fuzz_same(again.signature_algorithm,
                          req.signature_algorithm));
    fuzz_assert(fuzz_same(again.common_name, req.common_name));
    fuzz_assert(again.csr_len == req.csr_len);
    fuzz_assert(memcmp(again.csr, req.csr, req.csr_len) == 0);
    fuzz_assert(again.key_password_present == req.key_password_present);
    fuzz_assert(again.key_password_len == req.key_password_len);
    fuzz_assert(fuzz_same(again.key_password, req.key_password));
    fuzz_assert(again.certificate_authority
                == (req.certificate_authority == 1));
    fuzz_assert(again.key_usage == req.key_usage);
    fuzz_assert(again.key_usage_present == req.key_usage_present);
    fuzz_assert(again.ext_key_usage == req.ext_key_usage);
    fuzz_assert(again.ext_key_usage_present == req.ext_key_usage_present);
    fuzz_assert(again.validity == req.validity);
    fuzz_assert(fuzz_same(again.meta_data, req.meta_data));
    fuzz_assert(fuzz_same(again.meta_data_signature,
                          req.meta_data_signature));

    tsb_sign_req_free(&again);
    tsb_secure_zero(body.data, body.len);
    tsb_buf_free(&body);
    tsb_sign_req_free(&req);

    return 0;
}
