
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libcurl's multi_socket API inside nginx's event loop, and the TSB
 * cluster behind it.
 *
 * One CURLM per worker.  curl tells us which sockets to watch through the
 * socket callback and when to call it back through the timer callback; we
 * wrap each socket in an nginx connection (never from a request pool: curl's
 * connection cache outlives requests) and register it level-triggered,
 * because nginx's epoll is edge-triggered by default and curl does not
 * support edge-triggered sockets.  Finished transfers are collected with
 * curl_multi_info_read() after curl_multi_socket_action() has returned, so
 * nothing calls back into curl from inside a curl callback.
 *
 * Connections to the TSB are reused from the multi handle's cache; TLS
 * sessions are shared by the worker's transfers through a share handle, and
 * HTTP/2 is used when the TSB offers it in ALPN.  Everything a transfer
 * needs from files (CA bundle, client certificate and key, pins, tokens) is
 * read at configuration time and handed to curl as memory blobs: a worker
 * never reads a file when it opens a connection.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_upstream.h"
#include "ngx_http_tsb_metrics.h"
#include "ngx_http_tsb_cache.h"
#include "tsb_tls.h"


#define NGX_HTTP_TSB_DEFAULT_MAX_RESPONSE  (1024 * 1024)

/* idle connections to the TSB a worker keeps for reuse */
#define NGX_HTTP_TSB_KEEPALIVE             256

/* easy handles a worker keeps for the next transfers */
#define NGX_HTTP_TSB_IDLE_HANDLES          64

/* a failed node is skipped for fail_timeout, doubled up to this many times */
#define NGX_HTTP_TSB_BACKOFF_DOUBLINGS     3

/*
 * nginx's own deadline of an attempt: curl's CURLOPT_TIMEOUT_MS normally
 * ends it first, with curl's own message; this one ends a transfer whose
 * events were lost.
 */
#define NGX_HTTP_TSB_DEADLINE_SLACK        1000


/*
 * What the worker knows of a socket, by descriptor.  A connection socket
 * curl opened (an "owned" one, closed only through our close callback)
 * keeps its nginx wrapper and read registration while it waits in curl's
 * connection cache ("parked"): a kept-alive connection then costs no
 * epoll_ctl() and no wrapper per transfer.  Any other socket curl shows
 * us (a resolver's wakeup pipe, closed by curl itself) is unwrapped as
 * soon as curl stops watching it.
 */
typedef struct {
    ngx_connection_t           *conn;            /* the wrapper, or NULL */
    unsigned                    owned:1;
    unsigned                    parked:1;
} ngx_http_tsb_sock_t;


static int ngx_http_tsb_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_http_tsb_curl_sockopt(void *clientp, curl_socket_t s,
    curlsocktype purpose);
static ngx_http_tsb_sock_t *ngx_http_tsb_sock(curl_socket_t s,
    ngx_uint_t create);
static int ngx_http_tsb_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static int ngx_http_tsb_curl_close_socket(void *clientp, curl_socket_t s);
static size_t ngx_http_tsb_curl_header(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static size_t ngx_http_tsb_curl_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t ngx_http_tsb_curl_read(char *ptr, size_t size, size_t nmemb,
    void *userdata);
#if (LIBCURL_VERSION_NUM >= 0x075000)
static int ngx_http_tsb_curl_prereq(void *clientp, char *primary_ip,
    char *local_ip, int primary_port, int local_port);
#endif
static int ngx_http_tsb_curl_seek(void *userdata, curl_off_t offset,
    int origin);
static void ngx_http_tsb_socket_event(ngx_event_t *ev);
static void ngx_http_tsb_timer_event(ngx_event_t *ev);
static void ngx_http_tsb_now_event(ngx_event_t *ev);
static void ngx_http_tsb_socket_action(curl_socket_t s, int mask);
static CURLM *ngx_http_tsb_multi_create(ngx_log_t *log);
static void ngx_http_tsb_multi_rebuild(ngx_log_t *log);
static void ngx_http_tsb_lose(CURL *easy, curl_socket_t s,
    const char *why);
static void ngx_http_tsb_lost_event(ngx_event_t *ev);
static void ngx_http_tsb_fail_lost(void);
static void ngx_http_tsb_deadline_handler(ngx_event_t *ev);
static void ngx_http_tsb_fetch_fail(ngx_http_tsb_fetch_t *f,
    CURLcode result, const char *why);
static void ngx_http_tsb_exit_notice(ngx_event_t *ev);
static void ngx_http_tsb_collect_done(void);
static ngx_int_t ngx_http_tsb_fetch_attempt(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_pick_node(ngx_http_tsb_fetch_t *f);
static ngx_uint_t ngx_http_tsb_not_sent(ngx_http_tsb_fetch_t *f);
static ngx_uint_t ngx_http_tsb_node_failed(ngx_http_tsb_fetch_t *f,
    ngx_uint_t not_sent);
static void ngx_http_tsb_node_update(ngx_http_tsb_fetch_t *f,
    ngx_uint_t failed);
static ngx_uint_t ngx_http_tsb_retry(ngx_http_tsb_fetch_t *f);
static const char *ngx_http_tsb_attempt_error(ngx_http_tsb_fetch_t *f,
    u_char *buf, size_t len);
static void ngx_http_tsb_fetch_finish(ngx_http_tsb_fetch_t *f);
static void ngx_http_tsb_busy_handler(ngx_event_t *ev);
static void ngx_http_tsb_unwrap_socket(ngx_connection_t *c);
static void ngx_http_tsb_fetch_cleanup(void *data);
static void ngx_http_tsb_fetch_release(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_easy_tls(ngx_http_tsb_fetch_t *f, CURL *easy);
static ngx_int_t ngx_http_tsb_header_secret(ngx_http_tsb_fetch_t *f,
    const char *name, size_t name_len, ngx_str_t *value);
static char *ngx_http_tsb_tls_load(ngx_conf_t *cf,
    ngx_http_tsb_upstream_conf_t *conf);
static void ngx_http_tsb_tls_cleanup(void *data);
static void ngx_http_tsb_secret_cleanup(void *data);
static ngx_int_t ngx_http_tsb_conf_path(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *full);


/* per worker: these live in the process, not in shared memory */
static CURLM             *ngx_http_tsb_multi;
static CURLSH            *ngx_http_tsb_share;
static ngx_event_t        ngx_http_tsb_timer;
static ngx_event_t        ngx_http_tsb_now;     /* a timeout of 0 */
static ngx_uint_t         ngx_http_tsb_in_now;
static CURL              *ngx_http_tsb_idle[NGX_HTTP_TSB_IDLE_HANDLES];
static ngx_uint_t         ngx_http_tsb_nidle;
static ngx_connection_t   ngx_http_tsb_timer_conn;
static ngx_queue_t        ngx_http_tsb_transfers;
static ngx_uint_t         ngx_http_tsb_ntransfers;
static ngx_uint_t         ngx_http_tsb_nsockets;
static ngx_uint_t         ngx_http_tsb_curl_initialized;
static ngx_str_t          ngx_http_tsb_unknown = ngx_string("(unknown)");
static ngx_http_tsb_sock_t  *ngx_http_tsb_socks;
static ngx_uint_t         ngx_http_tsb_nsocks;

/* transfers whose socket nginx could not watch: failed one by one */
static ngx_queue_t        ngx_http_tsb_lost;
static ngx_event_t        ngx_http_tsb_lost_ev;

/* told when the worker is to exit, and at worker_shutdown_timeout */
static ngx_connection_t  *ngx_http_tsb_exit_conn;
static ngx_uint_t         ngx_http_tsb_exit_stage;


/* ------------------------------------------------------- process hooks */

ngx_int_t
ngx_http_tsb_upstream_init_module(ngx_cycle_t *cycle)
{
    curl_version_info_data  *info;

    if (!ngx_http_tsb_curl_initialized) {
        /* config time: the master, before any worker exists */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "tsb: curl_global_init() failed");
            return NGX_ERROR;
        }

        ngx_http_tsb_curl_initialized = 1;
    }

    info = curl_version_info(CURLVERSION_NOW);

    /*
     * Without an asynchronous resolver curl resolves host names
     * synchronously, inside curl_multi_socket_action(): a worker would
     * block on DNS.  Refuse to start rather than stall under load.
     */
    if (!(info->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tsb: libcurl %s has no asynchronous DNS resolver",
                      info->version);
        return NGX_ERROR;
    }

    /* the TLS material is handed over as memory blobs (curl >= 7.77) */
    if (info->version_num < 0x074d00) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tsb: libcurl %s is too old, 7.77.0 or later is needed",
                      info->version);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_upstream_init_process(ngx_cycle_t *cycle)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    ngx_queue_init(&ngx_http_tsb_transfers);
    ngx_http_tsb_ntransfers = 0;
    ngx_http_tsb_nsockets = 0;
    ngx_http_tsb_socks = NULL;
    ngx_http_tsb_nsocks = 0;
    ngx_queue_init(&ngx_http_tsb_lost);

    ngx_http_tsb_multi = ngx_http_tsb_multi_create(cycle->log);
    if (ngx_http_tsb_multi == NULL) {
        return NGX_ERROR;
    }

    /*
     * TLS session tickets shared by the worker's transfers: a connection
     * opened after a failover or an idle close resumes its session.  One
     * worker is one thread, so the share needs no lock callbacks.
     */
    ngx_http_tsb_share = curl_share_init();
    if (ngx_http_tsb_share) {
        curl_share_setopt(ngx_http_tsb_share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION);
    }

    /* debug logging reads the timer's data as a connection */
    ngx_memzero(&ngx_http_tsb_timer_conn, sizeof(ngx_connection_t));
    ngx_http_tsb_timer_conn.fd = (ngx_socket_t) -1;

    ngx_memzero(&ngx_http_tsb_timer, sizeof(ngx_event_t));
    ngx_http_tsb_timer.handler = ngx_http_tsb_timer_event;
    ngx_http_tsb_timer.data = &ngx_http_tsb_timer_conn;
    ngx_http_tsb_timer.log = cycle->log;
    ngx_http_tsb_timer.cancelable = 1;

    ngx_memzero(&ngx_http_tsb_now, sizeof(ngx_event_t));
    ngx_http_tsb_now.handler = ngx_http_tsb_now_event;
    ngx_http_tsb_now.data = &ngx_http_tsb_timer_conn;
    ngx_http_tsb_now.log = cycle->log;

    ngx_memzero(&ngx_http_tsb_lost_ev, sizeof(ngx_event_t));
    ngx_http_tsb_lost_ev.handler = ngx_http_tsb_lost_event;
    ngx_http_tsb_lost_ev.data = &ngx_http_tsb_timer_conn;
    ngx_http_tsb_lost_ev.log = cycle->log;

    /*
     * nginx tells no module that a worker is to exit; it does call the
     * read handler of every "idle" connection then (to close keep-alive
     * ones), and of every connection at worker_shutdown_timeout.  An idle
     * connection of our own, on a socket that is never polled, is that
     * notice: ?wait= clients are answered at once instead of holding the
     * old worker for their whole wait.
     */
    ngx_http_tsb_exit_stage = 0;
    ngx_http_tsb_exit_conn = NULL;

    fd = ngx_socket(AF_UNIX, SOCK_DGRAM, 0);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_socket_errno,
                      "tsb: no exit notice socket, waiters stay until "
                      "their time is up at reload");

    } else {
        c = ngx_get_connection(fd, cycle->log);

        if (c == NULL) {
            (void) ngx_close_socket(fd);

        } else {
            c->idle = 1;
            c->read->handler = ngx_http_tsb_exit_notice;
            c->write->handler = ngx_http_tsb_exit_notice;
            c->read->log = cycle->log;
            c->write->log = cycle->log;
            ngx_http_tsb_exit_conn = c;
        }
    }

    ngx_http_tsb_nidle = 0;

    return NGX_OK;
}


