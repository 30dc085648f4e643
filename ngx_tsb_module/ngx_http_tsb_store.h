
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The on-disk store of issued certificates (tsb_store).
 */


#ifndef _NGX_HTTP_TSB_STORE_H_INCLUDED_
#define _NGX_HTTP_TSB_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_cache.h"


struct ngx_http_tsb_store_s {
    ngx_str_t                      path;
#if (NGX_THREADS)
    ngx_thread_pool_t             *thread_pool;
#endif
};


/* e is NULL when the store has no such certificate; valid in the call */
typedef void (*ngx_http_tsb_store_loaded_pt)(void *ctx,
    ngx_http_tsb_entry_t *e);


char *ngx_http_tsb_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* writes an EXECUTED entry in the background; failures are logged */
void ngx_http_tsb_store_save(ngx_http_tsb_store_t *store,
    ngx_http_tsb_entry_t *e, ngx_log_t *log);

/* reads one in the background; loaded() runs from an event later */
ngx_int_t ngx_http_tsb_store_load(ngx_http_tsb_store_t *store,
    ngx_str_t *id, ngx_log_t *log, ngx_http_tsb_store_loaded_pt loaded,
    void *ctx);


#endif /* _NGX_HTTP_TSB_STORE_H_INCLUDED_ */
