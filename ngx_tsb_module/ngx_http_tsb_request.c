
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Request status and certificate handlers: GET {prefix}/{id}[.pem|.der],
 * answered from the TSB's GET /v1/request/{id}.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


static ngx_int_t ngx_http_tsb_request_handler(ngx_http_request_t *r,
    ngx_uint_t certificate);
static ngx_int_t ngx_http_tsb_parse_id(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t certificate);
static void ngx_http_tsb_status_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_send_certificate(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, tsb_status_t *st);


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

    ctx = ngx_http_tsb_get_ctx(r);
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
