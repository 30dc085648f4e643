
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Location handlers: sign (CSR in, signRequestId out), request status, and
 * the issued certificate.  They only move bytes between nginx, the plain C
 * engine (tsb_*.c) and the upstream client; every decision is made there.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


#define NGX_HTTP_TSB_BODY_JSON    1
#define NGX_HTTP_TSB_BODY_CSR     2

#define NGX_HTTP_TSB_FORMAT_JSON  0
#define NGX_HTTP_TSB_FORMAT_PEM   1
#define NGX_HTTP_TSB_FORMAT_DER   2

#define NGX_HTTP_TSB_ID_MAX       64


typedef struct {
    tsb_csr_t                *csr;
    tsb_sign_req_t            req;
    ngx_str_t                 id;
    ngx_uint_t                format;
} ngx_http_tsb_ctx_t;


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


static ngx_str_t  ngx_http_tsb_type_json = ngx_string("application/json");
static ngx_str_t  ngx_http_tsb_type_pem = ngx_string("application/x-pem-file");
static ngx_str_t  ngx_http_tsb_type_der = ngx_string("application/pkix-cert");


static ngx_http_tsb_ctx_t *ngx_http_tsb_ctx(ngx_http_request_t *r);
static void ngx_http_tsb_ctx_cleanup(void *data);
static ngx_uint_t ngx_http_tsb_body_kind(ngx_http_request_t *r);
static void ngx_http_tsb_sign_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_sign_process(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_body_bytes(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_tsb_sign_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_request_handler(ngx_http_request_t *r,
    ngx_uint_t certificate);
static ngx_int_t ngx_http_tsb_parse_id(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t certificate);
static void ngx_http_tsb_status_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_send_certificate(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, tsb_status_t *st);
static ngx_int_t ngx_http_tsb_upstream_failed(ngx_http_request_t *r,
    ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_tsb_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, const u_char *data, size_t len);
static ngx_int_t ngx_http_tsb_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason, const char *detail);
static ngx_int_t ngx_http_tsb_send_tsb_error(ngx_http_request_t *r,
    tsb_error_t *err);
static ngx_int_t ngx_http_tsb_method_not_allowed(ngx_http_request_t *r,
    const char *allow);


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

    ctx = ngx_http_tsb_ctx(r);
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


ngx_int_t
ngx_http_tsb_status_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_request_handler(r, 0);
}


ngx_int_t
ngx_http_tsb_certificate_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_request_handler(r, 1);
}


static ngx_int_t
ngx_http_tsb_request_handler(ngx_http_request_t *r, ngx_uint_t certificate)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_fetch_t     *f;
    ngx_http_tsb_loc_conf_t  *tlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_tsb_method_not_allowed(r, "GET, HEAD");
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ctx = ngx_http_tsb_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_tsb_parse_id(r, ctx, certificate) != NGX_OK) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST, "request.id",
                   "the URI does not end in a TSB request id "
                   "(letters, digits and '-', optionally .pem or .der)");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    path.len = sizeof("/v1/request/") - 1 + ctx->id.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(path.data, "/v1/request/", sizeof("/v1/request/") - 1);
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    f = ngx_http_tsb_fetch_create(r, &tlcf->upstream, "GET", &path, NULL);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->done = ngx_http_tsb_status_done;
    f->data = ctx;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the request waits for the TSB; finalized once in status_done() */
    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


/*
 * The id is the last path segment of the (already decoded and normalised)
 * URI, optionally with a format suffix.  Only the characters of a UUID are
 * allowed, so nothing a client sends can change the upstream path.
 */

static ngx_int_t
ngx_http_tsb_parse_id(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t certificate)
{
    u_char  *start, *end, *p;

    end = r->uri.data + r->uri.len;
    start = end;

    while (start > r->uri.data && start[-1] != '/') {
        start--;
    }

    ctx->format = certificate ? NGX_HTTP_TSB_FORMAT_PEM
                              : NGX_HTTP_TSB_FORMAT_JSON;

    if (end - start > 4 && ngx_strncmp(end - 4, ".pem", 4) == 0) {
        ctx->format = NGX_HTTP_TSB_FORMAT_PEM;
        end -= 4;

    } else if (end - start > 4 && ngx_strncmp(end - 4, ".der", 4) == 0) {
        ctx->format = NGX_HTTP_TSB_FORMAT_DER;
        end -= 4;
    }

    if (end == start || end - start > NGX_HTTP_TSB_ID_MAX) {
        return NGX_ERROR;
    }

    for (p = start; p < end; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '-'))
        {
            return NGX_ERROR;
        }
    }

    ctx->id.data = start;
    ctx->id.len = end - start;

    return NGX_OK;
}