void
ngx_http_tsb_upstream_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t           *q;
    ngx_http_tsb_fetch_t  *f;

    if (ngx_http_tsb_exit_conn) {
        /* before nginx looks for sockets left open */
        ngx_close_connection(ngx_http_tsb_exit_conn);
        ngx_http_tsb_exit_conn = NULL;
    }

    if (ngx_http_tsb_multi == NULL) {
        return;
    }

    /*
     * Runs before nginx looks for sockets left open: abandon what is still
     * in flight, then let curl close its cached connections (the socket
     * callback unwraps them on the way).
     */

    while (!ngx_queue_empty(&ngx_http_tsb_transfers)) {
        q = ngx_queue_head(&ngx_http_tsb_transfers);
        f = ngx_queue_data(q, ngx_http_tsb_fetch_t, queue);

        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "tsb: abandoning %V %V at worker exit",
                      &f->method, &f->url);

        ngx_http_tsb_fetch_release(f);
        f->request = NULL;
    }

    if (ngx_http_tsb_timer.timer_set) {
        ngx_del_timer(&ngx_http_tsb_timer);
    }

    if (ngx_http_tsb_now.posted) {
        ngx_delete_posted_event(&ngx_http_tsb_now);
    }

    if (ngx_http_tsb_lost_ev.posted) {
        ngx_delete_posted_event(&ngx_http_tsb_lost_ev);
    }

    while (ngx_http_tsb_nidle) {
        curl_easy_cleanup(ngx_http_tsb_idle[--ngx_http_tsb_nidle]);
    }

    curl_multi_cleanup(ngx_http_tsb_multi);
    ngx_http_tsb_multi = NULL;

    /* the cleanup closed the cached connections through our callback */
    if (ngx_http_tsb_socks) {
        ngx_free(ngx_http_tsb_socks);
        ngx_http_tsb_socks = NULL;
        ngx_http_tsb_nsocks = 0;
    }

    /* after the multi handle: its cached connections used the share */
    if (ngx_http_tsb_share) {
        curl_share_cleanup(ngx_http_tsb_share);
        ngx_http_tsb_share = NULL;
    }
}


/* ------------------------------------------------------- configuration */

void
ngx_http_tsb_upstream_conf_init(ngx_http_tsb_upstream_conf_t *ucf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     ucf->url = { 0, NULL };
     *     ucf->nodes = NULL;
     *     ucf->api_key = { 0, NULL };
     *     ucf->bearer = { 0, NULL };
     *     ucf->ssl_* strings = { 0, NULL };
     *     ucf->tls = NULL;
     */

    ucf->connect_timeout = NGX_CONF_UNSET_MSEC;
    ucf->timeout = NGX_CONF_UNSET_MSEC;
    ucf->max_response = NGX_CONF_UNSET_SIZE;
    ucf->max_transfers = NGX_CONF_UNSET_UINT;
    ucf->fail_timeout = NGX_CONF_UNSET_MSEC;
    ucf->http2 = NGX_CONF_UNSET;
    ucf->ssl_verify = NGX_CONF_UNSET;
    ucf->ssl_protocols = 0;
}


