
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The ACME server of a tsb_acme location (RFC 8555).  Validation is the
 * location's policy plus the TSB's approvers: an identifier the policy
 * allows for the account gets an authorization that is valid from the
 * start, any other is refused (rejectedIdentifier); finalize runs the CSR
 * through the same engine and policy as tsb_sign and forwards it to the
 * TSB's sign API; the order is "processing" until the approvers decide,
 * and its status comes from the status cache (tsb_cache), where the
 * issued certificate is checked against what was accepted.
 *
 * State lives in a shared memory zone (tsb_acme_zone): nonces (single
 * use, expiring), orders (expiring), and accounts, which are also written
 * to a directory in nginx's thread pool and read back at configuration
 * time, so they outlive restarts.  The code here is glue: every JSON and
 * JWS byte goes through tsb_jws.c and tsb_acme.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <dirent.h>

#include <openssl/rand.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_policy.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_store.h"
#include "ngx_http_tsb_metrics.h"
#include "ngx_http_tsb_acme.h"
#include "tsb_jws.h"
#include "tsb_acme.h"


#define NGX_HTTP_TSB_ACME_NONCE_TTL   3600
#define NGX_HTTP_TSB_ACME_ORDER_TTL   (7 * 86400)
#define NGX_HTTP_TSB_ACME_RECORD_MAX  16384
#define NGX_HTTP_TSB_ACME_LIST_MAX    100     /* orders listed an account */
#define NGX_HTTP_TSB_ACME_LIST_PAGE   20
#define NGX_HTTP_TSB_ACME_HTTP01_MAX  1024    /* bytes of an http-01 answer */
#define NGX_HTTP_TSB_ACME_HTTP01_TIME 10000   /* ms, at most */


/* ------------------------------------------------------------- types */

typedef struct {
    ngx_str_node_t               sn;          /* key: "n:", "a:", "k:", "o:",
                                                 "f:", "d:", "l:" and an id */
    ngx_queue_t                  queue;       /* expiring entries only */
    time_t                       expires;     /* 0: kept (accounts) */
    size_t                       vlen;
    u_char                       data[1];     /* key, then value */
} ngx_http_tsb_acme_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;       /* newest first */
} ngx_http_tsb_acme_sh_t;


typedef struct {
    ngx_http_tsb_acme_sh_t      *sh;
    ngx_slab_pool_t             *shpool;
    ngx_str_t                    accounts;    /* directory, "" for none */
#if (NGX_THREADS)
    ngx_thread_pool_t           *thread_pool;
#endif
} ngx_http_tsb_acme_zone_t;


typedef struct {
    ngx_str_t                    kid;
    ngx_str_t                    secret;      /* decoded HMAC key */
    ngx_str_t                    identity;
} ngx_http_tsb_acme_eab_t;


typedef struct {
    ngx_shm_zone_t              *zone;
    ngx_array_t                 *eab;         /* ngx_http_tsb_acme_eab_t */
    ngx_flag_t                   eab_required;
    ngx_str_t                    tos;
    ngx_flag_t                   http01;      /* tsb_acme_challenge */
    ngx_uint_t                   http01_port;
} ngx_http_tsb_acme_conf_t;


/* one request's ACME state; freed by a pool cleanup */
typedef struct {
    ngx_http_tsb_acme_conf_t    *conf;
    ngx_http_tsb_acme_zone_t    *zone;
    ngx_http_tsb_loc_conf_t     *tlcf;
    size_t                       reserved;    /* in the cache, as tsb_sign */
    ngx_str_t                    base;        /* https://host/prefix/ */
    ngx_str_t                    resource;    /* after the prefix */
    ngx_str_t                    account_id;
    ngx_str_t                    binding;     /* $tsb_acme_account */
    ngx_str_t                    order_id;

    tsb_jws_t                    jws;
    tsb_acme_account_t           account;
    tsb_acme_order_t             order;
    tsb_jwk_t                    key;         /* the account's key */

    unsigned                     have_jws:1;
    unsigned                     have_account:1;
    unsigned                     have_order:1;
    unsigned                     have_key:1;
    ngx_str_t                    authz;       /* <order>-<n> validated */
    ngx_uint_t                   authz_n;
    char                        *token;       /* its challenge's */
    ngx_str_t                    http01_url;

    unsigned                     finalizing:1;
    unsigned                     validating:1;
    unsigned                     answered:1;  /* a problem was sent */
} ngx_http_tsb_acme_req_t;


/* the account file written in a thread */
typedef struct {
    ngx_pool_t                  *pool;
    ngx_str_t                    path;        /* NUL-terminated */
    ngx_str_t                    tmp;
    ngx_str_t                    data;
    ngx_err_t                    err;
    const char                  *failed;
} ngx_http_tsb_acme_job_t;


typedef ngx_int_t (*ngx_http_tsb_acme_op_pt)(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);


static ngx_int_t ngx_http_tsb_acme_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_tsb_acme_load_accounts(ngx_http_tsb_acme_zone_t *z,
    ngx_log_t *log);
static ngx_int_t ngx_http_tsb_acme_kv_get(ngx_http_tsb_acme_zone_t *z,
    const char *prefix, ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_http_tsb_acme_kv_set(ngx_http_tsb_acme_zone_t *z,
    const char *prefix, ngx_str_t *id, u_char *value, size_t len,
    time_t expires, ngx_uint_t add);
static ngx_int_t ngx_http_tsb_acme_kv_set_locked(
    ngx_http_tsb_acme_zone_t *z, const char *prefix, ngx_str_t *id,
    u_char *value, size_t len, time_t expires, ngx_uint_t add);
static ngx_int_t ngx_http_tsb_acme_kv_del(ngx_http_tsb_acme_zone_t *z,
    const char *prefix, ngx_str_t *id);
static ngx_int_t ngx_http_tsb_acme_list_add(ngx_http_tsb_acme_zone_t *z,
    ngx_str_t *account, ngx_str_t *order, time_t expires);

static void ngx_http_tsb_acme_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_tsb_acme_post(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_new_account(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_account_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_key_change(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_new_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_order_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_authz_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_finalize(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_cert(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_revoke(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_orders_list(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static void ngx_http_tsb_acme_sign_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_acme_order_serve(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e, ngx_uint_t cache_status, tsb_error_t *err);
static ngx_int_t ngx_http_tsb_acme_cert_serve(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e, ngx_uint_t cache_status, tsb_error_t *err);

static ngx_int_t ngx_http_tsb_acme_problem(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *detail,
    tsb_acme_ident_t *ident);
static ngx_int_t ngx_http_tsb_acme_problem_err(ngx_http_request_t *r,
    tsb_error_t *err);
static ngx_int_t ngx_http_tsb_acme_reply(ngx_http_request_t *r,
    ngx_uint_t status, tsb_buf_t *json, ngx_str_t *location);
static ngx_int_t ngx_http_tsb_acme_headers(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_nonce(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_str_t *nonce);
static ngx_int_t ngx_http_tsb_acme_url(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, const char *a, ngx_str_t *id,
    ngx_str_t *out);
static ngx_int_t ngx_http_tsb_acme_save_account(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_str_t *id, tsb_acme_account_t *a);
static ngx_int_t ngx_http_tsb_acme_save_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static ngx_int_t ngx_http_tsb_acme_load_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_str_t *id);
static ngx_int_t ngx_http_tsb_acme_random_id(ngx_pool_t *pool,
    ngx_str_t *out);
static void ngx_http_tsb_acme_persist(ngx_http_tsb_acme_zone_t *z,
    ngx_log_t *log, ngx_str_t *id, const char *suffix, u_char *data,
    size_t len);
static ngx_int_t ngx_http_tsb_acme_load_orders(ngx_http_tsb_acme_zone_t *z,
    ngx_log_t *log, DIR *dir);
static ngx_int_t ngx_http_tsb_acme_http01_start(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static void ngx_http_tsb_acme_http01_done(ngx_http_tsb_fetch_t *f);
static ngx_int_t ngx_http_tsb_acme_chall_answer(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar);
static char *ngx_http_tsb_acme_cstr(ngx_pool_t *pool, ngx_str_t *s);
static ngx_http_tsb_acme_conf_t *ngx_http_tsb_acme_conf(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *tlcf);
static void ngx_http_tsb_acme_cleanup(void *data);
static ngx_int_t ngx_http_tsb_acme_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
#if (NGX_THREADS)
static void ngx_http_tsb_acme_write(void *data, ngx_log_t *log);
static void ngx_http_tsb_acme_written(ngx_event_t *ev);
#endif


static ngx_str_t  ngx_http_tsb_acme_type_json =
    ngx_string("application/json");
static ngx_str_t  ngx_http_tsb_acme_type_problem =
    ngx_string("application/problem+json");
static ngx_str_t  ngx_http_tsb_acme_type_chain =
    ngx_string("application/pem-certificate-chain");


static ngx_http_variable_t  ngx_http_tsb_acme_vars[] = {

    { ngx_string("tsb_acme_account"), NULL, ngx_http_tsb_acme_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* --------------------------------------------------- configuration */

static ngx_http_tsb_acme_conf_t *
ngx_http_tsb_acme_conf(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *tlcf)
{
    ngx_http_tsb_acme_conf_t  *acf;

    if (tlcf->acme) {
        return tlcf->acme;
    }

    acf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_acme_conf_t));
    if (acf == NULL) {
        return NULL;
    }

    acf->eab_required = NGX_CONF_UNSET;
    acf->http01 = NGX_CONF_UNSET;
    acf->http01_port = NGX_CONF_UNSET_UINT;
    tlcf->acme = acf;

    return acf;
}


char *
ngx_http_tsb_acme_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                    *p;
    ssize_t                    size;
    ngx_str_t                 *value, name, s;
    ngx_uint_t                 i;
    ngx_path_t                *path;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_tsb_acme_zone_t  *z;

    value = cf->args->elts;

    z = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_acme_zone_t));
    if (z == NULL) {
        return NGX_CONF_ERROR;
    }

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL) {
        return "takes \"name:size\"";
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (name.len == 0 || size == NGX_ERROR
        || size < (ssize_t) (8 * ngx_pagesize))
    {
        return "takes \"name:size\" with a size of at least 8 pages";
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "accounts=", 9) == 0
            && value[i].len > 9)
        {
            path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
            if (path == NULL) {
                return NGX_CONF_ERROR;
            }

            path->name.data = value[i].data + 9;
            path->name.len = value[i].len - 9;

            if (path->name.len > 1
                && path->name.data[path->name.len - 1] == '/')
            {
                path->name.len--;
            }

            if (ngx_conf_full_name(cf->cycle, &path->name, 0) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            /* nginx creates it at start and gives it to the worker user */
            path->conf_file = cf->conf_file->file.name.data;
            path->line = cf->conf_file->line;

            if (ngx_add_path(cf, &path) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            z->accounts = path->name;

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (z->accounts.len) {
#if (NGX_THREADS)
        z->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (z->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
#else
        return "accounts= needs nginx built with threads: account files "
               "are written off the event loop";
#endif
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_tsb_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        return "is duplicate";
    }

    shm_zone->init = ngx_http_tsb_acme_init_zone;
    shm_zone->data = z;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tsb_acme_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_tsb_acme_zone_t  *oz = data;

    size_t                     len;
    ngx_http_tsb_acme_zone_t  *z;

    z = shm_zone->data;

    if (oz) {
        /* a reload: the accounts, orders and nonces carry on */
        z->sh = oz->sh;
        z->shpool = oz->shpool;
        return NGX_OK;
    }

    z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        z->sh = z->shpool->data;
        return NGX_OK;
    }

    z->sh = ngx_slab_alloc(z->shpool, sizeof(ngx_http_tsb_acme_sh_t));
    if (z->sh == NULL) {
        return NGX_ERROR;
    }

    z->shpool->data = z->sh;

    ngx_rbtree_init(&z->sh->rbtree, &z->sh->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&z->sh->queue);

    len = sizeof(" in tsb_acme_zone \"\"") + shm_zone->shm.name.len;

    z->shpool->log_ctx = ngx_slab_alloc(z->shpool, len);
    if (z->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(z->shpool->log_ctx, " in tsb_acme_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* we evict and log ourselves */
    z->shpool->log_nomem = 0;

    if (z->accounts.len) {
        ngx_http_tsb_acme_load_accounts(z, shm_zone->shm.log);
    }

    return NGX_OK;
}


/*
 * Reads every account file into a new zone.  Blocking file I/O, but at
 * config time only (a zone is initialised by the master while it reads
 * the configuration); at run time accounts are written in a thread.
 */
static void
ngx_http_tsb_acme_load_accounts(ngx_http_tsb_acme_zone_t *z, ngx_log_t *log)
{
    DIR                 *dir;
    FILE                *fp;
    size_t               n, len;
    u_char               buf[NGX_HTTP_TSB_ACME_RECORD_MAX];
    char                 path[NGX_MAX_PATH];
    ngx_str_t            id;
    ngx_uint_t           loaded;
    tsb_jwk_t            key;
    tsb_error_t          err;
    struct dirent       *de;
    tsb_acme_account_t   a;
    ngx_str_t            thumb;

    dir = opendir((char *) z->accounts.data);

    if (dir == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "tsb acme: cannot read the accounts directory \"%V\"; "
                      "it is created on the first account",
                      &z->accounts);
        return;
    }

    loaded = 0;

    while ((de = readdir(dir)) != NULL) {
        len = ngx_strlen(de->d_name);

        /* orders: "<id>.order", read below */
        if (len <= 5 || len - 5 > TSB_ACME_MAX_ID
            || ngx_strcmp(de->d_name + len - 5, ".json") != 0
            || de->d_name[0] == '.')
        {
            continue;
        }

        if (z->accounts.len + len + 2 > sizeof(path)) {
            continue;
        }

        ngx_sprintf((u_char *) path, "%V/%s%Z", &z->accounts, de->d_name);

        fp = fopen(path, "r");
        if (fp == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                          "tsb acme: cannot open \"%s\"", path);
            continue;
        }

        n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);

        ngx_memzero(&err, sizeof(tsb_error_t));

        if (n == 0 || n == sizeof(buf)
            || tsb_acme_account_decode(buf, n, &a, &err) != 0)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tsb acme: \"%s\" is not an account record, "
                          "skipped", path);
            continue;
        }

        if (tsb_jwk_parse((u_char *) a.key, ngx_strlen(a.key), &key, &err)
            != 0)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tsb acme: the key in \"%s\" is not usable: %s",
                          path, err.detail);
            tsb_acme_account_free(&a);
            continue;
        }

        id.data = (u_char *) de->d_name;
        id.len = len - 5;
        thumb.data = (u_char *) key.thumb;
        thumb.len = TSB_JWK_THUMB_LEN;

        if (ngx_http_tsb_acme_kv_set(z, "a:", &id, buf, n, 0, 0) != NGX_OK
            || ngx_http_tsb_acme_kv_set(z, "k:", &thumb, id.data, id.len, 0,
                                        0) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "tsb acme: tsb_acme_zone is too small for the "
                          "accounts in \"%V\"", &z->accounts);
            tsb_jwk_free(&key);
            tsb_acme_account_free(&a);
            break;
        }

        loaded++;
        tsb_jwk_free(&key);
        tsb_acme_account_free(&a);
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tsb acme: %ui accounts loaded from \"%V\"", loaded,
                  &z->accounts);

    rewinddir(dir);

    loaded = ngx_http_tsb_acme_load_orders(z, log, dir);

    closedir(dir);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tsb acme: %i orders loaded from \"%V\"", loaded,
                  &z->accounts);
}


typedef struct {
    u_char      id[TSB_ACME_MAX_ID + 1];
    size_t      id_len;
    long long   expires;
    u_char     *rec;
    size_t      len;
} ngx_http_tsb_acme_saved_t;


static int
ngx_http_tsb_acme_saved_cmp(const void *a, const void *b)
{
    const ngx_http_tsb_acme_saved_t  *x = a, *y = b;

    return (x->expires > y->expires) - (x->expires < y->expires);
}


/*
 * The orders still alive, into the zone with their marks and accounts'
 * lists (oldest first, as they were made); expired files are removed.
 * Blocking file I/O at config time only, as the accounts are read.
 */
static ngx_int_t
ngx_http_tsb_acme_load_orders(ngx_http_tsb_acme_zone_t *z, ngx_log_t *log,
    DIR *dir)
{
    FILE                       *fp;
    size_t                      n, len, i, nsaved, cap;
    u_char                      buf[NGX_HTTP_TSB_ACME_RECORD_MAX];
    char                        path[NGX_MAX_PATH];
    ngx_str_t                   id, account;
    ngx_int_t                   loaded;
    long long                   expires;
    tsb_error_t                 err;
    struct dirent              *de;
    tsb_acme_order_t            o;
    ngx_http_tsb_acme_saved_t  *saved, *more;

    saved = NULL;
    nsaved = 0;
    cap = 0;

    while ((de = readdir(dir)) != NULL) {
        len = ngx_strlen(de->d_name);

        if (len <= 6 || len - 6 > TSB_ACME_MAX_ID
            || ngx_strcmp(de->d_name + len - 6, ".order") != 0
            || de->d_name[0] == '.'
            || z->accounts.len + len + 2 > sizeof(path))
        {
            continue;
        }

        ngx_sprintf((u_char *) path, "%V/%s%Z", &z->accounts, de->d_name);

        fp = fopen(path, "r");
        if (fp == NULL) {
            continue;
        }

        n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);

        ngx_memzero(&err, sizeof(tsb_error_t));

        if (n == 0 || n == sizeof(buf)
            || tsb_acme_order_decode(buf, n, &o, &err) != 0)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "tsb acme: \"%s\" is not an order record, "
                          "skipped", path);
            continue;
        }

        expires = o.expires;
        tsb_acme_order_free(&o);

        if (expires < (long long) ngx_time()) {
            (void) unlink(path);
            continue;
        }

        if (nsaved == cap) {
            cap = cap ? 2 * cap : 64;
            more = realloc(saved, cap * sizeof(ngx_http_tsb_acme_saved_t));
            if (more == NULL) {
                break;
            }

            saved = more;
        }

        saved[nsaved].rec = malloc(n);
        if (saved[nsaved].rec == NULL) {
            break;
        }

        ngx_memcpy(saved[nsaved].rec, buf, n);
        saved[nsaved].len = n;
        saved[nsaved].id_len = len - 6;
        ngx_memcpy(saved[nsaved].id, de->d_name, len - 6);
        saved[nsaved].expires = expires;
        nsaved++;
    }

    if (nsaved) {
        qsort(saved, nsaved, sizeof(ngx_http_tsb_acme_saved_t),
              ngx_http_tsb_acme_saved_cmp);
    }

    loaded = 0;

    for (i = 0; i < nsaved; i++) {
        id.data = saved[i].id;
        id.len = saved[i].id_len;

        if (tsb_acme_order_decode(saved[i].rec, saved[i].len, &o, &err)
            != 0)
        {
            continue;
        }

        account.data = (u_char *) o.account;
        account.len = ngx_strlen(o.account);

        if (ngx_http_tsb_acme_kv_set(z, "o:", &id, saved[i].rec,
                                     saved[i].len, (time_t) o.expires, 0)
            == NGX_OK)
        {
            loaded++;

            /* finalized once; and its outcome counted once */
            if (o.request) {
                (void) ngx_http_tsb_acme_kv_set(z, "f:", &id, (u_char *) "",
                                                0, (time_t) o.expires, 0);
            }

            if (o.status == TSB_ACME_VALID || o.status == TSB_ACME_INVALID) {
                (void) ngx_http_tsb_acme_kv_set(z, "d:", &id, (u_char *) "",
                                                0, (time_t) o.expires, 0);
            }

            (void) ngx_http_tsb_acme_list_add(z, &account, &id,
                                              (time_t) o.expires);
        }

        tsb_acme_order_free(&o);
    }

    for (i = 0; i < nsaved; i++) {
        free(saved[i].rec);
    }

    free(saved);

    return loaded;
}


