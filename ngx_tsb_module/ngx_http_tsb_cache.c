
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The request status cache.
 *
 * Shared memory (one zone, every worker): an rbtree keyed by a hash of the
 * request id, an LRU queue, entries holding the status, the certificate as
 * DER and what the gateway accepted.  A worker that refreshes an entry marks
 * it "updating" until a deadline, so the other workers wait for its answer
 * instead of asking the TSB themselves.
 *
 * An entry is a node of at most 256 bytes (the header, the id and the first
 * bytes of the rest) and a chain of 128-byte chunks for what does not fit.
 * The slab allocator rounds every allocation up to a power of two and a
 * whole 4 KiB page above 2 KiB: a 2.1 KiB entry in one piece would take
 * 4 KiB, in chunks it wastes less than one chunk.  The approver lists of
 * the status JSON (the TSB names approvers by their public keys, 392
 * characters each, the same few in every entry) are kept once per zone
 * with a reference count.
 *
 * Process memory (one worker): a "watch" per request id that has waiting
 * requests.  It owns the single refresh of that id in this worker, polls the
 * zone while another worker refreshes it, and wakes its waiters when an
 * answer lands; ?wait= waiters stay until the status is terminal or their
 * time is up, refreshed once per tsb_refresh_interval for all of them.  A
 * ?wait= waiter that sent If-None-Match with the status document's ETag is
 * answered as soon as the document differs from it: an approval, not only
 * the end.  Every worker's watch of an id is timed from the zone's last
 * refresh of it, so that they all look when one of them asks the TSB, and
 * the others take its answer within a poll (NGX_HTTP_TSB_POLL_MS).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_store.h"
#include "ngx_http_tsb_metrics.h"
#include "tsb_owner.h"
#include "tsb_etag.h"


/* how often a watch looks at the zone while another worker refreshes */
#define NGX_HTTP_TSB_POLL_MS   20


#define NGX_HTTP_TSB_NODE_MAX   256
#define NGX_HTTP_TSB_CHUNK      128


typedef struct ngx_http_tsb_cache_chunk_s  ngx_http_tsb_cache_chunk_t;

struct ngx_http_tsb_cache_chunk_s {
    ngx_http_tsb_cache_chunk_t  *next;
    u_char                       data[NGX_HTTP_TSB_CHUNK - sizeof(void *)];
};


/* a text kept once per zone: the approver lists of a status */
typedef struct {
    ngx_str_node_t               sn;            /* key: crc32 of the text */
    ngx_uint_t                   refs;
    u_char                       data[1];
} ngx_http_tsb_cache_text_t;


typedef struct {
    ngx_rbtree_node_t            node;          /* key: hash of the id */
    ngx_queue_t                  queue;         /* LRU, most recent first */
    uint64_t                     fetched;       /* ms, 0: nothing known */
    uint64_t                     updating;      /* ms, a refresh runs until */
    time_t                       not_after;
    time_t                       last_modified;
    ngx_http_tsb_cache_text_t   *lists;         /* the status's approvers */
    ngx_http_tsb_cache_chunk_t  *more;          /* the data after the node */
    uint32_t                     der_len;
    uint16_t                     head_len;      /* status JSON before, */
    uint16_t                     tail_len;      /* and after the lists */
    uint16_t                     expect_len;
    u_char                       id_len;
    u_char                       status;
    u_char                       serial_len;
    u_char                       filename_len;
    u_char                       detail_len;
    u_char                       mismatch;
    u_char                       pinned;        /* in sh->pinned, not LRU */
    u_char                       etag[8];       /* as hex in ETag */
    u_char                       data[1];       /* id, status head, tail,
                                                   expect, serial, name,
                                                   mismatch detail, DER */
} ngx_http_tsb_cache_node_t;


#define NGX_HTTP_TSB_NODE_DATA                                               \
    (NGX_HTTP_TSB_NODE_MAX - offsetof(ngx_http_tsb_cache_node_t, data))


/* a position in an entry's data, which runs from the node into chunks */
typedef struct {
    u_char                      *pos;
    size_t                       left;          /* in this piece */
    ngx_http_tsb_cache_chunk_t  *next;
} ngx_http_tsb_cache_cursor_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_rbtree_t                 texts;
    ngx_rbtree_node_t            texts_sentinel;
    ngx_queue_t                  queue;
    ngx_uint_t                   entries;
    ngx_uint_t                   evictions;
    ngx_uint_t                   nomem_logged;

    /*
     * Evidence: entries holding what was accepted for a request not ended
     * yet (or whose certificate was refused) are never evicted.  They are
     * kept out of the LRU queue, and the signs that would make them are
     * refused once they (and the signs in flight) would take more than
     * pinned_max bytes, so that the rest of the zone stays for the LRU.
     */
    ngx_queue_t                  pinned;
    size_t                       pinned_size;
    size_t                       pinned_max;
    size_t                       reserved;      /* signs in flight */
    ngx_uint_t                   full_logged;
} ngx_http_tsb_cache_sh_t;


typedef struct {
    ngx_http_tsb_cache_sh_t     *sh;
    ngx_slab_pool_t             *shpool;

    /* configuration time: the issuer chain of the locations using it */
    ngx_http_tsb_loc_conf_t     *first;
    ngx_str_t                    first_name;
} ngx_http_tsb_cache_ctx_t;


typedef struct ngx_http_tsb_watch_s  ngx_http_tsb_watch_t;

typedef struct {
    ngx_queue_t                  queue;
    ngx_http_request_t          *request;
    ngx_http_tsb_watch_t        *watch;
    ngx_http_tsb_serve_pt        serve;
    ngx_event_t                  timer;        /* the waiter's deadline */
    ngx_str_t                    inm;          /* If-None-Match, ?wait */
    unsigned                     linked:1;
    unsigned                     terminal:1;   /* ?wait: only a final one */
} ngx_http_tsb_waiter_t;


struct ngx_http_tsb_watch_s {
    ngx_rbtree_node_t            node;
    ngx_str_t                    id;
    u_char                       id_data[NGX_HTTP_TSB_ID_MAX];
    ngx_queue_t                  waiters;
    ngx_http_tsb_loc_conf_t     *conf;
    ngx_log_t                   *log;

    ngx_pool_t                  *fetch_pool;   /* the refresh in flight */
    ngx_http_tsb_fetch_t        *fetch;

    ngx_pool_t                  *snap_pool;    /* the last known entry */
    ngx_http_tsb_entry_t        *snap;

    ngx_str_t                    accepted;     /* from tsb_store, malloc */

    ngx_event_t                  timer;        /* refresh / poll / step */
    uint64_t                     want_since;   /* newer than this, ms */
    ngx_msec_t                   upstream_time; /* of the last refresh */
    unsigned                     upstream_timed:1;

    tsb_error_t                  err;          /* the last refresh failed */
    unsigned                     failed:1;
    unsigned                     delivering:1;
    unsigned                     loading:1;    /* reading tsb_store */
    unsigned                     store_tried:1;
};


static ngx_int_t ngx_http_tsb_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_tsb_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_tsb_cache_node_t *ngx_http_tsb_cache_lookup(
    ngx_http_tsb_cache_ctx_t *ctx, ngx_str_t *id, uint32_t hash);
static void *ngx_http_tsb_cache_alloc(ngx_http_tsb_cache_ctx_t *ctx,
    size_t size, ngx_log_t *log);
static ngx_http_tsb_cache_text_t *ngx_http_tsb_cache_text_get(
    ngx_http_tsb_cache_ctx_t *ctx, ngx_str_t *text, ngx_log_t *log);
static void ngx_http_tsb_cache_text_put(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_text_t *t);
static void ngx_http_tsb_cache_unhex(u_char *dst, u_char *hex, size_t n);
static size_t ngx_http_tsb_cache_data_len(ngx_http_tsb_cache_node_t *cn);
static size_t ngx_http_tsb_cache_cost(size_t size);
static void ngx_http_tsb_cache_link(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_node_t *cn, ngx_uint_t pin);
static void ngx_http_tsb_cache_cursor(ngx_http_tsb_cache_cursor_t *cur,
    ngx_http_tsb_cache_node_t *cn);
static u_char *ngx_http_tsb_cache_piece(ngx_http_tsb_cache_cursor_t *cur,
    size_t *n);
static u_char *ngx_http_tsb_cache_read(ngx_http_tsb_cache_cursor_t *cur,
    u_char *dst, size_t n);
static void ngx_http_tsb_cache_read_expect(ngx_http_tsb_cache_node_t *cn,
    u_char *dst);
static void ngx_http_tsb_cache_write(ngx_http_tsb_cache_cursor_t *cur,
    u_char *src, size_t n);
static ngx_int_t ngx_http_tsb_cache_split(ngx_http_tsb_entry_t *e,
    tsb_buf_t *rebuilt, ngx_str_t *parts);
static void ngx_http_tsb_cache_delete(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_node_t *cn);
static ngx_int_t ngx_http_tsb_cache_store(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_entry_t *e, ngx_log_t *log);
static ngx_int_t ngx_http_tsb_cache_copy(ngx_http_tsb_cache_node_t *cn,
    ngx_pool_t *pool, ngx_http_tsb_entry_t *e);
