
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The sign handler: a CSR in (PEM, DER, base64 or the TSB JSON envelope),
 * checked by the policy engine, forwarded to POST /v1/certificate/sign.
 * Every decision is written to the audit log: a refusal when it is made,
 * an acceptance when the TSB has answered (with its signRequestId) or
 * failed, or when the client went away before that.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_policy.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_store.h"
#include "tsb_describe.h"


#define NGX_HTTP_TSB_BODY_JSON    1
#define NGX_HTTP_TSB_BODY_CSR     2


typedef struct {
    ngx_str_t                 type;
    ngx_uint_t                kind;
} ngx_http_tsb_media_t;


/* an accepted request on its way to the TSB, for the audit log */
typedef struct {
    ngx_http_request_t       *request;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_uint_t                pending;     /* not audited yet */
    size_t                    reserved;    /* room in the cache zone */
} ngx_http_tsb_sign_t;


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
static void ngx_http_tsb_sign_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_sign_accepted(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx);
static ngx_int_t ngx_http_tsb_sign_wait_serve(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e, ngx_uint_t cache_status, tsb_error_t *err);
static ngx_int_t ngx_http_tsb_sign_refuse(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t status, const char *reason,
    const char *detail);
static ngx_int_t ngx_http_tsb_sign_refuse_err(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, tsb_error_t *err);
static ngx_int_t ngx_http_tsb_sign_internal(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t accepted);
static ngx_int_t ngx_http_tsb_key_password(ngx_http_tsb_ctx_t *ctx,
    ngx_http_tsb_loc_conf_t *tlcf);
static void ngx_http_tsb_sign_cleanup(void *data);
static ngx_int_t ngx_http_tsb_wipe_on_free(ngx_http_request_t *r,
    ngx_str_t *s);
static void ngx_http_tsb_wipe(void *data);
static ngx_int_t ngx_http_tsb_sign_describe(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf);


