
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The upstream client: libcurl's multi_socket API driven by nginx's own
 * events and timers, one multi handle per worker.  A fetch belongs to one
 * request; when the request goes away first, its cleanup removes the
 * transfer, so no callback ever reaches a freed request.
 */


#ifndef _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>


typedef struct ngx_http_tsb_fetch_s  ngx_http_tsb_fetch_t;

typedef void (*ngx_http_tsb_fetch_done_pt)(ngx_http_tsb_fetch_t *f);


typedef struct {
    ngx_str_t                   url;             /* base, NUL-terminated,
                                                    no trailing slash */
    ngx_str_t                   api_key;
    ngx_str_t                   bearer;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;
    size_t                      max_response;
} ngx_http_tsb_upstream_conf_t;


struct ngx_http_tsb_fetch_s {
    ngx_http_request_t         *request;         /* NULL once it has gone */
    ngx_log_t                  *log;
    ngx_http_tsb_fetch_done_pt  done;
    void                       *data;

    CURL                       *easy;
    struct curl_slist          *headers;
    ngx_queue_t                 queue;           /* the worker's transfers */

    ngx_str_t                   method;
    ngx_str_t                   url;

    u_char                     *body;            /* response, malloc() */
    size_t                      body_len;
    size_t                      body_cap;
    size_t                      max_response;

    CURLcode                    result;
    long                        status;          /* HTTP status, 0 if none */
    ngx_msec_t                  elapsed;
    char                        errbuf[CURL_ERROR_SIZE];

    unsigned                    bound:1;         /* to a request */
    unsigned                    queued:1;
    unsigned                    too_large:1;
    unsigned                    finished:1;
};


ngx_int_t ngx_http_tsb_upstream_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_tsb_upstream_init_process(ngx_cycle_t *cycle);
void ngx_http_tsb_upstream_exit_process(ngx_cycle_t *cycle);

/*
 * Creates a transfer of "method base-url path" for request r with the
 * gateway's credentials; body (may be NULL) must live in r's pool.
 */
ngx_http_tsb_fetch_t *ngx_http_tsb_fetch_create(ngx_http_request_t *r,
    ngx_http_tsb_upstream_conf_t *ucf, const char *method, ngx_str_t *path,
    ngx_str_t *body);

/* the same, owned by a pool rather than a request (worker refreshes) */
ngx_http_tsb_fetch_t *ngx_http_tsb_fetch_new(ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_tsb_upstream_conf_t *ucf, const char *method,
    ngx_str_t *path, ngx_str_t *body);

/* adds it to the worker's multi handle; done() runs when it finishes */
ngx_int_t ngx_http_tsb_fetch_start(ngx_http_tsb_fetch_t *f);


#endif /* _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_ */