static ngx_uint_t ngx_http_tsb_cache_fresh(ngx_http_tsb_loc_conf_t *tlcf,
    ngx_http_tsb_cache_node_t *cn, uint64_t now);

static ngx_http_tsb_watch_t *ngx_http_tsb_watch_get(ngx_http_request_t *r,
    ngx_str_t *id, uint32_t hash);
static void ngx_http_tsb_watch_event(ngx_event_t *ev);
static void ngx_http_tsb_watch_step(ngx_http_tsb_watch_t *w);
static void ngx_http_tsb_watch_fetch_done(ngx_http_tsb_fetch_t *f);
static void ngx_http_tsb_watch_deliver(ngx_http_tsb_watch_t *w,
    ngx_uint_t final);
static void ngx_http_tsb_watch_schedule(ngx_http_tsb_watch_t *w,
    ngx_msec_t delay);
static void ngx_http_tsb_watch_release(ngx_http_tsb_watch_t *w);
static ngx_int_t ngx_http_tsb_watch_snapshot(ngx_http_tsb_watch_t *w,
    ngx_http_tsb_cache_node_t *cn);
static void ngx_http_tsb_watch_loaded(void *data, ngx_http_tsb_entry_t *e,
    ngx_str_t *accepted);
static void ngx_http_tsb_watch_unclaim(ngx_http_tsb_watch_t *w);
static void ngx_http_tsb_watch_forget(ngx_http_tsb_watch_t *w,
    ngx_uint_t notfound);
static ngx_int_t ngx_http_tsb_watch_copy(ngx_http_tsb_watch_t *w,
    ngx_http_tsb_entry_t *e);
static ngx_uint_t ngx_http_tsb_cache_changed(ngx_http_tsb_entry_t *e,
    ngx_str_t *inm);
static void ngx_http_tsb_waiter_serve(ngx_http_tsb_waiter_t *wt,
    ngx_uint_t timed_out);
static void ngx_http_tsb_waiter_timeout(ngx_event_t *ev);
static void ngx_http_tsb_waiter_cleanup(void *data);
static ngx_int_t ngx_http_tsb_parse_iso_time(const char *s, time_t *t);


static ngx_rbtree_t       ngx_http_tsb_watches;
static ngx_rbtree_node_t  ngx_http_tsb_watches_sentinel;
static ngx_connection_t   ngx_http_tsb_watch_conn;


static const char  *ngx_http_tsb_cache_status_names[] = {
    "", "HIT", "MISS", "STALE", "UPDATING"
};


uint64_t
ngx_http_tsb_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* configuration */

/*
 * An entry's certificate is checked once, when a location fetches it,
 * against that location's tsb_issuer_chain; every location that shares the
 * zone serves it.  So they must all have the same chain.
 */

