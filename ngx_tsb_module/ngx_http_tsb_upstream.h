
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The upstream client: libcurl's multi_socket API driven by nginx's own
 * events and timers, one multi handle per worker.  A fetch belongs to one
 * request; when the request goes away first, its cleanup removes the
 * transfer, so no callback ever reaches a freed request.
 *
 * A location talks to a TSB cluster: one or more base URLs tried in the
 * order they were configured, a node that fails is skipped for a while
 * (per worker), and a transfer moves to the next node only when that can
 * not duplicate what the TSB does: when nothing was sent (connect or TLS
 * failure), or once for a GET.
 */


#ifndef _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>


/* a cluster larger than this is a configuration error */
#define NGX_HTTP_TSB_MAX_NODES  32

/* tsb_ssl_protocols */
#define NGX_HTTP_TSB_TLSv1_2    0x0001
#define NGX_HTTP_TSB_TLSv1_3    0x0002


typedef struct ngx_http_tsb_fetch_s  ngx_http_tsb_fetch_t;

typedef void (*ngx_http_tsb_fetch_done_pt)(ngx_http_tsb_fetch_t *f);


/* one TSB node; the state is the worker's own (config memory after fork) */
typedef struct {
    ngx_str_t                   url;             /* NUL-terminated, no
                                                    trailing slash */
    ngx_uint_t                  fails;           /* in a row */
    ngx_msec_t                  down_until;      /* skipped until then */
    unsigned                    down:1;
} ngx_http_tsb_node_t;


/* what the TLS directives load at configuration time, shared by levels */
typedef struct {
    struct curl_blob            ca;              /* PEM, may be empty */
    struct curl_blob            cert;            /* PEM chain */
    struct curl_blob            key;             /* PEM, decrypted */
    ngx_str_t                   pin;             /* "sha256//...;..." */
} ngx_http_tsb_tls_t;


typedef struct {
    ngx_str_t                   url;             /* the first node's */
    ngx_array_t                *nodes;           /* ngx_http_tsb_node_t */

    ngx_str_t                   api_key;
    ngx_str_t                   bearer;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;
    size_t                      max_response;
    ngx_uint_t                  max_transfers;   /* per worker */
    ngx_msec_t                  fail_timeout;
    ngx_flag_t                  http2;

    ngx_flag_t                  ssl_verify;
    ngx_uint_t                  ssl_protocols;   /* NGX_HTTP_TSB_TLSv1_* */
    ngx_str_t                   ssl_trusted_certificate;
    ngx_str_t                   ssl_certificate;
    ngx_str_t                   ssl_certificate_key;
    ngx_str_t                   ssl_password_file;
    ngx_str_t                   ssl_pinned_public_key;
    ngx_http_tsb_tls_t         *tls;
} ngx_http_tsb_upstream_conf_t;


struct ngx_http_tsb_fetch_s {
    ngx_http_request_t         *request;         /* NULL once it has gone */
    ngx_log_t                  *log;
    ngx_http_tsb_fetch_done_pt  done;
    void                       *data;

    CURL                       *easy;
    struct curl_slist          *headers;
    ngx_queue_t                 queue;           /* the worker's transfers */
    ngx_pool_t                 *pool;
    ngx_http_tsb_upstream_conf_t  *conf;
    ngx_event_t                 busy_event;      /* answers "busy" later */
    ngx_event_t                 deadline;        /* nginx's own tsb_timeout */
    ngx_queue_t                 lost_link;       /* on the worker's lost list */

    ngx_str_t                   method;
    ngx_str_t                   path;            /* with ?args, if any */
    ngx_str_t                   url;             /* the last node tried */

    ngx_str_t                   req_body;        /* what is sent */
    size_t                      req_sent;
    ngx_uint_t                  prereqs;         /* sendings this attempt */

    u_char                     *body;            /* response, malloc() */
    size_t                      body_len;
    size_t                      body_cap;
    size_t                      max_response;

    CURLcode                    result;
    long                        status;          /* HTTP status, 0 if none */
    ngx_msec_t                  elapsed;         /* all attempts */
    ngx_msec_t                  attempt_start;
    char                        errbuf[CURL_ERROR_SIZE];

    ngx_uint_t                  node;            /* index of the last try */
    uint32_t                    tried;           /* bit per node */
    ngx_uint_t                  attempts;
    ngx_uint_t                  resent;          /* retries after sending */

    time_t                      retry_after;     /* the TSB's, seconds */

    unsigned                    bound:1;         /* to a request */
    unsigned                    queued:1;
    unsigned                    too_large:1;
    unsigned                    finished:1;
    unsigned                    busy:1;          /* over the worker's cap */
    unsigned                    resend_refused:1;
    unsigned                    lost:1;          /* no nginx connection for
                                                    its socket */
    unsigned                    lost_linked:1;
    unsigned                    not_tsb:1;       /* an ACME http-01 fetch:
                                                    not a TSB call */
};


ngx_int_t ngx_http_tsb_upstream_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_tsb_upstream_init_process(ngx_cycle_t *cycle);
void ngx_http_tsb_upstream_exit_process(ngx_cycle_t *cycle);

/* configuration: create_loc_conf, merge_loc_conf and the directives */
void ngx_http_tsb_upstream_conf_init(ngx_http_tsb_upstream_conf_t *ucf);
char *ngx_http_tsb_upstream_merge(ngx_conf_t *cf,
    ngx_http_tsb_upstream_conf_t *prev, ngx_http_tsb_upstream_conf_t *conf);

char *ngx_http_tsb_upstream_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_secret_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_ssl_protocols(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_ssl_verify(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Creates a transfer of "method base-url path" for request r with the
 * gateway's credentials; body (may be NULL) must live in r's pool.  path
 * may carry a query string.
 */
ngx_http_tsb_fetch_t *ngx_http_tsb_fetch_create(ngx_http_request_t *r,
    ngx_http_tsb_upstream_conf_t *ucf, const char *method, ngx_str_t *path,
    ngx_str_t *body);

/* the same, owned by a pool rather than a request (worker refreshes) */
ngx_http_tsb_fetch_t *ngx_http_tsb_fetch_new(ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_tsb_upstream_conf_t *ucf, const char *method,
    ngx_str_t *path, ngx_str_t *body);

/*
 * Adds it to the worker's multi handle; done() runs when it finishes.
 * Beyond tsb_max_transfers the fetch does not start: done() runs soon
 * after with f->busy set (the answer is 503 with Retry-After).
 */
ngx_int_t ngx_http_tsb_fetch_start(ngx_http_tsb_fetch_t *f);


#endif /* _NGX_HTTP_TSB_UPSTREAM_H_INCLUDED_ */
