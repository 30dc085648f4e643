
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Counters shared by all workers (one small shared memory zone), the
 * tsb_metrics handler that prints them in Prometheus text format, and the
 * $tsb_* variables for access logs.
 */


#ifndef _NGX_HTTP_TSB_METRICS_H_INCLUDED_
#define _NGX_HTTP_TSB_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


/* which handler a request went to (ngx_http_tsb_ctx_t.handler) */
#define NGX_HTTP_TSB_H_SIGN         1
#define NGX_HTTP_TSB_H_STATUS       2
#define NGX_HTTP_TSB_H_CERTIFICATE  3
#define NGX_HTTP_TSB_H_PASS         4
#define NGX_HTTP_TSB_H_OTHER        5

/* ACME events counted (ngx_http_tsb_metrics_acme) */
#define NGX_HTTP_TSB_ACME_ACCOUNT          0
#define NGX_HTTP_TSB_ACME_ORDER            1
#define NGX_HTTP_TSB_ACME_FINALIZE_OK      2
#define NGX_HTTP_TSB_ACME_FINALIZE_REFUSED 3
#define NGX_HTTP_TSB_ACME_ORDER_VALID      4
#define NGX_HTTP_TSB_ACME_ORDER_INVALID    5
#define NGX_HTTP_TSB_ACME_CERTIFICATE      6
#define NGX_HTTP_TSB_ACME_BAD_NONCE        7
#define NGX_HTTP_TSB_ACME_EVENTS           8


ngx_int_t ngx_http_tsb_metrics_preconfiguration(ngx_conf_t *cf);
ngx_int_t ngx_http_tsb_metrics_postconfiguration(ngx_conf_t *cf);
ngx_int_t ngx_http_tsb_metrics_init_process(ngx_cycle_t *cycle);
char *ngx_http_tsb_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

void ngx_http_tsb_metrics_refusal(const char *reason);
void ngx_http_tsb_metrics_upstream(ngx_http_tsb_fetch_t *f);
void ngx_http_tsb_metrics_cache(ngx_uint_t cache_status);
void ngx_http_tsb_metrics_eviction(void);
void ngx_http_tsb_metrics_waiters(ngx_int_t delta);
void ngx_http_tsb_metrics_acme(ngx_uint_t event);


#endif /* _NGX_HTTP_TSB_METRICS_H_INCLUDED_ */
