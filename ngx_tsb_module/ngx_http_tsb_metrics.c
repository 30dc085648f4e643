
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Observability: counters every worker adds to in one shared memory zone
 * (so a scrape sees the sum over workers, and a reload keeps them, as
 * stub_status does), printed by tsb_metrics in Prometheus text format; and
 * the $tsb_* variables for access logs.
 *
 * Fixed counters are atomics; refusal reasons, a small open set, live in a
 * table under the zone's mutex (refusals are not a hot path).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_metrics.h"


#define NGX_HTTP_TSB_HANDLERS     6      /* index 0: unused */
#define NGX_HTTP_TSB_CLASSES      6      /* 1xx .. 5xx, index 0: other */
#define NGX_HTTP_TSB_REASONS      64
#define NGX_HTTP_TSB_REASON_LEN   40

#define NGX_HTTP_TSB_UP_2XX       0
#define NGX_HTTP_TSB_UP_4XX       1
#define NGX_HTTP_TSB_UP_5XX       2
#define NGX_HTTP_TSB_UP_TIMEOUT   3
#define NGX_HTTP_TSB_UP_ERROR     4
#define NGX_HTTP_TSB_UP_RESULTS   5

#define NGX_HTTP_TSB_BUCKETS      11


typedef struct {
    u_char                  name[NGX_HTTP_TSB_REASON_LEN];
    ngx_atomic_t            count;
} ngx_http_tsb_reason_t;


typedef struct {
    ngx_atomic_t            requests[NGX_HTTP_TSB_HANDLERS]
                                    [NGX_HTTP_TSB_CLASSES];
    ngx_atomic_t            upstream[NGX_HTTP_TSB_UP_RESULTS];
    ngx_atomic_t            latency[NGX_HTTP_TSB_BUCKETS + 1];
    ngx_atomic_t            latency_sum_ms;
    ngx_atomic_t            cache[5];    /* NGX_HTTP_TSB_CACHE_* */
    ngx_atomic_t            evictions;
    ngx_atomic_t            waiters;
    ngx_atomic_t            acme[NGX_HTTP_TSB_ACME_EVENTS];
    ngx_uint_t              nreasons;
    ngx_http_tsb_reason_t   reasons[NGX_HTTP_TSB_REASONS];
    ngx_atomic_t            other_reasons;
} ngx_http_tsb_metrics_sh_t;


typedef struct {
    ngx_http_tsb_metrics_sh_t  *sh;
    ngx_slab_pool_t            *shpool;
} ngx_http_tsb_metrics_ctx_t;


static ngx_int_t ngx_http_tsb_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_tsb_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* the zone of the running cycle; per worker, set when zones are ready */
static ngx_http_tsb_metrics_ctx_t  *ngx_http_tsb_metrics;


static ngx_str_t  ngx_http_tsb_metrics_zone_name = ngx_string("tsb_metrics");

static const char  *ngx_http_tsb_handler_names[NGX_HTTP_TSB_HANDLERS] = {
    "", "sign", "status", "certificate", "pass", "other"
};

static const char  *ngx_http_tsb_upstream_results[NGX_HTTP_TSB_UP_RESULTS] = {
    "2xx", "4xx", "5xx", "timeout", "error"
};

/* ACME events: the metric's name, its label if any, and its help */
static const struct {
    const char  *name;
    const char  *label;
    const char  *help;
} ngx_http_tsb_acme_events[NGX_HTTP_TSB_ACME_EVENTS] = {
    { "tsb_acme_accounts_created_total", NULL,
      "ACME accounts created." },
    { "tsb_acme_orders_created_total", NULL,
      "ACME orders created (their identifiers allowed by the policy)." },
    { "tsb_acme_finalize_total", "result=\"accepted\"",
      "ACME finalize requests, by decision of the CSR engine and policy." },
    { "tsb_acme_finalize_total", "result=\"refused\"", NULL },
    { "tsb_acme_orders_done_total", "status=\"valid\"",
      "ACME orders the TSB's decision made valid or invalid." },
    { "tsb_acme_orders_done_total", "status=\"invalid\"", NULL },
    { "tsb_acme_certificates_served_total", NULL,
      "ACME certificate downloads served." },
    { "tsb_acme_bad_nonces_total", NULL,
      "ACME requests refused with badNonce." }
};

static const char  *ngx_http_tsb_cache_results[5] = {
    "", "hit", "miss", "stale", "updating"
};

