
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Whose request is it: tsb_owner names the identity of a client (a
 * complex value such as $tsb_ssl_client_cn or $remote_user); a tsb_sign
 * location keeps its hash with what it accepted (tsb_owner.c), and
 * tsb_owner_check restricts cancel, or every read too, to that identity.
 *
 * Cancel (DELETE /v1/request/{id}, through tsb_pass or a tsb_status
 * location) looks the id up through the status cache first, so that the
 * record comes from the zone, from tsb_store after a restart, or not at
 * all (then the gateway did not create the request), and then forwards
 * the DELETE with the gateway's credentials as tsb_pass does.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_proxy.h"
#include "tsb_owner.h"


static ngx_int_t ngx_http_tsb_owner_of(ngx_http_request_t *r,
    u_char *hash);
static ngx_int_t ngx_http_tsb_cancel_serve(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e, ngx_uint_t cache_status, tsb_error_t *err);
static ngx_int_t ngx_http_tsb_cancel_forward(ngx_http_request_t *r);


/* tsb_owner value | off */

char *
ngx_http_tsb_owner(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->owner != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        tlcf->owner = NULL;
        return NGX_CONF_OK;
    }

    tlcf->owner = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (tlcf->owner == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = tlcf->owner;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The hash of this client's identity: NGX_OK, NGX_DECLINED when the
 * location names none, NGX_ABORT when it evaluates to the empty string.
 */

static ngx_int_t
ngx_http_tsb_owner_of(ngx_http_request_t *r, u_char *hash)
{
    ngx_str_t                 value;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (tlcf->owner == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_complex_value(r, tlcf->owner, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len == 0) {
        return NGX_ABORT;
    }

    if (tsb_owner_hash(value.data, value.len, hash) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* at sign time: the owner's hash goes in front of the expectation */

ngx_int_t
ngx_http_tsb_owner_tag(ngx_http_request_t *r, tsb_buf_t *expect,
    tsb_error_t *err)
{
    ngx_int_t  rc;
    tsb_buf_t  rec;
    u_char     hash[TSB_OWNER_HASH_LEN];

    rc = ngx_http_tsb_owner_of(r, hash);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc == NGX_ABORT) {
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "owner.missing",
                      "tsb_owner names no identity for this client, and "
                      "the request would have no owner");
        return NGX_ERROR;
    }

    if (rc != NGX_OK || tsb_owner_wrap(hash, expect->data, expect->len,
                                       &rec)
                        != 0)
    {
        tsb_error_set(err, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal.memory",
                      "out of memory");
        return NGX_ERROR;
    }

    tsb_buf_free(expect);
    *expect = rec;

    return NGX_OK;
}


/*
 * May this client act on a request with this record (what the zone or
 * tsb_store keeps, empty when the gateway has none)?  NGX_OK, or
 * NGX_DECLINED with err set.
 */

ngx_int_t
ngx_http_tsb_owner_allowed(ngx_http_request_t *r, ngx_str_t *record,
    tsb_error_t *err)
{
    size_t                elen;
    ngx_int_t             rc;
    const unsigned char  *expect, *owner;
    u_char                hash[TSB_OWNER_HASH_LEN];

    if (record == NULL || record->len == 0) {
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "owner.unknown",
                      "the gateway has no record of creating this request");
        goto refused;
    }

    if (tsb_owner_split(record->data, record->len, &expect, &elen, &owner)
        != 0)
    {
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "owner.unknown",
                      "the gateway's record of this request is unusable");
        goto refused;
    }

    if (owner == NULL) {
        /* created by a location without tsb_owner: nobody's in particular */
        return NGX_OK;
    }

    rc = ngx_http_tsb_owner_of(r, hash);

    if (rc == NGX_ERROR) {
        tsb_error_set(err, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal.memory",
                      "out of memory");
        return NGX_DECLINED;
    }

    if (rc != NGX_OK || !tsb_owner_equal(owner, hash)) {
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "owner.mismatch",
                      "the request was created by another client");
        goto refused;
    }

    return NGX_OK;

refused:

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "tsb: %V of request %V refused: %s: %s", &r->method_name,
                  &((ngx_http_tsb_ctx_t *) ngx_http_get_module_ctx(r,
                      ngx_http_tsb_module))->id, err->reason, err->detail);

    return NGX_DECLINED;
}


/*
 * DELETE /v1/request/{id}: ctx->front is set up (route CANCEL) and ctx->id
 * is the id, checked to be one the cache could hold (empty: it is not).
 */

ngx_int_t
ngx_http_tsb_cancel_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    tsb_error_t               err;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (tlcf->owner_check == NGX_HTTP_TSB_OWNER_OFF) {
        return ngx_http_tsb_cancel_forward(r);
    }

    if (tlcf->cache_zone == NULL || ctx->id.len == 0) {
        ngx_memzero(&err, sizeof(tsb_error_t));
        (void) ngx_http_tsb_owner_allowed(r, NULL, &err);

        return ngx_http_tsb_send_tsb_error(r, &err);
    }

    /* the record, from the zone or tsb_store, with the status */
    return ngx_http_tsb_cache_handle(r, &ctx->id, 0,
                                     ngx_http_tsb_cancel_serve);
}


static ngx_int_t
ngx_http_tsb_cancel_serve(ngx_http_request_t *r, ngx_http_tsb_entry_t *e,
    ngx_uint_t cache_status, tsb_error_t *err)
{
    tsb_error_t  oerr;

    ngx_memzero(&oerr, sizeof(tsb_error_t));

    if (e == NULL && err) {
        /* the TSB does not know the id (404), or could not say */
        return ngx_http_tsb_send_tsb_error(r, err);
    }

    if (ngx_http_tsb_owner_allowed(r, e ? &e->expect : NULL, &oerr)
        != NGX_OK)
    {
        return ngx_http_tsb_send_tsb_error(r, &oerr);
    }

    return ngx_http_tsb_cancel_forward(r);
}


static ngx_int_t
ngx_http_tsb_cancel_forward(ngx_http_request_t *r)
{
    u_char                *p;
    ngx_int_t              rc;
    ngx_str_t             *path;
    ngx_http_tsb_ctx_t    *ctx;
    ngx_http_tsb_front_t  *front;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    front = ctx->front;

    path = &front->path;

    if (ctx->id.len) {
        /* exactly the id that was judged, whatever the client's path */
        path->len = sizeof("/v1/request/") - 1 + ctx->id.len;
        path->data = ngx_pnalloc(r->pool, path->len);
        if (path->data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(path->data, "/v1/request/",
                       sizeof("/v1/request/") - 1);
        ngx_memcpy(p, ctx->id.data, ctx->id.len);
    }

    rc = ngx_http_tsb_front_forward(r, "DELETE", path, NULL);

    if (rc == NGX_DONE) {
        /* the request waits for the TSB; finalized once in front_done() */
        r->main->count++;
    }

    return rc;
}
