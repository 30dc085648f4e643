
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * libcurl's multi_socket API inside nginx's event loop.
 *
 * One CURLM per worker.  curl tells us which sockets to watch through the
 * socket callback and when to call it back through the timer callback; we
 * wrap each socket in an nginx connection (never from a request pool: curl's
 * connection cache outlives requests) and register it level-triggered,
 * because nginx's epoll is edge-triggered by default and curl does not
 * support edge-triggered sockets.  Finished transfers are collected with
 * curl_multi_info_read() after curl_multi_socket_action() has returned, so
 * nothing calls back into curl from inside a curl callback.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_upstream.h"


static int ngx_http_tsb_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_http_tsb_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static int ngx_http_tsb_curl_close_socket(void *clientp, curl_socket_t s);
static size_t ngx_http_tsb_curl_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_http_tsb_socket_event(ngx_event_t *ev);
static void ngx_http_tsb_timer_event(ngx_event_t *ev);
static void ngx_http_tsb_socket_action(curl_socket_t s, int mask);
static void ngx_http_tsb_collect_done(void);
static void ngx_http_tsb_unwrap_socket(ngx_connection_t *c);
static void ngx_http_tsb_fetch_cleanup(void *data);
static void ngx_http_tsb_fetch_release(ngx_http_tsb_fetch_t *f);


/* per worker: these live in the process, not in shared memory */
static CURLM             *ngx_http_tsb_multi;
static ngx_event_t        ngx_http_tsb_timer;
static ngx_connection_t   ngx_http_tsb_timer_conn;
static ngx_queue_t        ngx_http_tsb_transfers;
static ngx_uint_t         ngx_http_tsb_ntransfers;
static ngx_uint_t         ngx_http_tsb_nsockets;
static ngx_uint_t         ngx_http_tsb_curl_initialized;


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

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_upstream_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_tsb_transfers);
    ngx_http_tsb_ntransfers = 0;
    ngx_http_tsb_nsockets = 0;

    ngx_http_tsb_multi = curl_multi_init();
    if (ngx_http_tsb_multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tsb: curl_multi_init() failed");
        return NGX_ERROR;
    }

    curl_multi_setopt(ngx_http_tsb_multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_tsb_curl_socket);
    curl_multi_setopt(ngx_http_tsb_multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_tsb_curl_timer);

    /* keep a handful of idle connections to the TSB for reuse */
    curl_multi_setopt(ngx_http_tsb_multi, CURLMOPT_MAXCONNECTS, 16L);

    /* debug logging reads the timer's data as a connection */
    ngx_memzero(&ngx_http_tsb_timer_conn, sizeof(ngx_connection_t));
    ngx_http_tsb_timer_conn.fd = (ngx_socket_t) -1;

    ngx_memzero(&ngx_http_tsb_timer, sizeof(ngx_event_t));
    ngx_http_tsb_timer.handler = ngx_http_tsb_timer_event;
    ngx_http_tsb_timer.data = &ngx_http_tsb_timer_conn;
    ngx_http_tsb_timer.log = cycle->log;
    ngx_http_tsb_timer.cancelable = 1;

    return NGX_OK;
}


void
ngx_http_tsb_upstream_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t           *q;
    ngx_http_tsb_fetch_t  *f;

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

    curl_multi_cleanup(ngx_http_tsb_multi);
    ngx_http_tsb_multi = NULL;
}


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
    u_char                *p;
    CURL                  *easy;
    ngx_str_t              hdr;
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
    f->max_response = ucf->max_response;

    f->method.len = ngx_strlen(method);
    f->method.data = (u_char *) method;

    f->url.len = ucf->url.len + path->len;
    f->url.data = ngx_pnalloc(pool, f->url.len + 1);
    if (f->url.data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(f->url.data, ucf->url.data, ucf->url.len);
    p = ngx_cpymem(p, path->data, path->len);
    *p = '\0';

    easy = curl_easy_init();
    if (easy == NULL) {
        return NULL;
    }

    f->easy = easy;

    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, f);
    curl_easy_setopt(easy, CURLOPT_URL, (char *) f->url.data);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_http_tsb_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     ngx_http_tsb_curl_close_socket);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) ucf->connect_timeout);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) ucf->timeout);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);

    if (body) {
        /* the body stays in the request pool until the transfer is gone */
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, (char *) body->data);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) body->len);

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
    }

    /* curl copies header strings, so these are wiped right after */

    if (ucf->api_key.len) {
        hdr.len = sizeof("X-API-KEY: ") - 1 + ucf->api_key.len;
        hdr.data = ngx_pnalloc(pool, hdr.len + 1);
        if (hdr.data == NULL) {
            return NULL;
        }

        p = ngx_cpymem(hdr.data, "X-API-KEY: ", sizeof("X-API-KEY: ") - 1);
        p = ngx_cpymem(p, ucf->api_key.data, ucf->api_key.len);
        *p = '\0';

        f->headers = curl_slist_append(f->headers, (char *) hdr.data);
        ngx_explicit_memzero(hdr.data, hdr.len);
    }

    if (ucf->bearer.len) {
        hdr.len = sizeof("Authorization: Bearer ") - 1 + ucf->bearer.len;
        hdr.data = ngx_pnalloc(pool, hdr.len + 1);
        if (hdr.data == NULL) {
            return NULL;
        }

        p = ngx_cpymem(hdr.data, "Authorization: Bearer ",
                       sizeof("Authorization: Bearer ") - 1);
        p = ngx_cpymem(p, ucf->bearer.data, ucf->bearer.len);
        *p = '\0';

        f->headers = curl_slist_append(f->headers, (char *) hdr.data);
        ngx_explicit_memzero(hdr.data, hdr.len);
    }

    if (f->headers == NULL) {
        return NULL;
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, f->headers);

    return f;
}