char *
ngx_http_tsb_upstream_merge(ngx_conf_t *cf,
    ngx_http_tsb_upstream_conf_t *prev, ngx_http_tsb_upstream_conf_t *conf)
{
    ngx_uint_t  tls_here;

    /* a TLS directive at this level means material of its own */
    tls_here = conf->ssl_trusted_certificate.data
               || conf->ssl_certificate.data
               || conf->ssl_certificate_key.data
               || conf->ssl_password_file.data
               || conf->ssl_pinned_public_key.data;

    /*
     * The node array is inherited by pointer: every location of one
     * tsb_upstream shares the worker's view of which node is down.
     */
    if (conf->nodes == NULL) {
        conf->nodes = prev->nodes;
        conf->url = prev->url;
    }

    ngx_conf_merge_str_value(conf->api_key, prev->api_key, "");
    ngx_conf_merge_str_value(conf->bearer, prev->bearer, "");
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 30000);
    ngx_conf_merge_size_value(conf->max_response, prev->max_response,
                              NGX_HTTP_TSB_DEFAULT_MAX_RESPONSE);
    ngx_conf_merge_uint_value(conf->max_transfers, prev->max_transfers, 256);
    ngx_conf_merge_msec_value(conf->fail_timeout, prev->fail_timeout, 10000);
    ngx_conf_merge_value(conf->http2, prev->http2, 1);
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_bitmask_value(conf->ssl_protocols, prev->ssl_protocols,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_HTTP_TSB_TLSv1_2
                                  |NGX_HTTP_TSB_TLSv1_3));

    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_str_value(conf->ssl_certificate, prev->ssl_certificate,
                             "");
    ngx_conf_merge_str_value(conf->ssl_certificate_key,
                             prev->ssl_certificate_key, "");
    ngx_conf_merge_str_value(conf->ssl_password_file,
                             prev->ssl_password_file, "");
    ngx_conf_merge_str_value(conf->ssl_pinned_public_key,
                             prev->ssl_pinned_public_key, "");

    if (conf->max_response == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_max_response_size\" must not be 0");
        return NGX_CONF_ERROR;
    }

    if (conf->connect_timeout > conf->timeout) {
        conf->connect_timeout = conf->timeout;
    }

    if (conf->tls) {
        return NGX_CONF_OK;
    }

    if (!tls_here && prev->tls) {
        conf->tls = prev->tls;
        return NGX_CONF_OK;
    }

    if (ngx_http_tsb_tls_load(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the level above has the same settings: let the siblings share */
    if (!tls_here && prev->tls == NULL) {
        prev->tls = conf->tls;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tsb_conf_path(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *full)
{
    *full = *name;

    /* relative to the prefix, as nginx's own ssl_certificate */
    if (ngx_conf_full_name(cf->cycle, full, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_http_tsb_tls_load(ngx_conf_t *cf, ngx_http_tsb_upstream_conf_t *conf)
{
    size_t               n;
    ngx_str_t            ca, cert, key, pw;
    tsb_buf_t            buf, kbuf;
    tsb_error_t          err;
    ngx_pool_cleanup_t  *cln;
    ngx_http_tsb_tls_t  *tls;

    if (conf->ssl_certificate.len == 0 && conf->ssl_certificate_key.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_ssl_certificate_key\" is set but "
                           "\"tsb_ssl_certificate\" is not");
        return NGX_CONF_ERROR;
    }

    if (conf->ssl_certificate.len && conf->ssl_certificate_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"tsb_ssl_certificate_key\" for "
                           "\"tsb_ssl_certificate\" \"%V\"",
                           &conf->ssl_certificate);
        return NGX_CONF_ERROR;
    }

    if (conf->ssl_password_file.len && conf->ssl_certificate_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_ssl_password_file\" is set but "
                           "\"tsb_ssl_certificate_key\" is not");
        return NGX_CONF_ERROR;
    }

    if (conf->ssl_trusted_certificate.len == 0
        && conf->ssl_certificate.len == 0
        && conf->ssl_pinned_public_key.len == 0)
    {
        /* nothing of its own: curl's defaults (the system CA store) */
        return NGX_CONF_OK;
    }

    tls = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_tls_t));
    if (tls == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tsb_tls_cleanup;
    cln->data = tls;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (conf->ssl_trusted_certificate.len) {
        if (ngx_http_tsb_conf_path(cf, &conf->ssl_trusted_certificate, &ca)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (tsb_tls_load_ca_file((char *) ca.data, &buf, &n, &err) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tsb_ssl_trusted_certificate: %s", err.detail);
            return NGX_CONF_ERROR;
        }

        tls->ca.data = ngx_pnalloc(cf->pool, buf.len);
        if (tls->ca.data == NULL) {
            tsb_buf_free(&buf);
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(tls->ca.data, buf.data, buf.len);
        tls->ca.len = buf.len;
        tls->ca.flags = CURL_BLOB_NOCOPY;
        tsb_buf_free(&buf);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                       "tsb: %uz trusted certificates from \"%V\"", n, &ca);
    }

    if (conf->ssl_certificate.len) {
        if (ngx_http_tsb_conf_path(cf, &conf->ssl_certificate, &cert)
            != NGX_OK
            || ngx_http_tsb_conf_path(cf, &conf->ssl_certificate_key, &key)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        pw.len = 0;
        pw.data = NULL;

        if (conf->ssl_password_file.len
            && ngx_http_tsb_conf_path(cf, &conf->ssl_password_file, &pw)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (tsb_tls_load_client((char *) cert.data, (char *) key.data,
                                pw.len ? (char *) pw.data : NULL, &buf,
                                &kbuf, &err)
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tsb_ssl_certificate: %s", err.detail);
            return NGX_CONF_ERROR;
        }

        tls->cert.data = ngx_pnalloc(cf->pool, buf.len);
        tls->key.data = ngx_pnalloc(cf->pool, kbuf.len);

        if (tls->cert.data == NULL || tls->key.data == NULL) {
            tsb_buf_free(&buf);
            tsb_secure_zero(kbuf.data, kbuf.len);
            tsb_buf_free(&kbuf);
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(tls->cert.data, buf.data, buf.len);
        tls->cert.len = buf.len;
        tls->cert.flags = CURL_BLOB_NOCOPY;

        ngx_memcpy(tls->key.data, kbuf.data, kbuf.len);
        tls->key.len = kbuf.len;
        tls->key.flags = CURL_BLOB_NOCOPY;

        tsb_buf_free(&buf);
        tsb_secure_zero(kbuf.data, kbuf.len);
        tsb_buf_free(&kbuf);
    }

    if (conf->ssl_pinned_public_key.len) {
        ca = conf->ssl_pinned_public_key;

        if (!(ca.len > 8 && ngx_strncmp(ca.data, "sha256//", 8) == 0)
            && ngx_http_tsb_conf_path(cf, &conf->ssl_pinned_public_key, &ca)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (tsb_tls_pin((char *) ca.data, ca.len, &buf, &err) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tsb_ssl_pinned_public_key: %s", err.detail);
            return NGX_CONF_ERROR;
        }

        tls->pin.data = ngx_pnalloc(cf->pool, buf.len + 1);
        if (tls->pin.data == NULL) {
            tsb_buf_free(&buf);
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(tls->pin.data, buf.data, buf.len + 1);
        tls->pin.len = buf.len;
        tsb_buf_free(&buf);
    }

    conf->tls = tls;

    return NGX_CONF_OK;
}


static void
ngx_http_tsb_secret_cleanup(void *data)
{
    u_char  *p = data;

    ngx_explicit_memzero(p, ngx_strlen(p));
}


static void
ngx_http_tsb_tls_cleanup(void *data)
{
    ngx_http_tsb_tls_t  *tls = data;

    /* the old cycle's key goes away with it, wiped */
    if (tls->key.data) {
        ngx_explicit_memzero(tls->key.data, tls->key.len);
    }
}


/*
 * tsb_upstream URL ...: one or more base URLs of the TSB cluster, tried in
 * this order; repeating the directive adds nodes.
 */

char *
ngx_http_tsb_upstream_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_upstream_conf_t *ucf = (void *) ((char *) conf
                                                  + cmd->offset);

    u_char               *p, *host, *end;
    ngx_str_t            *value, url;
    ngx_uint_t            i, j;
    ngx_http_tsb_node_t  *node, *nodes;

    if (ucf->nodes == NULL) {
        ucf->nodes = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_tsb_node_t));
        if (ucf->nodes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        url = value[i];

        if (url.len > 7
            && ngx_strncasecmp(url.data, (u_char *) "http://", 7) == 0)
        {
            host = url.data + 7;

        } else if (url.len > 8
                   && ngx_strncasecmp(url.data, (u_char *) "https://", 8)
                      == 0)
        {
            host = url.data + 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid TSB URL \"%V\": it must start with "
                               "\"http://\" or \"https://\"", &url);
            return NGX_CONF_ERROR;
        }

        end = url.data + url.len;

        for (p = url.data; p < end; p++) {
            if (*p <= 0x20 || *p >= 0x7f || *p == '?' || *p == '#') {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid TSB URL \"%V\": no spaces, "
                                   "query or fragment", &url);
                return NGX_CONF_ERROR;
            }
        }

        /* user:password@ would end up in every log line naming the URL */
        for (p = host; p < end && *p != '/'; p++) {
            if (*p == '@') {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid TSB URL: no credentials in the "
                                   "URL, use tsb_api_key, tsb_bearer_token "
                                   "or tsb_ssl_certificate");
                return NGX_CONF_ERROR;
            }
        }

        if (p == host) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid TSB URL \"%V\": no host", &url);
            return NGX_CONF_ERROR;
        }

        /* paths are appended as "/v1/...": keep the base without a slash */
        while (url.len && url.data[url.len - 1] == '/') {
            url.len--;
        }

        url.data[url.len] = '\0';

        nodes = ucf->nodes->elts;

        for (j = 0; j < ucf->nodes->nelts; j++) {
            if (nodes[j].url.len == url.len
                && ngx_strncasecmp(nodes[j].url.data, url.data, url.len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "TSB URL \"%V\" is listed twice", &url);
                return NGX_CONF_ERROR;
            }
        }

        if (ucf->nodes->nelts == NGX_HTTP_TSB_MAX_NODES) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "more than %d TSB URLs",
                               NGX_HTTP_TSB_MAX_NODES);
            return NGX_CONF_ERROR;
        }

        node = ngx_array_push(ucf->nodes);
        if (node == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(node, sizeof(ngx_http_tsb_node_t));
        node->url = url;
    }

    nodes = ucf->nodes->elts;
    ucf->url = nodes[0].url;

    return NGX_CONF_OK;
}


/* tsb_api_key, tsb_bearer_token: a credential that goes into a header */

char *
ngx_http_tsb_secret_value(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t  *field, *value;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* a CR or LF would let the value add headers of its own */
    if (!tsb_tls_secret_valid(value[1].data, value[1].len)) {
        return "takes printable ASCII without spaces";
    }

    *field = value[1];

    return NGX_CONF_OK;
}


/*
 * tsb_api_key_file, tsb_bearer_token_file: the same, from the first line of
 * a file, read at configuration time and so again at every reload (a
 * rotated token is picked up by "nginx -s reload").
 */