char *
ngx_http_tsb_acme(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t                 *value;
    ngx_http_tsb_acme_conf_t  *acf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    if (clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/'
        || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
       )
    {
        return "needs a prefix location ending in '/', such as "
               "\"location /acme/\"";
    }

    acf = ngx_http_tsb_acme_conf(cf, tlcf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    acf->zone = ngx_shared_memory_add(cf, &value[1], 0,
                                      &ngx_http_tsb_module);
    if (acf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_http_tsb_acme_handler;

    return NGX_CONF_OK;
}


/*
 * "kid secret identity" a line, '#' comments; the secret base64url as
 * lego, certbot and cert-manager take it.  Read at config time.
 */
char *
ngx_http_tsb_acme_eab_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    FILE                      *fp;
    char                       line[1024], *f[4], *save;
    size_t                     i, len;
    ngx_str_t                 *value, file;
    ngx_uint_t                 n, lineno;
    tsb_buf_t                  secret;
    ngx_http_tsb_acme_eab_t   *k, *all;
    ngx_http_tsb_acme_conf_t  *acf;

    acf = ngx_http_tsb_acme_conf(cf, conf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (acf->eab) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    acf->eab = ngx_array_create(cf->pool, 4, sizeof(ngx_http_tsb_acme_eab_t));
    if (acf->eab == NULL) {
        return NGX_CONF_ERROR;
    }

    fp = fopen((char *) file.data, "r");
    if (fp == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open \"%V\"", &file);
        return NGX_CONF_ERROR;
    }

    lineno = 0;

    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;

        if (strchr(line, '#')) {
            *strchr(line, '#') = '\0';
        }

        n = 0;

        for (f[n] = strtok_r(line, " \t\r\n", &save); f[n] && n < 3;
             f[++n] = strtok_r(NULL, " \t\r\n", &save))
        {
            /* void */
        }

        if (n == 0) {
            continue;
        }

        if (n != 3 || f[3] != NULL) {
            fclose(fp);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" line %ui: want \"kid secret "
                               "identity\"", &file, lineno);
            return NGX_CONF_ERROR;
        }

        len = ngx_strlen(f[2]);

        for (i = 0; i < len; i++) {
            if (!(isalnum((unsigned char) f[2][i]) || f[2][i] == '-'
                  || f[2][i] == '.' || f[2][i] == '_'))
            {
                break;
            }
        }

        if (i < len || len > 63) {
            fclose(fp);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" line %ui: an identity is up to 63 "
                               "letters, digits, '-', '.' and '_', as it "
                               "goes into names", &file, lineno);
            return NGX_CONF_ERROR;
        }

        if (tsb_b64url_decode(f[1], ngx_strlen(f[1]), &secret) != 0
            || secret.len < 16)
        {
            tsb_buf_free(&secret);
            fclose(fp);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" line %ui: the secret is not base64url "
                               "of at least 16 bytes", &file, lineno);
            return NGX_CONF_ERROR;
        }

        all = acf->eab->elts;

        for (i = 0; i < acf->eab->nelts; i++) {
            if (ngx_strcmp(all[i].kid.data, f[0]) == 0) {
                break;
            }
        }

        k = (i < acf->eab->nelts) ? NULL : ngx_array_push(acf->eab);

        if (k == NULL) {
            tsb_secure_zero(secret.data, secret.len);
            tsb_buf_free(&secret);
            fclose(fp);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" line %ui: a kid is listed twice",
                               &file, lineno);
            return NGX_CONF_ERROR;
        }

        k->kid.len = ngx_strlen(f[0]);
        k->kid.data = ngx_pnalloc(cf->pool, k->kid.len + 1);
        k->identity.len = len;
        k->identity.data = ngx_pnalloc(cf->pool, len + 1);
        k->secret.len = secret.len;
        k->secret.data = ngx_pnalloc(cf->pool, secret.len);

        if (k->identity.data == NULL || k->secret.data == NULL
            || k->kid.data == NULL)
        {
            tsb_buf_free(&secret);
            fclose(fp);
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(k->kid.data, f[0], k->kid.len + 1);
        ngx_cpystrn(k->identity.data, (u_char *) f[2], len + 1);
        ngx_memcpy(k->secret.data, secret.data, secret.len);

        tsb_secure_zero(secret.data, secret.len);
        tsb_buf_free(&secret);
    }

    tsb_secure_zero(line, sizeof(line));
    fclose(fp);

    if (acf->eab->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" has no keys", &file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_acme_eab_required(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                 *value;
    ngx_http_tsb_acme_conf_t  *acf;

    acf = ngx_http_tsb_acme_conf(cf, conf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (acf->eab_required != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        acf->eab_required = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        acf->eab_required = 0;

    } else {
        return "takes \"on\" or \"off\"";
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_acme_terms(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                 *value;
    ngx_http_tsb_acme_conf_t  *acf;

    acf = ngx_http_tsb_acme_conf(cf, conf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (acf->tos.len) {
        return "is duplicate";
    }

    value = cf->args->elts;
    acf->tos = value[1];

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_acme_challenge(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                 *value;
    ngx_http_tsb_acme_conf_t  *acf;

    acf = ngx_http_tsb_acme_conf(cf, conf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (acf->http01 != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "http-01") == 0) {
        acf->http01 = 1;

    } else if (ngx_strcmp(value[1].data, "none") == 0) {
        acf->http01 = 0;

    } else {
        return "takes \"none\" or \"http-01\"";
    }

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_acme_http01_port(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_int_t                  n;
    ngx_str_t                 *value;
    ngx_http_tsb_acme_conf_t  *acf;

    acf = ngx_http_tsb_acme_conf(cf, conf);
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (acf->http01_port != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 1 || n > 65535) {
        return "takes a port number";
    }

    acf->http01_port = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_acme_merge(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    ngx_http_tsb_acme_conf_t  *acf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    acf = conf->acme;

    if (clcf->handler != ngx_http_tsb_acme_handler) {
        if (acf && acf->zone == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tsb_acme_* directives in location \"%V\" "
                               "without \"tsb_acme\"", &clcf->name);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (acf->eab_required == NGX_CONF_UNSET) {
        acf->eab_required = 0;
    }

    if (acf->http01 == NGX_CONF_UNSET) {
        acf->http01 = 0;
    }

    if (acf->http01_port == NGX_CONF_UNSET_UINT) {
        acf->http01_port = 80;        /* RFC 8555 section 8.3 */
    }

    if (acf->eab_required && acf->eab == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_acme_eab_required on\" in location \"%V\" "
                           "needs \"tsb_acme_eab_keys\"", &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (conf->upstream.url.len == 0 || conf->cache_zone == NULL
        || conf->sign_key_name.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tsb_acme\" in location \"%V\" needs "
                           "\"tsb_upstream\", \"tsb_cache\" (orders follow "
                           "their sign request through the status cache) "
                           "and \"tsb_sign_key_name\"", &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_tsb_policy_algorithms(cf, conf) != NGX_OK
        || ngx_http_tsb_cache_check_issuers(cf, conf, &clcf->name)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* bodies are read from memory only (see tsb_sign) */
    if (conf->max_body_size > TSB_JWS_MAX) {
        conf->max_body_size = TSB_JWS_MAX;
    }

    if (clcf->client_body_buffer_size < conf->max_body_size) {
        clcf->client_body_buffer_size = conf->max_body_size;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_tsb_acme_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_tsb_acme_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* the identity the account was bound to by its EAB key; else not found */
static ngx_int_t
ngx_http_tsb_acme_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_acme_req_t  *ar;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    ar = ctx ? ctx->acme : NULL;

    if (ar == NULL || ar->binding.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ar->binding.data;
    v->len = ar->binding.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* ------------------------------------------------------------ the zone */

static ngx_http_tsb_acme_node_t *
ngx_http_tsb_acme_lookup(ngx_http_tsb_acme_zone_t *z, ngx_str_t *key,
    uint32_t hash)
{
    return (ngx_http_tsb_acme_node_t *)
               ngx_str_rbtree_lookup(&z->sh->rbtree, key, hash);
}


static void
ngx_http_tsb_acme_remove(ngx_http_tsb_acme_zone_t *z,
    ngx_http_tsb_acme_node_t *n)
{
    if (n->expires) {
        ngx_queue_remove(&n->queue);
    }

    ngx_rbtree_delete(&z->sh->rbtree, &n->sn.node);
    ngx_slab_free_locked(z->shpool, n);
}


static ngx_int_t
ngx_http_tsb_acme_key(const char *prefix, ngx_str_t *id, u_char *buf,
    ngx_str_t *key)
{
    if (id->len > TSB_ACME_MAX_ID) {
        return NGX_ERROR;
    }

    key->data = buf;
    key->len = ngx_sprintf(buf, "%s%V", prefix, id) - buf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_acme_kv_get(ngx_http_tsb_acme_zone_t *z, const char *prefix,
    ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *value)
{
    u_char                    kb[TSB_ACME_MAX_ID + 4];
    ngx_str_t                 key;
    ngx_http_tsb_acme_node_t *n;

    if (ngx_http_tsb_acme_key(prefix, id, kb, &key) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&z->shpool->mutex);

    n = ngx_http_tsb_acme_lookup(z, &key, ngx_crc32_short(key.data, key.len));

    if (n && n->expires && n->expires < ngx_time()) {
        ngx_http_tsb_acme_remove(z, n);
        n = NULL;
    }

    if (n == NULL) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return NGX_DECLINED;
    }

    /* NUL-terminated: the codecs take C strings too */
    value->len = n->vlen;
    value->data = ngx_pnalloc(pool, n->vlen + 1);

    if (value->data) {
        ngx_memcpy(value->data, n->data + n->sn.str.len, n->vlen);
        value->data[n->vlen] = '\0';
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return value->data ? NGX_OK : NGX_ERROR;
}


/*
 * Sets key to value; with add, only when there is no live entry (then
 * NGX_DECLINED).  Expiring entries are evicted, oldest first, to make
 * room; accounts (expires 0) never are.
 */
static ngx_int_t
ngx_http_tsb_acme_kv_set(ngx_http_tsb_acme_zone_t *z, const char *prefix,
    ngx_str_t *id, u_char *value, size_t len, time_t expires,
    ngx_uint_t add)
{
    ngx_int_t  rc;

    ngx_shmtx_lock(&z->shpool->mutex);
    rc = ngx_http_tsb_acme_kv_set_locked(z, prefix, id, value, len, expires,
                                         add);
    ngx_shmtx_unlock(&z->shpool->mutex);

    if (rc == NGX_ABORT) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "tsb acme: tsb_acme_zone is full of accounts");
        rc = NGX_ERROR;
    }

    return rc;
}


/* the same under the zone's lock; NGX_ABORT: no room */
static ngx_int_t
ngx_http_tsb_acme_kv_set_locked(ngx_http_tsb_acme_zone_t *z,
    const char *prefix, ngx_str_t *id, u_char *value, size_t len,
    time_t expires, ngx_uint_t add)
{
    size_t                     size;
    u_char                     kb[TSB_ACME_MAX_ID + 4];
    uint32_t                   hash;
    ngx_str_t                  key;
    ngx_uint_t                 i;
    ngx_queue_t               *q;
    ngx_http_tsb_acme_node_t  *n, *old;

    if (ngx_http_tsb_acme_key(prefix, id, kb, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    hash = ngx_crc32_short(key.data, key.len);
    size = offsetof(ngx_http_tsb_acme_node_t, data) + key.len + len;

    /* a few expired ones go on every write */
    for (i = 0; i < 2 && !ngx_queue_empty(&z->sh->queue); i++) {
        q = ngx_queue_last(&z->sh->queue);
        n = ngx_queue_data(q, ngx_http_tsb_acme_node_t, queue);

        if (n->expires >= ngx_time()) {
            break;
        }

        ngx_http_tsb_acme_remove(z, n);
    }

    old = ngx_http_tsb_acme_lookup(z, &key, hash);

    if (old && old->expires && old->expires < ngx_time()) {
        ngx_http_tsb_acme_remove(z, old);
        old = NULL;
    }

    if (old && add) {
        return NGX_DECLINED;
    }

    n = ngx_slab_alloc_locked(z->shpool, size);

    for (i = 0; n == NULL && i < 64 && !ngx_queue_empty(&z->sh->queue);
         i++)
    {
        q = ngx_queue_last(&z->sh->queue);
        ngx_http_tsb_acme_remove(z, ngx_queue_data(q,
                                     ngx_http_tsb_acme_node_t, queue));

        if (old && q == &old->queue) {
            old = NULL;
        }

        n = ngx_slab_alloc_locked(z->shpool, size);
    }

    if (n == NULL) {
        return NGX_ABORT;
    }

    if (old) {
        ngx_http_tsb_acme_remove(z, old);
    }

    ngx_memcpy(n->data, key.data, key.len);
    ngx_http_tsb_cpymem(n->data + key.len, value, len);

    n->sn.node.key = hash;
    n->sn.str.data = n->data;
    n->sn.str.len = key.len;
    n->vlen = len;
    n->expires = expires;

    ngx_rbtree_insert(&z->sh->rbtree, &n->sn.node);

    if (expires) {
        ngx_queue_insert_head(&z->sh->queue, &n->queue);
    }

    return NGX_OK;
}


/*
 * Adds an order id to its account's list ("l:" and the account id: ids
 * separated by spaces, oldest first, the last NGX_HTTP_TSB_ACME_LIST_MAX
 * kept), under the lock, so that orders made at once in several workers
 * all get in.
 */
static ngx_int_t
ngx_http_tsb_acme_list_add(ngx_http_tsb_acme_zone_t *z, ngx_str_t *account,
    ngx_str_t *order, time_t expires)
{
    u_char                    *p, *last, *start;
    u_char                     kb[TSB_ACME_MAX_ID + 4];
    u_char                     buf[NGX_HTTP_TSB_ACME_LIST_MAX
                                   * (TSB_ACME_MAX_ID + 1)];
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  key;
    ngx_uint_t                 count;
    ngx_http_tsb_acme_node_t  *n;

    if (ngx_http_tsb_acme_key("l:", account, kb, &key) != NGX_OK
        || order->len > TSB_ACME_MAX_ID)
    {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&z->shpool->mutex);

    n = ngx_http_tsb_acme_lookup(z, &key, ngx_crc32_short(key.data, key.len));
    len = 0;

    if (n && (n->expires == 0 || n->expires >= ngx_time())
        && n->vlen <= sizeof(buf))
    {
        start = n->data + n->sn.str.len;
        last = start + n->vlen;

        for (count = 0, p = start; p < last; p++) {
            if (*p == ' ') {
                count++;
            }
        }

        /* the oldest go when the list is full */
        for (p = start; count + 1 >= NGX_HTTP_TSB_ACME_LIST_MAX && p < last;
             count--)
        {
            p = ngx_strlchr(p, last, ' ');
            p = p ? p + 1 : last;
        }

        len = last - p;
        ngx_memcpy(buf, p, len);
    }

    if (len + 1 + order->len > sizeof(buf)) {
        len = 0;
    }

    if (len) {
        buf[len++] = ' ';
    }

    ngx_memcpy(buf + len, order->data, order->len);
    len += order->len;

    rc = ngx_http_tsb_acme_kv_set_locked(z, "l:", account, buf, len, expires,
                                         0);

    ngx_shmtx_unlock(&z->shpool->mutex);

    return rc == NGX_OK ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tsb_acme_kv_del(ngx_http_tsb_acme_zone_t *z, const char *prefix,
    ngx_str_t *id)
{
    u_char                     kb[TSB_ACME_MAX_ID + 4];
    ngx_int_t                  rc;
    ngx_str_t                  key;
    ngx_http_tsb_acme_node_t  *n;

    if (ngx_http_tsb_acme_key(prefix, id, kb, &key) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&z->shpool->mutex);

    n = ngx_http_tsb_acme_lookup(z, &key, ngx_crc32_short(key.data, key.len));

    rc = NGX_DECLINED;

    if (n) {
        if (n->expires == 0 || n->expires >= ngx_time()) {
            rc = NGX_OK;
        }

        ngx_http_tsb_acme_remove(z, n);
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return rc;
}


/* ---------------------------------------------------------- answers */

static ngx_int_t
ngx_http_tsb_acme_nonce(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar,
    ngx_str_t *nonce)
{
    u_char     raw[16];
    tsb_buf_t  b;

    if (RAND_bytes(raw, sizeof(raw)) != 1
        || tsb_b64url_encode(raw, sizeof(raw), &b) != 0)
    {
        return NGX_ERROR;
    }

    nonce->len = b.len;
    nonce->data = ngx_pnalloc(r->pool, b.len);

    if (nonce->data == NULL) {
        tsb_buf_free(&b);
        return NGX_ERROR;
    }

    ngx_memcpy(nonce->data, b.data, b.len);
    tsb_buf_free(&b);

    return ngx_http_tsb_acme_kv_set(ar->zone, "n:", nonce, (u_char *) "", 0,
                                    ngx_time() + NGX_HTTP_TSB_ACME_NONCE_TTL,
                                    0);
}


/* Replay-Nonce, Link to the directory, no caching: on every answer */
static ngx_int_t
ngx_http_tsb_acme_headers(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar)
{
    ngx_str_t  nonce, link, v;

    if (ngx_http_tsb_acme_nonce(r, ar, &nonce) != NGX_OK) {
        return NGX_ERROR;
    }

    link.len = ar->base.len + sizeof("<directory>;rel=\"index\"") - 1;
    link.data = ngx_pnalloc(r->pool, link.len);
    if (link.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(link.data, "<%Vdirectory>;rel=\"index\"", &ar->base);

    ngx_str_set(&v, "no-store");

    if (ngx_http_tsb_add_header(r, "Replay-Nonce", &nonce) != NGX_OK
        || ngx_http_tsb_add_header(r, "Link", &link) != NGX_OK
        || ngx_http_tsb_add_header(r, "Cache-Control", &v) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_acme_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *detail, tsb_acme_ident_t *ident)
{
    u_char                   *p;
    ngx_int_t                 rc;
    tsb_buf_t                 out;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_acme_req_t  *ar;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    ar = ctx ? ctx->acme : NULL;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb acme: %s: %s", type, detail);

    p = ngx_pnalloc(r->pool, sizeof("acme.") + ngx_strlen(type));
    if (p != NULL) {
        ngx_sprintf(p, "acme.%s%Z", type);
        ngx_http_tsb_metrics_refusal((char *) p);

        if (ctx) {
            ctx->reason = (char *) p;
        }
    }

    if (ar && ngx_http_tsb_acme_headers(r, ar) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tsb_acme_problem_build(type, detail, (int) status, ident, &out)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tsb_send(r, status, &ngx_http_tsb_acme_type_problem,
                           out.data, out.len);
    tsb_buf_free(&out);

    return rc;
}


static ngx_int_t
ngx_http_tsb_acme_problem_err(ngx_http_request_t *r, tsb_error_t *err)
{
    return ngx_http_tsb_acme_problem(r, err->status ? err->status : 400,
                                     err->reason ? err->reason : "malformed",
                                     err->detail, NULL);
}


static ngx_int_t
ngx_http_tsb_acme_reply(ngx_http_request_t *r, ngx_uint_t status,
    tsb_buf_t *json, ngx_str_t *location)
{
    ngx_int_t                 rc;
    ngx_http_tsb_ctx_t       *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    if (ngx_http_tsb_acme_headers(r, ctx->acme) != NGX_OK
        || (location
            && ngx_http_tsb_add_header(r, "Location", location) != NGX_OK))
    {
        tsb_buf_free(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_tsb_send(r, status, &ngx_http_tsb_acme_type_json,
                           json->data, json->len);
    tsb_buf_free(json);

    return rc;
}


/* base + a + id, e.g. https://host/acme/order/<id> */
static ngx_int_t
ngx_http_tsb_acme_url(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar,
    const char *a, ngx_str_t *id, ngx_str_t *out)
{
    size_t  len;

    len = ngx_strlen(a);

    out->len = ar->base.len + len + (id ? id->len : 0);
    out->data = ngx_pnalloc(r->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (id) {
        ngx_sprintf(out->data, "%V%s%V%Z", &ar->base, a, id);

    } else {
        ngx_sprintf(out->data, "%V%s%Z", &ar->base, a);
    }

    return NGX_OK;
}


static char *
ngx_http_tsb_acme_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_http_tsb_cpymem(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}


/* ---------------------------------------------------------- handler */

ngx_int_t
ngx_http_tsb_acme_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     hlen;
    ngx_int_t                  rc;
    ngx_str_t                  host;
    tsb_buf_t                  out;
    ngx_pool_cleanup_t        *cln;
    ngx_http_tsb_ctx_t        *ctx;
    ngx_http_tsb_acme_req_t   *ar;
    ngx_http_tsb_loc_conf_t   *tlcf;
    ngx_http_core_loc_conf_t  *clcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ctx = ngx_http_tsb_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->handler = NGX_HTTP_TSB_H_OTHER;

    ar = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_acme_req_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ar == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_tsb_acme_cleanup;
    cln->data = ar;

    ar->conf = tlcf->acme;
    ar->zone = ar->conf->zone->data;
    ar->tlcf = tlcf;

    /*
     * URLs are absolute (RFC 8555 section 7.1): the scheme and Host the
     * client used, then the location's prefix.
     */
    if (r->headers_in.host) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    hlen = sizeof("https://") - 1 + host.len + clcf->name.len;
    ar->base.data = ngx_pnalloc(r->pool, hlen);
    if (ar->base.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(ar->base.data,
#if (NGX_HTTP_SSL)
                   r->connection->ssl ? "https://" :
#endif
                   "http://",
#if (NGX_HTTP_SSL)
                   r->connection->ssl ? sizeof("https://") - 1 :
#endif
                   sizeof("http://") - 1);
    p = ngx_cpymem(p, host.data, host.len);
    p = ngx_cpymem(p, clcf->name.data, clcf->name.len);
    ar->base.len = p - ar->base.data;

    ctx->acme = ar;

    ar->resource.data = r->uri.data + clcf->name.len;
    ar->resource.len = r->uri.len - clcf->name.len;

    if (r->uri.len < clcf->name.len) {
        ar->resource.len = 0;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ar->resource.len == 9
            && ngx_strncmp(ar->resource.data, "directory", 9) == 0)
        {
            if (tsb_acme_directory_build(
                    (char *) ngx_http_tsb_acme_cstr(r->pool, &ar->base),
                    ar->conf->tos.len ? (char *) ar->conf->tos.data : NULL,
                    (int) ar->conf->eab_required, &out)
                != 0)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* the directory needs no nonce; clients fetch one apart */
            rc = ngx_http_tsb_send(r, NGX_HTTP_OK,
                                   &ngx_http_tsb_acme_type_json, out.data,
                                   out.len);
            tsb_buf_free(&out);
            return rc;
        }

        if (ar->resource.len == 9
            && ngx_strncmp(ar->resource.data, "new-nonce", 9) == 0)
        {
            if (ngx_http_tsb_acme_headers(r, ar) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* RFC 8555 section 7.2: 200 for HEAD, 204 for GET */
            r->headers_out.status = (r->method & NGX_HTTP_HEAD)
                                    ? NGX_HTTP_OK : NGX_HTTP_NO_CONTENT;
            r->headers_out.content_length_n = 0;
            r->header_only = 1;

            return ngx_http_send_header(r);
        }

        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_ALLOWED, "malformed",
                   "ACME resources other than the directory and newNonce "
                   "are fetched with POST-as-GET (RFC 8555 section 6.3)",
                   NULL);
    }

    if (!(r->method & NGX_HTTP_POST)
        || r->headers_in.content_type == NULL
        || r->headers_in.content_type->value.len < 20
        || ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "application/jose+json", 21) != 0
        || r->headers_in.content_length_n > (off_t) tlcf->max_body_size)
    {
        /* a body left unread would be taken for the next request */
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!(r->method & NGX_HTTP_POST)) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_ALLOWED, "malformed",
                                         "use GET, HEAD or POST", NULL);
    }

    if (r->headers_in.content_type == NULL
        || r->headers_in.content_type->value.len < 20
        || ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "application/jose+json", 21) != 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                   "malformed", "send the JWS as application/jose+json",
                   NULL);
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        return ngx_http_tsb_acme_problem(r,
                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "malformed",
                   "the JWS is larger than tsb_max_body_size", NULL);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_tsb_acme_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_tsb_acme_body(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_tsb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    rc = ngx_http_tsb_acme_post(r, ctx->acme);

    /* NGX_DONE: waiting for the TSB or the cache; drops the body's ref */
    ngx_http_finalize_request(r, rc);
}


static const struct {
    const char               *name;
    size_t                    len;
    ngx_uint_t                prefix;       /* an id follows */
    ngx_uint_t                jwk;          /* signed with a jwk */
    ngx_http_tsb_acme_op_pt   op;
} ngx_http_tsb_acme_ops[] = {
    { "new-account", 11, 0, 1, ngx_http_tsb_acme_new_account },
    { "revoke-cert", 11, 0, 2, ngx_http_tsb_acme_revoke },
    { "new-order", 9, 0, 0, ngx_http_tsb_acme_new_order },
    { "key-change", 10, 0, 0, ngx_http_tsb_acme_key_change },
    { "acct/", 5, 1, 0, ngx_http_tsb_acme_account_op },
    { "orders/", 7, 1, 0, ngx_http_tsb_acme_orders_list },
    { "order/", 6, 1, 0, ngx_http_tsb_acme_order_op },
    { "authz/", 6, 1, 0, ngx_http_tsb_acme_authz_op },
    { "chall/", 6, 1, 0, ngx_http_tsb_acme_authz_op },
    { "finalize/", 9, 1, 0, ngx_http_tsb_acme_finalize },
    { "cert/", 5, 1, 0, ngx_http_tsb_acme_cert },
    { NULL, 0, 0, 0, NULL }
};


static ngx_int_t
ngx_http_tsb_acme_post(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar)
{
    u_char       *url;
    ngx_int_t     rc;
    ngx_str_t     body, nonce, kid, value;
    ngx_uint_t    i;
    tsb_error_t   err;

    if (ngx_http_tsb_body(r, &body) != NGX_OK || body.len == 0) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST, "malformed",
                   "the body is empty or larger than tsb_max_body_size",
                   NULL);
    }

    for (i = 0; ngx_http_tsb_acme_ops[i].name; i++) {
        if (ngx_http_tsb_acme_ops[i].prefix
            ? (ar->resource.len > ngx_http_tsb_acme_ops[i].len
               && ngx_strncmp(ar->resource.data,
                              ngx_http_tsb_acme_ops[i].name,
                              ngx_http_tsb_acme_ops[i].len) == 0)
            : (ar->resource.len == ngx_http_tsb_acme_ops[i].len
               && ngx_strncmp(ar->resource.data,
                              ngx_http_tsb_acme_ops[i].name,
                              ngx_http_tsb_acme_ops[i].len) == 0))
        {
            break;
        }
    }

    if (ngx_http_tsb_acme_ops[i].name == NULL) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "there is no such ACME resource", NULL);
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_jws_parse(body.data, body.len, TSB_JWS_ACME, &ar->jws, &err)
        != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    ar->have_jws = 1;

    /* the nonce is spent whatever comes next (RFC 8555 section 6.5) */

    nonce.data = (u_char *) ar->jws.nonce;
    nonce.len = ngx_strlen(ar->jws.nonce);

    if (ngx_http_tsb_acme_kv_del(ar->zone, "n:", &nonce) != NGX_OK) {
        ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_BAD_NONCE);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST, "badNonce",
                   "the nonce is unknown, used or expired: retry with the "
                   "one in this answer's Replay-Nonce", NULL);
    }

    /* the "url" is the one this request went to (section 6.4) */

    url = (u_char *) ar->jws.url;

    if (ngx_strlen(url) != ar->base.len + ar->resource.len
        || ngx_strncmp(url, ar->base.data, ar->base.len) != 0
        || ngx_strncmp(url + ar->base.len, ar->resource.data,
                       ar->resource.len) != 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "the JWS \"url\" is not the URL this "
                   "request was sent to", NULL);
    }

    if (ngx_http_tsb_acme_ops[i].jwk == 1 && !ar->jws.has_jwk) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST, "malformed",
                   "newAccount is signed with the account key as \"jwk\"",
                   NULL);
    }

    if (ngx_http_tsb_acme_ops[i].jwk == 0 && ar->jws.has_jwk) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST, "malformed",
                   "this request is signed with the account's \"kid\"",
                   NULL);
    }

    if (ar->jws.has_jwk) {
        if (tsb_jws_verify(&ar->jws, NULL, &err) != 0) {
            return ngx_http_tsb_acme_problem_err(r, &err);
        }

        return ngx_http_tsb_acme_ops[i].op(r, ar);
    }

    /* a kid is the account's URL: acct/<id> below this directory */

    kid.data = (u_char *) ar->jws.kid;
    kid.len = ngx_strlen(ar->jws.kid);

    if (kid.len <= ar->base.len + 5
        || ngx_strncmp(kid.data, ar->base.data, ar->base.len) != 0
        || ngx_strncmp(kid.data + ar->base.len, "acct/", 5) != 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST,
                   "accountDoesNotExist", "the \"kid\" is not an account "
                   "URL of this directory", NULL);
    }

    ar->account_id.data = kid.data + ar->base.len + 5;
    ar->account_id.len = kid.len - ar->base.len - 5;

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "a:", &ar->account_id, r->pool,
                                  &value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST,
                   "accountDoesNotExist", "there is no such account", NULL);
    }

    if (tsb_acme_account_decode(value.data, value.len, &ar->account, &err)
        != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    ar->have_account = 1;

    if (tsb_jwk_parse((u_char *) ar->account.key,
                      ngx_strlen(ar->account.key), &ar->key, &err) != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    ar->have_key = 1;

    if (tsb_jws_verify(&ar->jws, &ar->key, &err) != 0) {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    if (ar->account.status != TSB_ACME_VALID) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "the account is deactivated", NULL);
    }

    if (ar->account.binding) {
        ar->binding.data = (u_char *) ar->account.binding;
        ar->binding.len = ngx_strlen(ar->account.binding);
    }

    return ngx_http_tsb_acme_ops[i].op(r, ar);
}


/* -------------------------------------------------------- accounts */

static ngx_int_t
ngx_http_tsb_acme_account_answer(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_uint_t status, ngx_str_t *id,
    tsb_acme_account_t *a)
{
    ngx_str_t  location;
    tsb_buf_t  out;

    if (ngx_http_tsb_acme_url(r, ar, "acct/", id, &location) != NGX_OK
        || tsb_acme_account_build(a, ngx_http_tsb_acme_cstr(r->pool,
                                                             &ar->base),
                                  ngx_http_tsb_acme_cstr(r->pool, id), &out)
           != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tsb_acme_reply(r, status, &out, &location);
}


static ngx_int_t
ngx_http_tsb_acme_new_account(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    u_char                    detail[TSB_DETAIL_MAX];
    size_t                    i;
    ngx_int_t                 rc;
    ngx_str_t                 thumb, id, value, eab_url;
    tsb_jwk_t                 bound;
    tsb_error_t               err;
    tsb_acme_account_t        a;
    ngx_http_tsb_acme_eab_t  *k;
    tsb_acme_account_req_t    req;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_acme_account_req_parse(ar->jws.payload.data, ar->jws.payload.len,
                                   TSB_ACME_NEW_ACCOUNT, &req, &err)
        != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    thumb.data = (u_char *) ar->jws.jwk.thumb;
    thumb.len = TSB_JWK_THUMB_LEN;

    /* an existing account for this key: 200 and its URL (7.3.1) */

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "k:", &thumb, r->pool, &id);

    if (rc == NGX_OK) {
        rc = ngx_http_tsb_acme_kv_get(ar->zone, "a:", &id, r->pool, &value);

        if (rc == NGX_OK
            && tsb_acme_account_decode(value.data, value.len, &a, &err) == 0)
        {
            tsb_acme_account_req_free(&req);
            rc = ngx_http_tsb_acme_account_answer(r, ar, NGX_HTTP_OK, &id,
                                                  &a);
            tsb_acme_account_free(&a);
            return rc;
        }

        tsb_acme_account_req_free(&req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (req.only_existing) {
        tsb_acme_account_req_free(&req);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST,
                   "accountDoesNotExist", "there is no account for this key",
                   NULL);
    }

    if (ar->conf->tos.len && req.tos_agreed != 1) {
        tsb_acme_account_req_free(&req);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "userActionRequired", "agree to the terms of service "
                   "(termsOfServiceAgreed) to create an account", NULL);
    }

    ngx_memzero(&a, sizeof(tsb_acme_account_t));

    if (!req.has_eab && ar->conf->eab_required) {
        tsb_acme_account_req_free(&req);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "externalAccountRequired", "this CA needs an external "
                   "account binding: ask the PKI team for a key id and "
                   "HMAC key", NULL);
    }

    if (req.has_eab) {
        if (ar->conf->eab == NULL) {
            tsb_acme_account_req_free(&req);
            return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST,
                       "malformed", "this CA takes no external account "
                       "binding", NULL);
        }

        k = ar->conf->eab->elts;

        for (i = 0; i < ar->conf->eab->nelts; i++) {
            if (ngx_strcmp(k[i].kid.data, req.eab.kid) == 0) {
                break;
            }
        }

        eab_url.data = (u_char *) req.eab.url;
        eab_url.len = ngx_strlen(req.eab.url);

        if (i == ar->conf->eab->nelts
            || eab_url.len != ar->base.len + ar->resource.len
            || ngx_strncmp(eab_url.data, ar->base.data, ar->base.len) != 0
            || tsb_jws_verify_hmac(&req.eab, k[i].secret.data,
                                   k[i].secret.len, &err) != 0)
        {
            tsb_acme_account_req_free(&req);
            ngx_http_tsb_audit(r, NULL, 0, NGX_HTTP_UNAUTHORIZED,
                               "acme.unauthorized",
                               "an external account binding did not verify",
                               NULL);
            return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                       "unauthorized", "the external account binding does "
                       "not verify: unknown key id, another URL, or another "
                       "HMAC key", NULL);
        }

        /* it binds this very key (section 7.3.4) */
        if (tsb_jwk_parse(req.eab.payload.data, req.eab.payload.len, &bound,
                          &err) != 0
            || ngx_strcmp(bound.thumb, ar->jws.jwk.thumb) != 0)
        {
            if (bound.pkey) {
                tsb_jwk_free(&bound);
            }

            tsb_acme_account_req_free(&req);
            return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST,
                       "malformed", "the external account binding's payload "
                       "is not the account key", NULL);
        }

        tsb_jwk_free(&bound);

        a.binding = ngx_http_tsb_acme_cstr(r->pool, &k[i].identity);
    }

    a.key = (char *) ar->jws.jwk.canon.data;
    a.status = TSB_ACME_VALID;
    a.n_contact = req.n_contact;
    a.created = ngx_time();

    for (i = 0; i < req.n_contact; i++) {
        a.contact[i] = req.contact[i];
    }

    /* the account id is the key's thumbprint when it was created */
    id = thumb;

    rc = ngx_http_tsb_acme_save_account(r, ar, &id, &a);

    if (rc == NGX_OK) {
        (void) ngx_http_tsb_acme_kv_set(ar->zone, "k:", &thumb, id.data,
                                        id.len, 0, 0);

        ngx_snprintf(detail, sizeof(detail), "account %V created%s%s%Z", &id,
                     a.binding ? " bound to " : "",
                     a.binding ? a.binding : "");

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0, "tsb acme: %s",
                      detail);
        ngx_http_tsb_audit(r, NULL, 1, NGX_HTTP_CREATED, "acme.new_account",
                           (char *) detail, NULL);
        ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_ACCOUNT);

        rc = ngx_http_tsb_acme_account_answer(r, ar, NGX_HTTP_CREATED, &id,
                                              &a);

    } else {
        rc = ngx_http_tsb_acme_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "serverInternal", "the account could not be kept", NULL);
    }

    tsb_acme_account_req_free(&req);

    return rc;
}