ngx_int_t
ngx_http_tsb_fetch_start(ngx_http_tsb_fetch_t *f)
{
    CURLMcode  rc;

    if (ngx_http_tsb_multi == NULL) {
        return NGX_ERROR;
    }

    f->elapsed = ngx_current_msec;

    /* before adding: curl calls the timer callback from inside add_handle */
    ngx_queue_insert_tail(&ngx_http_tsb_transfers, &f->queue);
    ngx_http_tsb_ntransfers++;
    f->queued = 1;

    rc = curl_multi_add_handle(ngx_http_tsb_multi, f->easy);

    if (rc != CURLM_OK) {
        ngx_queue_remove(&f->queue);
        ngx_http_tsb_ntransfers--;
        f->queued = 0;

        ngx_log_error(NGX_LOG_ERR, f->log, 0,
                      "tsb: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "tsb: started %V %V", &f->method, &f->url);

    return NGX_OK;
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


static int
ngx_http_tsb_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_connection_t  *c = socketp;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "tsb: curl socket %d what %d wrapped %d",
                   (int) s, what, c != NULL);

    if (what == CURL_POLL_REMOVE) {
        /* the socket is still open and curl may hand it back later */
        if (c) {
            ngx_http_tsb_unwrap_socket(c);
            curl_multi_assign(ngx_http_tsb_multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, ngx_cycle->log);
        if (c == NULL) {
            return -1;
        }

        c->read->handler = ngx_http_tsb_socket_event;
        c->write->handler = ngx_http_tsb_socket_event;
        c->read->log = ngx_cycle->log;
        c->write->log = ngx_cycle->log;

        ngx_http_tsb_nsockets++;

        curl_multi_assign(ngx_http_tsb_multi, s, c);
    }

    /* flags 0: level-triggered, never NGX_CLEAR_EVENT (EPOLLET) */

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


static void
ngx_http_tsb_unwrap_socket(ngx_connection_t *c)
{
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


static int
ngx_http_tsb_curl_close_socket(void *clientp, curl_socket_t s)
{
    ngx_uint_t         i;
    ngx_connection_t  *c;

    /*
     * curl normally reports CURL_POLL_REMOVE before it closes a socket; at
     * curl_multi_cleanup() that is not guaranteed, so never leave a wrapper
     * pointing at a closed descriptor.
     */

    if (ngx_http_tsb_nsockets) {
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
        return 0;
    }

    /*
     * While transfers run, the timer keeps a gracefully exiting worker
     * alive until they finish; an idle worker must not be held up.
     */
    ngx_http_tsb_timer.cancelable = (ngx_http_tsb_ntransfers == 0);

    /* 0 means "now", but calling curl from its own callback is forbidden */
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
ngx_http_tsb_socket_event(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

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
}


static void
ngx_http_tsb_collect_done(void)
{
    int                    left;
    long                   status;
    CURL                  *easy;
    CURLMsg               *msg;
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
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

        status = 0;
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        f->status = status;
        f->elapsed = ngx_current_msec - f->elapsed;
        f->finished = 1;

        ngx_http_tsb_fetch_release(f);

        if (f->done == NULL) {
            continue;
        }

        if (!f->bound) {
            /* a worker's own transfer: done() finalizes what it serves */
            f->done(f);
            continue;
        }

        r = f->request;
        if (r == NULL) {
            continue;
        }

        c = r->connection;

        f->done(f);

        ngx_http_run_posted_requests(c);
    }
}


/* takes the transfer out of curl; safe to call twice */

static void
ngx_http_tsb_fetch_release(ngx_http_tsb_fetch_t *f)
{
    if (f->easy) {
        if (ngx_http_tsb_multi) {
            curl_multi_remove_handle(ngx_http_tsb_multi, f->easy);
        }

        curl_easy_cleanup(f->easy);
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
}


static void
ngx_http_tsb_fetch_cleanup(void *data)
{
    ngx_http_tsb_fetch_t  *f = data;

    if (f->easy && f->request) {
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
