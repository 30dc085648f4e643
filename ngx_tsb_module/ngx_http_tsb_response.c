
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Answers: JSON errors in one shape, response helpers shared by the
 * handlers, and the mapping of upstream failures to what a client sees.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_metrics.h"
#include "tsb_front.h"


ngx_str_t  ngx_http_tsb_type_json = ngx_string("application/json");
ngx_str_t  ngx_http_tsb_type_pem = ngx_string("application/x-pem-file");
ngx_str_t  ngx_http_tsb_type_der = ngx_string("application/pkix-cert");


static void ngx_http_tsb_ctx_cleanup(void *data);
static const char *ngx_http_tsb_error_name(ngx_uint_t status);
static ngx_int_t ngx_http_tsb_send_error_retry(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason, const char *detail,
    long retry_after);


/*
 * Maps a transfer that did not bring a 2xx answer to what the client is
 * told; NGX_DECLINED when there is a 2xx body to look at.  Logs the call
 * with the URL, status and time, never the credentials.
 */

ngx_int_t
ngx_http_tsb_upstream_error(ngx_log_t *log, ngx_http_tsb_fetch_t *f,
    tsb_error_t *err)
{
    char  *reason, *message;

    if (f->busy) {
        /* logged when the transfer was refused; nothing reached the TSB */
        tsb_error_set(err, NGX_HTTP_SERVICE_UNAVAILABLE, "upstream.busy",
                      "the gateway has as many TSB requests in flight as "
                      "it allows (tsb_max_transfers); retry shortly");
        return NGX_ERROR;
    }

    if (f->lost) {
        /* the worker ran out of connections for a moment: not the TSB */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tsb: %V %V failed after %M ms: %s",
                      &f->method, &f->url, f->elapsed, f->errbuf);

        tsb_error_set(err, NGX_HTTP_SERVICE_UNAVAILABLE, "upstream.busy",
                      "the gateway could not open a connection to the TSB "
                      "(worker_connections); retry shortly");
        err->retry_after = 1;
        return NGX_ERROR;
    }

    if (f->result == CURLE_OK && f->status >= 200 && f->status < 300) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "tsb: %V %V answered %l in %M ms",
                      &f->method, &f->url, f->status, f->elapsed);
        return NGX_DECLINED;
    }

    if (f->result != CURLE_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tsb: %V %V failed after %M ms, %ui attempt%s: %s",
                      &f->method, &f->url, f->elapsed, f->attempts,
                      f->attempts == 1 ? "" : "s",
                      f->errbuf[0] ? f->errbuf
                                   : curl_easy_strerror(f->result));

        if (f->result == CURLE_OPERATION_TIMEDOUT) {
            tsb_error_set(err, NGX_HTTP_GATEWAY_TIME_OUT, "upstream.timeout",
                          "the TSB did not answer in time");

        } else if (f->too_large || f->result == CURLE_FILESIZE_EXCEEDED) {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.too_large",
                          "the TSB's answer was larger than the gateway "
                          "accepts");

        } else if (f->result == CURLE_PEER_FAILED_VERIFICATION
                   || f->result == CURLE_SSL_CACERT_BADFILE
                   || f->result == CURLE_SSL_ISSUER_ERROR)
        {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.tls",
                          "the TSB's certificate could not be verified "
                          "against tsb_ssl_trusted_certificate");

        } else if (f->result == CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.tls",
                          "the TSB's public key does not match "
                          "tsb_ssl_pinned_public_key");

        } else if (f->result == CURLE_GOT_NOTHING
                   || f->result == CURLE_RECV_ERROR
                   || f->result == CURLE_SEND_ERROR
                   || f->result == CURLE_SEND_FAIL_REWIND
                   || f->result == CURLE_PARTIAL_FILE)
        {
            /* a sign request the TSB may have taken is not sent twice */
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.error",
                          "the connection to the TSB broke before its "
                          "answer was complete");

        } else if (f->result == CURLE_SSL_CONNECT_ERROR
                   || f->result == CURLE_SSL_CERTPROBLEM
                   || f->result == CURLE_SSL_CIPHER)
        {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.tls",
                          "the TLS handshake with the TSB failed");

        } else if (f->result == CURLE_COULDNT_CONNECT
                   || f->result == CURLE_COULDNT_RESOLVE_HOST
                   || f->result == CURLE_COULDNT_RESOLVE_PROXY)
        {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.unreachable",
                          "the TSB cannot be reached");

        } else {
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.error",
                          "%s", curl_easy_strerror(f->result));
        }

        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "tsb: %V %V answered %l in %M ms",
                  &f->method, &f->url, f->status, f->elapsed);

    if (f->status == NGX_HTTP_UNAUTHORIZED
        || f->status == NGX_HTTP_FORBIDDEN)
    {
        /* the gateway's own credentials: nothing the client can fix */
        tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.auth",
                      "the TSB refused the gateway's credentials");
        return NGX_ERROR;
    }

    if (f->status == NGX_HTTP_SERVICE_UNAVAILABLE && f->retry_after) {
        /* the TSB is busy and says when to come back: so do we */
        tsb_error_set(err, NGX_HTTP_SERVICE_UNAVAILABLE, "upstream.busy",
                      "the TSB is busy; retry in %ld s",
                      (long) f->retry_after);
        err->retry_after = (long) f->retry_after;
        return NGX_ERROR;
    }

    if (f->status >= 400 && f->status < 500) {
        reason = NULL;
        message = NULL;

        if (f->status == 429) {
            err->retry_after = (long) f->retry_after;
        }

        (void) tsb_upstream_error_parse(f->body, f->body_len, &reason,
                                        &message);

        /* tsb_error_set() keeps retry_after */
        tsb_error_set(err, (int) f->status, "upstream.rejected",
                      "the TSB refused the request (%ld): %s", f->status,
                      message ? message
                              : (reason ? reason : "no reason given"));
        free(reason);
        free(message);

        return NGX_ERROR;
    }

    reason = NULL;
    message = NULL;

    (void) tsb_upstream_error_parse(f->body, f->body_len, &reason, &message);

    if (message || reason) {
        tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.status",
                      "the TSB answered %ld: %s", f->status,
                      message ? message : reason);

    } else {
        tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.status",
                      "the TSB answered %ld", f->status);
    }

    free(reason);
    free(message);

    return NGX_ERROR;
}


