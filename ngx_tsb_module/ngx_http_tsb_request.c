
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Request status and certificate handlers: GET {prefix}/{id}[.pem|.der],
 * answered from the status cache when the location has one, else from the
 * TSB's GET /v1/request/{id} directly.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_metrics.h"
#include "ngx_http_tsb_proxy.h"
#include "tsb_path.h"
#include "tsb_etag.h"


static ngx_int_t ngx_http_tsb_request_handler(ngx_http_request_t *r,
    ngx_uint_t certificate);
static ngx_int_t ngx_http_tsb_parse_id(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t certificate);
static void ngx_http_tsb_status_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_serve_status(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e);
static ngx_int_t ngx_http_tsb_serve_certificate(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_http_tsb_entry_t *e);
static ngx_int_t ngx_http_tsb_not_modified(ngx_http_request_t *r,
    ngx_str_t *etag);


static ngx_str_t  ngx_http_tsb_type_chain =
    ngx_string("application/pem-certificate-chain");


ngx_int_t
ngx_http_tsb_status_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_json_rc(r, ngx_http_tsb_request_handler(r, 0));
}


ngx_int_t
ngx_http_tsb_certificate_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_json_rc(r, ngx_http_tsb_request_handler(r, 1));
}


static ngx_int_t
ngx_http_tsb_request_handler(ngx_http_request_t *r, ngx_uint_t certificate)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_str_t                *inm;
    ngx_msec_t                wait;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_fetch_t     *f;
    ngx_http_tsb_front_t     *front;
    ngx_http_tsb_loc_conf_t  *tlcf;

    /* DELETE cancels, as on the TSB's own /v1/request/{id} */

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
        && (certificate || r->method != NGX_HTTP_DELETE))
    {
        return ngx_http_tsb_method_not_allowed(r, certificate
                                                  ? "GET, HEAD"
                                                  : "GET, HEAD, DELETE");
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ctx = ngx_http_tsb_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the TSB answers 404 for an id that cannot be one: so do we, to its
     * clients */

    if (ngx_http_tsb_parse_id(r, ctx, certificate) != NGX_OK) {
        return ngx_http_tsb_send_error(r,
                   ngx_http_tsb_tsb_client(r) ? NGX_HTTP_NOT_FOUND
                                              : NGX_HTTP_BAD_REQUEST,
                   "request.id",
                   "the URI does not end in a TSB request id (letters, "
                   "digits and '-', optionally .pem, .der, .crt, .cer or "
                   "/chain) or ?format= is not pem, der, chain or json");
    }

    if (r->method == NGX_HTTP_DELETE) {
        /* the request is cancelled, not its certificate (.pem, ...) */
        if (ctx->id.data + ctx->id.len != r->uri.data + r->uri.len) {
            return ngx_http_tsb_method_not_allowed(r, "GET, HEAD");
        }

        front = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_front_t));
        if (front == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        front->route = NGX_HTTP_TSB_ROUTE_CANCEL;
        front->id = ctx->id;
        ctx->front = front;

        return ngx_http_tsb_cancel_handler(r);
    }

    wait = ngx_http_tsb_wait_arg(r);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (tlcf->cache_zone) {
        /*
         * A long poll of the status document that names the version it
         * has is answered as soon as there is another one (an approval);
         * certificate downloads wait for the end as they always did.
         */
        inm = (ctx->format == NGX_HTTP_TSB_FORMAT_JSON
               && r->headers_in.if_none_match
               && r->headers_in.if_none_match->value.len)
              ? &r->headers_in.if_none_match->value : NULL;

        return ngx_http_tsb_cache_watch(r, &ctx->id, wait, inm,
                                        ngx_http_tsb_serve);
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
 * URI, with an optional format suffix; only the characters of a UUID are
 * allowed, so nothing a client sends can change the upstream path.  The
 * format may also come from ?format= or, without either, from Accept.
 */

static ngx_int_t
ngx_http_tsb_parse_id(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t certificate)
{
    int                        format;
    u_char                    *p, *raw, *raw_end;
    size_t                     len, tail;
    ngx_str_t                  value, path, *accept;
    ngx_uint_t                 prefixed;
    ngx_uint_t                 i;
    const unsigned char       *id;
    ngx_http_core_loc_conf_t  *clcf;

    static struct {
        ngx_str_t   name;
        ngx_str_t   type;
        ngx_uint_t  format;
    } formats[] = {
        { ngx_string("pem"), ngx_string("application/x-pem-file"),
          NGX_HTTP_TSB_FORMAT_PEM },
        { ngx_string("der"), ngx_string("application/pkix-cert"),
          NGX_HTTP_TSB_FORMAT_DER },
        { ngx_string("chain"), ngx_string("application/pem-certificate-chain"),
          NGX_HTTP_TSB_FORMAT_CHAIN },
        { ngx_string("json"), ngx_null_string, NGX_HTTP_TSB_FORMAT_JSON }
    };

    /*
     * In a prefix location the id is what follows the prefix, and nothing
     * else: "/request/chain" is not the id "request" in chain format, nor
     * "/request/x/chain/chain" the id "chain".
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    path = r->uri;
    prefixed = 0;

    /*
     * Through tsb_pass the path is the TSB's own, /v1/request/{id}, as the
     * front normalised and judged it: no encoding is left in it.
     */

    if (ctx->front) {
        path = ((ngx_http_tsb_front_t *) ctx->front)->npath;
    }

    if (ctx->front == NULL
#if (NGX_PCRE)
        && clcf->regex == NULL
#endif
        && clcf->name.len <= path.len
        && ngx_strncmp(path.data, clcf->name.data, clcf->name.len) == 0)
    {
        path.data += clcf->name.len;
        path.len -= clcf->name.len;

        if (path.len && path.data[0] == '/') {
            path.data++;
            path.len--;
        }

        prefixed = 1;
    }

    if (tsb_request_id_from_path(path.data, path.len, &id, &len, &format)
        != 0
        || (prefixed && id != path.data)
        || (len == sizeof("chain") - 1 && ngx_strncmp(id, "chain", len) == 0))
    {
        return NGX_ERROR;
    }

    ctx->id.data = (u_char *) id;
    ctx->id.len = len;

    /*
     * nginx has decoded and merged the path: "a%2Fb" arrived as "a/b".
     * The id and its suffix must stand in the request line as they are, or
     * an encoded slash would pick a different id than the client wrote.
     */

    if (r->valid_unparsed_uri && ctx->front == NULL) {
        tail = r->uri.data + r->uri.len - id;

        raw = r->unparsed_uri.data;
        raw_end = raw + r->unparsed_uri.len;

        for (p = raw; p < raw_end; p++) {
            if (*p == '?' || *p == '#') {
                break;
            }
        }

        raw_end = p;

        if ((size_t) (raw_end - raw) <= tail
            || raw_end[-(ssize_t) tail - 1] != '/'
            || ngx_memcmp(raw_end - tail, id, tail) != 0)
        {
            return NGX_ERROR;
        }
    }

    switch (format) {
    case TSB_FORMAT_PEM:
        ctx->format = NGX_HTTP_TSB_FORMAT_PEM;
        return NGX_OK;
    case TSB_FORMAT_DER:
        ctx->format = NGX_HTTP_TSB_FORMAT_DER;
        return NGX_OK;
    case TSB_FORMAT_CHAIN:
        ctx->format = NGX_HTTP_TSB_FORMAT_CHAIN;
        return NGX_OK;
    }

    ctx->format = certificate ? NGX_HTTP_TSB_FORMAT_PEM
                              : NGX_HTTP_TSB_FORMAT_JSON;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {
        for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
            if (value.len == formats[i].name.len
                && ngx_strncasecmp(value.data, formats[i].name.data,
                                   value.len) == 0)
            {
                ctx->format = formats[i].format;
                return NGX_OK;
            }
        }

        return NGX_ERROR;
    }

#if (NGX_HTTP_HEADERS)
    accept = r->headers_in.accept ? &r->headers_in.accept->value : NULL;
#else
    accept = NULL;
#endif

    ctx->negotiated = 1;

    /* a client that names a certificate type gets that type */

    for (i = 0; accept && i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (formats[i].type.len
            && ngx_strlcasestrn(accept->data, accept->data + accept->len,
                                formats[i].type.data, formats[i].type.len - 1)
               != NULL)
        {
            ctx->format = formats[i].format;
            break;
        }
    }

    return NGX_OK;
}


