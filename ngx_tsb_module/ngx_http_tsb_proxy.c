
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * tsb_pass: nginx as the front of the whole TSB API.  A client talks to the
 * gateway as it would to the TSB (same paths, same JSON, same status codes);
 * the gateway lets through what tsb_pass_allow lists, with its own
 * credentials, and refuses everything else with 403.
 *
 * The endpoints the gateway has an opinion on do not pass through blindly:
 * POST /v1/certificate/sign goes through the location's sign policy (the
 * sign handler itself), GET /v1/request/{id} through the status handler
 * (cache and the check of the issued certificate), DELETE /v1/request/{id}
 * expires the cached status, and POST /v1/certificate/import/plain takes a
 * PEM certificate as well as base64 DER.  Synchronous signing and
 * self-signing never pass: they would skip the approval workflow and the
 * policy the gateway stands for.
 *
 * All of it is decided on one path, the request line's normalised by
 * tsb_allow_normalise(), and that path is what the TSB gets: a TSB that
 * decodes "%73ign" into "sign" has nothing left to decode.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_proxy.h"
#include "tsb_allow.h"
#include "tsb_front.h"


static ngx_int_t ngx_http_tsb_front_refuse(ngx_http_request_t *r,
    ngx_str_t *path, const char *why);
static ngx_int_t ngx_http_tsb_front_override(ngx_http_request_t *r);
static void ngx_http_tsb_front_cancel_id(ngx_str_t *path, ngx_str_t *id);
static ngx_int_t ngx_http_tsb_front_bad_path(ngx_http_request_t *r,
    const char *why);
static void ngx_http_tsb_front_body_read(ngx_http_request_t *r);
static void ngx_http_tsb_front_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_front_json_type(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_pass_run(ngx_http_request_t *r);


/* headers some servers take as the real method: never let one through */
static ngx_str_t  ngx_http_tsb_override_headers[] = {
    ngx_string("X-HTTP-Method-Override"),
    ngx_string("X-HTTP-Method"),
    ngx_string("X-Method-Override"),
    ngx_null_string
};


/* the front's internal failures are JSON too */

ngx_int_t
ngx_http_tsb_pass_handler(ngx_http_request_t *r)
{
    return ngx_http_tsb_json_rc(r, ngx_http_tsb_pass_run(r));
}


static ngx_int_t
ngx_http_tsb_pass_run(ngx_http_request_t *r)
{
    u_char                    *p, *end;
    unsigned                   method;
    ngx_int_t                  rc;
    ngx_str_t                  path, query;
    ngx_array_t               *rules, *keys;
    const char                *why;
    int                        known;
    ngx_http_tsb_ctx_t        *ctx;
    ngx_http_tsb_front_t      *front;
    ngx_http_tsb_loc_conf_t   *tlcf;
    ngx_http_tsb_main_conf_t  *tmcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ctx = ngx_http_tsb_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    front = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_front_t));
    if (front == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->front = front;

    /*
     * The path is made from the request line as the client wrote it.
     * After a rewrite or an internal redirect the request line no longer
     * says what the location matched: refuse rather than guess which of
     * the two the allow-list should judge.
     */
    if (!r->valid_unparsed_uri || r->internal || r != r->main) {
        return ngx_http_tsb_front_refuse(r, NULL, "tsb_pass takes the URI "
                                         "as the client sent it, not "
                                         "rewritten");
    }

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    path.data = p;

    while (p < end && *p != '?') {
        p++;
    }

    path.len = p - path.data;

    query.data = (p < end) ? p + 1 : NULL;
    query.len = (p < end) ? (size_t) (end - p - 1) : 0;

    method = tsb_allow_method((char *) r->method_name.data,
                              r->method_name.len);

    if (method == 0) {
        return ngx_http_tsb_front_refuse(r, NULL, "the method is not "
                                         "passed to the TSB");
    }

    /*
     * One path for every decision below and for the TSB: the client's,
     * normalised (tsb_allow_normalise()).  Decoding only shrinks it, so
     * the query fits in the same buffer after it.
     */

    front->path.data = ngx_pnalloc(r->pool, path.len + 1 + query.len);
    if (front->path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tsb_allow_normalise(path.data, path.len, front->path.data,
                            &front->npath.len, &why)
        != 0
        || (query.len && tsb_allow_query_check(query.data, query.len, &why)
                         != 0))
    {
        /* the raw path is not quoted: it did not pass the checks */
        return ngx_http_tsb_front_bad_path(r, why);
    }

    front->npath.data = front->path.data;
    front->path.len = front->npath.len;

    if (query.data) {
        front->path.data[front->path.len++] = '?';
        front->path.len = ngx_cpymem(front->path.data + front->path.len,
                                     query.data, query.len)
                          - front->path.data;
    }

    path = front->npath;

    if (ngx_http_tsb_front_override(r) != NGX_OK) {
        return ngx_http_tsb_front_refuse(r, &path, "method override "
                                         "headers are refused");
    }

    front->route = tsb_allow_route(method, path.data, path.len, &why);

    if (front->route == TSB_ROUTE_REFUSE) {
        return ngx_http_tsb_front_refuse(r, &path, why);
    }

    rules = tlcf->pass_allow;

    if (rules == NULL
        || tsb_allow_find(rules->elts, rules->nelts, method, path.data,
                          path.len, &known)
           < 0)
    {
        return ngx_http_tsb_front_refuse(r, &path, "not in tsb_pass_allow");
    }

    if (front->route == NGX_HTTP_TSB_ROUTE_CANCEL) {
        ngx_http_tsb_front_cancel_id(&path, &front->id);
    }

    /*
     * Reading a certificate key (its public key, its attributes) is
     * harmless; anything else on it (DELETE /v1/key/CA-Key, ...) is not
     * the front's to pass.
     */
    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tsb_module);
    keys = tmcf->cert_keys;

    if (method != TSB_METHOD_GET
        && front->route == NGX_HTTP_TSB_ROUTE_PASS
        && tsb_front_path_names_key(path.data, path.len,
                                    (const char *const *) keys->elts,
                                    keys->nelts))
    {
        return ngx_http_tsb_send_error(r, NGX_HTTP_FORBIDDEN,
                                       "policy.key_operation",
                                       "the path names a key this gateway "
                                       "issues certificates with; only "
                                       "reading it is passed");
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tsb pass: %V %V route %ui", &r->method_name, &path,
                   front->route);

    switch (front->route) {

    case NGX_HTTP_TSB_ROUTE_SIGN:
        /* the location's sign policy, exactly as for tsb_sign */
        return ngx_http_tsb_sign_handler(r);

    case NGX_HTTP_TSB_ROUTE_STATUS:
        return ngx_http_tsb_status_handler(r);

    case NGX_HTTP_TSB_ROUTE_CANCEL:
        /* whose request it is (tsb_owner_check), then the TSB */
        ctx->id = front->id;
        return ngx_http_tsb_cancel_handler(r);

    case NGX_HTTP_TSB_ROUTE_IMPORT:
        return ngx_http_tsb_import_handler(r);

    default:
        break;
    }

    /* anything that carries a body is JSON, checked before it goes out */

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        return ngx_http_tsb_front_read_body(r, ngx_http_tsb_front_body_read);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_tsb_front_forward(r, (char *) NULL, &front->path, NULL);

    if (rc == NGX_DONE) {
        /* the request waits for the TSB; finalized once in front_done() */
        r->main->count++;
    }

    return rc;
}