/*
 * The front (tsb_pass) answers TSB clients in the TSB's own terms: a 2xx
 * answer and the TSB's error JSON go back re-emitted through yajl (only
 * valid JSON, nothing the TSB sent byte for byte), 4xx kept, 5xx as 502.
 * What the gateway itself has to say (unreachable, timeout, its own
 * credentials refused, an answer that is not JSON) is the usual
 * {"error", "reason", "detail"}.
 */

ngx_int_t
ngx_http_tsb_upstream_pass(ngx_http_request_t *r, ngx_http_tsb_fetch_t *f)
{
    ngx_int_t    rc;
    ngx_uint_t   status;
    tsb_buf_t    out;
    tsb_error_t  err;

    ngx_memzero(&err, sizeof(tsb_error_t));

    rc = ngx_http_tsb_upstream_error(r->connection->log, f, &err);

    if (rc != NGX_DECLINED
        && !(f->result == CURLE_OK && !f->busy && f->status >= 400
             && f->status != NGX_HTTP_UNAUTHORIZED
             && f->status != NGX_HTTP_FORBIDDEN))
    {
        return ngx_http_tsb_send_tsb_error(r, &err);
    }

    status = (ngx_uint_t) f->status;

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        status = NGX_HTTP_BAD_GATEWAY;
    }

    if (f->body_len == 0) {
        if (rc != NGX_DECLINED) {
            return ngx_http_tsb_send_tsb_error(r, &err);
        }

        return ngx_http_tsb_send(r, status, &ngx_http_tsb_type_json,
                                 NULL, 0);
    }

    if (tsb_json_reemit(f->body, f->body_len, &out, &err) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tsb: %V %V answered %l with a body that is not JSON: "
                      "%s", &f->method, &f->url, f->status, err.detail);

        if (rc != NGX_DECLINED) {
            /* the mapping of the status stands, with our own words */
            tsb_error_set(&err, NGX_HTTP_BAD_GATEWAY, "upstream.status",
                          "the TSB answered %ld", f->status);
            err.status = (status < NGX_HTTP_INTERNAL_SERVER_ERROR)
                         ? (int) status : NGX_HTTP_BAD_GATEWAY;
            return ngx_http_tsb_send_tsb_error(r, &err);
        }

        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                       "upstream.response",
                                       "the TSB's answer is not JSON");
    }

    rc = ngx_http_tsb_send(r, status, &ngx_http_tsb_type_json, out.data,
                           out.len);
    tsb_buf_free(&out);

    return rc;
}


