
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The sign handler: a CSR in (PEM, DER, base64 or the TSB JSON envelope),
 * checked by the policy engine, forwarded to POST /v1/certificate/sign.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


#define NGX_HTTP_TSB_BODY_JSON    1
#define NGX_HTTP_TSB_BODY_CSR     2


typedef struct {
    ngx_str_t                 type;
    ngx_uint_t                kind;
} ngx_http_tsb_media_t;


static ngx_http_tsb_media_t  ngx_http_tsb_media[] = {
    { ngx_string("application/json"), NGX_HTTP_TSB_BODY_JSON },
    { ngx_string("application/pkcs10"), NGX_HTTP_TSB_BODY_CSR },
    { ngx_string("application/x-pkcs10"), NGX_HTTP_TSB_BODY_CSR },
    { ngx_string("application/x-pem-file"), NGX_HTTP_TSB_BODY_CSR },
    { ngx_string("text/plain"), NGX_HTTP_TSB_BODY_CSR },
    { ngx_null_string, 0 }
};


static ngx_uint_t ngx_http_tsb_body_kind(ngx_http_request_t *r);
static void ngx_http_tsb_sign_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_sign_process(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_body_bytes(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_tsb_sign_done(ngx_http_tsb_fetch_t *f);


ngx_int_t
ngx_http_tsb_sign_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    if (!(r->method & NGX_HTTP_POST)) {
        return ngx_http_tsb_method_not_allowed(r, "POST");
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (ngx_http_tsb_body_kind(r) == 0) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                   "request.content_type",
                   "send the CSR as application/json (the TSB envelope), "
                   "application/pkcs10 (DER or base64) or "
                   "application/x-pem-file");
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST,
                   "request.empty", "the request body is empty");
    }

    ctx = ngx_http_tsb_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_tsb_sign_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_tsb_sign_body(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_tsb_sign_process(r);

    /*
     * NGX_DONE: the sign request is on its way to the TSB and the reference
     * the body reader took is released when it comes back.
     */
    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_tsb_sign_process(ngx_http_request_t *r)
{
    ngx_str_t                 body, path, up;
    tsb_buf_t                 pem, out;
    tsb_error_t               err;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_fetch_t     *f;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ngx_http_tsb_body_bytes(r, &body) != NGX_OK) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (body.len == 0) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "request.empty",
                                       "the request body is empty");
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (ngx_http_tsb_body_kind(r) == NGX_HTTP_TSB_BODY_JSON) {
        if (tsb_sign_req_parse(body.data, body.len, &ctx->req, &err) != 0) {
            return ngx_http_tsb_send_tsb_error(r, &err);
        }

        if (tsb_csr_load((u_char *) ctx->req.csr, ctx->req.csr_len,
                         &ctx->csr, &err)
            != 0)
        {
            return ngx_http_tsb_send_tsb_error(r, &err);
        }

    } else {
        if (tsb_csr_load(body.data, body.len, &ctx->csr, &err) != 0) {
            return ngx_http_tsb_send_tsb_error(r, &err);
        }
    }

    if (tsb_policy_check(&tlcf->policy, ctx->csr, &ctx->req, &err) != 0) {
        return ngx_http_tsb_send_tsb_error(r, &err);
    }

    /* the TSB gets the CSR in its canonical PEM form, whatever came in */

    if (tsb_csr_to_pem(ctx->csr, &pem) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    free(ctx->req.csr);
    ctx->req.csr = (char *) pem.data;
    ctx->req.csr_len = pem.len;

    if (tsb_sign_req_build(&ctx->req, &out) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up.len = out.len;
    up.data = ngx_pnalloc(r->pool, out.len);
    if (up.data == NULL) {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(up.data, out.data, out.len);

    /* the body may carry a key password: do not leave copies around */
    tsb_secure_zero(out.data, out.len);
    tsb_buf_free(&out);

    ngx_str_set(&path, "/v1/certificate/sign");

    f = ngx_http_tsb_fetch_create(r, &tlcf->upstream, "POST", &path, &up);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->done = ngx_http_tsb_sign_done;
    f->data = ctx;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb: sign request for CN \"%s\" accepted by policy, "
                  "forwarding to the TSB", ctx->req.common_name);

    /* notice a client that goes away while the TSB works */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_tsb_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char                   *p;
    size_t                    len;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    /* the merge sized client_body_buffer_size so this does not happen */
    if (r->request_body->temp_file) {
        return NGX_ERROR;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            return NGX_ERROR;
        }

        len += b->last - b->pos;
    }

    if (len > tlcf->max_body_size) {
        return NGX_ERROR;
    }

    if (len == 0) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        body->data = cl->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for ( /* void */ ; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


static void
ngx_http_tsb_sign_done(ngx_http_tsb_fetch_t *f)
{
    char                     *id;
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 location;
    tsb_buf_t                 out;
    tsb_error_t               err;
    ngx_http_request_t       *r;
    ngx_http_tsb_loc_conf_t  *tlcf;

    r = f->request;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    rc = ngx_http_tsb_upstream_failed(r, f);
    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_sign_resp_parse(f->body, f->body_len, &id, &err) != 0) {
        ngx_http_finalize_request(r, ngx_http_tsb_send_tsb_error(r, &err));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tsb: sign request %s submitted", id);

    location.len = tlcf->status_uri.len + ngx_strlen(id);
    location.data = ngx_pnalloc(r->pool, location.len);

    if (location.data == NULL
        || tsb_sign_resp_build(id, ngx_strlen(id), &out) != 0)
    {
        free(id);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(location.data, tlcf->status_uri.data,
                   tlcf->status_uri.len);
    ngx_memcpy(p, id, ngx_strlen(id));
    free(id);

    if (ngx_http_tsb_add_header(r, "Location", &location) != NGX_OK) {
        tsb_buf_free(&out);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_tsb_send(r, NGX_HTTP_ACCEPTED, &ngx_http_tsb_type_json,
                           out.data, out.len);
    tsb_buf_free(&out);

    ngx_http_finalize_request(r, rc);
}


static ngx_uint_t
ngx_http_tsb_body_kind(ngx_http_request_t *r)
{
    size_t                 len;
    ngx_str_t             *type;
    ngx_http_tsb_media_t  *m;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = &r->headers_in.content_type->value;

    /* the media type without parameters such as "; charset=utf-8" */
    for (len = 0; len < type->len; len++) {
        if (type->data[len] == ';' || type->data[len] == ' ') {
            break;
        }
    }

    for (m = ngx_http_tsb_media; m->type.len; m++) {
        if (m->type.len == len
            && ngx_strncasecmp(m->type.data, type->data, len) == 0)
        {
            return m->kind;
        }
    }

    return 0;
}