char *
ngx_http_tsb_secret_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t           *field, *value, name;
    tsb_buf_t            secret;
    tsb_error_t          err;
    ngx_pool_cleanup_t  *cln;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_tls_load_secret((char *) name.data, &secret, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", err.detail);
        return NGX_CONF_ERROR;
    }

    field->len = secret.len;
    field->data = ngx_pnalloc(cf->pool, secret.len + 1);

    if (field->data == NULL) {
        tsb_secure_zero(secret.data, secret.len);
        tsb_buf_free(&secret);
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(field->data, secret.data, secret.len + 1);
    tsb_secure_zero(secret.data, secret.len);
    tsb_buf_free(&secret);

    /* wiped when the configuration that holds it goes */
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tsb_secret_cleanup;
    cln->data = field->data;

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_ssl_protocols(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, *mask;

    mask = (ngx_uint_t *) (p + cmd->offset);

    if (*mask) {
        return "is duplicate";
    }

    value = cf->args->elts;
    *mask = NGX_CONF_BITMASK_SET;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "TLSv1.2") == 0) {
            *mask |= NGX_HTTP_TSB_TLSv1_2;

        } else if (ngx_strcmp(value[i].data, "TLSv1.3") == 0) {
            *mask |= NGX_HTTP_TSB_TLSv1_3;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unsupported protocol \"%V\": the TSB is "
                               "reached with \"TLSv1.2\" or \"TLSv1.3\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_ssl_verify(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char        *rv;
    ngx_flag_t  *fp;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    fp = (ngx_flag_t *) ((char *) conf + cmd->offset);

    if (*fp == 0) {
        /* logged at every start and reload, with the file and line */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "tsb_ssl_verify is off: the TSB's certificate "
                           "and host name are not checked, anyone on the "
                           "path can pose as the HSM");
    }

    return NGX_CONF_OK;
}


/* ------------------------------------------------------------ transfers */

ngx_http_tsb_fetch_t *
ngx_http_tsb_fetch_create(ngx_http_request_t *r,
    ngx_http_tsb_upstream_conf_t *ucf, const char *method, ngx_str_t *path,
    ngx_str_t *body)
{
    ngx_http_cleanup_t    *hcln;
    ngx_http_tsb_fetch_t  *f;

    f = ngx_http_tsb_fetch_new(r->pool, r->connection->log, ucf, method,
                               path, body);
    if (f == NULL) {
        return NULL;
    }

    /*
     * The pool cleanup frees foreign objects on every path; this one runs
     * when the client goes away (ngx_http_terminate_request) and stops the
     * transfer before anything reaches a request that is gone.
     */

    hcln = ngx_http_cleanup_add(r, 0);
    if (hcln == NULL) {
        return NULL;
    }

    hcln->handler = ngx_http_tsb_fetch_cleanup;
    hcln->data = f;

    f->request = r;
    f->bound = 1;

    return f;
}


ngx_http_tsb_fetch_t *
ngx_http_tsb_fetch_new(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_tsb_upstream_conf_t *ucf, const char *method, ngx_str_t *path,
    ngx_str_t *body)
{
    CURL                  *easy;
    ngx_pool_cleanup_t    *cln;
    ngx_http_tsb_fetch_t  *f;

    f = ngx_pcalloc(pool, sizeof(ngx_http_tsb_fetch_t));
    if (f == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_tsb_fetch_cleanup;
    cln->data = f;

    f->log = log;
    f->pool = pool;
    f->conf = ucf;
    f->max_response = ucf->max_response;

    f->method.len = ngx_strlen(method);
    f->method.data = (u_char *) method;

    f->path.len = path->len;
    f->path.data = ngx_pnalloc(pool, path->len);
    if (f->path.data == NULL) {
        return NULL;
    }

    ngx_memcpy(f->path.data, path->data, path->len);

    /* until a node is picked, logs name the first one */
    f->url = ucf->url;

    f->busy_event.handler = ngx_http_tsb_busy_handler;
    f->busy_event.data = f;
    f->busy_event.log = log;

    /*
     * Not cancelable: a transfer in flight keeps a gracefully exiting
     * worker until it ends, and this bounds how long.  Debug logging reads
     * an event's data as a connection.
     */
    f->deadline.handler = ngx_http_tsb_deadline_handler;
    f->deadline.data = &ngx_http_tsb_timer_conn;
    f->deadline.log = log;

    /* a handle of a finished transfer, reset, saves its allocations */
    easy = ngx_http_tsb_nidle ? ngx_http_tsb_idle[--ngx_http_tsb_nidle]
                              : curl_easy_init();
    if (easy == NULL) {
        return NULL;
    }

    f->easy = easy;

    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, f);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_http_tsb_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, ngx_http_tsb_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     ngx_http_tsb_curl_close_socket);
    curl_easy_setopt(easy, CURLOPT_SOCKOPTFUNCTION,
                     ngx_http_tsb_curl_sockopt);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) ucf->connect_timeout);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) ucf->timeout);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);

    /* a Content-Length beyond the cap fails before the body is read */
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t) ucf->max_response);

    /*
     * Never through a proxy from the environment: the gateway's
     * credentials go to the TSB and nowhere else.  No cookie engine, no
     * .netrc: nothing is sent that is not set below.
     */
    curl_easy_setopt(easy, CURLOPT_PROXY, "");

    if (ngx_http_tsb_share) {
        curl_easy_setopt(easy, CURLOPT_SHARE, ngx_http_tsb_share);
    }

    if (ucf->http2) {
        /* h2 when the TSB offers it in ALPN; plain http stays HTTP/1.1 */
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                         (long) CURL_HTTP_VERSION_2TLS);

        /* CURLOPT_PIPEWAIT: per node, in ngx_http_tsb_fetch_attempt() */

    } else {
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                         (long) CURL_HTTP_VERSION_1_1);
    }

    if (ngx_http_tsb_easy_tls(f, easy) != NGX_OK) {
        return NULL;
    }

    if (body) {
        /*
         * The body stays in the pool until the transfer is gone.  curl
         * resends a request on a fresh connection when a reused one dies
         * before the answer; a sign request the TSB may already have taken
         * must fail instead of being issued twice.
         *
         * Given as POSTFIELDS, a small body goes out with the headers in
         * one send(); the pre-request callback, which curl calls before
         * every sending of the request, refuses a second one once
         * anything was sent.  Without that callback (curl < 7.80) the body
         * is read through a callback that cannot rewind: two send()s.
         */
        f->req_body = *body;

        curl_easy_setopt(easy, CURLOPT_POST, 1L);

#if (LIBCURL_VERSION_NUM >= 0x075000)
        if (curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION,
                             ngx_http_tsb_curl_prereq)
            == CURLE_OK)
        {
            curl_easy_setopt(easy, CURLOPT_PREREQDATA, f);
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                             body->len ? (char *) body->data : "");
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) body->len);

        } else
#endif
        {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) body->len);
            curl_easy_setopt(easy, CURLOPT_READFUNCTION,
                             ngx_http_tsb_curl_read);
            curl_easy_setopt(easy, CURLOPT_READDATA, f);
            curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION,
                             ngx_http_tsb_curl_seek);
            curl_easy_setopt(easy, CURLOPT_SEEKDATA, f);
        }

    } else if (ngx_strcmp(method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }

    f->headers = curl_slist_append(NULL, "Accept: application/json");
    if (f->headers == NULL) {
        return NULL;
    }

    if (body) {
        f->headers = curl_slist_append(f->headers,
                                       "Content-Type: application/json");
        /* the TSB does not need a 100-continue round trip */
        f->headers = curl_slist_append(f->headers, "Expect:");

        if (f->headers == NULL) {
            return NULL;
        }
    }

    if (ucf->api_key.len
        && ngx_http_tsb_header_secret(f, "X-API-KEY: ",
                                      sizeof("X-API-KEY: ") - 1,
                                      &ucf->api_key)
           != NGX_OK)
    {
        return NULL;
    }

    if (ucf->bearer.len
        && ngx_http_tsb_header_secret(f, "Authorization: Bearer ",
                                      sizeof("Authorization: Bearer ") - 1,
                                      &ucf->bearer)
           != NGX_OK)
    {
        return NULL;
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, f->headers);

    return f;
}


/* curl copies header strings, so ours is wiped right after */