static ngx_int_t
ngx_http_tsb_acme_account_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    size_t                   i;
    ngx_int_t                rc;
    ngx_str_t                id;
    tsb_error_t              err;
    tsb_acme_account_req_t   req;

    id.data = ar->resource.data + 5;
    id.len = ar->resource.len - 5;

    if (id.len != ar->account_id.len
        || ngx_strncmp(id.data, ar->account_id.data, id.len) != 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "unauthorized", "this is not the signer's account",
                   NULL);
    }

    /* POST-as-GET */
    if (ar->jws.payload.len == 0) {
        return ngx_http_tsb_acme_account_answer(r, ar, NGX_HTTP_OK, &id,
                                                &ar->account);
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_acme_account_req_parse(ar->jws.payload.data, ar->jws.payload.len,
                                   TSB_ACME_UPDATE, &req, &err)
        != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    if (req.contact_present) {
        for (i = 0; i < ar->account.n_contact; i++) {
            free(ar->account.contact[i]);
        }

        for (i = 0; i < req.n_contact; i++) {
            ar->account.contact[i] = req.contact[i];
            req.contact[i] = NULL;
        }

        ar->account.n_contact = req.n_contact;
        req.n_contact = 0;
    }

    if (req.deactivate) {
        ar->account.status = TSB_ACME_DEACTIVATED;
    }

    tsb_acme_account_req_free(&req);

    if (ngx_http_tsb_acme_save_account(r, ar, &id, &ar->account) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ar->account.status == TSB_ACME_DEACTIVATED) {
        ngx_http_tsb_audit(r, NULL, 1, NGX_HTTP_OK, "acme.deactivated",
                           "account deactivated", NULL);
    }

    rc = ngx_http_tsb_acme_account_answer(r, ar, NGX_HTTP_OK, &id,
                                          &ar->account);

    return rc;
}