static void
ngx_http_tsb_status_done(ngx_http_tsb_fetch_t *f)
{
    ngx_int_t            rc;
    tsb_buf_t            out;
    tsb_error_t          err;
    tsb_status_t         st;
    ngx_http_request_t  *r;
    ngx_http_tsb_ctx_t  *ctx;

    r = f->request;
    ctx = f->data;

    if (f->result == CURLE_OK && f->status == NGX_HTTP_NOT_FOUND) {
        ngx_http_finalize_request(r,
            ngx_http_tsb_send_error(r, NGX_HTTP_NOT_FOUND, "request.unknown",
                                    "the TSB does not know this request id"));
        return;
    }

    rc = ngx_http_tsb_upstream_failed(r, f);
    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_memzero(&err, sizeof(tsb_error_t));
    ngx_memzero(&st, sizeof(tsb_status_t));

    if (tsb_status_parse(f->body, f->body_len, &st, &err) != 0) {
        ngx_http_finalize_request(r, ngx_http_tsb_send_tsb_error(r, &err));
        return;
    }

    if (ctx->format != NGX_HTTP_TSB_FORMAT_JSON) {
        rc = ngx_http_tsb_send_certificate(r, ctx, &st);
        tsb_status_free(&st);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (tsb_status_build(&st, &out) != 0) {
        tsb_status_free(&st);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    tsb_status_free(&st);

    rc = ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_json,
                           out.data, out.len);
    tsb_buf_free(&out);

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_tsb_send_certificate(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    tsb_status_t *st)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 value;
    tsb_buf_t                 out;
    tsb_cert_t                cert;
    tsb_error_t               err;
    const char               *name;
    char                      reason[64], detail[128];
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    switch (st->status) {

    case TSB_STATUS_EXECUTED:
        break;

    case TSB_STATUS_PENDING:
    case TSB_STATUS_APPROVED:

        /* not yet: tell the client when to come back, with the status */

        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", tlcf->retry_after)
                    - value.data;

        if (ngx_http_tsb_add_header(r, "Retry-After", &value) != NGX_OK
            || tsb_status_build(st, &out) != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_tsb_send(r, NGX_HTTP_ACCEPTED, &ngx_http_tsb_type_json,
                               out.data, out.len);
        tsb_buf_free(&out);

        return rc;

    default:

        /* REJECTED, FAILED, EXPIRED, CANCELLED: no certificate, ever */

        name = tsb_status_name(st->status);

        p = ngx_cpymem(reason, "request.", sizeof("request.") - 1);
        while (*name && p < (u_char *) reason + sizeof(reason) - 1) {
            *p++ = ngx_tolower(*name);
            name++;
        }
        *p = '\0';

        *ngx_snprintf((u_char *) detail, sizeof(detail) - 1,
                      "the request is %s: there is no certificate",
                      tsb_status_name(st->status)) = '\0';

        return ngx_http_tsb_send_error(r, NGX_HTTP_CONFLICT, reason, detail);
    }

    ngx_memzero(&err, sizeof(tsb_error_t));
    ngx_memzero(&cert, sizeof(tsb_cert_t));

    if (st->result == NULL
        || tsb_cert_load((u_char *) st->result, ngx_strlen(st->result),
                         &cert, &err)
           != 0)
    {
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "upstream.certificate",
                   "the TSB reported EXECUTED without a usable certificate");
    }

    if (ctx->format == NGX_HTTP_TSB_FORMAT_DER) {
        rc = ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_der,
                               cert.der.data, cert.der.len);
        tsb_cert_free(&cert);
        return rc;
    }

    if (tsb_cert_der_to_pem(cert.der.data, cert.der.len, &out) != 0) {
        tsb_cert_free(&cert);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    tsb_cert_free(&cert);

    rc = ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_pem,
                           out.data, out.len);
    tsb_buf_free(&out);

    return rc;
}


/*
 * Maps a transfer that did not bring a 2xx answer to the client's answer;
 * NGX_DECLINED when there is a 2xx body to look at.
 */