/* ?wait=<seconds>, capped by tsb_wait_max; 0 without a cache */

ngx_msec_t
ngx_http_tsb_wait_arg(ngx_http_request_t *r)
{
    ngx_int_t                 n;
    ngx_str_t                 value;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (tlcf->cache_zone == NULL
        || ngx_http_arg(r, (u_char *) "wait", 4, &value) != NGX_OK)
    {
        return 0;
    }

    n = ngx_atoi(value.data, value.len);

    if (n <= 0) {
        return 0;
    }

    if (n > tlcf->wait_max) {
        n = tlcf->wait_max;
    }

    return (ngx_msec_t) n * 1000;
}


static void
ngx_http_tsb_status_done(ngx_http_tsb_fetch_t *f)
{
    ngx_int_t             rc;
    tsb_error_t           err;
    ngx_http_request_t   *r;
    ngx_http_tsb_ctx_t   *ctx;
    ngx_http_tsb_entry_t  e;

    r = f->request;
    ctx = f->data;

    ctx->upstream_time = f->elapsed;
    ctx->upstream_timed = 1;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (f->result == CURLE_OK && f->status == NGX_HTTP_NOT_FOUND) {
        rc = NGX_ERROR;

    } else {
        rc = ngx_http_tsb_upstream_error(r->connection->log, f, &err);

        if (rc == NGX_DECLINED) {
            rc = NGX_OK;
        }
    }

    if (rc == NGX_OK || f->status == NGX_HTTP_NOT_FOUND) {
        rc = ngx_http_tsb_entry_from_upstream(r->pool, r->connection->log,
                                              f, &ctx->id, NULL,
                                              ngx_http_get_module_loc_conf(r,
                                                  ngx_http_tsb_module),
                                              &e, &err);
    }

    rc = ngx_http_tsb_serve(r, rc == NGX_OK ? &e : NULL,
                            NGX_HTTP_TSB_CACHE_NONE, &err);

    ngx_http_finalize_request(r, ngx_http_tsb_json_rc(r, rc));
}