static ngx_int_t
ngx_http_tsb_header_secret(ngx_http_tsb_fetch_t *f, const char *name,
    size_t name_len, ngx_str_t *value)
{
    u_char             *p;
    ngx_str_t           hdr;
    struct curl_slist  *l;

    hdr.len = name_len + value->len;
    hdr.data = ngx_pnalloc(f->pool, hdr.len + 1);
    if (hdr.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(hdr.data, name, name_len);
    p = ngx_cpymem(p, value->data, value->len);
    *p = '\0';

    l = curl_slist_append(f->headers, (char *) hdr.data);
    ngx_explicit_memzero(hdr.data, hdr.len);

    if (l == NULL) {
        return NGX_ERROR;
    }

    f->headers = l;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_easy_tls(ngx_http_tsb_fetch_t *f, CURL *easy)
{
    long                           version;
    ngx_http_tsb_tls_t            *tls;
    ngx_http_tsb_upstream_conf_t  *ucf;

    ucf = f->conf;
    tls = ucf->tls;

    version = (ucf->ssl_protocols & NGX_HTTP_TSB_TLSv1_2)
              ? CURL_SSLVERSION_TLSv1_2 : CURL_SSLVERSION_TLSv1_3;

    version |= (ucf->ssl_protocols & NGX_HTTP_TSB_TLSv1_3)
               ? CURL_SSLVERSION_MAX_TLSv1_3 : CURL_SSLVERSION_MAX_TLSv1_2;

    curl_easy_setopt(easy, CURLOPT_SSLVERSION, version);

    if (ucf->ssl_verify) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);

    } else {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    if (tls == NULL) {
        return NGX_OK;
    }

    if (tls->ca.len) {
        /* the configured CAs and nothing else: no system CA directory */
        curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &tls->ca);
        curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
    }

    if (tls->cert.len) {
        curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &tls->cert);
        curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
        curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &tls->key);
    }

    if (tls->pin.len) {
        if (curl_easy_setopt(easy, CURLOPT_PINNEDPUBLICKEY,
                             (char *) tls->pin.data)
            != CURLE_OK)
        {
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "tsb: libcurl cannot pin public keys");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_fetch_start(ngx_http_tsb_fetch_t *f)
{
    if (ngx_http_tsb_multi == NULL || f->easy == NULL) {
        return NGX_ERROR;
    }

    if (f->conf->nodes == NULL || f->conf->nodes->nelts == 0) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0, "tsb: no tsb_upstream");
        return NGX_ERROR;
    }

    f->elapsed = ngx_current_msec;

    if (f->conf->max_transfers
        && ngx_http_tsb_ntransfers >= f->conf->max_transfers)
    {
        /*
         * The worker is at its cap: answer 503 rather than queue without
         * bound.  done() runs from a posted event, as for a real transfer,
         * so every caller finishes the request on the one path it has.
         */
        ngx_log_error(NGX_LOG_WARN, f->log, 0,
                      "tsb: %V %V not started: %ui transfers in flight, "
                      "tsb_max_transfers reached",
                      &f->method, &f->path, ngx_http_tsb_ntransfers);

        f->busy = 1;
        f->result = CURLE_AGAIN;
        ngx_post_event(&f->busy_event, &ngx_posted_events);

        return NGX_OK;
    }

    /* before adding: curl calls the timer callback from inside add_handle */
    ngx_queue_insert_tail(&ngx_http_tsb_transfers, &f->queue);
    ngx_http_tsb_ntransfers++;
    f->queued = 1;

    if (ngx_http_tsb_fetch_attempt(f) != NGX_OK) {
        ngx_queue_remove(&f->queue);
        ngx_http_tsb_ntransfers--;
        f->queued = 0;

        return NGX_ERROR;
    }

    return NGX_OK;
}


/* one try on the best node not tried yet */

static ngx_int_t
ngx_http_tsb_fetch_attempt(ngx_http_tsb_fetch_t *f)
{
    u_char               *p;
    ngx_int_t             n;
    CURLMcode             rc;
    ngx_http_tsb_node_t  *node;

    n = ngx_http_tsb_pick_node(f);
    if (n < 0) {
        return NGX_ERROR;
    }

    node = f->conf->nodes->elts;
    node = &node[n];

    f->node = n;
    f->tried |= (uint32_t) 1 << n;
    f->attempts++;
    f->attempt_start = ngx_current_msec;

    /* only a node that got nothing is tried next: start the body over */
    f->req_sent = 0;
    f->prereqs = 0;

    f->url.len = node->url.len + f->path.len;
    f->url.data = ngx_pnalloc(f->pool, f->url.len + 1);
    if (f->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(f->url.data, node->url.data, node->url.len);
    p = ngx_cpymem(p, f->path.data, f->path.len);
    *p = '\0';

    curl_easy_setopt(f->easy, CURLOPT_URL, (char *) f->url.data);

    /*
     * Wait for a connection that can multiplex rather than open another,
     * only where HTTP/2 can be negotiated: over http:// or HTTP/1.1 a
     * second call would wait behind a slow first one for nothing.
     */
    curl_easy_setopt(f->easy, CURLOPT_PIPEWAIT,
                     (f->conf->http2
                      && node->url.len > sizeof("https://") - 1
                      && ngx_strncasecmp(node->url.data,
                                         (u_char *) "https://",
                                         sizeof("https://") - 1)
                         == 0)
                     ? 1L : 0L);

    rc = curl_multi_add_handle(ngx_http_tsb_multi, f->easy);

#if (LIBCURL_VERSION_NUM >= 0x075100)
    if (rc == CURLM_ABORTED_BY_CALLBACK) {
        /* never from our callbacks, but a dead handle must not stay */
        ngx_http_tsb_multi_rebuild(f->log);
        rc = curl_multi_add_handle(ngx_http_tsb_multi, f->easy);
    }
#endif

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "tsb: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    if (f->deadline.timer_set) {
        ngx_del_timer(&f->deadline);
    }

    ngx_add_timer(&f->deadline,
                  f->conf->timeout + NGX_HTTP_TSB_DEADLINE_SLACK);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "tsb: started %V %V (attempt %ui)", &f->method, &f->url,
                   f->attempts);

    return NGX_OK;
}


/*
 * The first node in configuration order that was not tried and is not
 * backed off; when every untried node is backed off, the one whose back-off
 * ends first (a cluster that is all down is still tried, never refused
 * without asking).  -1 when every node was tried.
 */

static ngx_int_t
ngx_http_tsb_pick_node(ngx_http_tsb_fetch_t *f)
{
    ngx_int_t             best;
    ngx_uint_t            i;
    ngx_msec_t            now;
    ngx_http_tsb_node_t  *nodes;

    nodes = f->conf->nodes->elts;
    now = ngx_current_msec;
    best = -1;

    for (i = 0; i < f->conf->nodes->nelts; i++) {

        if (f->tried & ((uint32_t) 1 << i)) {
            continue;
        }

        if (!nodes[i].down
            || (ngx_msec_int_t) (nodes[i].down_until - now) <= 0)
        {
            return i;
        }

        if (best == -1
            || (ngx_msec_int_t) (nodes[i].down_until
                                 - nodes[best].down_until) < 0)
        {
            best = i;
        }
    }

    return best;
}


/*
 * Nothing of the request reached the TSB: the connection or the TLS
 * handshake failed, or the time ran out before the request was sent.
 */

static ngx_uint_t
ngx_http_tsb_not_sent(ngx_http_tsb_fetch_t *f)
{
    curl_off_t  pretransfer;

    switch (f->result) {

    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR:
        return 1;

    case CURLE_OPERATION_TIMEDOUT:
        pretransfer = 0;
        (void) curl_easy_getinfo(f->easy, CURLINFO_PRETRANSFER_TIME_T,
                                 &pretransfer);
        return pretransfer == 0;

    default:
        return 0;
    }
}


static ngx_uint_t
ngx_http_tsb_node_failed(ngx_http_tsb_fetch_t *f, ngx_uint_t not_sent)
{
    switch (f->result) {

    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CERTPROBLEM:
        /*
         * This location's CA, pin or client certificate does not fit the
         * node: another node may be tried, but the node is not marked
         * down for the other locations that share it.
         */
        return 0;

    case CURLE_OK:
        return f->status >= 500;

    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SEND_FAIL_REWIND:
        return 1;

    default:
        /* too large, out of memory: not the node's fault */
        return not_sent;
    }
}


static const char *
ngx_http_tsb_attempt_error(ngx_http_tsb_fetch_t *f, u_char *buf, size_t len)
{
    if (f->result != CURLE_OK) {
        return f->errbuf[0] ? f->errbuf : curl_easy_strerror(f->result);
    }

    *ngx_snprintf(buf, len - 1, "answered %l", f->status) = '\0';

    return (char *) buf;
}


static void
ngx_http_tsb_node_update(ngx_http_tsb_fetch_t *f, ngx_uint_t failed)
{
    u_char                buf[32];
    ngx_msec_t            backoff;
    ngx_uint_t            doublings;
    ngx_http_tsb_node_t  *node;

    if (f->not_tsb) {
        /* an ACME http-01 fetch: its one node is its own, not a TSB */
        return;
    }

    node = f->conf->nodes->elts;
    node = &node[f->node];

    if (!failed) {
        if (node->down) {
            ngx_log_error(NGX_LOG_NOTICE, f->log, 0,
                          "tsb: upstream %V is back after %ui failures",
                          &node->url, node->fails);
        }

        node->down = 0;
        node->fails = 0;
        return;
    }

    node->fails++;

    doublings = ngx_min(node->fails - 1, NGX_HTTP_TSB_BACKOFF_DOUBLINGS);
    backoff = f->conf->fail_timeout << doublings;

    node->down_until = ngx_current_msec + backoff;

    if (f->conf->nodes->nelts > 1 || !node->down) {
        ngx_log_error(NGX_LOG_WARN, f->log, 0,
                      "tsb: upstream %V failed (%s), skipped for %M ms",
                      &node->url,
                      ngx_http_tsb_attempt_error(f, buf, sizeof(buf)),
                      backoff);
    }

    node->down = 1;
}


