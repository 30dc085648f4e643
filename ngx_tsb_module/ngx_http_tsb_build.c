
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Does this build of the module fit the nginx that loads it?
 *
 * --with-compat lets a module built with fewer features load into an nginx
 * with more, but the features the module compiles in follow its own
 * configure arguments: without NGX_HTTP_SSL $tsb_ssl_client_cn is always
 * empty (identity binding refuses everyone), without NGX_THREADS tsb_store
 * does its file I/O on the event loop.  Rather than start degraded, the
 * configuration is refused when the loading nginx has a feature this build
 * lacks; the nginx's modules list (static and loaded) tells which it has.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


#if !(NGX_HTTP_SSL) || !(NGX_THREADS)

static ngx_uint_t
ngx_http_tsb_build_has(ngx_conf_t *cf, const char *name)
{
    ngx_uint_t  i;

    for (i = 0; cf->cycle->modules[i]; i++) {
        if (ngx_strcmp(cf->cycle->modules[i]->name, name) == 0) {
            return 1;
        }
    }

    return 0;
}

#endif


/* config time: the http block's preconfiguration, every module is loaded */

ngx_int_t
ngx_http_tsb_build_check(ngx_conf_t *cf)
{
    ngx_int_t  rc;

    rc = NGX_OK;

#if !(NGX_HTTP_SSL)
    if (ngx_http_tsb_build_has(cf, "ngx_http_ssl_module")) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
            "ngx_http_tsb_module was built without SSL (NGX_HTTP_SSL) but "
            "this nginx has ngx_http_ssl_module: $tsb_ssl_client_cn would "
            "always be empty; rebuild the module with this nginx's "
            "configure arguments: make NGINX_SRC=<nginx %s source> "
            "NGINX_BIN=<this nginx> (README.md, \"Building for another "
            "nginx\")", NGINX_VERSION);
        rc = NGX_ERROR;
    }
#endif

#if !(NGX_THREADS)
    if (ngx_http_tsb_build_has(cf, "ngx_thread_pool_module")) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
            "ngx_http_tsb_module was built without threads (NGX_THREADS) "
            "but this nginx has thread pools: tsb_store would do its file "
            "I/O on the event loop; rebuild the module with this nginx's "
            "configure arguments: make NGINX_SRC=<nginx %s source> "
            "NGINX_BIN=<this nginx> (README.md, \"Building for another "
            "nginx\")", NGINX_VERSION);
        rc = NGX_ERROR;
    }
#endif

    return rc;
}