char *
ngx_http_tsb_cache_check_issuers(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *tlcf, ngx_str_t *location)
{
    ngx_http_tsb_cache_ctx_t  *ctx;

    ctx = tlcf->cache_zone->data;

    if (ctx == NULL) {
        return NGX_CONF_OK;
    }

    if (ctx->first == NULL) {
        ctx->first = tlcf;
        ctx->first_name = *location;
        return NGX_CONF_OK;
    }

    if (!tsb_chain_equal(ctx->first->issuers, tlcf->issuers)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "locations \"%V\" and \"%V\" share tsb_cache "
                           "zone \"%V\" with different tsb_issuer_chain: a "
                           "cached certificate is checked against the chain "
                           "of the location that fetched it, so give them "
                           "the same chain or zones of their own",
                           &ctx->first_name, location,
                           &tlcf->cache_zone->shm.name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                    *p;
    ssize_t                    size;
    ngx_str_t                 *value, name, s;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_tsb_cache_ctx_t  *ctx;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');
    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", use name:size", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_tsb_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_tsb_cache_init_zone;
    shm_zone->data = ctx;

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->cache_zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->cache_zone = NULL;
        return NGX_CONF_OK;
    }

    /* size 0: a reference, tsb_cache_zone may come later in the file */
    tlcf->cache_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                             &ngx_http_tsb_module);
    if (tlcf->cache_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_cache_valid(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    time_t      valid;
    ngx_int_t   status;
    ngx_str_t  *value;
    ngx_uint_t  i;

    value = cf->args->elts;

    valid = ngx_parse_time(&value[cf->args->nelts - 1], 1);
    if (valid == (time_t) NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time value \"%V\"",
                           &value[cf->args->nelts - 1]);
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts - 1; i++) {
        status = tsb_status_from_name((char *) value[i].data, value[i].len);

        if (status == TSB_STATUS_UNKNOWN) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown TSB status \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        tlcf->cache_valid[status] = valid;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tsb_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tsb_cache_ctx_t  *octx = data;

    size_t                     len;
    ngx_http_tsb_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload with the same name and size: keep every entry */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_tsb_cache_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ctx->sh, sizeof(ngx_http_tsb_cache_sh_t));

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_tsb_cache_rbtree_insert);
    ngx_rbtree_init(&ctx->sh->texts, &ctx->sh->texts_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ctx->sh->queue);
    ngx_queue_init(&ctx->sh->pinned);

    /* half the zone for evidence, the other half for the LRU */
    ctx->sh->pinned_max = shm_zone->shm.size / 2;

    len = sizeof(" in tsb_cache_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in tsb_cache_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* we evict and retry on allocation failure, and say so once */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_tsb_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_tsb_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_tsb_cache_node_t *) node;
            cnt = (ngx_http_tsb_cache_node_t *) temp;

            p = (ngx_memn2cmp(cn->data, cnt->data, cn->id_len, cnt->id_len)
                 < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* shared memory, all under the zone's mutex */

static ngx_http_tsb_cache_node_t *
ngx_http_tsb_cache_lookup(ngx_http_tsb_cache_ctx_t *ctx, ngx_str_t *id,
    uint32_t hash)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_tsb_cache_node_t  *cn;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_tsb_cache_node_t *) node;

        rc = ngx_memn2cmp(id->data, cn->data, id->len, cn->id_len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void *
ngx_http_tsb_cache_alloc(ngx_http_tsb_cache_ctx_t *ctx, size_t size,
    ngx_log_t *log)
{
    void                       *p;
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_tsb_cache_node_t  *cn;

    for (n = 0; /* void */ ; n++) {

        p = ngx_slab_alloc_locked(ctx->shpool, size);
        if (p) {
            return p;
        }

        /* full: the least recently used entries make room, a few at most */

        if (n == 16 || ngx_queue_empty(&ctx->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&ctx->sh->queue);
        cn = ngx_queue_data(q, ngx_http_tsb_cache_node_t, queue);

        ngx_http_tsb_cache_delete(ctx, cn);
        ctx->sh->evictions++;
        ngx_http_tsb_metrics_eviction();
    }

    if (!ctx->sh->nomem_logged) {
        ctx->sh->nomem_logged = 1;
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tsb: cache zone is full and eviction did not free "
                      "%uz bytes; answers are not cached until it does",
                      size);
    }

    return NULL;
}


static void
ngx_http_tsb_cache_delete(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_node_t *cn)
{
    ngx_http_tsb_cache_chunk_t  *c, *next;

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, &cn->node);

    if (cn->pinned) {
        ctx->sh->pinned_size -= ngx_http_tsb_cache_cost(
                                    ngx_http_tsb_cache_data_len(cn));
    }

    for (c = cn->more; c; c = next) {
        next = c->next;
        ngx_slab_free_locked(ctx->shpool, c);
    }

    if (cn->lists) {
        ngx_http_tsb_cache_text_put(ctx, cn->lists);
    }

    ngx_slab_free_locked(ctx->shpool, cn);
    ctx->sh->entries--;
}


static ngx_http_tsb_cache_text_t *
ngx_http_tsb_cache_text_get(ngx_http_tsb_cache_ctx_t *ctx, ngx_str_t *text,
    ngx_log_t *log)
{
    uint32_t                    hash;
    ngx_str_node_t             *sn;
    ngx_http_tsb_cache_text_t  *t;

    hash = ngx_crc32_long(text->data, text->len);

    sn = ngx_str_rbtree_lookup(&ctx->sh->texts, text, hash);

    if (sn) {
        t = (ngx_http_tsb_cache_text_t *) sn;
        t->refs++;
        return t;
    }

    t = ngx_http_tsb_cache_alloc(ctx,
                                 offsetof(ngx_http_tsb_cache_text_t, data)
                                 + text->len, log);
    if (t == NULL) {
        return NULL;
    }

    ngx_memcpy(t->data, text->data, text->len);

    t->sn.node.key = hash;
    t->sn.str.len = text->len;
    t->sn.str.data = t->data;
    t->refs = 1;

    ngx_rbtree_insert(&ctx->sh->texts, &t->sn.node);

    return t;
}


static void
ngx_http_tsb_cache_text_put(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_text_t *t)
{
    if (--t->refs == 0) {
        ngx_rbtree_delete(&ctx->sh->texts, &t->sn.node);
        ngx_slab_free_locked(ctx->shpool, t);
    }
}


/* the ETag's hex is ngx_hex_dump()'s: lower case */

static void
ngx_http_tsb_cache_unhex(u_char *dst, u_char *hex, size_t n)
{
    u_char      c, v;
    ngx_uint_t  i;

    ngx_memzero(dst, n);

    for (i = 0; i < 2 * n; i++) {
        c = hex[i];

        if (c >= '0' && c <= '9') {
            v = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            v = c - 'a' + 10;

        } else {
            return;
        }

        dst[i / 2] |= (i % 2) ? v : (u_char) (v << 4);
    }
}


static size_t
ngx_http_tsb_cache_data_len(ngx_http_tsb_cache_node_t *cn)
{
    return cn->id_len + cn->head_len + cn->tail_len + cn->expect_len
           + cn->serial_len + cn->filename_len + cn->detail_len
           + cn->der_len;
}


/* what an entry of size bytes of data takes in the zone, at most */

static size_t
ngx_http_tsb_cache_cost(size_t size)
{
    size_t  rest, per;

    rest = size - ngx_min(size, NGX_HTTP_TSB_NODE_DATA);
    per = NGX_HTTP_TSB_CHUNK - sizeof(void *);

    return NGX_HTTP_TSB_NODE_MAX + NGX_HTTP_TSB_CHUNK * ((rest + per - 1) / per);
}


/* a new entry into the LRU queue, or among the evidence that stays */

static void
ngx_http_tsb_cache_link(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_cache_node_t *cn, ngx_uint_t pin)
{
    ngx_rbtree_insert(&ctx->sh->rbtree, &cn->node);
    ctx->sh->entries++;

    if (pin) {
        cn->pinned = 1;
        ctx->sh->pinned_size += ngx_http_tsb_cache_cost(
                                    ngx_http_tsb_cache_data_len(cn));
        ngx_queue_insert_head(&ctx->sh->pinned, &cn->queue);
        return;
    }

    ngx_queue_insert_head(&ctx->sh->queue, &cn->queue);
}


static void
ngx_http_tsb_cache_cursor(ngx_http_tsb_cache_cursor_t *cur,
    ngx_http_tsb_cache_node_t *cn)
{
    cur->pos = cn->data;
    cur->left = ngx_min(ngx_http_tsb_cache_data_len(cn),
                        NGX_HTTP_TSB_NODE_DATA);
    cur->next = cn->more;
}


/* the next piece of the entry's data: at most *n bytes, *n set to how many */

static u_char *
ngx_http_tsb_cache_piece(ngx_http_tsb_cache_cursor_t *cur, size_t *n)
{
    u_char  *p;

    if (cur->left == 0) {
        cur->pos = cur->next->data;
        cur->left = sizeof(cur->next->data);
        cur->next = cur->next->next;
    }

    *n = ngx_min(*n, cur->left);

    p = cur->pos;
    cur->pos += *n;
    cur->left -= *n;

    return p;
}


/* copies what was accepted (cn->expect_len bytes) to dst */

static void
ngx_http_tsb_cache_read_expect(ngx_http_tsb_cache_node_t *cn, u_char *dst)
{
    ngx_http_tsb_cache_cursor_t  cur;

    ngx_http_tsb_cache_cursor(&cur, cn);

    /* it follows the id and the status JSON around the lists */
    (void) ngx_http_tsb_cache_read(&cur, NULL,
                                   cn->id_len + cn->head_len + cn->tail_len);
    (void) ngx_http_tsb_cache_read(&cur, dst, cn->expect_len);
}


/* copies n bytes of the entry's data to dst, or skips them (dst NULL) */

static u_char *
ngx_http_tsb_cache_read(ngx_http_tsb_cache_cursor_t *cur, u_char *dst,
    size_t n)
{
    size_t   k;
    u_char  *p;

    while (n) {
        k = n;
        p = ngx_http_tsb_cache_piece(cur, &k);

        if (dst) {
            dst = ngx_cpymem(dst, p, k);
        }

        n -= k;
    }

    return dst;
}


static void
ngx_http_tsb_cache_write(ngx_http_tsb_cache_cursor_t *cur, u_char *src,
    size_t n)
{
    size_t   k;
    u_char  *p;

    while (n) {
        k = n;
        p = ngx_http_tsb_cache_piece(cur, &k);

        ngx_memcpy(p, src, k);

        src += k;
        n -= k;
    }
}


/*
 * The status JSON as head, approver lists and tail.  An entry read from
 * tsb_store brings the JSON alone: it is parsed and built again, which
 * gives the same bytes and says where the lists are.
 */

static ngx_int_t
ngx_http_tsb_cache_split(ngx_http_tsb_entry_t *e, tsb_buf_t *rebuilt,
    ngx_str_t *parts)
{
    u_char        *json;
    size_t         len, pos, lists;
    tsb_error_t    err;
    tsb_status_t   st;

    ngx_memzero(parts, 3 * sizeof(ngx_str_t));

    rebuilt->data = NULL;
    rebuilt->len = 0;

    if (e->status_json.len == 0) {
        return NGX_OK;
    }

    json = e->status_json.data;
    len = e->status_json.len;
    pos = e->lists_pos;
    lists = e->lists_len;

    if (lists == 0) {
        ngx_memzero(&err, sizeof(tsb_error_t));

        if (tsb_status_parse(json, len, &st, &err) != 0) {
            return NGX_ERROR;
        }

        if (tsb_status_build_split(&st, rebuilt, &pos, &lists) != 0) {
            tsb_status_free(&st);
            return NGX_ERROR;
        }

        tsb_status_free(&st);

        json = rebuilt->data;
        len = rebuilt->len;
    }

    if (pos + lists > len || pos > 0xffff || len - pos - lists > 0xffff) {
        return NGX_ERROR;
    }

    parts[0].data = json;
    parts[0].len = pos;
    parts[1].data = json + pos;
    parts[1].len = lists;
    parts[2].data = json + pos + lists;
    parts[2].len = len - pos - lists;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_cache_store(ngx_http_tsb_cache_ctx_t *ctx,
    ngx_http_tsb_entry_t *e, ngx_log_t *log)
{
    size_t                        size, rest;
    uint32_t                      hash;
    ngx_str_t                     expect, json[3];
    ngx_int_t                     rc;
    tsb_buf_t                     rebuilt;
    ngx_http_tsb_cache_node_t    *cn, *old;
    ngx_http_tsb_cache_text_t    *lists;
    ngx_http_tsb_cache_chunk_t   *c, **last;
    ngx_http_tsb_cache_cursor_t   cur;

    if (ngx_http_tsb_cache_split(e, &rebuilt, json) != NGX_OK) {
        tsb_buf_free(&rebuilt);
        return NGX_DECLINED;
    }

    hash = ngx_crc32_short(e->id.data, e->id.len);

    ngx_str_null(&expect);
    lists = NULL;
    cn = NULL;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    old = ngx_http_tsb_cache_lookup(ctx, &e->id, hash);

    /* what was accepted at sign time outlives status refreshes */
    expect = e->expect;

    if (expect.len == 0 && old && old->expect_len) {
        expect.len = old->expect_len;
        expect.data = ngx_alloc(expect.len, log);

        if (expect.data == NULL) {
            goto done;
        }

        ngx_http_tsb_cache_read_expect(old, expect.data);
    }

    if (expect.len > 0xffff) {
        /* more than cn->expect_len can say (the split checked the JSON) */
        goto done;
    }

    /* the lists first: evicting for the node must not free them */

    if (json[1].len) {
        lists = ngx_http_tsb_cache_text_get(ctx, &json[1], log);
        if (lists == NULL) {
            goto done;
        }
    }

    size = e->id.len + json[0].len + json[2].len + expect.len
           + ngx_min(e->serial.len, 255) + ngx_min(e->filename.len, 255)
           + ngx_min(e->detail.len, 255) + e->der.len;

    cn = ngx_http_tsb_cache_alloc(ctx,
                                  offsetof(ngx_http_tsb_cache_node_t, data)
                                  + ngx_min(size, NGX_HTTP_TSB_NODE_DATA),
                                  log);
    if (cn == NULL) {
        goto done;
    }

    ngx_memzero(cn, offsetof(ngx_http_tsb_cache_node_t, data));

    last = &cn->more;

    for (rest = size - ngx_min(size, NGX_HTTP_TSB_NODE_DATA);
         rest;
         rest -= ngx_min(rest, sizeof(c->data)))
    {
        c = ngx_http_tsb_cache_alloc(ctx, NGX_HTTP_TSB_CHUNK, log);
        if (c == NULL) {
            goto done;
        }

        c->next = NULL;
        *last = c;
        last = &c->next;
    }

    cn->node.key = hash;
    cn->fetched = e->fetched;
    cn->not_after = e->not_after;
    cn->last_modified = e->last_modified;
    cn->lists = lists;
    cn->id_len = (u_char) e->id.len;
    cn->status = (u_char) e->status;
    cn->head_len = (uint16_t) json[0].len;
    cn->tail_len = (uint16_t) json[2].len;
    cn->der_len = (uint32_t) e->der.len;
    cn->expect_len = (uint16_t) expect.len;
    cn->serial_len = (u_char) ngx_min(e->serial.len, 255);
    cn->filename_len = (u_char) ngx_min(e->filename.len, 255);
    cn->detail_len = (u_char) ngx_min(e->detail.len, 255);
    cn->mismatch = e->mismatch;

    if (e->etag.len == 18) {
        ngx_http_tsb_cache_unhex(cn->etag, e->etag.data + 1, 8);
    }

    ngx_http_tsb_cache_cursor(&cur, cn);

    ngx_http_tsb_cache_write(&cur, e->id.data, e->id.len);
    ngx_http_tsb_cache_write(&cur, json[0].data, json[0].len);
    ngx_http_tsb_cache_write(&cur, json[2].data, json[2].len);
    ngx_http_tsb_cache_write(&cur, expect.data, expect.len);
    ngx_http_tsb_cache_write(&cur, e->serial.data, cn->serial_len);
    ngx_http_tsb_cache_write(&cur, e->filename.data, cn->filename_len);
    ngx_http_tsb_cache_write(&cur, e->detail.data, cn->detail_len);
    ngx_http_tsb_cache_write(&cur, e->der.data, e->der.len);

    /* the allocations may have evicted old */
    old = ngx_http_tsb_cache_lookup(ctx, &e->id, hash);

    if (old) {
        ngx_http_tsb_cache_delete(ctx, old);
    }

    /*
     * What was accepted stays until the request has ended and its
     * certificate was checked; a refused certificate's entry stays too:
     * evicted, the next fetch would find no record to refuse it with.
     */
    ngx_http_tsb_cache_link(ctx, cn,
                            expect.len
                            && (!tsb_status_is_terminal((int) e->status)
                                || e->mismatch));

    cn = NULL;
    lists = NULL;
    rc = NGX_OK;

done:

    if (cn) {
        for (c = cn->more; c; c = cn->more) {
            cn->more = c->next;
            ngx_slab_free_locked(ctx->shpool, c);
        }

        ngx_slab_free_locked(ctx->shpool, cn);
    }

    if (lists) {
        ngx_http_tsb_cache_text_put(ctx, lists);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (expect.data && expect.data != e->expect.data) {
        ngx_free(expect.data);
    }

    tsb_buf_free(&rebuilt);

    return rc;
}


static ngx_int_t
ngx_http_tsb_cache_copy(ngx_http_tsb_cache_node_t *cn, ngx_pool_t *pool,
    ngx_http_tsb_entry_t *e)
{
    u_char                       *p, *q;
    size_t                        lists;
    ngx_http_tsb_cache_cursor_t   cur;

    lists = cn->lists ? cn->lists->sn.str.len : 0;

    p = ngx_pnalloc(pool, ngx_http_tsb_cache_data_len(cn) + lists + 18);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(e, sizeof(ngx_http_tsb_entry_t));

    ngx_http_tsb_cache_cursor(&cur, cn);

    e->id.data = p;
    e->id.len = cn->id_len;
    q = ngx_http_tsb_cache_read(&cur, p, cn->id_len);

    /* the status JSON whole again: head, the zone's lists, tail */

    e->status_json.data = q;
    e->status_json.len = cn->head_len + lists + cn->tail_len;
    e->lists_pos = cn->head_len;
    e->lists_len = lists;

    q = ngx_http_tsb_cache_read(&cur, q, cn->head_len);

    if (lists) {
        q = ngx_cpymem(q, cn->lists->sn.str.data, lists);
    }

    q = ngx_http_tsb_cache_read(&cur, q, cn->tail_len);

    e->expect.data = q;
    e->expect.len = cn->expect_len;
    q = ngx_http_tsb_cache_read(&cur, q, cn->expect_len);

    e->serial.data = q;
    e->serial.len = cn->serial_len;
    q = ngx_http_tsb_cache_read(&cur, q, cn->serial_len);

    e->filename.data = q;
    e->filename.len = cn->filename_len;
    q = ngx_http_tsb_cache_read(&cur, q, cn->filename_len);

    e->detail.data = q;
    e->detail.len = cn->detail_len;
    q = ngx_http_tsb_cache_read(&cur, q, cn->detail_len);

    e->der.data = q;
    e->der.len = cn->der_len;
    q = ngx_http_tsb_cache_read(&cur, q, cn->der_len);

    if (cn->der_len) {
        e->etag.data = q;
        e->etag.len = 18;
        *q++ = '"';
        q = ngx_hex_dump(q, cn->etag, 8);
        *q = '"';
    }

    e->status = cn->status;
    e->fetched = cn->fetched;
    e->not_after = cn->not_after;
    e->last_modified = cn->last_modified;
    e->mismatch = cn->mismatch;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_tsb_cache_fresh(ngx_http_tsb_loc_conf_t *tlcf,
    ngx_http_tsb_cache_node_t *cn, uint64_t now)
{
    time_t  valid;

    if (cn->fetched == 0 || cn->status == TSB_STATUS_UNKNOWN) {
        return 0;
    }

    valid = tlcf->cache_valid[cn->status];

    return now < cn->fetched + (uint64_t) valid * 1000;
}


ngx_int_t
ngx_http_tsb_cache_remember(ngx_http_request_t *r, ngx_str_t *id,
    u_char *expect, size_t expect_len)
{
    ngx_http_tsb_entry_t      e;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (tlcf->cache_zone == NULL || id->len > NGX_HTTP_TSB_ID_MAX
        || expect_len > 0xffff)
    {
        return NGX_DECLINED;
    }

    /*
     * No status JSON yet: the entry is not fresh until a status GET has
     * brought the TSB's own answer, but it carries the expectation.
     */

    ngx_memzero(&e, sizeof(ngx_http_tsb_entry_t));

    e.id = *id;
    e.status = TSB_STATUS_UNKNOWN;
    e.expect.data = expect;
    e.expect.len = expect_len;

    return ngx_http_tsb_cache_store(tlcf->cache_zone->data, &e,
                                    r->connection->log);
}


/*
 * Before a sign goes to the TSB: room for what will be accepted, set aside
 * until remember() (or its failure) says how much it took.  A pending entry
 * grows by its status JSON (the approver lists are kept once per zone).
 */

ngx_int_t
ngx_http_tsb_cache_reserve(ngx_http_tsb_loc_conf_t *tlcf, size_t expect_len,
    size_t *reserved, ngx_log_t *log)
{
    size_t                     cost;
    ngx_int_t                  rc;
    ngx_http_tsb_cache_ctx_t  *ctx;

    *reserved = 0;

    if (tlcf->cache_zone == NULL) {
        return NGX_OK;
    }

    ctx = tlcf->cache_zone->data;
    cost = ngx_http_tsb_cache_cost(NGX_HTTP_TSB_ID_MAX + 256 + expect_len);
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->pinned_size + ctx->sh->reserved + cost
        > ctx->sh->pinned_max)
    {
        rc = NGX_DECLINED;

        if (!ctx->sh->full_logged) {
            ctx->sh->full_logged = 1;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tsb: cache zone \"%V\" has no room left for what "
                          "is accepted for pending requests (%uz bytes "
                          "kept): sign requests are refused until some "
                          "end; see operations-cache.md",
                          &tlcf->cache_zone->shm.name,
                          ctx->sh->pinned_size + ctx->sh->reserved);
        }

    } else {
        ctx->sh->reserved += cost;
        ctx->sh->full_logged = 0;
        *reserved = cost;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


void
ngx_http_tsb_cache_unreserve(ngx_http_tsb_loc_conf_t *tlcf, size_t reserved)
{
    ngx_http_tsb_cache_ctx_t  *ctx;

    if (tlcf->cache_zone == NULL || reserved == 0) {
        return;
    }

    ctx = tlcf->cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ctx->sh->reserved -= ngx_min(reserved, ctx->sh->reserved);
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_tsb_cache_expire(ngx_http_tsb_loc_conf_t *tlcf, ngx_str_t *id)
{
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;

    if (tlcf->cache_zone == NULL || id->len > NGX_HTTP_TSB_ID_MAX) {
        return;
    }

    ctx = tlcf->cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /*
     * fetched 0: the next status request asks the TSB (and sees
     * CANCELLED); what was accepted at sign time stays with the entry.
     */
    cn = ngx_http_tsb_cache_lookup(ctx, id,
                                   ngx_crc32_short(id->data, id->len));
    if (cn) {
        cn->fetched = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* entries from the TSB's answers */

ngx_int_t
ngx_http_tsb_entry_from_upstream(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_tsb_fetch_t *f, ngx_str_t *id, ngx_str_t *expect,
    ngx_http_tsb_loc_conf_t *tlcf, ngx_http_tsb_entry_t *e,
    tsb_error_t *err)
{
    int             mismatch, status_only, loaded;
    u_char         *p, ch;
    size_t          i, xlen;
    ngx_int_t       rc;
    tsb_buf_t       out;
    tsb_error_t     verr;
    tsb_cert_t      cert;
    tsb_status_t    st;
    const u_char   *x, *owner;
    unsigned char   md[SHA256_DIGEST_LENGTH];

    ngx_memzero(e, sizeof(ngx_http_tsb_entry_t));
    ngx_memzero(&st, sizeof(tsb_status_t));
    ngx_memzero(&cert, sizeof(tsb_cert_t));

    status_only = 0;

    if (f->status == NGX_HTTP_NOT_FOUND) {
        tsb_error_set(err, NGX_HTTP_NOT_FOUND, "request.unknown",
                      "the TSB does not know this request id");
        return NGX_ERROR;
    }

    if (tsb_status_parse(f->body, f->body_len, &st, err) != 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tsb: %V answered an unusable status: %s",
                      &f->url, err->detail);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    /* an answer for another id would poison the cache */
    if (ngx_strlen(st.id) != id->len
        || ngx_strncmp(st.id, id->data, id->len) != 0)
    {
        tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.response",
                      "the TSB answered for another request id");
        goto done;
    }

    e->id.data = ngx_pstrdup(pool, id);
    e->id.len = id->len;
    e->status = st.status;
    e->fetched = ngx_http_tsb_now_ms();
    e->last_modified = ngx_time();

    if (e->id.data == NULL) {
        goto failed;
    }

    if (expect && expect->len) {
        e->expect.data = ngx_pstrdup(pool, expect);
        e->expect.len = expect->len;

        if (e->expect.data == NULL) {
            goto failed;
        }
    }

    if (st.status == TSB_STATUS_EXECUTED) {

        loaded = (st.result != NULL
                  && tsb_cert_load((u_char *) st.result,
                                   ngx_strlen(st.result), &cert, err)
                     == 0);

        if (!loaded && (expect == NULL || expect->len == 0)) {
            /*
             * A key operation (an asynchronous sign, decrypt, block,
             * modify: result a signature, or null), not a request the
             * gateway accepted as a certificate request: status only,
             * passed and cached as the TSB answered.  It has no DER, so
             * it is never served as a certificate.
             */
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "tsb: request %V is EXECUTED and its result is no "
                          "certificate, and the gateway accepted no "
                          "certificate request with this id: its status is "
                          "passed as the TSB answered", id);

            ngx_memzero(err, sizeof(tsb_error_t));
            status_only = 1;

            goto status;
        }

        if (!loaded) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tsb: request %V is EXECUTED but its result is "
                          "not a certificate", id);
            tsb_error_set(err, NGX_HTTP_BAD_GATEWAY, "upstream.certificate",
                          "the TSB reported EXECUTED without a usable "
                          "certificate");
            goto done;
        }

        if (st.execution_time) {
            (void) ngx_http_tsb_parse_iso_time(st.execution_time,
                                               &e->last_modified);
        }

        /*
         * Never serve what was not asked for: the certificate must carry
         * what the gateway accepted (and come from the configured issuer).
         */

        ngx_memzero(&verr, sizeof(tsb_error_t));

        if (expect && expect->len) {
            /* the record: the owner's tag, if any, then the expectation */
            if (tsb_owner_split(expect->data, expect->len, &x, &xlen,
                                &owner)
                != 0)
            {
                x = expect->data;
                xlen = expect->len;
            }

            mismatch = tsb_expect_verify(x, xlen, &cert, NULL, 0,
                                         tlcf->issuers, &verr);

        } else if (tlcf->issuers) {
            mismatch = tsb_chain_verify_issued(tlcf->issuers, cert.der.data,
                                               cert.der.len, &verr);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tsb: no record of what was accepted for request "
                          "%V: only its issuer is checked", id);

        } else {
            mismatch = 0;

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tsb: no record of what was accepted for request "
                          "%V and no tsb_issuer_chain: its certificate is "
                          "served unchecked", id);
        }

        if (mismatch) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "tsb: request %V: the issued certificate is not "
                          "served: %s: %s", id,
                          verr.reason ? verr.reason : "issued.mismatch",
                          verr.detail);

            /* remembered as such: never served, never fetched again */
            e->mismatch = 1;

            e->detail.len = ngx_min(ngx_strlen(verr.detail), 255);
            e->detail.data = ngx_pnalloc(pool, e->detail.len);
            if (e->detail.data == NULL) {
                goto failed;
            }

            ngx_memcpy(e->detail.data, verr.detail, e->detail.len);

            goto status;
        }

        e->der.len = cert.der.len;
        e->der.data = ngx_pnalloc(pool, cert.der.len);
        e->serial.len = ngx_strlen(cert.serial_hex);
        e->serial.data = ngx_pnalloc(pool, e->serial.len);
        e->etag.len = 18;
        e->etag.data = ngx_pnalloc(pool, 18);

        if (e->der.data == NULL || e->serial.data == NULL
            || e->etag.data == NULL)
        {
            goto failed;
        }

        ngx_memcpy(e->der.data, cert.der.data, cert.der.len);
        ngx_memcpy(e->serial.data, cert.serial_hex, e->serial.len);
        e->not_after = cert.not_after;

        /* a strong validator: the certificate's own bytes */
        SHA256(cert.der.data, cert.der.len, md);
        e->etag.data[0] = '"';
        ngx_hex_dump(e->etag.data + 1, md, 8);
        e->etag.data[17] = '"';

        /* a download name from the CN, reduced to harmless characters */
        if (cert.subject_cn && cert.subject_cn[0]) {
            e->filename.len = ngx_min(ngx_strlen(cert.subject_cn), 200);
            e->filename.data = ngx_pnalloc(pool, e->filename.len);
            if (e->filename.data == NULL) {
                goto failed;
            }

            p = e->filename.data;
            for (i = 0; i < e->filename.len; i++) {
                ch = cert.subject_cn[i];

                *p++ = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                        || (ch >= '0' && ch <= '9') || ch == '.'
                        || ch == '-' || ch == '_') ? ch : '_';
            }

        } else {
            e->filename = e->id;
        }
    }