/*
 * 403 "policy.front".  The path is quoted only once it passed the checks
 * (then it is plain ASCII); the method is one nginx parsed ([A-Z_-]).
 */

static ngx_int_t
ngx_http_tsb_front_refuse(ngx_http_request_t *r, ngx_str_t *path,
    const char *why)
{
    u_char  *last;
    u_char   detail[TSB_DETAIL_MAX];

    if (path) {
        last = ngx_snprintf(detail, sizeof(detail) - 1, "%V %V: %s",
                            &r->method_name, path, why);

    } else {
        last = ngx_snprintf(detail, sizeof(detail) - 1, "%V: %s",
                            &r->method_name, why);
    }

    *last = '\0';

    return ngx_http_tsb_send_error(r, NGX_HTTP_FORBIDDEN, "policy.front",
                                   (char *) detail);
}


static ngx_int_t
ngx_http_tsb_front_override(ngx_http_request_t *r)
{
    ngx_uint_t        i, j;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (j = 0; ngx_http_tsb_override_headers[j].len; j++) {
            if (h[i].key.len == ngx_http_tsb_override_headers[j].len
                && ngx_strncasecmp(h[i].key.data,
                                   ngx_http_tsb_override_headers[j].data,
                                   h[i].key.len)
                   == 0)
            {
                return NGX_DECLINED;
            }
        }
    }

    return NGX_OK;
}


/* the id of DELETE /v1/request/{id}, to expire in the cache */

static void
ngx_http_tsb_front_cancel_id(ngx_str_t *path, ngx_str_t *id)
{
    size_t   n;
    u_char  *p;

    n = sizeof("/v1/request/") - 1;

    id->data = path->data + n;
    id->len = path->len - n;

    for (p = id->data; p < id->data + id->len; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '-'))
        {
            /* not an id the cache could hold: passed, nothing expires */
            id->len = 0;
            break;
        }
    }

    if (id->len > NGX_HTTP_TSB_ID_MAX) {
        id->len = 0;
    }
}