/*
 * Whether to try the next node.  Never when the TSB may have acted on the
 * request (a sign POST must not issue twice): only when nothing was sent,
 * or once for a GET that failed on its node.
 */

static ngx_uint_t
ngx_http_tsb_retry(ngx_http_tsb_fetch_t *f)
{
    ngx_uint_t  not_sent, failed;

    if (f->lost) {
        /* the worker, not the node, is short of connections */
        return 0;
    }

    not_sent = ngx_http_tsb_not_sent(f);
    failed = ngx_http_tsb_node_failed(f, not_sent);

    ngx_http_tsb_node_update(f, failed);

    if (ngx_http_tsb_pick_node(f) < 0) {
        return 0;
    }

    if (not_sent) {
        return 1;
    }

    if (!failed) {
        return 0;
    }

    if (f->resent == 0
        && f->method.len == 3 && ngx_strncmp(f->method.data, "GET", 3) == 0)
    {
        f->resent++;
        return 1;
    }

    return 0;
}


static size_t
ngx_http_tsb_curl_read(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ngx_http_tsb_fetch_t *f = userdata;

    size_t  n;

    n = ngx_min(size * nmemb, f->req_body.len - f->req_sent);

    ngx_memcpy(ptr, f->req_body.data + f->req_sent, n);
    f->req_sent += n;

    return n;
}


#if (LIBCURL_VERSION_NUM >= 0x075000)

/*
 * Before each sending of the request on a connection.  A second one within
 * an attempt is curl's own retry on a fresh connection after a reused one
 * died: allowed only when nothing of the request went out the first time.
 * The refusal ends the transfer as a failed rewind would.
 */

static int
ngx_http_tsb_curl_prereq(void *clientp, char *primary_ip, char *local_ip,
    int primary_port, int local_port)
{
    ngx_http_tsb_fetch_t *f = clientp;

    long  sent;

    if (f->prereqs++ == 0) {
        return CURL_PREREQFUNC_OK;
    }

    sent = 0;
    (void) curl_easy_getinfo(f->easy, CURLINFO_REQUEST_SIZE, &sent);

    if (sent == 0) {
        return CURL_PREREQFUNC_OK;
    }

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "tsb: %V %V: the connection broke after the request was "
                  "sent; it is not sent again", &f->method, &f->url);

    f->resend_refused = 1;

    return CURL_PREREQFUNC_ABORT;
}

#endif


/* curl asks to rewind only to send the body a second time: never */

static int
ngx_http_tsb_curl_seek(void *userdata, curl_off_t offset, int origin)
{
    ngx_http_tsb_fetch_t *f = userdata;

    if (offset == 0 && origin == SEEK_SET && f->req_sent == 0) {
        return CURL_SEEKFUNC_OK;
    }

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "tsb: %V %V: the connection broke after the request was "
                  "sent; it is not sent again", &f->method, &f->url);

    return CURL_SEEKFUNC_FAIL;
}


/*
 * Only Retry-After (in seconds) is kept from the TSB's headers: a 429 or
 * 503 passes it on to the client.  Runs inside curl: no curl calls here.
 */

static size_t
ngx_http_tsb_curl_header(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_tsb_fetch_t *f = userdata;

    u_char     *p, *last;
    size_t      n;
    ngx_int_t   v;

    n = size * nmemb;

    if (n > sizeof("Retry-After:") - 1
        && ngx_strncasecmp((u_char *) ptr, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1) == 0)
    {
        p = (u_char *) ptr + sizeof("Retry-After:") - 1;
        last = (u_char *) ptr + n;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                            || last[-1] == ' '))
        {
            last--;
        }

        v = ngx_atoi(p, last - p);

        /* a date, or nonsense: not passed on */
        f->retry_after = (v > 0) ? ngx_min(v, 86400) : 0;
    }

    return n;
}


static size_t
ngx_http_tsb_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ngx_http_tsb_fetch_t *f = userdata;

    u_char  *p;
    size_t   n, cap;

    n = size * nmemb;

    if (f->body_len + n > f->max_response) {
        /* a short count makes curl fail the transfer: CURLE_WRITE_ERROR */
        f->too_large = 1;
        return 0;
    }

    if (f->body_len + n > f->body_cap) {
        cap = ngx_max(f->body_cap * 2, f->body_len + n);
        cap = ngx_max(cap, 1024);

        p = realloc(f->body, cap);
        if (p == NULL) {
            return 0;
        }

        f->body = p;
        f->body_cap = cap;
    }

    ngx_memcpy(f->body + f->body_len, ptr, n);
    f->body_len += n;

    return n;
}


/* ------------------------------------------------- curl <-> nginx events */

static int
ngx_http_tsb_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_connection_t  *c = socketp;

    ngx_http_tsb_sock_t  *sk;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "tsb: curl socket %d what %d wrapped %d",
                   (int) s, what, c != NULL);

    sk = ngx_http_tsb_sock(s, 0);

    if (what == CURL_POLL_REMOVE) {
        /* the socket is still open and curl may hand it back later */
        if (c) {
            if (sk && sk->owned && sk->conn == c) {
                /*
                 * Back to curl's cache, or about to be closed through
                 * our callback: the read registration stays, for the
                 * next transfer on this connection.
                 */
                if (c->write->active) {
                    (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
                }

                sk->parked = 1;

            } else {
                ngx_http_tsb_unwrap_socket(c);
            }

            curl_multi_assign(ngx_http_tsb_multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL && sk && sk->owned && sk->conn) {
        /* a cached connection taken up again */
        c = sk->conn;
        sk->parked = 0;

        curl_multi_assign(ngx_http_tsb_multi, s, c);
    }

    /*
     * Never -1 from here: curl would declare the whole multi handle dead,
     * failing every transfer of the worker and every later one.  A socket
     * nginx cannot watch fails its own transfer, once curl has returned.
     */

    if (c == NULL) {
        c = ngx_get_connection(s, ngx_cycle->log);
        if (c == NULL) {
            ngx_http_tsb_lose(easy, s, "no free worker_connections");
            return 0;
        }

        c->read->handler = ngx_http_tsb_socket_event;
        c->write->handler = ngx_http_tsb_socket_event;
        c->read->log = ngx_cycle->log;
        c->write->log = ngx_cycle->log;

        ngx_http_tsb_nsockets++;

        if (sk && sk->owned) {
            sk->conn = c;
            sk->parked = 0;
        }

        curl_multi_assign(ngx_http_tsb_multi, s, c);
    }

    /* flags 0: level-triggered, never NGX_CLEAR_EVENT (EPOLLET) */

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
        {
            ngx_http_tsb_lose(easy, s, "cannot watch its socket");
            return 0;
        }

    } else if (c->read->active) {
        /* an event too many is harmless: curl ignores it */
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
        {
            ngx_http_tsb_lose(easy, s, "cannot watch its socket");
            return 0;
        }

    } else if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


/*
 * From inside a curl callback: the transfer is only marked; it is failed
 * after curl has returned (ngx_http_tsb_fail_lost), or from a posted event
 * when curl called us from somewhere else.
 */

static void
ngx_http_tsb_lose(CURL *easy, curl_socket_t s, const char *why)
{
    ngx_http_tsb_fetch_t  *f;

    f = NULL;

    if (easy) {
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &f);
    }

    ngx_log_error(NGX_LOG_ERR, f ? f->log : ngx_cycle->log, 0,
                  "tsb: socket %d of %V %V: %s, failing the transfer",
                  (int) s, f ? &f->method : &ngx_http_tsb_unknown,
                  f ? &f->url : &ngx_http_tsb_unknown, why);

    if (f == NULL || f->lost_linked || !f->queued) {
        /* nothing to fail; its deadline ends it if need be */
        return;
    }

    f->lost = 1;
    f->lost_linked = 1;
    ngx_queue_insert_tail(&ngx_http_tsb_lost, &f->lost_link);

    if (!ngx_http_tsb_lost_ev.posted) {
        ngx_post_event(&ngx_http_tsb_lost_ev, &ngx_posted_events);
    }
}


static void
ngx_http_tsb_lost_event(ngx_event_t *ev)
{
    ngx_http_tsb_fail_lost();
}


static void
ngx_http_tsb_fail_lost(void)
{
    ngx_queue_t           *q;
    ngx_http_tsb_fetch_t  *f;

    if (ngx_http_tsb_lost_ev.posted) {
        ngx_delete_posted_event(&ngx_http_tsb_lost_ev);
    }

    /* done() may start or end other transfers: take one at a time */

    while (!ngx_queue_empty(&ngx_http_tsb_lost)) {
        q = ngx_queue_head(&ngx_http_tsb_lost);
        f = ngx_queue_data(q, ngx_http_tsb_fetch_t, lost_link);

        ngx_queue_remove(q);
        f->lost_linked = 0;

        ngx_http_tsb_fetch_fail(f, CURLE_COULDNT_CONNECT,
                                "no connection for the TSB");
    }
}


/* ends a transfer curl has not finished; outside curl's callbacks */

static void
ngx_http_tsb_fetch_fail(ngx_http_tsb_fetch_t *f, CURLcode result,
    const char *why)
{
    f->result = result;
    f->status = 0;
    f->body_len = 0;
    ngx_cpystrn((u_char *) f->errbuf, (u_char *) why, CURL_ERROR_SIZE);

    f->elapsed = ngx_current_msec - f->elapsed;
    f->finished = 1;

    ngx_http_tsb_fetch_release(f);
    ngx_http_tsb_fetch_finish(f);
}


static void
ngx_http_tsb_deadline_handler(ngx_event_t *ev)
{
    ngx_http_tsb_fetch_t  *f;

    f = (ngx_http_tsb_fetch_t *) ((u_char *) ev
                                  - offsetof(ngx_http_tsb_fetch_t, deadline));

    ngx_log_error(NGX_LOG_ERR, f->log, 0,
                  "tsb: %V %V still running %M ms after tsb_timeout, "
                  "abandoned", &f->method, &f->url,
                  (ngx_msec_t) NGX_HTTP_TSB_DEADLINE_SLACK);

    ngx_http_tsb_fetch_fail(f, CURLE_OPERATION_TIMEDOUT,
                            "no answer within tsb_timeout");
}


/*
 * The first call: the worker is to exit (reload, quit).  Transfers in
 * flight finish, each within its deadline; waiters are answered with what
 * is known, and none waits for a next refresh.  The second call is
 * worker_shutdown_timeout: what is still in flight is abandoned.
 */

static void
ngx_http_tsb_exit_notice(ngx_event_t *ev)
{
    ngx_connection_t      *c = ev->data;

    ngx_queue_t            gone, *q;
    ngx_http_tsb_fetch_t  *f;

    c->close = 0;

    if (!ngx_exiting) {
        return;
    }

    ngx_http_tsb_exit_stage++;

    if (ngx_http_tsb_exit_stage == 1) {
        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "tsb: worker exiting with %ui TSB transfer%s in "
                      "flight", ngx_http_tsb_ntransfers,
                      ngx_http_tsb_ntransfers == 1 ? "" : "s");

        /* an idle worker's curl timer must not hold up its exit */
        if (ngx_http_tsb_ntransfers == 0) {
            ngx_http_tsb_timer.cancelable = 1;
        }

        ngx_http_tsb_cache_exiting();
        return;
    }

    if (ngx_http_tsb_exit_stage != 2) {
        return;
    }

    /* only those in flight now: done() may start others */

    ngx_queue_init(&gone);

    if (!ngx_queue_empty(&ngx_http_tsb_transfers)) {
        ngx_queue_add(&gone, &ngx_http_tsb_transfers);
        ngx_queue_init(&ngx_http_tsb_transfers);
    }

    while (!ngx_queue_empty(&gone)) {
        q = ngx_queue_head(&gone);
        f = ngx_queue_data(q, ngx_http_tsb_fetch_t, queue);

        ngx_log_error(NGX_LOG_WARN, f->log, 0,
                      "tsb: %V %V aborted at worker_shutdown_timeout",
                      &f->method, &f->url);

        ngx_http_tsb_fetch_fail(f, CURLE_OPERATION_TIMEDOUT,
                                "aborted at worker_shutdown_timeout");
    }
}