ngx_int_t
ngx_http_tsb_upstream_failed(ngx_http_request_t *r, ngx_http_tsb_fetch_t *f)
{
    tsb_error_t  err;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (ngx_http_tsb_upstream_error(r->connection->log, f, &err)
        == NGX_DECLINED)
    {
        return NGX_DECLINED;
    }

    return ngx_http_tsb_send_tsb_error(r, &err);
}


/*
 * The request body as one piece of memory, read by
 * ngx_http_read_client_request_body() with request_body_in_single_buf;
 * NGX_ERROR when it is larger than tsb_max_body_size or went to a file
 * (the merge raises client_body_buffer_size so that it does not).
 */

ngx_int_t
ngx_http_tsb_body(ngx_http_request_t *r, ngx_str_t *body)
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
        p = ngx_http_tsb_cpymem(p, cl->buf->pos,
                                cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


ngx_http_tsb_ctx_t *
ngx_http_tsb_get_ctx(ngx_http_request_t *r)
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
    tsb_buf_free(&ctx->expect);
}


ngx_int_t
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

#if (nginx_version >= 1023000)
    /* headers of one name are chained since 1.23.0 */
    h->next = NULL;
#endif

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    const u_char *data, size_t len)
{
    return ngx_http_tsb_send_data(r, status, type, (u_char *) data, len, 1);
}


/*
 * copy 0: data is the request's own (pool) memory and is sent as it is,
 * copy 1: data may go away after the call (malloc()ed, shared memory).
 */

ngx_int_t
ngx_http_tsb_send_data(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len, ngx_uint_t copy)
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

    if (copy) {
        b = ngx_create_temp_buf(r->pool, len);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last = ngx_cpymem(b->last, data, len);

    } else {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->pos = data;
        b->last = data + len;
        b->memory = 1;
    }

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


ngx_int_t
ngx_http_tsb_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason, const char *detail)
{
    return ngx_http_tsb_send_error_retry(r, status, reason, detail, 0);
}