/* upper bounds, ms: 5 ms .. 10 s */
static ngx_msec_t  ngx_http_tsb_buckets[NGX_HTTP_TSB_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


#define NGX_HTTP_TSB_VAR_REQUEST_ID     0
#define NGX_HTTP_TSB_VAR_STATUS         1
#define NGX_HTTP_TSB_VAR_POLICY_REASON  2
#define NGX_HTTP_TSB_VAR_CACHE_STATUS   3
#define NGX_HTTP_TSB_VAR_UPSTREAM_TIME  4


static ngx_http_variable_t  ngx_http_tsb_vars[] = {

    { ngx_string("tsb_request_id"), NULL, ngx_http_tsb_variable,
      NGX_HTTP_TSB_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tsb_status"), NULL, ngx_http_tsb_variable,
      NGX_HTTP_TSB_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tsb_policy_reason"), NULL, ngx_http_tsb_variable,
      NGX_HTTP_TSB_VAR_POLICY_REASON, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tsb_cache_status"), NULL, ngx_http_tsb_variable,
      NGX_HTTP_TSB_VAR_CACHE_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tsb_upstream_time"), NULL, ngx_http_tsb_variable,
      NGX_HTTP_TSB_VAR_UPSTREAM_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_tsb_metrics_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_tsb_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_metrics_postconfiguration(ngx_conf_t *cf)
{
    ngx_shm_zone_t              *shm_zone;
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_tsb_metrics_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_metrics_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_tsb_metrics_zone_name,
                                     8 * ngx_pagesize
                                     + sizeof(ngx_http_tsb_metrics_sh_t),
                                     &ngx_http_tsb_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_tsb_metrics_init_zone;
    shm_zone->data = ctx;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tsb_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tsb_metrics_ctx_t  *octx = data;

    ngx_http_tsb_metrics_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload: the counters go on, as stub_status's do */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

    } else {
        ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        if (shm_zone->shm.exists) {
            ctx->sh = ctx->shpool->data;

        } else {
            ctx->sh = ngx_slab_calloc(ctx->shpool,
                                      sizeof(ngx_http_tsb_metrics_sh_t));
            if (ctx->sh == NULL) {
                return NGX_ERROR;
            }

            ctx->shpool->data = ctx->sh;
        }
    }

    /*
     * No process-wide pointer here: this cycle may still fail (a listen on
     * a busy port), and its pool with ctx goes with it; a worker forked
     * later finds the zone of its own cycle (init_process).
     */

    return NGX_OK;
}


ngx_int_t
ngx_http_tsb_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;

    ngx_http_tsb_metrics = NULL;

    part = &cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_http_tsb_module
            && zone[i].shm.name.len == ngx_http_tsb_metrics_zone_name.len
            && ngx_strncmp(zone[i].shm.name.data,
                           ngx_http_tsb_metrics_zone_name.data,
                           ngx_http_tsb_metrics_zone_name.len)
               == 0)
        {
            ngx_http_tsb_metrics = zone[i].data;
            break;
        }
    }

    return NGX_OK;
}


char *
ngx_http_tsb_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    clcf->handler = ngx_http_tsb_metrics_handler;

    return NGX_CONF_OK;
}


void
ngx_http_tsb_metrics_refusal(const char *reason)
{
    size_t                      len;
    ngx_uint_t                  i;
    ngx_http_tsb_metrics_sh_t  *sh;

    if (ngx_http_tsb_metrics == NULL || reason == NULL) {
        return;
    }

    sh = ngx_http_tsb_metrics->sh;
    len = ngx_strlen(reason);

    if (len >= NGX_HTTP_TSB_REASON_LEN) {
        (void) ngx_atomic_fetch_add(&sh->other_reasons, 1);
        return;
    }

    ngx_shmtx_lock(&ngx_http_tsb_metrics->shpool->mutex);

    for (i = 0; i < sh->nreasons; i++) {
        if (ngx_strcmp(sh->reasons[i].name, reason) == 0) {
            break;
        }
    }

    if (i == sh->nreasons && i < NGX_HTTP_TSB_REASONS) {
        ngx_memcpy(sh->reasons[i].name, reason, len + 1);
        sh->nreasons++;
    }

    if (i < NGX_HTTP_TSB_REASONS) {
        sh->reasons[i].count++;

    } else {
        sh->other_reasons++;
    }

    ngx_shmtx_unlock(&ngx_http_tsb_metrics->shpool->mutex);
}


void
ngx_http_tsb_metrics_upstream(ngx_http_tsb_fetch_t *f)
{
    ngx_uint_t                  i, result;
    ngx_http_tsb_metrics_sh_t  *sh;

    if (ngx_http_tsb_metrics == NULL) {
        return;
    }

    sh = ngx_http_tsb_metrics->sh;

    if (f->result == CURLE_OPERATION_TIMEDOUT) {
        result = NGX_HTTP_TSB_UP_TIMEOUT;

    } else if (f->result != CURLE_OK) {
        result = NGX_HTTP_TSB_UP_ERROR;

    } else if (f->status >= 500) {
        result = NGX_HTTP_TSB_UP_5XX;

    } else if (f->status >= 400) {
        result = NGX_HTTP_TSB_UP_4XX;

    } else {
        result = NGX_HTTP_TSB_UP_2XX;
    }

    (void) ngx_atomic_fetch_add(&sh->upstream[result], 1);
    (void) ngx_atomic_fetch_add(&sh->latency_sum_ms, f->elapsed);

    for (i = 0; i < NGX_HTTP_TSB_BUCKETS; i++) {
        if (f->elapsed <= ngx_http_tsb_buckets[i]) {
            break;
        }
    }

    /* one bucket per call; the scrape makes them cumulative */
    (void) ngx_atomic_fetch_add(&sh->latency[i], 1);
}