static CURLM *
ngx_http_tsb_multi_create(ngx_log_t *log)
{
    CURLM  *multi;

    multi = curl_multi_init();
    if (multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "tsb: curl_multi_init() failed");
        return NULL;
    }

    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_tsb_curl_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_tsb_curl_timer);

    /*
     * The connection cache: curl's default sizes it by the transfers in
     * flight at the moment one ends, so a burst that ebbs closes the
     * connections the next burst needs.  Keep as many as the default
     * tsb_max_transfers lets run at once; idle ones still go after
     * CURLOPT_MAXAGE_CONN, or when the TSB closes them.  HTTP/2 streams
     * share one connection to a node.
     */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                      (long) NGX_HTTP_TSB_KEEPALIVE);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);

    return multi;
}


/*
 * A multi handle curl declared dead (a callback returned an error) refuses
 * every transfer from then on: replace it.  Its transfers fail, each to
 * its own client; its cached connections are closed.
 */

static void
ngx_http_tsb_multi_rebuild(ngx_log_t *log)
{
    CURLM                 *multi;
    ngx_queue_t            gone, *q;
    ngx_http_tsb_fetch_t  *f;

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "tsb: the worker's curl multi handle was aborted, "
                  "rebuilding it (%ui transfers fail)",
                  ngx_http_tsb_ntransfers);

    multi = ngx_http_tsb_multi_create(log);
    if (multi == NULL) {
        /* the next transfer tries again */
        return;
    }

    ngx_queue_init(&gone);

    if (!ngx_queue_empty(&ngx_http_tsb_transfers)) {
        ngx_queue_add(&gone, &ngx_http_tsb_transfers);
        ngx_queue_init(&ngx_http_tsb_transfers);
    }

    for (q = ngx_queue_head(&gone);
         q != ngx_queue_sentinel(&gone);
         q = ngx_queue_next(q))
    {
        f = ngx_queue_data(q, ngx_http_tsb_fetch_t, queue);

        if (f->easy) {
            curl_multi_remove_handle(ngx_http_tsb_multi, f->easy);
        }
    }

    /* closes the cached connections through our callbacks */
    curl_multi_cleanup(ngx_http_tsb_multi);

    if (ngx_http_tsb_timer.timer_set) {
        ngx_del_timer(&ngx_http_tsb_timer);
    }

    if (ngx_http_tsb_now.posted) {
        ngx_delete_posted_event(&ngx_http_tsb_now);
    }

    ngx_http_tsb_multi = multi;

    /* done() may start new transfers: those go to the new handle */

    while (!ngx_queue_empty(&gone)) {
        q = ngx_queue_head(&gone);
        f = ngx_queue_data(q, ngx_http_tsb_fetch_t, queue);

        f->lost = 1;
        ngx_http_tsb_fetch_fail(f, CURLE_COULDNT_CONNECT,
                                "the worker's TSB client was rebuilt");
    }
}


static void
ngx_http_tsb_unwrap_socket(ngx_connection_t *c)
{
    ngx_http_tsb_sock_t  *sk;

    sk = ngx_http_tsb_sock(c->fd, 0);

    if (sk && sk->conn == c) {
        sk->conn = NULL;
        sk->parked = 0;
    }

    /* flags 0, not NGX_CLOSE_EVENT: the fd stays open, epoll must forget it */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);

    /* ngx_free_connection() leaves fd alone; stale events check for -1 */
    c->fd = (ngx_socket_t) -1;

    ngx_http_tsb_nsockets--;
}


/* a connection socket curl has just opened: ours to close, see above */

static int
ngx_http_tsb_curl_sockopt(void *clientp, curl_socket_t s,
    curlsocktype purpose)
{
    ngx_http_tsb_sock_t  *sk;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKOPT_OK;
    }

    sk = ngx_http_tsb_sock(s, 1);

    if (sk == NULL) {
        /* no room to remember it: it is unwrapped like any other */
        return CURL_SOCKOPT_OK;
    }

    if (sk->conn) {
        /* a wrapper left from an earlier socket of the same number */
        ngx_http_tsb_unwrap_socket(sk->conn);
    }

    sk->owned = 1;
    sk->parked = 0;

    return CURL_SOCKOPT_OK;
}


/* the entry of descriptor s; create: make room for it */

static ngx_http_tsb_sock_t *
ngx_http_tsb_sock(curl_socket_t s, ngx_uint_t create)
{
    ngx_uint_t            n;
    ngx_http_tsb_sock_t  *socks;

    if (s < 0) {
        return NULL;
    }

    if ((ngx_uint_t) s < ngx_http_tsb_nsocks) {
        return &ngx_http_tsb_socks[s];
    }

    if (!create) {
        return NULL;
    }

    n = ngx_max(ngx_http_tsb_nsocks * 2, 256);

    while (n <= (ngx_uint_t) s) {
        n *= 2;
    }

    socks = ngx_calloc(n * sizeof(ngx_http_tsb_sock_t), ngx_cycle->log);
    if (socks == NULL) {
        return NULL;
    }

    if (ngx_http_tsb_socks) {
        ngx_memcpy(socks, ngx_http_tsb_socks,
                   ngx_http_tsb_nsocks * sizeof(ngx_http_tsb_sock_t));
        ngx_free(ngx_http_tsb_socks);
    }

    ngx_http_tsb_socks = socks;
    ngx_http_tsb_nsocks = n;

    return &socks[s];
}