static ngx_int_t
ngx_http_tsb_upstream_failed(ngx_http_request_t *r, ngx_http_tsb_fetch_t *f)
{
    char       *reason, *message;
    char        detail[TSB_DETAIL_MAX];
    ngx_int_t   rc;

    if (f->result == CURLE_OK && f->status >= 200 && f->status < 300) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tsb: %V %V answered %l in %M ms",
                      &f->method, &f->url, f->status, f->elapsed);
        return NGX_DECLINED;
    }

    if (f->result != CURLE_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tsb: %V %V failed after %M ms: %s",
                      &f->method, &f->url, f->elapsed,
                      f->errbuf[0] ? f->errbuf
                                   : curl_easy_strerror(f->result));

        if (f->result == CURLE_OPERATION_TIMEDOUT) {
            return ngx_http_tsb_send_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                       "upstream.timeout",
                       "the TSB did not answer in time");
        }

        if (f->too_large) {
            return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                       "upstream.too_large",
                       "the TSB's answer was larger than the gateway accepts");
        }

        if (f->result == CURLE_COULDNT_CONNECT
            || f->result == CURLE_COULDNT_RESOLVE_HOST
            || f->result == CURLE_COULDNT_RESOLVE_PROXY)
        {
            return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                       "upstream.unreachable",
                       "the TSB cannot be reached");
        }

        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "upstream.error", curl_easy_strerror(f->result));
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "tsb: %V %V answered %l in %M ms",
                  &f->method, &f->url, f->status, f->elapsed);

    if (f->status == NGX_HTTP_UNAUTHORIZED
        || f->status == NGX_HTTP_FORBIDDEN)
    {
        /* the gateway's own credentials: nothing the client can fix */
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "upstream.auth",
                   "the TSB refused the gateway's credentials");
    }

    if (f->status >= 400 && f->status < 500) {
        reason = NULL;
        message = NULL;

        (void) tsb_upstream_error_parse(f->body, f->body_len, &reason,
                                        &message);

        *ngx_snprintf((u_char *) detail, sizeof(detail) - 1,
                      "the TSB refused the request (%l): %s", f->status,
                      message ? message
                              : (reason ? reason : "no reason given")) = '\0';

        free(reason);
        free(message);

        rc = ngx_http_tsb_send_error(r, (ngx_uint_t) f->status,
                                     "upstream.rejected", detail);
        return rc;
    }

    *ngx_snprintf((u_char *) detail, sizeof(detail) - 1,
                  "the TSB answered %l", f->status) = '\0';

    return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY, "upstream.status",
                                   detail);
}


static ngx_http_tsb_ctx_t *
ngx_http_tsb_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_tsb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx->req.certificate_authority = -1;
    ctx->req.validity = -1;

    cln->handler = ngx_http_tsb_ctx_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_tsb_module);

    return ctx;
}


static void
ngx_http_tsb_ctx_cleanup(void *data)
{
    ngx_http_tsb_ctx_t  *ctx = data;

    if (ctx->csr) {
        tsb_csr_free(ctx->csr);
        ctx->csr = NULL;
    }

    tsb_sign_req_free(&ctx->req);
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


static ngx_int_t
ngx_http_tsb_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.len = ngx_strlen(name);
    h->key.data = (u_char *) name;
    h->value = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    const u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = len;

    if (len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, data, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static const char *
ngx_http_tsb_error_name(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        return "bad_request";
    case NGX_HTTP_UNAUTHORIZED:
        return "unauthorized";
    case NGX_HTTP_FORBIDDEN:
        return "forbidden";
    case NGX_HTTP_NOT_FOUND:
        return "not_found";
    case NGX_HTTP_NOT_ALLOWED:
        return "method_not_allowed";
    case NGX_HTTP_CONFLICT:
        return "conflict";
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return "payload_too_large";
    case NGX_HTTP_UNSUPPORTED_MEDIA_TYPE:
        return "unsupported_media_type";
    case 429:
        return "too_many_requests";
    case NGX_HTTP_BAD_GATEWAY:
        return "bad_gateway";
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "service_unavailable";
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return "gateway_timeout";
    default:
        return status >= 500 ? "internal_error" : "client_error";
    }
}


static ngx_int_t
ngx_http_tsb_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason, const char *detail)
{
    ngx_int_t   rc;
    ngx_uint_t  level;
    tsb_buf_t   out;

    /* a refusal is an operator-visible event; a 5xx is our problem */
    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_WARN;

    ngx_log_error(level, r->connection->log, 0,
                  "tsb: refused with %ui %s: %s", status, reason, detail);

    /* a body nobody read must not be taken for the next request */
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (tsb_error_build(ngx_http_tsb_error_name(status), reason, detail,
                        &out)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tsb_send(r, status, &ngx_http_tsb_type_json, out.data,
                           out.len);
    tsb_buf_free(&out);

    return rc;
}


static ngx_int_t
ngx_http_tsb_send_tsb_error(ngx_http_request_t *r, tsb_error_t *err)
{
    return ngx_http_tsb_send_error(r, err->status ? err->status
                                                  : NGX_HTTP_BAD_REQUEST,
                                   err->reason ? err->reason : "request",
                                   err->detail);
}


static ngx_int_t
ngx_http_tsb_method_not_allowed(ngx_http_request_t *r, const char *allow)
{
    ngx_str_t  value;

    value.len = ngx_strlen(allow);
    value.data = (u_char *) allow;

    if (ngx_http_tsb_add_header(r, "Allow", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tsb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "request.method",
                                   "this location does not take that method");
}