ngx_int_t
ngx_http_tsb_sign_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if ((r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) && tlcf->sign_describe) {
        return ngx_http_tsb_sign_describe(r, tlcf);
    }

    if (!(r->method & NGX_HTTP_POST)) {
        ngx_http_tsb_audit(r, NULL, 0, NGX_HTTP_NOT_ALLOWED,
                           "request.method",
                           "this location does not take that method", NULL);
        return ngx_http_tsb_method_not_allowed(r, tlcf->sign_describe
                                                  ? "GET, HEAD, POST"
                                                  : "POST");
    }

    if (ngx_http_tsb_body_kind(r) == 0) {
        return ngx_http_tsb_sign_refuse(r, NULL,
                   NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "request.content_type",
                   "send the CSR as application/json (the TSB envelope), "
                   "application/pkcs10 (DER or base64) or "
                   "application/x-pem-file");
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        return ngx_http_tsb_sign_refuse(r, NULL,
                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        return ngx_http_tsb_sign_refuse(r, NULL, NGX_HTTP_BAD_REQUEST,
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
    ngx_http_tsb_sign_t      *st;
    ngx_http_cleanup_t       *cln;
    ngx_http_tsb_fetch_t     *f;
    const tsb_policy_t       *policy;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ngx_http_tsb_body(r, &body) != NGX_OK) {
        return ngx_http_tsb_sign_refuse(r, ctx,
                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (body.len == 0) {
        return ngx_http_tsb_sign_refuse(r, ctx, NGX_HTTP_BAD_REQUEST,
                                        "request.empty",
                                        "the request body is empty");
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (ngx_http_tsb_body_kind(r) == NGX_HTTP_TSB_BODY_JSON) {
        if (tsb_sign_req_parse(body.data, body.len, &ctx->req, &err) != 0) {
            return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
        }

        if (tsb_csr_load((u_char *) ctx->req.csr, ctx->req.csr_len,
                         &ctx->csr, &err)
            != 0)
        {
            return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
        }

    } else {
        if (tsb_csr_load(body.data, body.len, &ctx->csr, &err) != 0) {
            return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
        }
    }

    /* the location's policy, its name patterns expanded for this client */

    policy = ngx_http_tsb_request_policy(r, tlcf);
    if (policy == NULL) {
        return ngx_http_tsb_sign_internal(r, ctx, 0);
    }

    if (tsb_policy_check(policy, ctx->csr, &ctx->req, &err) != 0) {
        return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
    }

    /*
     * Accepted.  What the issued certificate will be checked against is
     * written down now, while the CSR and the completed request are here.
     */

    if (tsb_expect_build_ex(ctx->csr, &ctx->req,
                            tsb_policy_max_validity(policy),
                            (int64_t) ngx_time(), &ctx->expect)
        != 0)
    {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    /* and who asked for it (tsb_owner), kept with it */

    if (ngx_http_tsb_owner_tag(r, &ctx->expect, &err) != NGX_OK) {
        return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
    }

    if (ngx_http_tsb_key_password(ctx, tlcf) != NGX_OK) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    /* the TSB gets the CSR in its canonical PEM form, whatever came in */

    if (tsb_csr_to_pem(ctx->csr, &pem) != 0) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    free(ctx->req.csr);
    ctx->req.csr = (char *) pem.data;
    ctx->req.csr_len = pem.len;

    if (tsb_sign_req_build(&ctx->req, &out) != 0) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    up.len = out.len;
    up.data = ngx_pnalloc(r->pool, out.len);

    if (up.data != NULL) {
        ngx_memcpy(up.data, out.data, out.len);
    }

    /* the body may carry a key password: do not leave copies around */
    tsb_secure_zero(out.data, out.len);
    tsb_buf_free(&out);

    if (up.data == NULL) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    /* a pool is not cleared when it is freed: this copy is, by us */

    if (ctx->req.key_password != NULL
        && ngx_http_tsb_wipe_on_free(r, &up) != NGX_OK)
    {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    /*
     * A request its client signed goes out as it came, through tsb_sign
     * as through tsb_pass: the TSB verifies requestSignature over the
     * client's bytes, so the gateway forwards those or refuses.
     */

    if (ngx_http_tsb_body_kind(r) == NGX_HTTP_TSB_BODY_JSON
        && ngx_http_tsb_front_sign_body(r, ctx, &body, &up, &err) != NGX_OK)
    {
        return ngx_http_tsb_sign_refuse_err(r, ctx, &err);
    }

    /* from here on the acceptance is audited exactly once, whatever comes */

    cln = ngx_http_cleanup_add(r, sizeof(ngx_http_tsb_sign_t));
    if (cln == NULL) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    st = cln->data;
    st->request = r;
    st->ctx = ctx;
    st->pending = 0;
    st->reserved = 0;
    cln->handler = ngx_http_tsb_sign_cleanup;

    /* the record of what is accepted must have room before the TSB acts */

    if (ngx_http_tsb_cache_reserve(tlcf, ctx->expect.len, &st->reserved,
                                   r->connection->log)
        != NGX_OK)
    {
        return ngx_http_tsb_sign_refuse(r, ctx,
                   NGX_HTTP_SERVICE_UNAVAILABLE, "cache.full",
                   "the cache zone has no room left to keep what is "
                   "accepted for pending requests; try again later");
    }

    ngx_str_set(&path, "/v1/certificate/sign");

    f = ngx_http_tsb_fetch_create(r, &tlcf->upstream, "POST", &path, &up);
    if (f == NULL) {
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    f->done = ngx_http_tsb_sign_done;
    f->data = st;

    /* before the start: done() clears it, however soon it runs */
    st->pending = 1;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        st->pending = 0;
        return ngx_http_tsb_sign_internal(r, ctx, 1);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb: sign request for CN \"%s\" accepted by policy, "
                  "forwarding to the TSB", ctx->req.common_name);

    /* notice a client that goes away while the TSB works */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_tsb_sign_done(ngx_http_tsb_fetch_t *f)
{
    char                     *id;
    ngx_int_t                 rc;
    ngx_str_t                 sid;
    ngx_msec_t                wait;
    tsb_error_t               err;
    ngx_http_request_t       *r;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_sign_t      *st;
    ngx_http_tsb_loc_conf_t  *tlcf;

    r = f->request;
    st = f->data;
    ctx = st->ctx;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    st->pending = 0;

    /* remember() below takes the room for real */
    ngx_http_tsb_cache_unreserve(tlcf, st->reserved);
    st->reserved = 0;

    rc = ngx_http_tsb_upstream_failed(r, f);
    if (rc != NGX_DECLINED) {
        /* ngx_http_tsb_send_error() left its reason in ctx */
        ngx_http_tsb_audit(r, ctx, 1, r->headers_out.status,
                           ctx->reason ? ctx->reason : "upstream.error",
                           "the TSB did not take the sign request", NULL);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_sign_resp_parse(f->body, f->body_len, &id, &err) != 0) {
        ngx_http_tsb_audit(r, ctx, 1, err.status, err.reason, err.detail,
                           NULL);
        ngx_http_finalize_request(r, ngx_http_tsb_send_tsb_error(r, &err));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tsb: sign request %s submitted", id);

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ngx_http_tsb_audit(r, ctx, 1, ctx->front ? NGX_HTTP_OK : tlcf->sign_status,
                       NULL, NULL, id);

    /* what the certificate issued for id must match, kept by id */

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    if (ngx_http_tsb_cache_remember(r, &sid, ctx->expect.data,
                                    ctx->expect.len)
        == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "tsb: what was accepted for sign request %s could "
                      "not be kept in the cache", id);
    }

    /* and on disk, for a restart or an eviction before it is issued */

    if (tlcf->store) {
        ngx_http_tsb_store_remember(tlcf->store, &sid, ctx->expect.data,
                                    ctx->expect.len, r->connection->log);
    }

    /* for $tsb_request_id, the Location header and ?wait */
    ctx->id.len = sid.len;
    ctx->id.data = ngx_pnalloc(r->pool, sid.len);

    if (ctx->id.data == NULL) {
        free(id);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(ctx->id.data, id, sid.len);
    free(id);

    /*
     * ?wait=<seconds>: one call for simple clients.  The answer is the
     * certificate if it is issued in time, else the usual signRequestId.
     */

    wait = ctx->front ? 0 : ngx_http_tsb_wait_arg(r);

    if (wait) {
        ctx->format = NGX_HTTP_TSB_FORMAT_PEM;

        rc = ngx_http_tsb_cache_handle(r, &ctx->id, wait,
                                       ngx_http_tsb_sign_wait_serve);

        /* NGX_DONE: waiting; drop the body reader's reference */
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_tsb_sign_accepted(r, ctx));
}


static ngx_int_t
ngx_http_tsb_sign_accepted(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 location;
    tsb_buf_t                 out;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    location.len = tlcf->status_uri.len + ctx->id.len;
    location.data = ngx_pnalloc(r->pool, location.len);

    if (location.data == NULL
        || tsb_sign_resp_build((char *) ctx->id.data, ctx->id.len, &out)
           != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_tsb_cpymem(location.data, tlcf->status_uri.data,
                            tlcf->status_uri.len);
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    /* no Location through tsb_pass: the TSB sends none */
    if (!ctx->front
        && ngx_http_tsb_add_header(r, "Location", &location) != NGX_OK)
    {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The TSB answers 200, and its own clients take nothing else (a 202
     * makes the Go client report a failure and retry: a duplicate for the
     * approvers).  202 only where tsb_sign_status asks for it, never
     * through tsb_pass.
     */
    rc = ngx_http_tsb_send(r, ctx->front ? NGX_HTTP_OK : tlcf->sign_status,
                           &ngx_http_tsb_type_json, out.data, out.len);
    tsb_buf_free(&out);

    return rc;
}


/* ?wait ended: the certificate, a final refusal, or the id as usual */

static ngx_int_t
ngx_http_tsb_sign_wait_serve(ngx_http_request_t *r, ngx_http_tsb_entry_t *e,
    ngx_uint_t cache_status, tsb_error_t *err)
{
    ngx_http_tsb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (e && tsb_status_is_terminal((int) e->status)) {
        return ngx_http_tsb_serve(r, e, cache_status, err);
    }

    /* pending, or the status could not be read: the request stands */
    return ngx_http_tsb_sign_accepted(r, ctx);
}


/* the client went away before the TSB answered: still one audit line */

static void
ngx_http_tsb_sign_cleanup(void *data)
{
    ngx_http_tsb_sign_t  *st = data;

    if (st->reserved) {
        ngx_http_tsb_cache_unreserve(
            ngx_http_get_module_loc_conf(st->request, ngx_http_tsb_module),
            st->reserved);
        st->reserved = 0;
    }

    if (!st->pending) {
        return;
    }

    st->pending = 0;

    ngx_http_tsb_audit(st->request, st->ctx, 1,
                       NGX_HTTP_CLIENT_CLOSED_REQUEST, "client.closed",
                       "the client closed the connection before the TSB "
                       "answered", NULL);
}


static ngx_int_t
ngx_http_tsb_wipe_on_free(ngx_http_request_t *r, ngx_str_t *s)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_str_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    *(ngx_str_t *) cln->data = *s;
    cln->handler = ngx_http_tsb_wipe;

    return NGX_OK;
}


static void
ngx_http_tsb_wipe(void *data)
{
    ngx_str_t  *s = data;

    tsb_secure_zero(s->data, s->len);
}


static ngx_int_t
ngx_http_tsb_sign_refuse(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t status, const char *reason, const char *detail)
{
    ngx_http_tsb_audit(r, ctx, 0, status, reason, detail, NULL);

    return ngx_http_tsb_send_error(r, status, reason, detail);
}


static ngx_int_t
ngx_http_tsb_sign_refuse_err(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    tsb_error_t *err)
{
    ngx_http_tsb_audit(r, ctx, 0,
                       err->status ? err->status : NGX_HTTP_BAD_REQUEST,
                       err->reason ? err->reason : "request", err->detail,
                       NULL);

    return ngx_http_tsb_send_tsb_error(r, err);
}


static ngx_int_t
ngx_http_tsb_sign_internal(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t accepted)
{
    ngx_http_tsb_audit(r, ctx, accepted, NGX_HTTP_INTERNAL_SERVER_ERROR,
                       "internal.error", "the gateway failed", NULL);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * The gateway's own key password, when the client gave none (a client's
 * own passed the policy only where tsb_allow_key_password allows it).
 * It goes into the upstream body only: never into a log or an answer.
 */

static ngx_int_t
ngx_http_tsb_key_password(ngx_http_tsb_ctx_t *ctx,
    ngx_http_tsb_loc_conf_t *tlcf)
{
    char  *pw;

    if (tlcf->key_password.len == 0
        || (ctx->req.key_password_present && ctx->req.key_password != NULL))
    {
        return NGX_OK;
    }

    pw = malloc(tlcf->key_password.len + 1);
    if (pw == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(pw, tlcf->key_password.data, tlcf->key_password.len);
    pw[tlcf->key_password.len] = '\0';

    /* freed, and wiped, with the request (tsb_sign_req_free()) */
    ctx->req.key_password = pw;
    ctx->req.key_password_len = tlcf->key_password.len;
    ctx->req.key_password_present = 1;

    return NGX_OK;
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


/*
 * GET on a sign location: the location's policy with its name patterns
 * expanded for this client, so a page or a person sees what this client
 * may ask for, from the very structure the sign request is judged with.
 */

static ngx_int_t
ngx_http_tsb_sign_describe(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf)
{
    ngx_int_t            rc;
    ngx_str_t            no_store = ngx_string("no-store");
    tsb_buf_t            out;
    const tsb_policy_t  *policy;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    policy = ngx_http_tsb_request_policy(r, tlcf);

    if (policy == NULL || tsb_policy_describe(policy, &out) != 0) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                   "internal", "the policy could not be described");
    }

    if (ngx_http_tsb_add_header(r, "Cache-Control", &no_store) != NGX_OK) {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tsb_send(r, NGX_HTTP_OK, &ngx_http_tsb_type_json, out.data,
                           out.len);
    tsb_buf_free(&out);

    return rc;
}
