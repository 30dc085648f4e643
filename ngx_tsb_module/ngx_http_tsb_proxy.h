
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB front (tsb_pass): what ngx_http_tsb_proxy.c and
 * ngx_http_tsb_import.c share.
 */


#ifndef _NGX_HTTP_TSB_PROXY_H_INCLUDED_
#define _NGX_HTTP_TSB_PROXY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "tsb_allow.h"


/* the engine's router decides (tsb_allow_route()) */
#define NGX_HTTP_TSB_ROUTE_PASS     TSB_ROUTE_PASS
#define NGX_HTTP_TSB_ROUTE_SIGN     TSB_ROUTE_SIGN
#define NGX_HTTP_TSB_ROUTE_STATUS   TSB_ROUTE_STATUS
#define NGX_HTTP_TSB_ROUTE_CANCEL   TSB_ROUTE_CANCEL
#define NGX_HTTP_TSB_ROUTE_IMPORT   TSB_ROUTE_IMPORT


/* per request, in ngx_http_tsb_ctx_t.front */
typedef struct {
    ngx_uint_t                route;
    ngx_str_t                 path;        /* normalised, with ?query */
    ngx_str_t                 npath;       /* normalised, the one judged */
    ngx_str_t                 id;          /* ROUTE_CANCEL */
} ngx_http_tsb_front_t;


/*
 * Reads a JSON request body of at most tsb_max_body_size into memory and
 * calls post_handler; returns what a content handler returns.
 */
ngx_int_t ngx_http_tsb_front_read_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post_handler);

/* the body read above, in one piece (NGX_ERROR: too large, or on disk) */

/* starts the transfer and answers with ngx_http_tsb_upstream_pass() */
ngx_int_t ngx_http_tsb_front_forward(ngx_http_request_t *r,
    const char *method, ngx_str_t *path, ngx_str_t *body);

/* ngx_http_tsb_import.c: POST /v1/certificate/import/plain */
ngx_int_t ngx_http_tsb_import_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TSB_PROXY_H_INCLUDED_ */