static ngx_int_t
ngx_http_tsb_acme_key_change(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    char         *account, *kid_url;
    ngx_int_t     rc;
    ngx_str_t     thumb, old_thumb, other, acct_url;
    tsb_jws_t     inner;
    tsb_jwk_t     old_key;
    tsb_error_t   err;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_jws_parse(ar->jws.payload.data, ar->jws.payload.len,
                      TSB_JWS_INNER, &inner, &err) != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    if (ngx_strcmp(inner.url, ar->jws.url) != 0
        || tsb_jws_verify(&inner, NULL, &err) != 0)
    {
        tsb_jws_free(&inner);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "the inner JWS is not signed by its "
                   "\"jwk\" for this URL", NULL);
    }

    if (tsb_acme_key_change_parse(inner.payload.data, inner.payload.len,
                                  &account, &old_key, &err) != 0)
    {
        tsb_jws_free(&inner);
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    kid_url = ar->jws.kid;

    if (ngx_strcmp(account, kid_url) != 0
        || ngx_strcmp(old_key.thumb, ar->key.thumb) != 0)
    {
        free(account);
        tsb_jwk_free(&old_key);
        tsb_jws_free(&inner);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "\"account\" and \"oldKey\" are not the "
                   "signer's account and current key", NULL);
    }

    free(account);
    tsb_jwk_free(&old_key);

    thumb.data = (u_char *) inner.jwk.thumb;
    thumb.len = TSB_JWK_THUMB_LEN;

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "k:", &thumb, r->pool, &other);

    if (rc == NGX_OK) {
        tsb_jws_free(&inner);

        if (ngx_http_tsb_acme_url(r, ar, "acct/", &other, &acct_url)
            == NGX_OK)
        {
            (void) ngx_http_tsb_add_header(r, "Location", &acct_url);
        }

        return ngx_http_tsb_acme_problem(r, NGX_HTTP_CONFLICT,
                   "malformed", "the new key belongs to an account already",
                   NULL);
    }

    free(ar->account.key);
    ar->account.key = strdup((char *) inner.jwk.canon.data);

    old_thumb.data = (u_char *) ar->key.thumb;
    old_thumb.len = TSB_JWK_THUMB_LEN;

    if (ar->account.key == NULL
        || ngx_http_tsb_acme_save_account(r, ar, &ar->account_id,
                                          &ar->account) != NGX_OK
        || ngx_http_tsb_acme_kv_set(ar->zone, "k:", &thumb,
                                    ar->account_id.data, ar->account_id.len,
                                    0, 0) != NGX_OK)
    {
        tsb_jws_free(&inner);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_http_tsb_acme_kv_del(ar->zone, "k:", &old_thumb);
    tsb_jws_free(&inner);

    ngx_http_tsb_audit(r, NULL, 1, NGX_HTTP_OK, "acme.key_change",
                       "account key changed", NULL);

    return ngx_http_tsb_acme_account_answer(r, ar, NGX_HTTP_OK,
                                            &ar->account_id, &ar->account);
}