status:

    /*
     * The status JSON is kept without the PEM: the DER is kept once.  A
     * key operation's result (a signature) is part of its status.
     */

    if (!status_only) {
        free(st.result);
        st.result = NULL;
    }

    if (tsb_status_build_split(&st, &out, &e->lists_pos, &e->lists_len)
        != 0)
    {
        goto failed;
    }

    e->status_json.len = out.len;
    e->status_json.data = ngx_pnalloc(pool, out.len);

    if (e->status_json.data == NULL) {
        tsb_buf_free(&out);
        goto failed;
    }

    ngx_memcpy(e->status_json.data, out.data, out.len);
    tsb_buf_free(&out);

    rc = NGX_OK;
    goto done;

failed:

    tsb_error_set(err, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal.memory",
                  "out of memory");

done:

    tsb_status_free(&st);
    tsb_cert_free(&cert);

    return rc;
}


/* the request path */

ngx_int_t
ngx_http_tsb_cache_handle(ngx_http_request_t *r, ngx_str_t *id,
    ngx_msec_t wait, ngx_http_tsb_serve_pt serve)
{
    return ngx_http_tsb_cache_watch(r, id, wait, NULL, serve);
}


ngx_int_t
ngx_http_tsb_cache_watch(ngx_http_request_t *r, ngx_str_t *id,
    ngx_msec_t wait, ngx_str_t *inm, ngx_http_tsb_serve_pt serve)
{
    uint32_t                    hash;
    uint64_t                    now;
    ngx_uint_t                  fresh, copied, cache_status;
    ngx_http_tsb_entry_t        e;
    ngx_http_cleanup_t         *cln;
    ngx_http_tsb_watch_t       *w;
    ngx_http_tsb_waiter_t      *wt;
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;
    ngx_http_tsb_loc_conf_t    *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ctx = tlcf->cache_zone->data;

    hash = ngx_crc32_short(id->data, id->len);
    now = ngx_http_tsb_now_ms();
    cache_status = NGX_HTTP_TSB_CACHE_NONE;
    copied = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_tsb_cache_lookup(ctx, id, hash);

    if (cn && cn->fetched) {
        fresh = ngx_http_tsb_cache_fresh(tlcf, cn, now);

        if (fresh && (wait == 0 || tsb_status_is_terminal(cn->status))) {
            cache_status = NGX_HTTP_TSB_CACHE_HIT;

        } else if (fresh && inm) {
            /* the client's document is not this one: no need to wait */
            if (ngx_http_tsb_cache_copy(cn, r->pool, &e) != NGX_OK) {
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            copied = 1;

            if (ngx_http_tsb_cache_changed(&e, inm)) {
                cache_status = NGX_HTTP_TSB_CACHE_HIT;
            }

        } else if (!fresh && wait == 0 && cn->updating > now
                   && now <= cn->fetched
                             + (uint64_t) tlcf->cache_use_stale * 1000)
        {
            /*
             * Someone refreshes it right now: rather than queue behind
             * them, answer what we have if it is not older than this
             * location accepts when the TSB fails.
             */
            cache_status = NGX_HTTP_TSB_CACHE_UPDATING;
        }

        if (cache_status != NGX_HTTP_TSB_CACHE_NONE) {
            if (!cn->pinned) {
                ngx_queue_remove(&cn->queue);
                ngx_queue_insert_head(&ctx->sh->queue, &cn->queue);
            }

            if (!copied && ngx_http_tsb_cache_copy(cn, r->pool, &e) != NGX_OK)
            {
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (cache_status != NGX_HTTP_TSB_CACHE_NONE) {
        return serve(r, &e, cache_status, NULL);
    }

    /* wait for this worker's one refresh of the id */

    w = ngx_http_tsb_watch_get(r, id, hash);
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wt = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_waiter_t));
    cln = ngx_http_cleanup_add(r, 0);

    if (wt == NULL || cln == NULL) {
        ngx_http_tsb_watch_release(w);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wt->request = r;
    wt->watch = w;
    wt->serve = serve;
    wt->terminal = (wait > 0);

    if (wait && inm) {
        /* the header lives as long as r */
        wt->inm = *inm;
    }

    /* debug logging reads an event's data as a connection */
    wt->timer.data = r->connection;
    wt->timer.handler = ngx_http_tsb_waiter_timeout;
    wt->timer.log = r->connection->log;

    /*
     * Not cancelable: like a proxied request, a waiter keeps an old
     * worker alive after a reload until it is answered or its time is up
     * (worker_shutdown_timeout bounds that, as for everything else).
     */
    wt->timer.cancelable = 0;

    ngx_add_timer(&wt->timer, wait ? wait
                                   : tlcf->upstream.timeout + 1000);

    ngx_queue_insert_tail(&w->waiters, &wt->queue);
    wt->linked = 1;
    ngx_http_tsb_metrics_waiters(1);

    cln->handler = ngx_http_tsb_waiter_cleanup;
    cln->data = wt;

    /* run the step after this handler returns: never finalize r inside */
    /*
     * A new watch looks at once; one that is between refreshes keeps its
     * schedule, or every new waiter would cost an upstream GET.
     */
    if (w->fetch == NULL && !w->loading && !w->timer.timer_set
        && !w->timer.posted)
    {
        ngx_post_event(&w->timer, &ngx_posted_events);
    }

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


/*
 * Watches are ordered by the id's hash, the id, then the zone: one watch
 * per id and cache zone, shared by every location that uses the zone.
 */

static ngx_int_t
ngx_http_tsb_watch_cmp(uint32_t hash, ngx_str_t *id, ngx_shm_zone_t *zone,
    ngx_http_tsb_watch_t *w)
{
    ngx_int_t  rc;

    if (hash != w->node.key) {
        return (hash < w->node.key) ? -1 : 1;
    }

    rc = ngx_memn2cmp(id->data, w->id.data, id->len, w->id.len);
    if (rc != 0) {
        return rc;
    }

    if (zone != w->conf->cache_zone) {
        return ((uintptr_t) zone < (uintptr_t) w->conf->cache_zone) ? -1 : 1;
    }

    return 0;
}


static void
ngx_http_tsb_watch_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t     **p;
    ngx_http_tsb_watch_t   *w;

    w = (ngx_http_tsb_watch_t *) node;

    for ( ;; ) {

        p = (ngx_http_tsb_watch_cmp((uint32_t) node->key, &w->id,
                                    w->conf->cache_zone,
                                    (ngx_http_tsb_watch_t *) temp)
             < 0) ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_tsb_watch_t *
ngx_http_tsb_watch_get(ngx_http_request_t *r, ngx_str_t *id, uint32_t hash)
{
    ngx_int_t                 rc;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_tsb_watch_t     *w;
    ngx_http_tsb_loc_conf_t  *tlcf;

    if (ngx_http_tsb_watches.root == NULL) {
        ngx_rbtree_init(&ngx_http_tsb_watches, &ngx_http_tsb_watches_sentinel,
                        ngx_http_tsb_watch_insert);

        ngx_memzero(&ngx_http_tsb_watch_conn, sizeof(ngx_connection_t));
        ngx_http_tsb_watch_conn.fd = (ngx_socket_t) -1;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    node = ngx_http_tsb_watches.root;
    sentinel = ngx_http_tsb_watches.sentinel;

    while (node != sentinel) {
        w = (ngx_http_tsb_watch_t *) node;

        rc = ngx_http_tsb_watch_cmp(hash, id, tlcf->cache_zone, w);

        if (rc == 0) {
            return w;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    /* process memory: a watch outlives the request that made it */
    w = ngx_calloc(sizeof(ngx_http_tsb_watch_t), ngx_cycle->log);
    if (w == NULL) {
        return NULL;
    }

    ngx_memcpy(w->id_data, id->data, id->len);
    w->id.data = w->id_data;
    w->id.len = id->len;
    w->conf = tlcf;
    w->log = ngx_cycle->log;
    ngx_queue_init(&w->waiters);

    w->timer.data = &ngx_http_tsb_watch_conn;
    w->timer.handler = ngx_http_tsb_watch_event;
    w->timer.log = ngx_cycle->log;

    /* it only runs while there are waiters, who hold the worker anyway */
    w->timer.cancelable = 0;

    w->node.key = hash;
    ngx_rbtree_insert(&ngx_http_tsb_watches, &w->node);

    return w;
}


static void
ngx_http_tsb_watch_event(ngx_event_t *ev)
{
    ngx_http_tsb_watch_t  *w;

    w = (ngx_http_tsb_watch_t *) ((u_char *) ev
                                  - offsetof(ngx_http_tsb_watch_t, timer));

    ngx_http_tsb_watch_step(w);
}


/*
 * One look at the zone: deliver what is fresh enough, wait for another
 * worker's refresh, or refresh it ourselves.
 */

static void
ngx_http_tsb_watch_step(ngx_http_tsb_watch_t *w)
{
    u_char                     *p;
    uint64_t                    now;
    ngx_str_t                   path;
    ngx_uint_t                  unknown, accepted;
    ngx_pool_t                 *pool;
    ngx_http_tsb_fetch_t       *f;
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;

    if (ngx_queue_empty(&w->waiters) || w->fetch || w->loading) {
        ngx_http_tsb_watch_release(w);
        return;
    }

    if (ngx_exiting && w->snap) {
        /* no new refresh with the old configuration: what we have */
        ngx_http_tsb_watch_deliver(w, 1);
        return;
    }

    ctx = w->conf->cache_zone->data;
    now = ngx_http_tsb_now_ms();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_tsb_cache_lookup(ctx, &w->id, w->node.key);

    if (cn && cn->fetched && cn->fetched >= w->want_since
        && (w->want_since || ngx_http_tsb_cache_fresh(w->conf, cn, now)))
    {
        /* new enough: ours from before, or another worker's refresh */
        (void) ngx_http_tsb_watch_snapshot(w, cn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        w->failed = 0;
        ngx_http_tsb_watch_deliver(w, 0);
        return;
    }

    if (cn && cn->updating > now) {
        /* until its answer lands, or its lock runs out if it died */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_tsb_watch_schedule(w, NGX_HTTP_TSB_POLL_MS);
        return;
    }

    /* ours to refresh: the others wait for the answer we store */

    if (cn == NULL) {
        cn = ngx_http_tsb_cache_alloc(ctx,
                                      offsetof(ngx_http_tsb_cache_node_t, data)
                                      + w->id.len, w->log);
        if (cn) {
            ngx_memzero(cn, offsetof(ngx_http_tsb_cache_node_t, data));
            cn->node.key = w->node.key;
            cn->id_len = (u_char) w->id.len;
            ngx_memcpy(cn->data, w->id.data, w->id.len);

            /* a placeholder: removed again if the TSB does not know it */
            ngx_http_tsb_cache_link(ctx, cn, 0);
        }
    }

    if (cn) {
        if (cn->fetched) {
            /* stale, but still what we answer if the TSB fails */
            (void) ngx_http_tsb_watch_snapshot(w, cn);
        }

        cn->updating = now + w->conf->upstream.timeout + 1000;
    }

    unknown = (cn == NULL || cn->fetched == 0);

    /* the record of what was accepted, unless the zone kept it */
    accepted = (cn == NULL || cn->expect_len == 0) && w->accepted.len == 0;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* an issued certificate may be on disk from before a restart */

    if (unknown && w->conf->store && !w->store_tried) {
        w->store_tried = 1;

        if (ngx_http_tsb_store_load(w->conf->store, &w->id, accepted, w->log,
                                    ngx_http_tsb_watch_loaded, w)
            == NGX_OK)
        {
            w->loading = 1;
            return;
        }
    }

    pool = ngx_create_pool(1024, w->log);
    if (pool == NULL) {
        goto failed;
    }

    path.len = sizeof("/v1/request/") - 1 + w->id.len;
    path.data = ngx_pnalloc(pool, path.len);
    if (path.data == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    p = ngx_cpymem(path.data, "/v1/request/", sizeof("/v1/request/") - 1);
    ngx_memcpy(p, w->id.data, w->id.len);

    f = ngx_http_tsb_fetch_new(pool, w->log, &w->conf->upstream, "GET",
                               &path, NULL);

    if (f == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    f->done = ngx_http_tsb_watch_fetch_done;
    f->data = w;

    w->fetch_pool = pool;
    w->fetch = f;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        w->fetch = NULL;
        w->fetch_pool = NULL;
        ngx_destroy_pool(pool);
        goto failed;
    }

    return;

failed:

    ngx_http_tsb_watch_unclaim(w);
    ngx_http_tsb_watch_forget(w, 0);

    tsb_error_set(&w->err, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal.memory",
                  "the gateway could not start a TSB request");
    w->failed = 1;
    ngx_http_tsb_watch_deliver(w, 1);
}


static void
ngx_http_tsb_watch_fetch_done(ngx_http_tsb_fetch_t *f)
{
    ngx_int_t                   rc;
    ngx_uint_t                  notfound;
    ngx_str_t                   expect;
    ngx_pool_t                 *pool;
    tsb_error_t                 err;
    ngx_http_tsb_entry_t       *e;
    ngx_http_tsb_watch_t       *w;
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;

    w = f->data;
    ctx = w->conf->cache_zone->data;

    w->upstream_time = f->elapsed;
    w->upstream_timed = 1;

    ngx_memzero(&err, sizeof(tsb_error_t));

    pool = ngx_create_pool(4096, w->log);
    e = pool ? ngx_pcalloc(pool, sizeof(ngx_http_tsb_entry_t)) : NULL;

    /* what was accepted for this id, for the issued certificate check */

    ngx_str_null(&expect);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_tsb_cache_lookup(ctx, &w->id, w->node.key);

    if (cn && e && cn->expect_len) {
        expect.len = cn->expect_len;
        expect.data = ngx_pnalloc(pool, expect.len);

        if (expect.data) {
            ngx_http_tsb_cache_read_expect(cn, expect.data);

        } else {
            expect.len = 0;
        }
    }

    if (cn) {
        cn->updating = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (expect.len == 0 && w->accepted.len) {
        /* the zone lost it (a restart, an eviction): tsb_store kept it */
        expect = w->accepted;
    }

    if (e == NULL) {
        rc = NGX_ERROR;
        tsb_error_set(&err, NGX_HTTP_INTERNAL_SERVER_ERROR,
                      "internal.memory", "out of memory");

    } else if (f->result != CURLE_OK
               || (f->status != NGX_HTTP_OK
                   && f->status != NGX_HTTP_NOT_FOUND))
    {
        rc = NGX_ERROR;
        ngx_http_tsb_upstream_error(w->log, f, &err);

    } else {
        rc = ngx_http_tsb_entry_from_upstream(pool, w->log, f, &w->id,
                                              &expect, w->conf, e, &err);
    }

    notfound = (f->result == CURLE_OK && f->status == NGX_HTTP_NOT_FOUND);

    w->fetch = NULL;
    ngx_destroy_pool(w->fetch_pool);
    w->fetch_pool = NULL;

    if (rc != NGX_OK) {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        ngx_http_tsb_watch_forget(w, notfound);

        w->err = err;
        w->failed = 1;

        ngx_http_tsb_watch_deliver(w, 1);
        return;
    }

    if (ngx_http_tsb_cache_store(ctx, e, w->log) != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "tsb: request %V not cached", &w->id);
    }

    if (w->conf->store) {
        ngx_http_tsb_store_save(w->conf->store, e, w->log);
    }

    /* the waiters are answered from our copy, cached or not */

    if (w->snap_pool) {
        ngx_destroy_pool(w->snap_pool);
    }

    w->snap_pool = pool;
    w->snap = e;
    w->failed = 0;

    ngx_http_tsb_watch_deliver(w, 0);
}


static void
ngx_http_tsb_watch_loaded(void *data, ngx_http_tsb_entry_t *e,
    ngx_str_t *accepted)
{
    ngx_http_tsb_watch_t *w = data;

    w->loading = 0;

    if (e == NULL) {
        /*
         * Not issued yet, or not on disk: ask the TSB, and check what it
         * issues against what was accepted, if the zone lost that.
         */

        if (accepted && w->accepted.data == NULL) {
            w->accepted.data = ngx_alloc(accepted->len, w->log);

            if (w->accepted.data) {
                ngx_memcpy(w->accepted.data, accepted->data, accepted->len);
                w->accepted.len = accepted->len;
            }
        }

        ngx_http_tsb_watch_unclaim(w);
        ngx_http_tsb_watch_step(w);
        return;
    }

    if (ngx_http_tsb_cache_store(w->conf->cache_zone->data, e, w->log)
        != NGX_OK)
    {
        /* not cached: the other workers need not wait for us */
        ngx_http_tsb_watch_unclaim(w);
    }

    /*
     * The waiters are answered from our copy, cached or not: what the zone
     * holds under the id now may be another worker's placeholder, or
     * nothing, if a full zone could not take the entry.
     */

    if (ngx_http_tsb_watch_copy(w, e) != NGX_OK) {
        ngx_http_tsb_watch_step(w);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "tsb: request %V served from tsb_store", &w->id);

    w->failed = 0;
    ngx_http_tsb_watch_deliver(w, 0);
}


/* ngx_pstrdup() that keeps an empty value empty (data NULL) */

static u_char *
ngx_http_tsb_strdup(ngx_pool_t *pool, ngx_str_t *src)
{
    u_char  *p;

    if (src->len == 0) {
        return NULL;
    }

    p = ngx_pnalloc(pool, src->len);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, src->data, src->len);

    return p;
}


/* the other workers need not wait for a refresh we are not doing */

static void
ngx_http_tsb_watch_unclaim(ngx_http_tsb_watch_t *w)
{
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;

    ctx = w->conf->cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_tsb_cache_lookup(ctx, &w->id, w->node.key);
    if (cn) {
        cn->updating = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * A refresh failed.  The placeholder it claimed holds nothing: it goes, or
 * ids that never existed would fill the zone and evict real entries.  An
 * entry the TSB no longer knows (404) goes too, unless it is evidence.
 */

static void
ngx_http_tsb_watch_forget(ngx_http_tsb_watch_t *w, ngx_uint_t notfound)
{
    ngx_http_tsb_cache_ctx_t   *ctx;
    ngx_http_tsb_cache_node_t  *cn;

    ctx = w->conf->cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_tsb_cache_lookup(ctx, &w->id, w->node.key);

    if (cn && !cn->pinned && cn->expect_len == 0
        && cn->updating == 0 && (cn->fetched == 0 || notfound))
    {
        ngx_http_tsb_cache_delete(ctx, cn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static ngx_int_t
ngx_http_tsb_watch_copy(ngx_http_tsb_watch_t *w, ngx_http_tsb_entry_t *e)
{
    ngx_pool_t            *pool;
    ngx_http_tsb_entry_t  *c;

    pool = ngx_create_pool(4096, w->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    c = ngx_palloc(pool, sizeof(ngx_http_tsb_entry_t));
    if (c == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    *c = *e;

    c->id.data = ngx_http_tsb_strdup(pool, &e->id);
    c->status_json.data = ngx_http_tsb_strdup(pool, &e->status_json);
    c->der.data = ngx_http_tsb_strdup(pool, &e->der);
    c->expect.data = ngx_http_tsb_strdup(pool, &e->expect);
    c->serial.data = ngx_http_tsb_strdup(pool, &e->serial);
    c->filename.data = ngx_http_tsb_strdup(pool, &e->filename);
    c->etag.data = ngx_http_tsb_strdup(pool, &e->etag);
    c->detail.data = ngx_http_tsb_strdup(pool, &e->detail);

    if (c->id.data == NULL || c->status_json.data == NULL
        || c->der.data == NULL)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (w->snap_pool) {
        ngx_destroy_pool(w->snap_pool);
    }

    w->snap_pool = pool;
    w->snap = c;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_watch_snapshot(ngx_http_tsb_watch_t *w,
    ngx_http_tsb_cache_node_t *cn)
{
    ngx_pool_t            *pool;
    ngx_http_tsb_entry_t  *e;

    pool = ngx_create_pool(1024, w->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    e = ngx_palloc(pool, sizeof(ngx_http_tsb_entry_t));

    if (e == NULL || ngx_http_tsb_cache_copy(cn, pool, e) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (w->snap_pool) {
        ngx_destroy_pool(w->snap_pool);
    }

    w->snap_pool = pool;
    w->snap = e;

    return NGX_OK;
}


/*
 * Answers the waiters that can be answered: all of them after a failure or
 * at a final status, the plain ones always; ?wait= ones keep waiting for a
 * terminal status and get the next refresh one interval later.
 */

static void
ngx_http_tsb_watch_deliver(ngx_http_tsb_watch_t *w, ngx_uint_t final)
{
    uint64_t                now;
    ngx_uint_t              terminal, tagged;
    ngx_msec_t              delay;
    ngx_queue_t             ready, *q, *next;
    ngx_http_tsb_waiter_t  *wt;
    u_char                  etag[TSB_STATUS_ETAG_LEN];

    terminal = w->snap && !w->failed && tsb_status_is_terminal(w->snap->status);

    /* the document's tag, once for every If-None-Match waiter */
    tagged = 0;

    if (w->snap && !w->failed
        && tsb_status_etag(w->snap->status_json.data,
                           w->snap->status_json.len, w->snap->der.data,
                           w->snap->der.len, etag)
           == 0)
    {
        tagged = 1;
    }

    ngx_queue_init(&ready);

    for (q = ngx_queue_head(&w->waiters);
         q != ngx_queue_sentinel(&w->waiters);
         q = next)
    {
        next = ngx_queue_next(q);
        wt = ngx_queue_data(q, ngx_http_tsb_waiter_t, queue);

        /*
         * A worker told to exit keeps nobody for a next refresh; a waiter
         * with If-None-Match goes as soon as the document is another.
         */
        if (wt->terminal && !terminal && !w->failed && !ngx_exiting
            && !(tagged && wt->inm.len
                 && !tsb_etag_match(wt->inm.data, wt->inm.len, etag,
                                    TSB_STATUS_ETAG_LEN)))
        {
            continue;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ready, q);
    }

    (void) final;

    /*
     * Serving finalizes requests, which may run other requests' cleanups:
     * each waiter is unlinked from whichever list holds it, and the watch
     * is not freed until the loop is over.
     */

    w->delivering = 1;

    while (!ngx_queue_empty(&ready)) {
        q = ngx_queue_head(&ready);
        ngx_queue_remove(q);

        wt = ngx_queue_data(q, ngx_http_tsb_waiter_t, queue);
        wt->linked = 0;

        ngx_http_tsb_waiter_serve(wt, 0);
    }

    w->delivering = 0;

    if (ngx_queue_empty(&w->waiters)) {
        ngx_http_tsb_watch_release(w);
        return;
    }

    /* the rest wait for a terminal status: one refresh per interval */

    /*
     * Anything newer than what they have seen will do, also another
     * worker's refresh: that is what keeps it to one GET per interval.
     */
    now = ngx_http_tsb_now_ms();
    delay = w->conf->refresh_interval;

    if (w->snap && !w->failed) {
        w->want_since = w->snap->fetched + 1;

        /*
         * Timed from the refresh, not from now: every worker's watch of
         * the id looks at the zone when the next refresh is due, one of
         * them asks the TSB and the others wait for its answer (polling
         * while it is "updating"), so an approval reaches the waiters of
         * all workers together, with still one GET per interval.
         */
        if (w->snap->fetched + delay > now) {
            delay = (ngx_msec_t) (w->snap->fetched + delay - now);

        } else {
            delay = 1;
        }

    } else {
        w->want_since = now;
    }

    ngx_http_tsb_watch_schedule(w, delay);
}


static void
ngx_http_tsb_watch_schedule(ngx_http_tsb_watch_t *w, ngx_msec_t delay)
{
    if (w->timer.posted) {
        ngx_delete_posted_event(&w->timer);
    }

    ngx_add_timer(&w->timer, delay);
}


/* frees the watch when nothing uses it any more */

static void
ngx_http_tsb_watch_release(ngx_http_tsb_watch_t *w)
{
    if (w->delivering || w->fetch || w->loading
        || !ngx_queue_empty(&w->waiters))
    {
        return;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (w->timer.posted) {
        ngx_delete_posted_event(&w->timer);
    }

    if (w->snap_pool) {
        ngx_destroy_pool(w->snap_pool);
    }

    if (w->accepted.data) {
        ngx_free(w->accepted.data);
    }

    ngx_rbtree_delete(&ngx_http_tsb_watches, &w->node);
    ngx_free(w);
}


/* is e another document than the one the client's If-None-Match names? */

static ngx_uint_t
ngx_http_tsb_cache_changed(ngx_http_tsb_entry_t *e, ngx_str_t *inm)
{
    u_char  etag[TSB_STATUS_ETAG_LEN];

    if (tsb_status_etag(e->status_json.data, e->status_json.len,
                        e->der.data, e->der.len, etag)
        != 0)
    {
        /* not known: as without If-None-Match */
        return 0;
    }

    return !tsb_etag_match(inm->data, inm->len, etag, TSB_STATUS_ETAG_LEN);
}


static void
ngx_http_tsb_waiter_serve(ngx_http_tsb_waiter_t *wt, ngx_uint_t timed_out)
{
    uint64_t                  now;
    ngx_int_t                 rc;
    tsb_error_t               err;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_tsb_ctx_t       *tctx;
    ngx_http_tsb_entry_t     *e;
    ngx_http_tsb_watch_t     *w;
    ngx_http_tsb_loc_conf_t  *tlcf;

    r = wt->request;
    c = r->connection;
    w = wt->watch;

    if (wt->timer.timer_set) {
        ngx_del_timer(&wt->timer);
    }

    /* the cleanup must not touch the watch any more */
    wt->watch = NULL;
    ngx_http_tsb_metrics_waiters(-1);

    if (w->upstream_timed) {
        tctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
        tctx->upstream_time = w->upstream_time;
        tctx->upstream_timed = 1;
    }

    e = w->snap;
    now = ngx_http_tsb_now_ms();

    /* how stale is acceptable is the waiter's location's to say */
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (w->failed) {
        /*
         * Stale-if-error is for a TSB that fails (5xx, unreachable, slow):
         * one that answers, e.g. 404 for a request it no longer knows,
         * is believed.
         */
        if (e && e->fetched && w->err.status >= NGX_HTTP_INTERNAL_SERVER_ERROR
            && now <= e->fetched + (uint64_t) tlcf->cache_use_stale * 1000)
        {
            rc = wt->serve(r, e, NGX_HTTP_TSB_CACHE_STALE, NULL);

        } else {
            err = w->err;
            rc = wt->serve(r, NULL, NGX_HTTP_TSB_CACHE_MISS, &err);
        }

    } else if (e) {
        rc = wt->serve(r, e, timed_out ? NGX_HTTP_TSB_CACHE_HIT
                                       : NGX_HTTP_TSB_CACHE_MISS, NULL);

    } else {
        tsb_error_set(&err, NGX_HTTP_GATEWAY_TIME_OUT, "upstream.timeout",
                      "the TSB did not answer in time");
        rc = wt->serve(r, NULL, NGX_HTTP_TSB_CACHE_MISS, &err);
    }

    ngx_http_finalize_request(r, ngx_http_tsb_json_rc(r, rc));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_tsb_waiter_timeout(ngx_event_t *ev)
{
    ngx_http_tsb_watch_t   *w;
    ngx_http_tsb_waiter_t  *wt;

    wt = (ngx_http_tsb_waiter_t *) ((u_char *) ev
                                    - offsetof(ngx_http_tsb_waiter_t, timer));
    w = wt->watch;

    if (w == NULL) {
        return;
    }

    if (wt->linked) {
        ngx_queue_remove(&wt->queue);
        wt->linked = 0;
    }

    ngx_http_tsb_waiter_serve(wt, 1);

    ngx_http_tsb_watch_release(w);
}


static void
ngx_http_tsb_waiter_cleanup(void *data)
{
    ngx_http_tsb_waiter_t  *wt = data;

    ngx_http_tsb_watch_t  *w;

    if (wt->timer.timer_set) {
        ngx_del_timer(&wt->timer);
    }

    if (wt->linked) {
        ngx_queue_remove(&wt->queue);
        wt->linked = 0;
    }

    w = wt->watch;
    wt->watch = NULL;

    if (w) {
        /* the client left before an answer */
        ngx_http_tsb_metrics_waiters(-1);
        ngx_http_tsb_watch_release(w);
    }
}


const char *
ngx_http_tsb_cache_status_name(ngx_uint_t cache_status)
{
    if (cache_status > NGX_HTTP_TSB_CACHE_UPDATING) {
        return "";
    }

    return ngx_http_tsb_cache_status_names[cache_status];
}


static ngx_int_t
ngx_http_tsb_parse_iso_time(const char *s, time_t *t)
{
    int        n;
    struct tm  tm;

    ngx_memzero(&tm, sizeof(struct tm));

    /* "2024-01-23T11:43:43Z", fractions and offsets are not used here */
    n = sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec);

    if (n != 6) {
        return NGX_ERROR;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    *t = timegm(&tm);

    return (*t == (time_t) -1) ? NGX_ERROR : NGX_OK;
}


void
ngx_http_tsb_cache_exiting(void)
{
    ngx_uint_t             n;
    ngx_rbtree_node_t     *node, *root, *sentinel;
    ngx_http_tsb_watch_t  *w;

    if (ngx_http_tsb_watches.root == NULL) {
        return;
    }

    n = 0;
    sentinel = ngx_http_tsb_watches.sentinel;

    /*
     * Delivering frees watches: start over after each one.  A watch with a
     * refresh or a read in flight answers when it lands (the step above
     * then delivers to all); one with nothing yet keeps its waiters until
     * another worker's answer or their own time is up.
     */

again:

    root = ngx_http_tsb_watches.root;

    if (root == sentinel) {
        goto done;
    }

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&ngx_http_tsb_watches, node))
    {
        w = (ngx_http_tsb_watch_t *) node;

        if (w->snap == NULL || w->fetch || w->loading || w->delivering
            || ngx_queue_empty(&w->waiters))
        {
            continue;
        }

        n++;

        if (w->timer.timer_set) {
            ngx_del_timer(&w->timer);
        }

        ngx_http_tsb_watch_deliver(w, 1);

        goto again;
    }

done:

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "tsb: worker exiting: the waiters of %ui request%s "
                      "answered with what is known", n, n == 1 ? "" : "s");
    }
}