static ngx_int_t
ngx_http_tsb_send_error_retry(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason, const char *detail, long retry_after)
{
    ngx_int_t            rc;
    ngx_str_t            retry;
    ngx_uint_t           level;
    tsb_buf_t            out;
    ngx_http_tsb_ctx_t  *ctx;

    /* a refusal is an operator-visible event; a 5xx is our problem */
    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_WARN;

    ngx_log_error(level, r->connection->log, 0,
                  "tsb: refused with %ui %s: %s", status, reason, detail);

    /* for $tsb_policy_reason and tsb_refusals_total */
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    if (ctx) {
        ctx->reason = reason;
    }

    ngx_http_tsb_metrics_refusal(reason);

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE || status == 429) {
        /* the TSB's own advice, or: a full worker frees up within moments */
        if (retry_after > 0) {
            retry.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
            if (retry.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            retry.len = ngx_sprintf(retry.data, "%T", (time_t) retry_after)
                        - retry.data;

        } else if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
            ngx_str_set(&retry, "1");

        } else {
            ngx_str_null(&retry);
        }

        if (retry.len
            && ngx_http_tsb_add_header(r, "Retry-After", &retry) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* a body nobody read must not be taken for the next request */
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    /* a TSB client reads errorCode: the gateway's is the HTTP status */

    if (tsb_error_build_tsb(ngx_http_tsb_error_name(status), reason, detail,
                            ngx_http_tsb_tsb_client(r) ? (int) status : 0,
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


/*
 * tsb_error_format auto: a client of the TSB's own API is one that came
 * through tsb_pass or asked for a TSB path (/v1/...) as it wrote it in
 * the request line, which an error_page redirect to tsb_error keeps.
 */

ngx_uint_t
ngx_http_tsb_tsb_client(ngx_http_request_t *r)
{
    ngx_str_t                *uri;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (tlcf->error_format != NGX_HTTP_TSB_ERRORS_AUTO) {
        return tlcf->error_format == NGX_HTTP_TSB_ERRORS_TSB;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ctx && ctx->front) {
        return 1;
    }

    uri = &r->main->unparsed_uri;

    return uri->len >= sizeof("/v1/") - 1
           && ngx_strncmp(uri->data, "/v1/", sizeof("/v1/") - 1) == 0;
}


ngx_int_t
ngx_http_tsb_send_tsb_error(ngx_http_request_t *r, tsb_error_t *err)
{
    return ngx_http_tsb_send_error_retry(r, err->status ? err->status
                                                        : NGX_HTTP_BAD_REQUEST,
                                         err->reason ? err->reason
                                                     : "request",
                                         err->detail, err->retry_after);
}


/*
 * tsb_error: the content of the location that error_page sends nginx's own
 * refusals to (a body over client_max_body_size, a request line, header or
 * chunked body nginx cannot parse, a URI or header too long), so that they
 * are {"error", "reason", "detail"} like the module's, not an HTML page.
 * The status is the one nginx was about to answer.  error_page must name
 * a URI (a named location cannot take a request whose request line nginx
 * could not parse).
 */

ngx_int_t
ngx_http_tsb_error_handler(ngx_http_request_t *r)
{
    ngx_uint_t   status;
    const char  *reason, *detail;

    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    switch (status) {

    case NGX_HTTP_BAD_REQUEST:
        /* also nginx's 494 to 497: error_page turns them into 400 */
        reason = "request.malformed";
        detail = "nginx could not take the request: a malformed request "
                 "line, header or body framing, a header too long, or a "
                 "client certificate missing or not valid (error.log says "
                 "which)";
        break;

    case NGX_HTTP_UNAUTHORIZED:
        /* auth_basic, auth_request: the header they set stays */
        reason = "request.unauthorized";
        detail = "this location requires authentication";
        break;

    case NGX_HTTP_FORBIDDEN:
        reason = "request.forbidden";
        detail = "access to this path is denied";
        break;

    case NGX_HTTP_NOT_FOUND:
        reason = "request.not_found";
        detail = "nothing is served at this path";
        break;

    case NGX_HTTP_NOT_ALLOWED:
        reason = "request.method";
        detail = "this location does not take that method";
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        reason = "request.timeout";
        detail = "the request did not arrive in time";
        break;

    case NGX_HTTP_LENGTH_REQUIRED:
        reason = "request.length_required";
        detail = "the body needs a Content-Length";
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        reason = "request.too_large";
        detail = "the body is larger than this location accepts "
                 "(client_max_body_size)";
        break;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        reason = "request.uri_too_long";
        detail = "the request line is longer than this server accepts";
        break;

    case NGX_HTTP_NOT_IMPLEMENTED:
        reason = "request.not_implemented";
        detail = "the method or transfer encoding is not supported";
        break;

    default:
        if (status < NGX_HTTP_BAD_REQUEST || status > 599) {
            status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        reason = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
                 ? "internal.error" : "request.refused";
        detail = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
                 ? "the gateway could not answer this request"
                 : "the request was refused";
        break;
    }

    return ngx_http_tsb_send_error(r, status, reason, detail);
}


/*
 * What a handler or a finalizer was about to hand to nginx: an internal
 * failure (500) would become nginx's HTML page; every answer of the module
 * is JSON, so it is sent here.  Other codes pass through.
 */

ngx_int_t
ngx_http_tsb_json_rc(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc != NGX_HTTP_INTERNAL_SERVER_ERROR || r->header_sent
        || r != r->main)
    {
        return rc;
    }

    return ngx_http_tsb_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "internal.error",
                                   "the gateway could not handle this "
                                   "request (error.log may say why)");
}


ngx_int_t
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