/*
 * The record goes into the zone now and to its file in a thread; a
 * failed write is logged (the zone still has it until a restart).
 */
static ngx_int_t
ngx_http_tsb_acme_save_account(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_str_t *id, tsb_acme_account_t *a)
{
    tsb_buf_t                 rec;

    if (tsb_acme_account_encode(a, &rec) != 0) {
        return NGX_ERROR;
    }

    if (ngx_http_tsb_acme_kv_set(ar->zone, "a:", id, rec.data, rec.len, 0, 0)
        != NGX_OK)
    {
        tsb_buf_free(&rec);
        return NGX_ERROR;
    }

    ngx_http_tsb_acme_persist(ar->zone, r->connection->log, id, ".json",
                              rec.data, rec.len);

    tsb_buf_free(&rec);

    return NGX_OK;
}


/*
 * Writes a record to <accounts>/<id><suffix> in nginx's thread pool;
 * nothing without accounts=.  Accounts are "<id>.json", orders
 * "<id>.order".
 */
static void
ngx_http_tsb_acme_persist(ngx_http_tsb_acme_zone_t *z, ngx_log_t *log,
    ngx_str_t *id, const char *suffix, u_char *data, size_t len)
{
#if (NGX_THREADS)
    size_t                    slen;
    ngx_pool_t               *pool;
    ngx_thread_task_t        *task;
    ngx_http_tsb_acme_job_t  *job;

    if (z->accounts.len == 0) {
        return;
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_http_tsb_acme_job_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    slen = ngx_strlen(suffix);

    job = task->ctx;
    job->pool = pool;

    job->path.len = z->accounts.len + 1 + id->len + slen;
    job->path.data = ngx_pnalloc(pool, job->path.len + 1);
    job->tmp.len = job->path.len + 4;
    job->tmp.data = ngx_pnalloc(pool, job->tmp.len + 1);
    job->data.len = len;
    job->data.data = ngx_pnalloc(pool, len);

    if (job->path.data == NULL || job->tmp.data == NULL
        || job->data.data == NULL)
    {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_sprintf(job->path.data, "%V/%V%s%Z", &z->accounts, id, suffix);
    ngx_sprintf(job->tmp.data, "%V/%V%s.tmp%Z", &z->accounts, id, suffix);
    ngx_memcpy(job->data.data, data, len);

    task->handler = ngx_http_tsb_acme_write;
    task->event.handler = ngx_http_tsb_acme_written;
    task->event.data = job;

    if (ngx_thread_task_post(z->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tsb acme: %V%s not written to disk: the thread pool "
                      "is busy", id, suffix);
        ngx_destroy_pool(pool);
    }
#endif
}


#if (NGX_THREADS)

/* in a thread: write a temporary file, then rename it over the old one */
static void
ngx_http_tsb_acme_write(void *data, ngx_log_t *log)
{
    ngx_http_tsb_acme_job_t  *job = data;

    ssize_t   n;
    size_t    done;
    ngx_fd_t  fd;

    job->err = 0;
    job->failed = NULL;

    fd = open((char *) job->tmp.data, O_WRONLY|O_CREAT|O_TRUNC, 0600);
    if (fd == -1) {
        job->err = ngx_errno;
        job->failed = "open";
        return;
    }

    for (done = 0; done < job->data.len; done += n) {
        n = write(fd, job->data.data + done, job->data.len - done);

        if (n <= 0) {
            job->err = ngx_errno;
            job->failed = "write";
            close(fd);
            unlink((char *) job->tmp.data);
            return;
        }
    }

    if (fsync(fd) == -1) {
        job->err = ngx_errno;
        job->failed = "fsync";
    }

    close(fd);

    if (job->failed == NULL
        && rename((char *) job->tmp.data, (char *) job->path.data) == -1)
    {
        job->err = ngx_errno;
        job->failed = "rename";
    }
}


static void
ngx_http_tsb_acme_written(ngx_event_t *ev)
{
    ngx_http_tsb_acme_job_t  *job = ev->data;

    if (job->failed) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, job->err,
                      "tsb acme: %s \"%V\" failed: the record lives in "
                      "tsb_acme_zone until a restart", job->failed,
                      &job->path);
    }

    ngx_destroy_pool(job->pool);
}

#endif


/* ---------------------------------------------------------- orders */

