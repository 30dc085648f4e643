
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The request status cache: a shared memory zone across workers (slab,
 * rbtree by request id, LRU queue), and per worker the waiters that hold a
 * request until the TSB has answered, so that many clients polling one id
 * cost one upstream GET.
 */


#ifndef _NGX_HTTP_TSB_CACHE_H_INCLUDED_
#define _NGX_HTTP_TSB_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


#define NGX_HTTP_TSB_CACHE_NONE      0     /* no cache in this location */
#define NGX_HTTP_TSB_CACHE_HIT       1
#define NGX_HTTP_TSB_CACHE_MISS      2
#define NGX_HTTP_TSB_CACHE_STALE     3
#define NGX_HTTP_TSB_CACHE_UPDATING  4


/* a request's view of one entry: copies in some pool, never shm pointers */
typedef struct {
    ngx_str_t          id;
    ngx_uint_t         status;          /* TSB_STATUS_* */
    ngx_str_t          status_json;     /* the TSB shape, "result": null */
    size_t             lists_pos;       /* its approver lists, when */
    size_t             lists_len;       /* known (0: not known) */
    ngx_str_t          der;             /* the certificate, when EXECUTED */
    ngx_str_t          expect;          /* what the gateway accepted */
    ngx_str_t          serial;          /* upper-case hex */
    ngx_str_t          filename;        /* a safe base name for downloads */
    ngx_str_t          etag;            /* quoted */
    ngx_str_t          detail;          /* why a mismatch is not served */
    time_t             not_after;
    time_t             last_modified;
    uint64_t           fetched;         /* ms since the epoch */
    unsigned           mismatch:1;      /* issued.mismatch: never served */
} ngx_http_tsb_entry_t;


/*
 * Sends the answer for r; entry is NULL when err says why there is none.
 * Returns what the handler would return (the caller finalizes).
 */
typedef ngx_int_t (*ngx_http_tsb_serve_pt)(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *entry, ngx_uint_t cache_status, tsb_error_t *err);


char *ngx_http_tsb_cache_check_issuers(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *tlcf, ngx_str_t *location);
char *ngx_http_tsb_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_tsb_cache_valid(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Answers r for request id from the cache, or makes it wait (up to wait ms
 * for a terminal status when wait > 0) for one refresh shared by every
 * waiter of that id in this worker.  Returns NGX_DONE when r waits.
 */
ngx_int_t ngx_http_tsb_cache_handle(ngx_http_request_t *r, ngx_str_t *id,
    ngx_msec_t wait, ngx_http_tsb_serve_pt serve);

/*
 * The same for a status document request with If-None-Match (inm, the
 * header's value): with wait > 0 it is answered as soon as the document
 * is another than the one inm names, not only at a terminal status.
 */
ngx_int_t ngx_http_tsb_cache_watch(ngx_http_request_t *r, ngx_str_t *id,
    ngx_msec_t wait, ngx_str_t *inm, ngx_http_tsb_serve_pt serve);

/* after a sign request: the entry starts PENDING with what was accepted */
ngx_int_t ngx_http_tsb_cache_remember(ngx_http_request_t *r, ngx_str_t *id,
    u_char *expect, size_t expect_len);

/*
 * Before a sign is forwarded: room in the zone for what is accepted, or
 * NGX_DECLINED (the sign is refused, evidence is never evicted instead).
 * *reserved is given back with unreserve() once the TSB has answered.
 */
ngx_int_t ngx_http_tsb_cache_reserve(ngx_http_tsb_loc_conf_t *tlcf,
    size_t expect_len, size_t *reserved, ngx_log_t *log);
void ngx_http_tsb_cache_unreserve(ngx_http_tsb_loc_conf_t *tlcf,
    size_t reserved);

/* after a cancel (tsb_pass): the entry is no longer fresh, nor stale-usable */
void ngx_http_tsb_cache_expire(ngx_http_tsb_loc_conf_t *tlcf, ngx_str_t *id);

/*
 * Turns a finished GET /v1/request/{id} into an entry (in pool), checking
 * the certificate when EXECUTED; returns NGX_ERROR with err set otherwise.
 */
ngx_int_t ngx_http_tsb_entry_from_upstream(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_tsb_fetch_t *f, ngx_str_t *id, ngx_str_t *expect,
    ngx_http_tsb_loc_conf_t *tlcf, ngx_http_tsb_entry_t *e,
    tsb_error_t *err);

/* the status or certificate answer for an entry (ngx_http_tsb_request.c) */
ngx_int_t ngx_http_tsb_serve(ngx_http_request_t *r, ngx_http_tsb_entry_t *e,
    ngx_uint_t cache_status, tsb_error_t *err);

/* ?wait=<seconds> capped by tsb_wait_max, in ms; 0 without a cache */
ngx_msec_t ngx_http_tsb_wait_arg(ngx_http_request_t *r);

/*
 * The worker was told to exit: every waiter that has an answer gets it at
 * once, and no waiter waits for a next refresh.
 */
void ngx_http_tsb_cache_exiting(void);

uint64_t ngx_http_tsb_now_ms(void);
const char *ngx_http_tsb_cache_status_name(ngx_uint_t cache_status);


#endif /* _NGX_HTTP_TSB_CACHE_H_INCLUDED_ */