/* one answer for every path: direct, cached, waited for, or stale */

ngx_int_t
ngx_http_tsb_serve(ngx_http_request_t *r, ngx_http_tsb_entry_t *e,
    ngx_uint_t cache_status, tsb_error_t *err)
{
    u_char                   *detail;
    ngx_str_t                 value;
    const char               *name;
    tsb_error_t               oerr;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ngx_memzero(&oerr, sizeof(tsb_error_t));

    ctx->cache_status = cache_status;
    ngx_http_tsb_metrics_cache(cache_status);

    /* tsb_owner_check all: only its owner reads a request */

    if (e && tlcf->owner_check == NGX_HTTP_TSB_OWNER_ALL
        && ngx_http_tsb_owner_allowed(r, &e->expect, &oerr) != NGX_OK)
    {
        return ngx_http_tsb_send_tsb_error(r, &oerr);
    }

    if (e) {
        ctx->tsb_status = e->status;
    }

    /* the answer to this URL depends on Accept: caches must know */
    if (ctx->negotiated) {
        ngx_str_set(&value, "Accept");

        if (ngx_http_tsb_add_header(r, "Vary", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (cache_status != NGX_HTTP_TSB_CACHE_NONE) {
        name = ngx_http_tsb_cache_status_name(cache_status);
        value.data = (u_char *) name;
        value.len = ngx_strlen(name);

        if (ngx_http_tsb_add_header(r, "X-Cache-Status", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (cache_status == NGX_HTTP_TSB_CACHE_STALE) {
            ngx_str_set(&value, "110 - \"Response is Stale\"");

            if (ngx_http_tsb_add_header(r, "Warning", &value) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    if (e == NULL) {
        return ngx_http_tsb_send_tsb_error(r, err);
    }

    if (e->mismatch) {
        /* the detail names the difference; it holds no secret */
        detail = ngx_pnalloc(r->pool, e->detail.len + 1);
        if (detail == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_cpymem(detail, e->detail.data, e->detail.len) = '\0';

        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "issued.mismatch",
                   e->detail.len ? (char *) detail
                                 : "the issued certificate does not match "
                                   "the request the gateway accepted");
    }

    /* an entry keeps the record its certificate was checked against */

    if (e->status == TSB_STATUS_EXECUTED && e->der.len && e->expect.len == 0
        && tlcf->verify_issued == NGX_HTTP_TSB_VERIFY_STRICT)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "tsb: request %V: no record of what was accepted, "
                      "so its certificate is not served "
                      "(tsb_verify_issued strict)", &e->id);

        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "issued.unverified",
                   "the gateway has no record of what it accepted for "
                   "this request, so the certificate is not served");
    }

    if (ctx->format == NGX_HTTP_TSB_FORMAT_JSON) {
        return ngx_http_tsb_serve_status(r, e);
    }

    return ngx_http_tsb_serve_certificate(r, ctx, e);
}


static ngx_int_t
ngx_http_tsb_serve_status(ngx_http_request_t *r, ngx_http_tsb_entry_t *e)
{
    ngx_int_t     rc;
    ngx_str_t     etag;
    tsb_buf_t     out, pem;
    tsb_error_t   err;
    tsb_status_t  st;

    /*
     * A strong validator of the document: a client that long-polls with
     * ?wait= and If-None-Match is answered when it changes, and a plain
     * conditional GET for the version it has gets 304.  Copied into the
     * request's pool: e may be a watch's snapshot (see below).
     */

    etag.len = TSB_STATUS_ETAG_LEN;
    etag.data = ngx_pnalloc(r->pool, TSB_STATUS_ETAG_LEN);

    if (etag.data == NULL
        || tsb_status_etag(e->status_json.data, e->status_json.len,
                           e->der.data, e->der.len, etag.data)
           != 0
        || ngx_http_tsb_add_header(r, "ETag", &etag) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_tsb_not_modified(r, &etag)) {
        r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
        r->header_only = 1;
        ngx_http_clear_content_length(r);

        return ngx_http_send_header(r);
    }

    if (e->status != TSB_STATUS_EXECUTED || e->der.len == 0) {
        return ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_json,
                                 e->status_json.data, e->status_json.len);
    }

    /* the TSB's shape carries the certificate as PEM in "result" */

    ngx_memzero(&st, sizeof(tsb_status_t));
    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_status_parse(e->status_json.data, e->status_json.len, &st, &err)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tsb_cert_der_to_pem(e->der.data, e->der.len, &pem) != 0) {
        tsb_status_free(&st);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st.result = (char *) pem.data;
    rc = tsb_status_build(&st, &out);
    tsb_status_free(&st);

    if (rc != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_json,
                           out.data, out.len);
    tsb_buf_free(&out);

    return rc;
}


static ngx_int_t
ngx_http_tsb_serve_certificate(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_http_tsb_entry_t *e)
{
    u_char                   *p;
    size_t                    len;
    ngx_str_t                 value, etag, body;
    tsb_buf_t                 pem, chain;
    const char               *name, *ext;
    char                      reason[64], detail[128];
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    switch (e->status) {

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

        if (ngx_http_tsb_add_header(r, "Retry-After", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&value, "no-store");

        if (ngx_http_tsb_add_header(r, "Cache-Control", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tsb_send(r, NGX_HTTP_ACCEPTED,
                                 &ngx_http_tsb_type_json,
                                 e->status_json.data, e->status_json.len);

    default:

        /* REJECTED, FAILED, EXPIRED, CANCELLED: no certificate, ever */

        name = tsb_status_name(e->status);
        if (name == NULL) {
            /* the zone and the parsers keep known statuses only */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "tsb: entry of request with no known status");

            return ngx_http_tsb_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                       "internal.status",
                       "the gateway holds no known status for the request");
        }

        p = ngx_cpymem(reason, "request.", sizeof("request.") - 1);
        while (*name && p < (u_char *) reason + sizeof(reason) - 1) {
            *p++ = ngx_tolower(*name);
            name++;
        }
        *p = '\0';

        *ngx_snprintf((u_char *) detail, sizeof(detail) - 1,
                      "the request is %s: there is no certificate",
                      tsb_status_name(e->status)) = '\0';

        return ngx_http_tsb_send_error(r, NGX_HTTP_CONFLICT, reason, detail);
    }

    if (e->der.len == 0) {
        /*
         * EXECUTED without a certificate: a status-only entry (a key
         * operation, or a result that is no certificate for an id the
         * gateway has no record of).  Its result is in the status JSON; it
         * is never served as a certificate.
         */
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                   "upstream.certificate",
                   "the TSB reported EXECUTED without a certificate (a key "
                   "operation, whose result is in the status JSON, or a "
                   "broken answer)");
    }

    /*
     * Validators and the certificate's own facts.  PEM, DER and chain are
     * different bytes: each representation has its own entity tag.
     */

    etag.len = 0;

    if (e->etag.len == 18) {
        ext = (ctx->format == NGX_HTTP_TSB_FORMAT_DER) ? "der"
              : (ctx->format == NGX_HTTP_TSB_FORMAT_CHAIN) ? "chain" : "pem";

        etag.data = ngx_pnalloc(r->pool, 18 + sizeof("-chain"));
        if (etag.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        etag.len = ngx_sprintf(etag.data, "%*s-%s\"", (size_t) 17,
                               e->etag.data, ext)
                   - etag.data;

        if (ngx_http_tsb_add_header(r, "ETag", &etag) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }


    r->headers_out.last_modified_time = e->last_modified;

    ngx_str_set(&value, "private, max-age=86400");

    if (ngx_http_tsb_add_header(r, "Cache-Control", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * e may live in a watch's snapshot, freed right after delivery, while
     * the header is read again in the log phase ($sent_http_...): copy it
     * into the request's pool, as the ETag.
     */
    value.len = e->serial.len;
    value.data = ngx_pstrdup(r->pool, &e->serial);

    if ((value.data == NULL && value.len)
        || ngx_http_tsb_add_header(r, "X-Certificate-Serial", &value)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT"));
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.len = ngx_http_time(value.data, e->not_after) - value.data;

    if (ngx_http_tsb_add_header(r, "X-Certificate-Not-After", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ext = (ctx->format == NGX_HTTP_TSB_FORMAT_DER) ? ".der" : ".pem";

    value.len = sizeof("attachment; filename=\"\"") - 1 + e->filename.len
                + 4;
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(value.data, "attachment; filename=\"%V%s\"", &e->filename,
                ext);

    if (ngx_http_tsb_add_header(r, "Content-Disposition", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (etag.len && ngx_http_tsb_not_modified(r, &etag)) {
        r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
        r->header_only = 1;
        ngx_http_clear_content_length(r);

        return ngx_http_send_header(r);
    }

    if (ctx->format == NGX_HTTP_TSB_FORMAT_DER) {
        return ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_der,
                                 e->der.data, e->der.len);
    }

    if (ctx->format != NGX_HTTP_TSB_FORMAT_CHAIN) {
        /* the hot path: PEM written once, into the answer itself */
        len = tsb_cert_pem_len(e->der.len);

        p = ngx_pnalloc(r->pool, len + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        len = tsb_cert_pem_write(e->der.data, e->der.len, p);

        return ngx_http_tsb_send_data(r, NGX_HTTP_OK, &ngx_http_tsb_type_pem,
                                      p, len, 0);
    }

    if (tsb_cert_der_to_pem(e->der.data, e->der.len, &pem) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the leaf, then the configured issuers (none: the leaf alone) */

    if (tsb_chain_to_pem(tlcf->issuers, &chain) != 0) {
        tsb_buf_free(&pem);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.len = pem.len + chain.len;
    body.data = ngx_pnalloc(r->pool, body.len);

    if (body.data == NULL) {
        tsb_buf_free(&pem);
        tsb_buf_free(&chain);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, pem.data, pem.len);
    (void) ngx_http_tsb_cpymem(p, chain.data, chain.len);

    tsb_buf_free(&pem);
    tsb_buf_free(&chain);

    return ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_chain,
                             body.data, body.len);
}


/* If-None-Match: a list of entity tags, or "*" */

static ngx_int_t
ngx_http_tsb_not_modified(ngx_http_request_t *r, ngx_str_t *etag)
{
    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }

    return tsb_etag_match(r->headers_in.if_none_match->value.data,
                          r->headers_in.if_none_match->value.len,
                          etag->data, etag->len);
}