static ngx_int_t
ngx_http_tsb_acme_random_id(ngx_pool_t *pool, ngx_str_t *out)
{
    u_char     raw[15];
    tsb_buf_t  b;

    if (RAND_bytes(raw, sizeof(raw)) != 1
        || tsb_b64url_encode(raw, sizeof(raw), &b) != 0)
    {
        return NGX_ERROR;
    }

    out->len = b.len;
    out->data = ngx_pnalloc(pool, b.len + 1);

    if (out->data) {
        ngx_memcpy(out->data, b.data, b.len + 1);
    }

    tsb_buf_free(&b);

    return out->data ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tsb_acme_save_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    ngx_int_t  rc;
    tsb_buf_t  rec;

    if (tsb_acme_order_encode(&ar->order, &rec) != 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_tsb_acme_kv_set(ar->zone, "o:", &ar->order_id, rec.data,
                                  rec.len, (time_t) ar->order.expires, 0);

    if (rc == NGX_OK) {
        ngx_http_tsb_acme_persist(ar->zone, r->connection->log,
                                  &ar->order_id, ".order", rec.data,
                                  rec.len);
    }

    tsb_buf_free(&rec);

    return rc;
}


/* NGX_OK; or an answer already made (ar->answered), or an error */
static ngx_int_t
ngx_http_tsb_acme_load_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_str_t *id)
{
    ngx_int_t    rc;
    ngx_str_t    value;
    tsb_error_t  err;

    ar->order_id = *id;

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "o:", id, r->pool, &value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ar->answered = 1;
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "there is no such order (orders are kept 7 days)", NULL);
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_acme_order_decode(value.data, value.len, &ar->order, &err) != 0) {
        ar->answered = 1;
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    ar->have_order = 1;

    if (ar->account_id.len != ngx_strlen(ar->order.account)
        || ngx_strncmp(ar->account_id.data, ar->order.account,
                       ar->account_id.len) != 0)
    {
        ar->answered = 1;
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "unauthorized", "the order belongs to another account",
                   NULL);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_acme_order_answer(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar, ngx_uint_t status)
{
    ngx_str_t                 location, v;
    tsb_buf_t                 out;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (ngx_http_tsb_acme_url(r, ar, "order/", &ar->order_id, &location)
        != NGX_OK
        || tsb_acme_order_build(&ar->order,
                                ngx_http_tsb_acme_cstr(r->pool, &ar->base),
                                ngx_http_tsb_acme_cstr(r->pool,
                                                       &ar->order_id),
                                &out) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ar->order.status == TSB_ACME_PROCESSING) {
        v.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (v.data == NULL) {
            tsb_buf_free(&out);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v.len = ngx_sprintf(v.data, "%T", tlcf->retry_after) - v.data;

        if (ngx_http_tsb_add_header(r, "Retry-After", &v) != NGX_OK) {
            tsb_buf_free(&out);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_tsb_acme_reply(r, status, &out, &location);
}


/* whether the location's policy, for this account, allows name */
static ngx_uint_t
ngx_http_tsb_acme_allowed(const tsb_policy_t *p, tsb_acme_ident_t *id)
{
    size_t  i;

    for (i = 0; i < p->n_names; i++) {
        if (tsb_policy_name_match_re(p->names[i].pattern, p->names[i].len,
                                     p->name_regex ? p->name_regex[i] : NULL,
                                     id->value, id->len))
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_tsb_acme_new_order(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    u_char                    detail[TSB_DETAIL_MAX];
    size_t                    i;
    ngx_int_t                 rc;
    tsb_error_t               err;
    const tsb_policy_t       *policy;
    tsb_acme_order_req_t      req;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_acme_order_req_parse(ar->jws.payload.data, ar->jws.payload.len,
                                 &req, &err) != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    /* the name patterns, with $tsb_acme_account for this account */
    policy = ngx_http_tsb_request_policy(r, tlcf);
    if (policy == NULL) {
        tsb_acme_order_req_free(&req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < req.n; i++) {
        if (!ngx_http_tsb_acme_allowed(policy, &req.idents[i])) {
            ngx_snprintf(detail, sizeof(detail),
                         "the policy of this CA does not allow \"%s\" for "
                         "this account%Z", req.idents[i].value);

            ngx_http_tsb_audit(r, NULL, 0, NGX_HTTP_FORBIDDEN,
                               "acme.rejectedIdentifier", (char *) detail,
                               NULL);

            rc = ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                               "rejectedIdentifier", (char *) detail,
                               &req.idents[i]);
            tsb_acme_order_req_free(&req);
            return rc;
        }

        /* the policy first: then what http-01 can prove */
        if (ar->conf->http01 && req.idents[i].value[0] == '*') {
            ngx_snprintf(detail, sizeof(detail),
                         "\"%s\" is a wildcard: http-01, the one challenge "
                         "of this CA, cannot prove control of it (RFC 8555 "
                         "section 8.3)%Z", req.idents[i].value);

            ngx_http_tsb_audit(r, NULL, 0, NGX_HTTP_FORBIDDEN,
                               "acme.rejectedIdentifier", (char *) detail,
                               NULL);

            rc = ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                               "rejectedIdentifier", (char *) detail,
                               &req.idents[i]);
            tsb_acme_order_req_free(&req);
            return rc;
        }
    }

    if (ngx_http_tsb_acme_random_id(r->pool, &ar->order_id) != NGX_OK) {
        tsb_acme_order_req_free(&req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&ar->order, sizeof(tsb_acme_order_t));
    ar->have_order = 1;

    ar->order.account = strndup((char *) ar->account_id.data,
                                ar->account_id.len);
    ar->order.status = TSB_ACME_READY;     /* authorised by the policy */
    ar->order.expires = ngx_time() + NGX_HTTP_TSB_ACME_ORDER_TTL;
    ar->order.n = req.n;
    ngx_memcpy(ar->order.idents, req.idents, sizeof(req.idents));
    req.n = 0;

    if (ar->conf->http01) {
        /* allowed by the policy, and control is proven as well */
        u_char     raw[16];
        tsb_buf_t  tok;

        if (RAND_bytes(raw, sizeof(raw)) != 1
            || tsb_b64url_encode(raw, sizeof(raw), &tok) != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ar->order.token = (char *) tok.data;    /* freed with the order */
        ar->order.status = TSB_ACME_PENDING;
        ar->order.has_authz = 1;

        for (i = 0; i < ar->order.n; i++) {
            ar->order.authz[i] = TSB_ACME_PENDING;
        }
    }

    if (ar->order.account == NULL
        || ngx_http_tsb_acme_save_order(r, ar) != NGX_OK)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "serverInternal", "the order could not be kept", NULL);
    }

    if (ngx_http_tsb_acme_list_add(ar->zone, &ar->account_id, &ar->order_id,
                                   (time_t) ar->order.expires)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "tsb acme: order %V not in its account's list",
                      &ar->order_id);
    }

    ngx_snprintf(detail, sizeof(detail), "order %V for %s%s created%Z",
                 &ar->order_id, ar->order.idents[0].value,
                 ar->order.n > 1 ? " and more" : "");
    ngx_http_tsb_audit(r, NULL, 1, NGX_HTTP_CREATED, "acme.new_order",
                       (char *) detail, NULL);
    ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_ORDER);

    return ngx_http_tsb_acme_order_answer(r, ar, NGX_HTTP_CREATED);
}


/*
 * orders/<account>[/<page>]: the account's orders the zone still has,
 * newest first, but the invalid ones (RFC 8555 section 7.1.2.1 says
 * "SHOULD NOT"), NGX_HTTP_TSB_ACME_LIST_PAGE a page with Link rel="next"
 * to the next.
 */
static ngx_int_t
ngx_http_tsb_acme_orders_list(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    u_char            *p, *end, *slash;
    char              *ids[NGX_HTTP_TSB_ACME_LIST_PAGE];
    ngx_int_t          rc, page;
    ngx_str_t          id, list, value, rec, link;
    ngx_uint_t         skip, n, more;
    tsb_buf_t          out;
    tsb_error_t        err;
    tsb_acme_order_t   o;

    id.data = ar->resource.data + 7;
    id.len = ar->resource.len - 7;
    page = 0;

    slash = ngx_strlchr(id.data, id.data + id.len, '/');

    if (slash) {
        page = ngx_atoi(slash + 1, id.data + id.len - slash - 1);
        id.len = slash - id.data;
    }

    if (page == NGX_ERROR || page > NGX_HTTP_TSB_ACME_LIST_MAX) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "there is no such page of orders", NULL);
    }

    if (id.len != ar->account_id.len
        || ngx_strncmp(id.data, ar->account_id.data, id.len) != 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "unauthorized", "these are not the signer's orders",
                   NULL);
    }

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "l:", &id, r->pool, &list);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        list.len = 0;
        list.data = (u_char *) "";
    }

    skip = (ngx_uint_t) page * NGX_HTTP_TSB_ACME_LIST_PAGE;
    n = 0;
    more = 0;
    ngx_memzero(&err, sizeof(tsb_error_t));

    /* newest last in the record: walk it backwards */

    end = list.data + list.len;

    while (end > list.data) {
        for (p = end; p > list.data && p[-1] != ' '; p--) {
            /* void */
        }

        value.data = p;
        value.len = end - p;
        end = (p > list.data) ? p - 1 : list.data;

        if (ngx_http_tsb_acme_kv_get(ar->zone, "o:", &value, r->pool, &rec)
            != NGX_OK)
        {
            continue;       /* expired or evicted */
        }

        if (tsb_acme_order_decode(rec.data, rec.len, &o, &err) != 0) {
            continue;
        }

        rc = (o.status == TSB_ACME_INVALID);
        tsb_acme_order_free(&o);

        if (rc) {
            continue;
        }

        if (skip) {
            skip--;
            continue;
        }

        if (n == NGX_HTTP_TSB_ACME_LIST_PAGE) {
            more = 1;
            break;
        }

        ids[n] = ngx_http_tsb_acme_cstr(r->pool, &value);
        if (ids[n] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        n++;
    }

    if (more) {
        link.len = ar->base.len + sizeof("<orders//>;rel=\"next\"") - 1
                   + id.len + NGX_INT_T_LEN;
        link.data = ngx_pnalloc(r->pool, link.len);
        if (link.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        link.len = ngx_sprintf(link.data, "<%Vorders/%V/%i>;rel=\"next\"",
                               &ar->base, &id, page + 1)
                   - link.data;

        if (ngx_http_tsb_add_header(r, "Link", &link) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (tsb_acme_orders_build(ngx_http_tsb_acme_cstr(r->pool, &ar->base),
                              ids, n, &out)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tsb_acme_reply(r, NGX_HTTP_OK, &out, NULL);
}


static ngx_int_t
ngx_http_tsb_acme_order_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    ngx_int_t  rc;
    ngx_str_t  id;

    id.data = ar->resource.data + 6;
    id.len = ar->resource.len - 6;

    rc = ngx_http_tsb_acme_load_order(r, ar, &id);
    if (rc != NGX_OK || ar->answered) {
        return rc;
    }

    if (ar->order.status != TSB_ACME_PROCESSING) {
        return ngx_http_tsb_acme_order_answer(r, ar, NGX_HTTP_OK);
    }

    /* the sign request's status, through the cache every poller shares */
    id.data = (u_char *) ar->order.request;
    id.len = ngx_strlen(ar->order.request);

    return ngx_http_tsb_cache_handle(r, &id, 0,
                                     ngx_http_tsb_acme_order_serve);
}


/* an order in processing meets its sign request's status */
static ngx_int_t
ngx_http_tsb_acme_order_serve(ngx_http_request_t *r,
    ngx_http_tsb_entry_t *e, ngx_uint_t cache_status, tsb_error_t *err)
{
    u_char                    detail[TSB_DETAIL_MAX];
    const char               *type;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_acme_req_t  *ar;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    ar = ctx->acme;
    type = NULL;

    if (e == NULL) {
        /* the TSB could not be asked: still processing, ask again later */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "tsb acme: order %V: status of sign request %s not "
                      "known: %s", &ar->order_id, ar->order.request,
                      err ? err->detail : "");
        return ngx_http_tsb_acme_order_answer(r, ar, NGX_HTTP_OK);
    }

    switch (e->status) {

    case TSB_STATUS_EXECUTED:
        if (e->mismatch || e->der.len == 0) {
            type = "serverInternal";
            ngx_snprintf(detail, sizeof(detail),
                         "the certificate the TSB issued for sign request %s "
                         "is not what was accepted, and is withheld: %V%Z",
                         ar->order.request, &e->detail);
            break;
        }

        ar->order.status = TSB_ACME_VALID;
        break;

    case TSB_STATUS_REJECTED:
        type = "unauthorized";
        ngx_snprintf(detail, sizeof(detail),
                     "the approvers REJECTED sign request %s%Z",
                     ar->order.request);
        break;

    case TSB_STATUS_EXPIRED:
        type = "unauthorized";
        ngx_snprintf(detail, sizeof(detail),
                     "sign request %s EXPIRED before the approvers "
                     "decided%Z", ar->order.request);
        break;

    case TSB_STATUS_CANCELLED:
        type = "unauthorized";
        ngx_snprintf(detail, sizeof(detail),
                     "sign request %s was CANCELLED%Z", ar->order.request);
        break;

    case TSB_STATUS_FAILED:
        type = "serverInternal";
        ngx_snprintf(detail, sizeof(detail),
                     "the TSB FAILED to sign request %s%Z",
                     ar->order.request);
        break;

    default:
        /* PENDING, APPROVED: the approvers are deciding */
        return ngx_http_tsb_acme_order_answer(r, ar, NGX_HTTP_OK);
    }

    if (type) {
        ar->order.status = TSB_ACME_INVALID;

        if (tsb_acme_order_set_error(&ar->order, type, (char *) detail)
            != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_tsb_acme_save_order(r, ar) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * Pollers in several workers may all see the decision: the first to
     * mark the order logs, audits and counts it.
     */
    if (ngx_http_tsb_acme_kv_set(ar->zone, "d:", &ar->order_id,
                                 (u_char *) "", 0,
                                 (time_t) ar->order.expires, 1)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "tsb acme: order %V is %s (sign request %s %s)",
                      &ar->order_id, tsb_acme_status_name(ar->order.status),
                      ar->order.request, tsb_status_name((int) e->status));

        if (type == NULL) {
            ngx_snprintf(detail, sizeof(detail),
                         "order %V valid: the approvers executed sign "
                         "request %s%Z", &ar->order_id, ar->order.request);
        }

        ngx_http_tsb_audit(r, NULL, type == NULL, NGX_HTTP_OK,
                           type ? "acme.order_invalid" : "acme.order_valid",
                           (char *) detail, ar->order.request);

        ngx_http_tsb_metrics_acme(type ? NGX_HTTP_TSB_ACME_ORDER_INVALID
                                       : NGX_HTTP_TSB_ACME_ORDER_VALID);
    }

    return ngx_http_tsb_acme_order_answer(r, ar, NGX_HTTP_OK);
}


static ngx_int_t
ngx_http_tsb_acme_authz_op(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    u_char     *dash;
    ngx_int_t   rc, n;
    ngx_str_t   id, authz;
    tsb_buf_t   out;
    ngx_uint_t  chall;

    chall = (ar->resource.data[0] == 'c');

    id.data = ar->resource.data + 6;
    id.len = ar->resource.len - 6;

    dash = ngx_strlchr(id.data, id.data + id.len, '-');

    /* order ids are base64url and may hold '-': the index is after the
     * last one */
    while (dash) {
        u_char  *next = ngx_strlchr(dash + 1, id.data + id.len, '-');

        if (next == NULL) {
            break;
        }

        dash = next;
    }

    if (dash == NULL
        || (n = ngx_atoi(dash + 1, id.data + id.len - dash - 1)) == NGX_ERROR)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "there is no such authorization", NULL);
    }

    authz = id;
    id.len = dash - id.data;

    rc = ngx_http_tsb_acme_load_order(r, ar, &id);
    if (rc != NGX_OK || ar->answered) {
        return rc;
    }

    if ((size_t) n >= ar->order.n) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "there is no such authorization", NULL);
    }

    ar->authz = authz;
    ar->authz_n = (ngx_uint_t) n;

    if (!chall) {
        if (tsb_acme_authz_build(&ar->order, n,
                                 ngx_http_tsb_acme_cstr(r->pool, &ar->base),
                                 ngx_http_tsb_acme_cstr(r->pool, &id), &out)
            != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tsb_acme_reply(r, NGX_HTTP_OK, &out, NULL);
    }

    /*
     * A challenge answered (payload {}) of a pending authorization, with
     * tsb_acme_challenge http-01: validated now, and answered when done.
     * Otherwise it is valid already, nothing to do (RFC 8555 section
     * 7.5.1 lets the server say so), or fetched (POST-as-GET).
     */
    if (ar->order.has_authz && ar->jws.payload.len
        && ar->order.status == TSB_ACME_PENDING
        && ar->order.authz[n] == TSB_ACME_PENDING)
    {
        return ngx_http_tsb_acme_http01_start(r, ar);
    }

    return ngx_http_tsb_acme_chall_answer(r, ar);
}