/*
 * 400 "request.path": a request target the front cannot make into one
 * path that means the same to the gateway and to the TSB.
 */

static ngx_int_t
ngx_http_tsb_front_bad_path(ngx_http_request_t *r, const char *why)
{
    u_char  *last;
    u_char   detail[TSB_DETAIL_MAX];

    last = ngx_snprintf(detail, sizeof(detail) - 1, "%V: %s",
                        &r->method_name, why);
    *last = '\0';

    return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST, "request.path",
                                   (char *) detail);
}


static ngx_int_t
ngx_http_tsb_front_json_type(ngx_http_request_t *r)
{
    size_t      len;
    ngx_str_t  *type;

    if (r->headers_in.content_type == NULL) {
        return NGX_DECLINED;
    }

    type = &r->headers_in.content_type->value;

    for (len = 0; len < type->len; len++) {
        if (type->data[len] == ';' || type->data[len] == ' ') {
            break;
        }
    }

    if (len == sizeof("application/json") - 1
        && ngx_strncasecmp(type->data, (u_char *) "application/json", len)
           == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_tsb_front_read_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post_handler)
{
    ngx_int_t                 rc;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (ngx_http_tsb_front_json_type(r) != NGX_OK) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                       "request.content_type",
                                       "the TSB API takes application/json");
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "request.too_large",
                   "the request body is larger than tsb_max_body_size");
    }

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        return ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "request.empty",
                                       "the request body is empty");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, post_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_tsb_front_body_read(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t                  body;
    tsb_error_t                err;
    ngx_http_tsb_ctx_t        *ctx;
    ngx_http_tsb_front_t      *front;
    ngx_http_tsb_main_conf_t  *tmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    front = ctx->front;

    if (ngx_http_tsb_body(r, &body) != NGX_OK) {
        rc = ngx_http_tsb_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                   "request.too_large",
                   "the request body is larger than tsb_max_body_size");
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (body.len == 0) {
        ngx_http_finalize_request(r,
            ngx_http_tsb_send_error(r, NGX_HTTP_BAD_REQUEST, "request.empty",
                                    "the request body is empty"));
        return;
    }

    /*
     * What goes out is the client's bytes, once yajl has read them and
     * found no certificate key named in them.
     */

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tsb_module);

    if (tsb_front_key_check(body.data, body.len,
                            (const char *const *) tmcf->cert_keys->elts,
                            tmcf->cert_keys->nelts, &err)
        != 0)
    {
        ngx_http_finalize_request(r, ngx_http_tsb_send_tsb_error(r, &err));
        return;
    }

    rc = ngx_http_tsb_front_forward(r, NULL, &front->path, &body);

    /* NGX_DONE: the reference the body reader took is released in done() */
    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_finalize_request(r, ngx_http_tsb_json_rc(r, rc));
}


/*
 * method NULL: the client's.  The client's headers stay here: the TSB gets
 * the gateway's credentials and content type and nothing else.
 */

ngx_int_t
ngx_http_tsb_front_forward(ngx_http_request_t *r, const char *method,
    ngx_str_t *path, ngx_str_t *body)
{
    char                     *m;
    ngx_http_tsb_fetch_t     *f;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (method == NULL) {
        /* only a method tsb_allow_method() knows gets here */
        m = ngx_pnalloc(r->pool, r->method_name.len + 1);
        if (m == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(m, r->method_name.data, r->method_name.len);
        m[r->method_name.len] = '\0';
        method = m;
    }

    f = ngx_http_tsb_fetch_create(r, &tlcf->upstream, method, path, body);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->done = ngx_http_tsb_front_done;
    f->data = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* notice a client that goes away while the TSB works */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_tsb_front_done(ngx_http_tsb_fetch_t *f)
{
    ngx_http_request_t       *r;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_front_t     *front;
    ngx_http_tsb_loc_conf_t  *tlcf;

    r = f->request;
    ctx = f->data;
    front = ctx->front;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (front->route == NGX_HTTP_TSB_ROUTE_CANCEL
        && f->result == CURLE_OK && f->status >= 200 && f->status < 300)
    {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tsb: request %V cancelled through the gateway",
                      &front->id);

        /* the next status comes from the TSB, not from before the cancel */
        if (tlcf->cache_zone && front->id.len) {
            ngx_http_tsb_cache_expire(tlcf, &front->id);
        }
    }

    ngx_http_finalize_request(r,
        ngx_http_tsb_json_rc(r, ngx_http_tsb_upstream_pass(r, f)));
}


/* ------------------------------------------------------- configuration */

char *
ngx_http_tsb_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    clcf->handler = ngx_http_tsb_pass_handler;

    return NGX_CONF_OK;
}


