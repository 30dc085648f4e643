
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The on-disk store of issued certificates, and of what was accepted for
 * the requests not issued yet (tsb_store).
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


/*
 * e is NULL when the store has no such certificate; then accepted is what
 * the gateway accepted for the request, if the store has that, else NULL.
 * Both are valid in the call only.
 */
typedef void (*ngx_http_tsb_store_loaded_pt)(void *ctx,
    ngx_http_tsb_entry_t *e, ngx_str_t *accepted);


char *ngx_http_tsb_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * In the background, failures logged: writes an EXECUTED entry; forgets
 * what was accepted for a request that ended otherwise.
 */
void ngx_http_tsb_store_save(ngx_http_tsb_store_t *store,
    ngx_http_tsb_entry_t *e, ngx_log_t *log);

/* writes what the gateway accepted for a sign request, in the background */
void ngx_http_tsb_store_remember(ngx_http_tsb_store_t *store, ngx_str_t *id,
    u_char *expect, size_t len, ngx_log_t *log);

/*
 * Reads one in the background, and with accepted set, what was accepted
 * for it if it has not been issued; loaded() runs from an event later.
 */
ngx_int_t ngx_http_tsb_store_load(ngx_http_tsb_store_t *store,
    ngx_str_t *id, ngx_uint_t accepted, ngx_log_t *log,
    ngx_http_tsb_store_loaded_pt loaded, void *ctx);


#endif /* _NGX_HTTP_TSB_STORE_H_INCLUDED_ */