/* the challenge object, with Link rel="up" to its authorization */
static ngx_int_t
ngx_http_tsb_acme_chall_answer(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    ngx_str_t  up;
    tsb_buf_t  out;

    if (tsb_acme_challenge_build(&ar->order, ar->authz_n,
                                 ngx_http_tsb_acme_cstr(r->pool, &ar->base),
                                 ngx_http_tsb_acme_cstr(r->pool,
                                                        &ar->order_id),
                                 &out)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up.len = ar->base.len + sizeof("<authz/>;rel=\"up\"") - 1
             + ar->authz.len;
    up.data = ngx_pnalloc(r->pool, up.len);

    if (up.data == NULL) {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(up.data, "<%Vauthz/%V>;rel=\"up\"", &ar->base, &ar->authz);

    if (ngx_http_tsb_add_header(r, "Link", &up) != NGX_OK) {
        tsb_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tsb_acme_reply(r, NGX_HTTP_OK, &out, NULL);
}


/* ------------------------------------------------------------ http-01 */

/*
 * GET http://<identifier>:<port>/.well-known/acme-challenge/<token>
 * through the module's libcurl client on the event loop, as a TSB call
 * is made, but with a configuration of its own: no TSB credentials, no
 * client certificate, no proxy, no redirects followed, an answer of at
 * most NGX_HTTP_TSB_ACME_HTTP01_MAX bytes, within
 * NGX_HTTP_TSB_ACME_HTTP01_TIME ms.  The challenge POST is answered when
 * the validation is done.
 */
static ngx_int_t
ngx_http_tsb_acme_http01_start(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    u_char                        *p;
    char                           tok[TSB_ACME_TOKEN_MAX];
    size_t                         len;
    ngx_str_t                      path;
    tsb_acme_ident_t              *ident;
    ngx_http_tsb_node_t           *node;
    ngx_http_tsb_fetch_t          *f;
    ngx_http_tsb_loc_conf_t       *tlcf;
    ngx_http_tsb_upstream_conf_t  *ucf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ident = &ar->order.idents[ar->authz_n];

    if (tsb_acme_challenge_token(&ar->order, ar->authz_n,
                                 ngx_http_tsb_acme_cstr(r->pool,
                                                        &ar->order_id),
                                 tok, sizeof(tok))
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->token = ngx_pnalloc(r->pool, ngx_strlen(tok) + 1);
    if (ar->token == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ar->token, tok, ngx_strlen(tok) + 1);

    /* one validation of an authorization at a time, across workers */

    if (ngx_http_tsb_acme_kv_set(ar->zone, "v:", &ar->authz, (u_char *) "",
                                 0, ngx_time()
                                    + NGX_HTTP_TSB_ACME_HTTP01_TIME / 1000
                                    + 5, 1)
        != NGX_OK)
    {
        return ngx_http_tsb_acme_chall_answer(r, ar);
    }

    ar->validating = 1;

    ucf = ngx_palloc(r->pool, sizeof(ngx_http_tsb_upstream_conf_t));
    node = ngx_pcalloc(r->pool, sizeof(ngx_http_tsb_node_t));

    if (ucf == NULL || node == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ucf = tlcf->upstream;

    ngx_str_null(&ucf->api_key);
    ngx_str_null(&ucf->bearer);
    ucf->tls = NULL;
    ucf->http2 = 0;
    ucf->max_response = NGX_HTTP_TSB_ACME_HTTP01_MAX;
    ucf->timeout = ngx_min(ucf->timeout, NGX_HTTP_TSB_ACME_HTTP01_TIME);
    ucf->connect_timeout = ngx_min(ucf->connect_timeout,
                                   NGX_HTTP_TSB_ACME_HTTP01_TIME);

    /* the identifier is a checked DNS name, no wildcard: safe in a URL */
    len = sizeof("http://:65535") + ident->len;
    node->url.data = ngx_pnalloc(r->pool, len);
    if (node->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(node->url.data, "http://%s:%ui", ident->value,
                    ar->conf->http01_port);
    node->url.len = p - node->url.data;
    *p = '\0';

    ucf->url = node->url;
    ucf->nodes = ngx_array_create(r->pool, 1, sizeof(ngx_http_tsb_node_t));
    if (ucf->nodes == NULL || ngx_array_push(ucf->nodes) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ucf->nodes->elts, node, sizeof(ngx_http_tsb_node_t));

    path.len = sizeof("/.well-known/acme-challenge/") - 1
               + ngx_strlen(ar->token);
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path.data, "/.well-known/acme-challenge/%s", ar->token);

    ar->http01_url.len = node->url.len + path.len;
    ar->http01_url.data = ngx_pnalloc(r->pool, ar->http01_url.len);
    if (ar->http01_url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(ar->http01_url.data, "%V%V", &node->url, &path);

    f = ngx_http_tsb_fetch_create(r, ucf, "GET", &path, NULL);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->not_tsb = 1;
    f->done = ngx_http_tsb_acme_http01_done;
    f->data = ar;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb acme: authorization %V: http-01 validation at %V",
                  &ar->authz, &ar->http01_url);

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_tsb_acme_http01_done(ngx_http_tsb_fetch_t *f)
{
    u_char                    detail[TSB_DETAIL_MAX];
    size_t                    i;
    ngx_int_t                 rc;
    ngx_str_t                 value;
    ngx_uint_t                k, valid;
    const char               *type;
    tsb_error_t               err;
    tsb_acme_order_t          o;
    ngx_http_request_t       *r;
    ngx_http_tsb_acme_req_t  *ar;

    r = f->request;
    ar = f->data;
    k = ar->authz_n;

    ngx_memzero(&err, sizeof(tsb_error_t));
    type = NULL;

    if (f->busy) {
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "v:", &ar->authz);
        ar->validating = 0;

        ngx_http_finalize_request(r, ngx_http_tsb_acme_problem(r,
                        NGX_HTTP_SERVICE_UNAVAILABLE, "serverInternal",
                        "too many transfers in flight: answer the "
                        "challenge again later", NULL));
        return;
    }

    if (f->too_large) {
        type = "incorrectResponse";
        ngx_snprintf(detail, sizeof(detail), "%V answered more than %uz "
                     "bytes, not a key authorization%Z", &ar->http01_url,
                     (size_t) NGX_HTTP_TSB_ACME_HTTP01_MAX);

    } else if (f->result != CURLE_OK) {
        type = "connection";
        ngx_snprintf(detail, sizeof(detail), "%V could not be fetched: "
                     "%s%Z", &ar->http01_url,
                     f->errbuf[0] ? f->errbuf
                                  : curl_easy_strerror(f->result));

    } else if (f->status != 200) {
        type = "incorrectResponse";
        ngx_snprintf(detail, sizeof(detail), "%V answered HTTP %l%s, not "
                     "200 with the key authorization%Z", &ar->http01_url,
                     f->status,
                     f->status >= 300 && f->status < 400
                     ? " (redirects are not followed)" : "");

    } else if (tsb_acme_http01_check(f->body, f->body_len, ar->token,
                                     ar->key.thumb, &err)
               != 0)
    {
        type = err.reason;
        ngx_snprintf(detail, sizeof(detail), "%V: %s%Z", &ar->http01_url,
                     err.detail);
    }

    valid = (type == NULL);

    if (valid) {
        ngx_snprintf(detail, sizeof(detail), "%V answered the key "
                     "authorization%Z", &ar->http01_url);
    }

    /*
     * The order as it is now (another authorization of it may have been
     * validated meanwhile), with this authorization's outcome.
     */

    rc = ngx_http_tsb_acme_kv_get(ar->zone, "o:", &ar->order_id, r->pool,
                                  &value);

    if (rc != NGX_OK
        || tsb_acme_order_decode(value.data, value.len, &o, &err) != 0)
    {
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "v:", &ar->authz);
        ar->validating = 0;
        ngx_http_finalize_request(r, ngx_http_tsb_acme_problem(r,
                        NGX_HTTP_NOT_FOUND, "malformed",
                        "the order is gone", NULL));
        return;
    }

    tsb_acme_order_free(&ar->order);
    ar->order = o;

    if (o.has_authz && k < o.n && o.authz[k] == TSB_ACME_PENDING) {
        ar->order.authz[k] = valid ? TSB_ACME_VALID : TSB_ACME_INVALID;

        if (!valid) {
            /* an invalid authorization makes the order invalid (7.1.6) */
            ar->order.status = TSB_ACME_INVALID;

            if (tsb_acme_order_set_error(&ar->order, type, (char *) detail)
                != 0)
            {
                ngx_http_finalize_request(r,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

        } else if (ar->order.status == TSB_ACME_PENDING) {
            for (i = 0; i < ar->order.n; i++) {
                if (ar->order.authz[i] != TSB_ACME_VALID) {
                    break;
                }
            }

            if (i == ar->order.n) {
                ar->order.status = TSB_ACME_READY;
            }
        }

        if (ngx_http_tsb_acme_save_order(r, ar) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    (void) ngx_http_tsb_acme_kv_del(ar->zone, "v:", &ar->authz);
    ar->validating = 0;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tsb acme: authorization %V %s: %s", &ar->authz,
                  valid ? "valid" : "invalid", detail);

    ngx_http_tsb_audit(r, NULL, valid, valid ? NGX_HTTP_OK
                                             : NGX_HTTP_FORBIDDEN,
                       valid ? "acme.http01_valid" : "acme.http01_invalid",
                       (char *) detail, NULL);

    if (!valid) {
        ngx_http_tsb_metrics_refusal(type[0] == 'c'
                                     ? "acme.connection"
                                     : "acme.incorrectResponse");
    }

    ngx_http_finalize_request(r, ngx_http_tsb_acme_chall_answer(r, ar));
}


/* ------------------------------------------------------- finalize */

/* the gateway's key password, as tsb_sign adds it (never logged) */
static ngx_int_t
ngx_http_tsb_acme_key_password(ngx_http_tsb_ctx_t *ctx,
    ngx_http_tsb_loc_conf_t *tlcf)
{
    char  *pw;

    if (tlcf->key_password.len == 0) {
        return NGX_OK;
    }

    pw = malloc(tlcf->key_password.len + 1);
    if (pw == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(pw, tlcf->key_password.data, tlcf->key_password.len);
    pw[tlcf->key_password.len] = '\0';

    ctx->req.key_password = pw;
    ctx->req.key_password_len = tlcf->key_password.len;
    ctx->req.key_password_present = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_acme_finalize(ngx_http_request_t *r,
    ngx_http_tsb_acme_req_t *ar)
{
    char                     *cn;
    size_t                    cn_len;
    ngx_int_t                 rc;
    ngx_str_t                 id, path, up;
    tsb_buf_t                 der, pem, out;
    tsb_csr_t                 facts;
    tsb_error_t               err;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_fetch_t     *f;
    const tsb_policy_t       *policy;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);

    id.data = ar->resource.data + 9;
    id.len = ar->resource.len - 9;

    rc = ngx_http_tsb_acme_load_order(r, ar, &id);
    if (rc != NGX_OK || ar->answered) {
        return rc;
    }

    if (ar->order.status == TSB_ACME_PENDING) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "orderNotReady", "the order is not \"ready\": answer its "
                   "http-01 challenges first", NULL);
    }

    if (ar->order.status != TSB_ACME_READY) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "orderNotReady", "the order is not \"ready\": it was "
                   "finalized already", NULL);
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_acme_finalize_parse(ar->jws.payload.data, ar->jws.payload.len,
                                &der, &err) != 0)
    {
        return ngx_http_tsb_acme_problem_err(r, &err);
    }

    rc = tsb_csr_parse(der.data, der.len, &ctx->csr, &err);
    tsb_buf_free(&der);

    if (rc != 0
        || tsb_acme_csr_matches(ctx->csr, ar->order.idents, ar->order.n,
                                &err) != 0)
    {
        ngx_http_tsb_audit(r, ctx, 0, NGX_HTTP_BAD_REQUEST, "acme.badCSR",
                           err.detail, NULL);
        ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_FINALIZE_REFUSED);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_BAD_REQUEST, "badCSR",
                                         err.detail, NULL);
    }

    /* the same policy as tsb_sign, for this account */

    policy = ngx_http_tsb_request_policy(r, tlcf);
    if (policy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * RFC 8555 CSRs often carry no commonName (certbot's do not), and the
     * TSB names the subject from one: the order's first identifier, which
     * the CSR has as a SAN, stands in, for the policy and for what the
     * issued certificate is checked against.  A shallow copy: the CSR
     * itself goes to the TSB as the client made it.
     */
    facts = *ctx->csr;

    if (facts.n_common_names == 0) {
        cn = ar->order.idents[0].value;
        cn_len = ar->order.idents[0].len;
        facts.common_names = &cn;
        facts.common_name_lens = &cn_len;
        facts.n_common_names = 1;
    }

    if (tsb_policy_check(policy, &facts, &ctx->req, &err) != 0) {
        ngx_http_tsb_audit(r, ctx, 0, err.status ? err.status : 403,
                           err.reason, err.detail, NULL);
        ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_FINALIZE_REFUSED);
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   ngx_strncmp(err.reason, "policy.common_name", 18) == 0
                   || ngx_strncmp(err.reason, "policy.san", 10) == 0
                   ? "rejectedIdentifier" : "badCSR", err.detail, NULL);
    }

    if (tsb_expect_build(&facts, &ctx->req, &ctx->expect) != 0
        || ngx_http_tsb_acme_key_password(ctx, tlcf) != NGX_OK
        || tsb_csr_to_pem(ctx->csr, &pem) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    free(ctx->req.csr);
    ctx->req.csr = (char *) pem.data;
    ctx->req.csr_len = pem.len;

    if (tsb_sign_req_build(&ctx->req, &out) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up.len = out.len;
    up.data = ngx_pnalloc(r->pool, out.len);

    if (up.data != NULL) {
        ngx_memcpy(up.data, out.data, out.len);
    }

    tsb_secure_zero(out.data, out.len);
    tsb_buf_free(&out);

    if (up.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* one finalize per order, across workers: whoever marks it first */

    if (ngx_http_tsb_acme_kv_set(ar->zone, "f:", &ar->order_id,
                                 (u_char *) "", 0,
                                 (time_t) ar->order.expires, 1)
        != NGX_OK)
    {
        if (ctx->req.key_password) {
            tsb_secure_zero(up.data, up.len);
        }

        return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN,
                   "orderNotReady", "the order is being finalized already",
                   NULL);
    }

    ar->finalizing = 1;

    /*
     * As tsb_sign does: the record of what is accepted must have room in
     * the cache before the TSB acts, or the certificate could not be
     * checked against it.
     */
    if (ngx_http_tsb_cache_reserve(tlcf, ctx->expect.len, &ar->reserved,
                                   r->connection->log)
        != NGX_OK)
    {
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "f:", &ar->order_id);
        ar->finalizing = 0;

        if (ctx->req.key_password) {
            tsb_secure_zero(up.data, up.len);
        }

        return ngx_http_tsb_acme_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "serverInternal", "the cache zone has no room left to "
                   "keep what is accepted for pending requests; finalize "
                   "again later", NULL);
    }

    /* accepted by the engine and the policy; the TSB's answer is audited */
    ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_FINALIZE_OK);

    ngx_str_set(&path, "/v1/certificate/sign");

    f = ngx_http_tsb_fetch_create(r, &tlcf->upstream, "POST", &path, &up);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->done = ngx_http_tsb_acme_sign_done;
    f->data = ar;

    if (ngx_http_tsb_fetch_start(f) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tsb acme: order %V finalized, CSR accepted by policy, "
                  "forwarding to the TSB", &ar->order_id);

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_tsb_acme_sign_done(ngx_http_tsb_fetch_t *f)
{
    char                     *id;
    u_char                    detail[TSB_DETAIL_MAX];
    ngx_int_t                 rc;
    ngx_str_t                 sid;
    tsb_error_t               err;
    ngx_http_request_t       *r;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_acme_req_t  *ar;
    ngx_http_tsb_loc_conf_t  *tlcf;

    r = f->request;
    ar = f->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    /* remember() below takes the room for real */
    ngx_http_tsb_cache_unreserve(tlcf, ar->reserved);
    ar->reserved = 0;

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (f->busy || f->result != CURLE_OK || f->status < 200
        || f->status > 299
        || tsb_sign_resp_parse(f->body, f->body_len, &id, &err) != 0)
    {
        /* the order stays ready: the client may finalize again */
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "f:", &ar->order_id);
        ar->finalizing = 0;

        ngx_snprintf(detail, sizeof(detail),
                     "the TSB did not take the sign request (%s%s%l)%Z",
                     f->busy ? "busy" : "",
                     f->result != CURLE_OK ? curl_easy_strerror(f->result)
                                           : "HTTP ",
                     f->status);

        ngx_http_tsb_audit(r, ctx, 1, NGX_HTTP_SERVICE_UNAVAILABLE,
                           "upstream.error", (char *) detail, NULL);

        rc = ngx_http_tsb_acme_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "serverInternal", (char *) detail,
                                       NULL);
        ngx_http_finalize_request(r, rc);
        return;
    }

    sid.data = (u_char *) id;
    sid.len = ngx_strlen(id);

    ngx_http_tsb_audit(r, ctx, 1, NGX_HTTP_OK, NULL, NULL, id);

    /* what the certificate must match, as tsb_sign keeps it */

    if (ngx_http_tsb_cache_remember(r, &sid, ctx->expect.data,
                                    ctx->expect.len) == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "tsb acme: what was accepted for sign request %s "
                      "could not be kept in the cache", id);
    }

    if (tlcf->store) {
        ngx_http_tsb_store_remember(tlcf->store, &sid, ctx->expect.data,
                                    ctx->expect.len, r->connection->log);
    }

    ar->order.status = TSB_ACME_PROCESSING;
    ar->order.request = id;     /* freed with the order */
    ar->finalizing = 0;         /* the mark stays: finalized once */

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "tsb acme: order %V processing: sign request %s "
                  "submitted", &ar->order_id, id);

    if (ngx_http_tsb_acme_save_order(r, ar) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_tsb_acme_order_answer(r, ar,
                                                                NGX_HTTP_OK));
}