void
ngx_http_tsb_metrics_cache(ngx_uint_t cache_status)
{
    if (ngx_http_tsb_metrics && cache_status > 0 && cache_status < 5) {
        (void) ngx_atomic_fetch_add(
                          &ngx_http_tsb_metrics->sh->cache[cache_status], 1);
    }
}


void
ngx_http_tsb_metrics_eviction(void)
{
    if (ngx_http_tsb_metrics) {
        (void) ngx_atomic_fetch_add(&ngx_http_tsb_metrics->sh->evictions, 1);
    }
}


void
ngx_http_tsb_metrics_acme(ngx_uint_t event)
{
    if (ngx_http_tsb_metrics && event < NGX_HTTP_TSB_ACME_EVENTS) {
        (void) ngx_atomic_fetch_add(&ngx_http_tsb_metrics->sh->acme[event],
                                    1);
    }
}


void
ngx_http_tsb_metrics_waiters(ngx_int_t delta)
{
    if (ngx_http_tsb_metrics) {
        (void) ngx_atomic_fetch_add(&ngx_http_tsb_metrics->sh->waiters,
                                    (ngx_atomic_int_t) delta);
    }
}


static ngx_int_t
ngx_http_tsb_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                 class, handler;
    ngx_http_tsb_ctx_t        *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    if (ngx_http_tsb_metrics == NULL) {
        return NGX_OK;
    }

    /* the location's handler says which, also for early refusals */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (clcf->handler == ngx_http_tsb_sign_handler) {
        handler = NGX_HTTP_TSB_H_SIGN;

    } else if (clcf->handler == ngx_http_tsb_status_handler) {
        handler = NGX_HTTP_TSB_H_STATUS;

    } else if (clcf->handler == ngx_http_tsb_certificate_handler) {
        handler = NGX_HTTP_TSB_H_CERTIFICATE;

    } else if (ctx && ctx->handler && ctx->handler < NGX_HTTP_TSB_HANDLERS) {
        handler = ctx->handler;

    } else {
        return NGX_OK;
    }

    class = r->headers_out.status / 100;

    if (class >= NGX_HTTP_TSB_CLASSES) {
        class = 0;
    }

    (void) ngx_atomic_fetch_add(
                  &ngx_http_tsb_metrics->sh->requests[handler][class], 1);

    return NGX_OK;
}


#define ngx_http_tsb_metrics_line(p, last, ...)                              \
    p = ngx_slprintf(p, last, __VA_ARGS__)