/* tsb_pass_allow METHOD pattern ...; repeating it adds rules */

char *
ngx_http_tsb_pass_allow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    char               errbuf[256];
    unsigned           method;
    ngx_str_t         *value;
    ngx_uint_t         i;
    tsb_allow_rule_t  *rule;

    value = cf->args->elts;

    method = tsb_allow_method((char *) value[1].data, value[1].len);

    if (method == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown method \"%V\": GET, POST, PUT, PATCH or "
                           "DELETE", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (tlcf->pass_allow == NGX_CONF_UNSET_PTR) {
        tlcf->pass_allow = ngx_array_create(cf->pool, 8,
                                            sizeof(tsb_allow_rule_t));
        if (tlcf->pass_allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (tsb_allow_pattern_check((char *) value[i].data, value[i].len,
                                    errbuf, sizeof(errbuf))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid pattern \"%V\": %s", &value[i],
                               errbuf);
            return NGX_CONF_ERROR;
        }

        if (tsb_allow_rule_check(method, (char *) value[i].data,
                                 value[i].len, errbuf, sizeof(errbuf))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V %V\" cannot be allowed: %s; only "
                               "POST /v1/certificate/sign issues "
                               "certificates through tsb_pass, under the "
                               "location's policy", &value[1], &value[i],
                               errbuf);
            return NGX_CONF_ERROR;
        }

        rule = ngx_array_push(tlcf->pass_allow);
        if (rule == NULL) {
            return NGX_CONF_ERROR;
        }

        rule->methods = method;
        rule->pattern = (char *) value[i].data;
        rule->len = value[i].len;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_pass_merge(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tsb_loc_conf_t *prev = parent;
    ngx_http_tsb_loc_conf_t *conf = child;

    int                        known;
    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_ptr_value(conf->pass_allow, prev->pass_allow, NULL);

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != ngx_http_tsb_pass_handler) {
        return NGX_CONF_OK;
    }

    if (conf->pass_allow == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"tsb_pass\" in location \"%V\" has no "
                           "\"tsb_pass_allow\": every request is refused",
                           &clcf->name);
        return NGX_CONF_OK;
    }

    if (tsb_allow_find(conf->pass_allow->elts, conf->pass_allow->nelts,
                       TSB_METHOD_POST, (u_char *) "/v1/certificate/sign",
                       sizeof("/v1/certificate/sign") - 1, &known)
        >= 0
        && conf->sign_key_name.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_pass\" in location \"%V\" passes POST "
                           "/v1/certificate/sign, which goes through the "
                           "location's sign policy: it needs "
                           "\"tsb_sign_key_name\"", &clcf->name);
        return NGX_CONF_ERROR;
    }

    /* bodies are read from memory only, never from a temporary file */
    if (clcf->client_body_buffer_size < conf->max_body_size) {
        clcf->client_body_buffer_size = conf->max_body_size;
    }

    return NGX_CONF_OK;
}


/* ------------------------------------------- signed sign requests */

ngx_int_t
ngx_http_tsb_front_sign_body(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *up, tsb_error_t *err)
{
    const char      *field;
    ngx_uint_t       sent_password;
    tsb_sign_req_t   sent;

    if (!tsb_sign_req_signed(&ctx->req)) {
        return NGX_OK;
    }

    /*
     * The TSB checks requestSignature over the request text the client
     * signed: re-encoding the CSR or filling in a default would break it
     * (or, worse, make the TSB refuse a request the gateway accepted).  So
     * either the request goes out byte for byte, or not at all.
     */

    ngx_memzero(&sent, sizeof(tsb_sign_req_t));
    sent.certificate_authority = -1;
    sent.validity = -1;

    if (tsb_sign_req_parse(body->data, body->len, &sent, err) != 0) {
        tsb_sign_req_free(&sent);
        return NGX_ERROR;
    }

    field = tsb_sign_req_changed(&sent, &ctx->req);
    sent_password = sent.key_password_present && sent.key_password != NULL;
    tsb_sign_req_free(&sent);

    if (field && ngx_strcmp(field, "keyPassword") == 0
        && sent_password == 0)
    {
        /* the client cannot send a password only the gateway holds */
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "policy.signed_request",
                      "the request is signed by its client and the gateway "
                      "would have to add %s (tsb_key_password), which "
                      "breaks the signature: send it unsigned "
                      "(requestSignature null) to have the gateway add it",
                      field);
        return NGX_ERROR;
    }

    if (field) {
        tsb_error_set(err, NGX_HTTP_FORBIDDEN, "policy.signed_request",
                      "the request is signed by its client and the gateway "
                      "would have to change %s: send it with the "
                      "location's %s in it", field, field);
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb: a signed sign request goes to the TSB as sent");

    *up = *body;

    return NGX_OK;
}