static int
ngx_http_tsb_curl_close_socket(void *clientp, curl_socket_t s)
{
    ngx_uint_t            i;
    ngx_connection_t     *c;
    ngx_http_tsb_sock_t  *sk;

    /*
     * curl normally reports CURL_POLL_REMOVE before it closes a socket; at
     * curl_multi_cleanup() that is not guaranteed, so never leave a wrapper
     * pointing at a closed descriptor.
     */

    sk = ngx_http_tsb_sock(s, 0);

    if (sk && sk->owned) {
        if (sk->conn) {
            ngx_http_tsb_unwrap_socket(sk->conn);
        }

        sk->owned = 0;

    } else if (ngx_http_tsb_nsockets) {
        c = ngx_cycle->connections;

        for (i = 0; i < ngx_cycle->connection_n; i++) {
            if (c[i].fd == (ngx_socket_t) s
                && c[i].read->handler == ngx_http_tsb_socket_event)
            {
                ngx_http_tsb_unwrap_socket(&c[i]);
                break;
            }
        }
    }

    return close(s);
}


static int
ngx_http_tsb_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "tsb: curl timer %l", timeout_ms);

    /* nginx keeps an old timer close to the new deadline: delete first */
    if (ngx_http_tsb_timer.timer_set) {
        ngx_del_timer(&ngx_http_tsb_timer);
    }

    if (timeout_ms < 0) {
        if (ngx_http_tsb_now.posted) {
            ngx_delete_posted_event(&ngx_http_tsb_now);
        }

        return 0;
    }

    /*
     * 0 means "now", but calling curl from its own callback is forbidden:
     * a posted event runs in this same turn of the event loop, after the
     * handler that got here.  Asked again from within that event, wait a
     * millisecond rather than spin.
     */
    if (timeout_ms == 0 && !ngx_http_tsb_in_now) {
        if (!ngx_http_tsb_now.posted) {
            ngx_post_event(&ngx_http_tsb_now, &ngx_posted_events);
        }

        return 0;
    }

    /*
     * While transfers run, the timer keeps a gracefully exiting worker
     * alive until they finish; an idle worker must not be held up.
     */
    ngx_http_tsb_timer.cancelable = (ngx_http_tsb_ntransfers == 0);

    ngx_add_timer(&ngx_http_tsb_timer, timeout_ms ? (ngx_msec_t) timeout_ms
                                                  : 1);

    return 0;
}


static void
ngx_http_tsb_timer_event(ngx_event_t *ev)
{
    if (ngx_http_tsb_multi == NULL) {
        return;
    }

    ngx_http_tsb_socket_action(CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_http_tsb_now_event(ngx_event_t *ev)
{
    if (ngx_http_tsb_multi == NULL) {
        return;
    }

    ngx_http_tsb_in_now = 1;
    ngx_http_tsb_socket_action(CURL_SOCKET_TIMEOUT, 0);
    ngx_http_tsb_in_now = 0;
}


static void
ngx_http_tsb_socket_event(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_tsb_sock_t  *sk;

    sk = ngx_http_tsb_sock(c->fd, 0);

    if (sk && sk->parked && sk->conn == c) {
        /*
         * Data or a close on a connection in curl's cache: curl finds out
         * when it takes the connection up again.  Level-triggered, the
         * event would come back on every turn: stop watching until then.
         */
        if (ev->active) {
            (void) ngx_del_event(ev, ev->write ? NGX_WRITE_EVENT
                                               : NGX_READ_EVENT, 0);
        }

        return;
    }

    /* c may be freed inside socket_action: read what we need first */
    ngx_http_tsb_socket_action(c->fd,
                               ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN);
}


static void
ngx_http_tsb_socket_action(curl_socket_t s, int mask)
{
    int        running;
    CURLMcode  rc;

    rc = curl_multi_socket_action(ngx_http_tsb_multi, s, mask, &running);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "tsb: curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(rc));
    }

    ngx_http_tsb_collect_done();
    ngx_http_tsb_fail_lost();

#if (LIBCURL_VERSION_NUM >= 0x075100)
    if (rc == CURLM_ABORTED_BY_CALLBACK) {
        ngx_http_tsb_multi_rebuild(ngx_cycle->log);
    }
#endif
}


static void
ngx_http_tsb_collect_done(void)
{
    int                    left;
    long                   status;
    u_char                 buf[32];
    CURL                  *easy;
    CURLMsg               *msg;
    ngx_str_t              failed_url;
    ngx_http_tsb_fetch_t  *f;

    while ((msg = curl_multi_info_read(ngx_http_tsb_multi, &left))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        f = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &f);

        if (f == NULL) {
            curl_multi_remove_handle(ngx_http_tsb_multi, easy);
            continue;
        }

        /* msg points into the handle: copy before removing it */
        f->result = msg->data.result;

        if (f->resend_refused && f->result == CURLE_ABORTED_BY_CALLBACK) {
            /* as when the body could not be rewound to be sent again */
            f->result = CURLE_SEND_FAIL_REWIND;
        }

        f->resend_refused = 0;

        status = 0;
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        f->status = status;

        /* outside any curl callback: removing and re-adding is allowed */
        curl_multi_remove_handle(ngx_http_tsb_multi, easy);

        if (ngx_http_tsb_retry(f)) {
            failed_url = f->url;

            ngx_log_error(NGX_LOG_WARN, f->log, 0,
                          "tsb: %V %V failed after %M ms (%s), trying the "
                          "next TSB node",
                          &f->method, &failed_url,
                          ngx_current_msec - f->attempt_start,
                          ngx_http_tsb_attempt_error(f, buf, sizeof(buf)));

            f->body_len = 0;
            f->too_large = 0;
            f->status = 0;
            f->retry_after = 0;
            f->errbuf[0] = '\0';

            if (ngx_http_tsb_fetch_attempt(f) == NGX_OK) {
                continue;
            }

            /* the previous answer stands */
            f->result = CURLE_COULDNT_CONNECT;
        }

        f->elapsed = ngx_current_msec - f->elapsed;
        f->finished = 1;

        ngx_http_tsb_fetch_release(f);
        ngx_http_tsb_fetch_finish(f);
    }
}


/* done() for a finished fetch; f may be gone when this returns */

static void
ngx_http_tsb_fetch_finish(ngx_http_tsb_fetch_t *f)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (!f->not_tsb) {
        ngx_http_tsb_metrics_upstream(f);
    }

    if (f->done == NULL) {
        return;
    }

    if (!f->bound) {
        /* a worker's own transfer: done() finalizes what it serves */
        f->done(f);
        return;
    }

    r = f->request;
    if (r == NULL) {
        return;
    }

    c = r->connection;

    f->done(f);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_tsb_busy_handler(ngx_event_t *ev)
{
    ngx_http_tsb_fetch_t  *f = ev->data;

    f->elapsed = ngx_current_msec - f->elapsed;
    f->finished = 1;

    ngx_http_tsb_fetch_release(f);
    ngx_http_tsb_fetch_finish(f);
}


/* takes the transfer out of curl; safe to call twice */

static void
ngx_http_tsb_fetch_release(ngx_http_tsb_fetch_t *f)
{
    if (f->easy) {
        if (ngx_http_tsb_multi) {
            curl_multi_remove_handle(ngx_http_tsb_multi, f->easy);
        }

        if (ngx_http_tsb_multi
            && ngx_http_tsb_nidle < NGX_HTTP_TSB_IDLE_HANDLES)
        {
            /* no option of this transfer (pointers into f) survives */
            curl_easy_reset(f->easy);
            ngx_http_tsb_idle[ngx_http_tsb_nidle++] = f->easy;

        } else {
            curl_easy_cleanup(f->easy);
        }

        f->easy = NULL;
    }

    if (f->queued) {
        ngx_queue_remove(&f->queue);
        ngx_http_tsb_ntransfers--;
        f->queued = 0;
    }

    if (f->headers) {
        curl_slist_free_all(f->headers);
        f->headers = NULL;
    }

    if (f->busy_event.posted) {
        ngx_delete_posted_event(&f->busy_event);
    }

    if (f->deadline.timer_set) {
        ngx_del_timer(&f->deadline);
    }

    if (f->lost_linked) {
        ngx_queue_remove(&f->lost_link);
        f->lost_linked = 0;
    }

    /* an idle worker's curl timer must not hold up its exit */
    if (ngx_http_tsb_ntransfers == 0) {
        ngx_http_tsb_timer.cancelable = 1;
    }
}


static void
ngx_http_tsb_fetch_cleanup(void *data)
{
    ngx_http_tsb_fetch_t  *f = data;

    if (f->easy && f->request && f->queued) {
        ngx_log_error(NGX_LOG_INFO, f->log, 0,
                      "tsb: client went away, cancelling %V %V",
                      &f->method, &f->url);
    }

    ngx_http_tsb_fetch_release(f);

    f->request = NULL;

    free(f->body);
    f->body = NULL;
    f->body_len = 0;
    f->body_cap = 0;
}
