
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The import helper of the TSB front: POST /v1/certificate/import/plain
 * takes {"label", "certificate"} with the certificate as base64 DER, which
 * is what the TSB wants, or as PEM, which is what people have (the vendor's
 * tutorial has them strip the armor by hand).  The certificate must parse
 * as exactly one X.509 certificate; the TSB gets base64 DER in a body
 * written again by yajl_gen.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_proxy.h"
#include "tsb_front.h"


static void ngx_http_tsb_import_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_import_process(ngx_http_request_t *r);


ngx_int_t
ngx_http_tsb_import_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_front_read_body(r, ngx_http_tsb_import_body);
}


static void
ngx_http_tsb_import_body(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_tsb_import_process(r);

    /* NGX_DONE: the reference the body reader took goes in front_done() */
    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_tsb_import_process(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t              body, up, path;
    tsb_buf_t              b64, out;
    tsb_cert_t             cert;
    tsb_error_t            err;
    tsb_import_req_t       req;

    if (ngx_http_tsb_body(r, &body) != NGX_OK) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (tsb_import_req_parse(body.data, body.len, &req, &err) != 0) {
        return ngx_http_tsb_send_tsb_error(r, &err);
    }

    /* PEM (one CERTIFICATE block), DER, or base64 DER: exactly one */

    if (tsb_cert_load((u_char *) req.certificate, req.certificate_len, &cert,
                      &err)
        != 0)
    {
        tsb_import_req_free(&req);

        /* tsb_cert_load() speaks of upstream data; this is the client's */
        err.status = NGX_HTTP_BAD_REQUEST;
        err.reason = "request.certificate";

        return ngx_http_tsb_send_tsb_error(r, &err);
    }

    rc = tsb_cert_der_to_base64(cert.der.data, cert.der.len, &b64);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb: importing certificate serial %s as \"%s\"",
                  cert.serial_hex, req.label);

    tsb_cert_free(&cert);

    if (rc != 0) {
        tsb_import_req_free(&req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = tsb_import_req_build(req.label, (char *) b64.data, b64.len, &out);

    tsb_buf_free(&b64);
    tsb_import_req_free(&req);

    if (rc != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up.len = out.len;
    up.data = ngx_pnalloc(r->pool, out.len);

    if (up.data == NULL) {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(up.data, out.data, out.len);
    tsb_buf_free(&out);

    ngx_str_set(&path, "/v1/certificate/import/plain");

    return ngx_http_tsb_front_forward(r, "POST", &path, &up);
}