/* --------------------------------------------------- certificates */

static ngx_int_t
ngx_http_tsb_acme_cert(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar)
{
    ngx_int_t  rc;
    ngx_str_t  id;

    id.data = ar->resource.data + 5;
    id.len = ar->resource.len - 5;

    rc = ngx_http_tsb_acme_load_order(r, ar, &id);
    if (rc != NGX_OK || ar->answered) {
        return rc;
    }

    if (ar->order.status != TSB_ACME_VALID || ar->order.request == NULL) {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_NOT_FOUND, "malformed",
                   "the order has no certificate", NULL);
    }

    id.data = (u_char *) ar->order.request;
    id.len = ngx_strlen(ar->order.request);

    return ngx_http_tsb_cache_handle(r, &id, 0, ngx_http_tsb_acme_cert_serve);
}


static ngx_int_t
ngx_http_tsb_acme_cert_serve(ngx_http_request_t *r, ngx_http_tsb_entry_t *e,
    ngx_uint_t cache_status, tsb_error_t *err)
{
    u_char                   *p;
    ngx_int_t                 rc;
    tsb_buf_t                 pem, chain;
    ngx_http_tsb_ctx_t       *ctx;
    ngx_http_tsb_loc_conf_t  *tlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tsb_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);

    if (e == NULL || e->status != TSB_STATUS_EXECUTED || e->mismatch
        || e->der.len == 0)
    {
        return ngx_http_tsb_acme_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "serverInternal", "the certificate cannot be served now "
                   "(the TSB is not reachable, or it is withheld)", NULL);
    }

    if (tsb_cert_der_to_pem(e->der.data, e->der.len, &pem) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tsb_chain_to_pem(tlcf->issuers, &chain) != 0) {
        tsb_buf_free(&pem);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, pem.len + chain.len);

    if (p == NULL || ngx_http_tsb_acme_headers(r, ctx->acme) != NGX_OK) {
        tsb_buf_free(&pem);
        tsb_buf_free(&chain);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, pem.data, pem.len);
    ngx_http_tsb_cpymem(p + pem.len, chain.data, chain.len);

    rc = ngx_http_tsb_send_data(r, NGX_HTTP_OK,
                                &ngx_http_tsb_acme_type_chain, p,
                                pem.len + chain.len, 0);

    if (rc != NGX_ERROR) {
        ngx_http_tsb_metrics_acme(NGX_HTTP_TSB_ACME_CERTIFICATE);
    }

    tsb_buf_free(&pem);
    tsb_buf_free(&chain);

    return rc;
}


static ngx_int_t
ngx_http_tsb_acme_revoke(ngx_http_request_t *r, ngx_http_tsb_acme_req_t *ar)
{
    ngx_http_tsb_audit(r, NULL, 0, NGX_HTTP_FORBIDDEN, "acme.revoke",
                       "revocation asked for; the TSB cannot revoke", NULL);

    return ngx_http_tsb_acme_problem(r, NGX_HTTP_FORBIDDEN, "unauthorized",
               "this CA cannot revoke through ACME: the HSM's TSB has no "
               "revocation API; ask the PKI team to revoke the certificate",
               NULL);
}


static void
ngx_http_tsb_acme_cleanup(void *data)
{
    ngx_http_tsb_acme_req_t  *ar = data;

    /*
     * The client went away before the TSB answered the finalize: the
     * order may be finalized again (the TSB may then see the CSR twice;
     * its approvers decide on each).
     */
    if (ar->finalizing) {
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "f:", &ar->order_id);
    }

    if (ar->reserved) {
        ngx_http_tsb_cache_unreserve(ar->tlcf, ar->reserved);
        ar->reserved = 0;
    }

    /* the client went away during a validation: it may answer again */
    if (ar->validating) {
        (void) ngx_http_tsb_acme_kv_del(ar->zone, "v:", &ar->authz);
    }

    if (ar->have_jws) {
        tsb_jws_free(&ar->jws);
    }

    if (ar->have_account) {
        tsb_acme_account_free(&ar->account);
    }

    if (ar->have_order) {
        tsb_acme_order_free(&ar->order);
    }

    if (ar->have_key) {
        tsb_jwk_free(&ar->key);
    }
}