static ngx_int_t
ngx_http_tsb_metrics_handler(ngx_http_request_t *r)
{
    u_char                     *p, *last;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  h, c, i;
    ngx_chain_t                 out;
    ngx_atomic_uint_t           cumulative;
    ngx_http_tsb_metrics_sh_t  *sh;
    ngx_http_tsb_reason_t       reasons[NGX_HTTP_TSB_REASONS];
    ngx_uint_t                  nreasons, other;

    static ngx_str_t  type = ngx_string("text/plain; version=0.0.4");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_tsb_metrics == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    sh = ngx_http_tsb_metrics->sh;

    /* copy the reason table out under the lock, print without it */
    ngx_shmtx_lock(&ngx_http_tsb_metrics->shpool->mutex);
    nreasons = sh->nreasons;
    ngx_memcpy(reasons, sh->reasons, nreasons * sizeof(reasons[0]));
    other = sh->other_reasons;
    ngx_shmtx_unlock(&ngx_http_tsb_metrics->shpool->mutex);

    b = ngx_create_temp_buf(r->pool, 16384);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->pos;
    last = b->end;

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_requests_total Requests answered by the TSB handlers.\n"
        "# TYPE tsb_requests_total counter\n");

    for (h = 1; h < NGX_HTTP_TSB_HANDLERS; h++) {
        for (c = 1; c < NGX_HTTP_TSB_CLASSES; c++) {
            ngx_http_tsb_metrics_line(p, last,
                "tsb_requests_total{handler=\"%s\",code=\"%uixx\"} %uA\n",
                ngx_http_tsb_handler_names[h], c, sh->requests[h][c]);
        }
    }

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_refusals_total Requests refused, by reason.\n"
        "# TYPE tsb_refusals_total counter\n");

    for (i = 0; i < nreasons; i++) {
        ngx_http_tsb_metrics_line(p, last,
                                  "tsb_refusals_total{reason=\"%s\"} %uA\n",
                                  reasons[i].name, reasons[i].count);
    }

    ngx_http_tsb_metrics_line(p, last,
                              "tsb_refusals_total{reason=\"other\"} %ui\n",
                              other);

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_upstream_requests_total Calls to the TSB, by result.\n"
        "# TYPE tsb_upstream_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_TSB_UP_RESULTS; i++) {
        ngx_http_tsb_metrics_line(p, last,
            "tsb_upstream_requests_total{result=\"%s\"} %uA\n",
            ngx_http_tsb_upstream_results[i], sh->upstream[i]);
    }

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_upstream_duration_seconds Time of calls to the TSB.\n"
        "# TYPE tsb_upstream_duration_seconds histogram\n");

    cumulative = 0;

    for (i = 0; i < NGX_HTTP_TSB_BUCKETS; i++) {
        cumulative += sh->latency[i];
        ngx_http_tsb_metrics_line(p, last,
            "tsb_upstream_duration_seconds_bucket{le=\"%ui.%03ui\"} %uA\n",
            ngx_http_tsb_buckets[i] / 1000, ngx_http_tsb_buckets[i] % 1000,
            cumulative);
    }

    cumulative += sh->latency[NGX_HTTP_TSB_BUCKETS];

    ngx_http_tsb_metrics_line(p, last,
        "tsb_upstream_duration_seconds_bucket{le=\"+Inf\"} %uA\n"
        "tsb_upstream_duration_seconds_sum %uA.%03uA\n"
        "tsb_upstream_duration_seconds_count %uA\n",
        cumulative, sh->latency_sum_ms / 1000, sh->latency_sum_ms % 1000,
        cumulative);

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_cache_requests_total Cached answers, by cache status.\n"
        "# TYPE tsb_cache_requests_total counter\n");

    for (i = 1; i < 5; i++) {
        ngx_http_tsb_metrics_line(p, last,
            "tsb_cache_requests_total{result=\"%s\"} %uA\n",
            ngx_http_tsb_cache_results[i], sh->cache[i]);
    }

    ngx_http_tsb_metrics_line(p, last,
        "# HELP tsb_cache_evictions_total Entries evicted from full zones.\n"
        "# TYPE tsb_cache_evictions_total counter\n"
        "tsb_cache_evictions_total %uA\n"
        "# HELP tsb_waiters Requests waiting for a TSB answer.\n"
        "# TYPE tsb_waiters gauge\n"
        "tsb_waiters %A\n",
        sh->evictions, (ngx_atomic_int_t) sh->waiters);

    for (i = 0; i < NGX_HTTP_TSB_ACME_EVENTS; i++) {
        if (ngx_http_tsb_acme_events[i].help) {
            ngx_http_tsb_metrics_line(p, last,
                "# HELP %s %s\n# TYPE %s counter\n",
                ngx_http_tsb_acme_events[i].name,
                ngx_http_tsb_acme_events[i].help,
                ngx_http_tsb_acme_events[i].name);
        }

        ngx_http_tsb_metrics_line(p, last, "%s%s%s%s %uA\n",
            ngx_http_tsb_acme_events[i].name,
            ngx_http_tsb_acme_events[i].label ? "{" : "",
            ngx_http_tsb_acme_events[i].label
                ? ngx_http_tsb_acme_events[i].label : "",
            ngx_http_tsb_acme_events[i].label ? "}" : "",
            sh->acme[i]);
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_tsb_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char              *p;
    const char          *s;
    ngx_http_tsb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = NULL;

    switch (data) {

    case NGX_HTTP_TSB_VAR_REQUEST_ID:
        if (ctx->id.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->id.data;
        v->len = ctx->id.len;
        goto found;

    case NGX_HTTP_TSB_VAR_STATUS:
        s = tsb_status_name((int) ctx->tsb_status);
        break;

    case NGX_HTTP_TSB_VAR_POLICY_REASON:
        s = ctx->reason;
        break;

    case NGX_HTTP_TSB_VAR_CACHE_STATUS:
        s = ctx->cache_status ? ngx_http_tsb_cache_status_name(
                                                     ctx->cache_status)
                              : NULL;
        break;

    default: /* NGX_HTTP_TSB_VAR_UPSTREAM_TIME */
        if (!ctx->upstream_timed) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%T.%03M",
                             (time_t) ctx->upstream_time / 1000,
                             ctx->upstream_time % 1000) - p;
        goto found;
    }

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = (u_char *) s;
    v->len = ngx_strlen(s);

found:

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
