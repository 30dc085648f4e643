
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The on-disk store of issued certificates (tsb_store): every EXECUTED
 * entry is written once to <dir>/<id>.tsb, so that after a restart or an
 * eviction from the zone the certificate is served without the TSB, also
 * while it is unreachable.
 *
 * What the gateway accepted for a sign request is written too, as
 * <dir>/<id>.accepted, so that the certificate issued for it is checked
 * against it after a restart or an eviction; it goes once the request
 * ends (the .tsb file keeps it for an issued one).
 *
 * Files are written to a temporary name, fsync()ed and renamed: a reader
 * never sees a torn file.  The I/O runs in an nginx thread pool, off the
 * event loop; nginx built without threads does the same small, bounded
 * I/O inline and says so at start.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_store.h"


#define NGX_HTTP_TSB_STORE_MAGIC  "TSBSTORE1\n"
#define NGX_HTTP_TSB_ACCEPT_MAGIC "TSBACCEPTED1\n"
#define NGX_HTTP_TSB_ACCEPT_MAX   0xffff      /* what a cache entry keeps */
#define NGX_HTTP_TSB_STORE_MAX    (256 * 1024)

#define NGX_HTTP_TSB_STORE_FIELDS  7

/* the files of a job: the certificate's, what was accepted, or both */
#define NGX_HTTP_TSB_FILE_TSB       1
#define NGX_HTTP_TSB_FILE_ACCEPTED  2


typedef struct {
    ngx_http_tsb_store_t          *store;
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    ngx_str_t                      file;        /* NUL-terminated */
    ngx_str_t                      accepted;    /* <id>.accepted, or empty */
    ngx_str_t                      data;        /* what is (to be) in it */
    ngx_uint_t                     read_accepted; /* data is from there */
    ngx_int_t                      rc;
    ngx_err_t                      err;
    const char                    *failed;      /* the call that failed */
    ngx_http_tsb_store_loaded_pt   loaded;
    void                          *ctx;
    ngx_uint_t                     seq;         /* of the temporary name */
#if !(NGX_THREADS)
    ngx_event_t                    event;
#endif
} ngx_http_tsb_store_job_t;


static ngx_int_t ngx_http_tsb_store_job(ngx_http_tsb_store_t *store,
    ngx_str_t *id, ngx_uint_t files, ngx_log_t *log,
    ngx_http_tsb_store_job_t **jp);
static ngx_int_t ngx_http_tsb_store_post(ngx_http_tsb_store_job_t *job,
    void (*handler)(void *data, ngx_log_t *log),
    ngx_event_handler_pt done);
static void ngx_http_tsb_store_write(void *data, ngx_log_t *log);
static void ngx_http_tsb_store_forget(void *data, ngx_log_t *log);
static void ngx_http_tsb_store_sync_dir(ngx_http_tsb_store_job_t *job);
static void ngx_http_tsb_store_set_host(void);


/*
 * Temporary names are <file>.<host>.<pid>.<seq>.tmp: several gateways may
 * share one store directory (docs/operations-ha.md), where pids repeat
 * across hosts, and one worker's thread pool may write the same file twice
 * at once; host, pid and a per-worker sequence number keep them apart.
 */
static u_char      ngx_http_tsb_store_host[64];
static ngx_uint_t  ngx_http_tsb_store_seq;
static void ngx_http_tsb_store_read(void *data, ngx_log_t *log);
static ngx_int_t ngx_http_tsb_store_read_file(ngx_http_tsb_store_job_t *job,
    u_char *file);
static void ngx_http_tsb_store_saved(ngx_event_t *ev);
static void ngx_http_tsb_store_read_done(ngx_event_t *ev);
static ngx_int_t ngx_http_tsb_store_encode(ngx_pool_t *pool,
    ngx_http_tsb_entry_t *e, ngx_str_t *out);
static ngx_int_t ngx_http_tsb_store_decode(ngx_str_t *in, ngx_str_t *id,
    ngx_http_tsb_entry_t *e);


char *
ngx_http_tsb_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t             *value;
    ngx_path_t            *path;
    ngx_http_tsb_store_t  *store;

    if (tlcf->store != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->store = NULL;
        return NGX_CONF_OK;
    }

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_store_t));
    if (store == NULL) {
        return NGX_CONF_ERROR;
    }

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    path->name = value[1];

    if (path->name.len > 1 && path->name.data[path->name.len - 1] == '/') {
        path->name.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &path->name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * Like proxy_temp_path: nginx creates the directory at start and gives
     * it to the worker user, who writes and reads the files.
     */
    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    if (ngx_add_path(cf, &path) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    store->path = path->name;

#if (NGX_THREADS)

    store->thread_pool = ngx_thread_pool_add(cf, NULL);
    if (store->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

#else

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "nginx was built without threads: tsb_store "
                       "reads and writes its small files in the worker");

#endif

    tlcf->store = store;

    return NGX_CONF_OK;
}


void
ngx_http_tsb_store_save(ngx_http_tsb_store_t *store, ngx_http_tsb_entry_t *e,
    ngx_log_t *log)
{
    ngx_http_tsb_store_job_t  *job;

    if (e->mismatch || !tsb_status_is_terminal(e->status)) {
        /* a refused certificate: what was accepted stays, as evidence */
        return;
    }

    if (e->status != TSB_STATUS_EXECUTED || e->der.len == 0) {
        /* ended without a certificate: nothing to check any more */

        if (ngx_http_tsb_store_job(store, &e->id, NGX_HTTP_TSB_FILE_ACCEPTED,
                                   log, &job)
            != NGX_OK)
        {
            return;
        }

        (void) ngx_http_tsb_store_post(job, ngx_http_tsb_store_forget,
                                       ngx_http_tsb_store_saved);
        return;
    }

    /* the .tsb file keeps the expectation: the .accepted one goes */

    if (ngx_http_tsb_store_job(store, &e->id,
                               NGX_HTTP_TSB_FILE_TSB
                               |NGX_HTTP_TSB_FILE_ACCEPTED,
                               log, &job)
        != NGX_OK)
    {
        return;
    }

    if (ngx_http_tsb_store_encode(job->pool, e, &job->data) != NGX_OK) {
        ngx_destroy_pool(job->pool);
        return;
    }

    (void) ngx_http_tsb_store_post(job, ngx_http_tsb_store_write,
                                   ngx_http_tsb_store_saved);
}


void
ngx_http_tsb_store_remember(ngx_http_tsb_store_t *store, ngx_str_t *id,
    u_char *expect, size_t len, ngx_log_t *log)
{
    u_char                    *p;
    ngx_http_tsb_store_job_t  *job;

    if (len == 0 || len > NGX_HTTP_TSB_ACCEPT_MAX) {
        return;
    }

    if (ngx_http_tsb_store_job(store, id, NGX_HTTP_TSB_FILE_ACCEPTED, log,
                               &job)
        != NGX_OK)
    {
        return;
    }

    job->data.len = sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1 + len;
    job->data.data = ngx_pnalloc(job->pool, job->data.len);

    if (job->data.data == NULL) {
        ngx_destroy_pool(job->pool);
        return;
    }

    p = ngx_cpymem(job->data.data, NGX_HTTP_TSB_ACCEPT_MAGIC,
                   sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1);
    ngx_memcpy(p, expect, len);

    (void) ngx_http_tsb_store_post(job, ngx_http_tsb_store_write,
                                   ngx_http_tsb_store_saved);
}


ngx_int_t
ngx_http_tsb_store_load(ngx_http_tsb_store_t *store, ngx_str_t *id,
    ngx_uint_t accepted, ngx_log_t *log, ngx_http_tsb_store_loaded_pt loaded,
    void *ctx)
{
    ngx_http_tsb_store_job_t  *job;

    if (ngx_http_tsb_store_job(store, id,
                               NGX_HTTP_TSB_FILE_TSB
                               |(accepted ? NGX_HTTP_TSB_FILE_ACCEPTED : 0),
                               log, &job)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    job->loaded = loaded;
    job->ctx = ctx;

    if (ngx_http_tsb_store_post(job, ngx_http_tsb_store_read,
                                ngx_http_tsb_store_read_done)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_store_job(ngx_http_tsb_store_t *store, ngx_str_t *id,
    ngx_uint_t files, ngx_log_t *log, ngx_http_tsb_store_job_t **jp)
{
    ngx_pool_t                *pool;
    ngx_http_tsb_store_job_t  *job;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_tsb_store_job_t));
    if (job == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    job->store = store;
    job->pool = pool;

    /*
     * The job outlives the request that asked for it: a client that closed
     * its connection has freed the connection's log before the thread's
     * answer is logged.  A copy in the job's own pool, without the
     * request's context (handler and data point into the request).
     */
    job->log = ngx_palloc(pool, sizeof(ngx_log_t));
    if (job->log == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    *job->log = *log;
    job->log->handler = NULL;
    job->log->data = NULL;
    job->log->action = NULL;
    pool->log = job->log;

    /* on the event loop: the threads only read these */
    if (ngx_http_tsb_store_host[0] == '\0') {
        ngx_http_tsb_store_set_host();
    }

    job->seq = ngx_http_tsb_store_seq++;

    /* ids are [A-Za-z0-9-] (tsb_path.c): safe as a file name */
    job->file.len = store->path.len + 1 + id->len + sizeof(".tsb") - 1;
    job->file.data = ngx_pnalloc(pool, job->file.len + 1);
    if (job->file.data == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_sprintf(job->file.data, "%V/%V.tsb%Z", &store->path, id);

    if (files & NGX_HTTP_TSB_FILE_ACCEPTED) {
        job->accepted.len = store->path.len + 1 + id->len
                            + sizeof(".accepted") - 1;
        job->accepted.data = ngx_pnalloc(pool, job->accepted.len + 1);
        if (job->accepted.data == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        ngx_sprintf(job->accepted.data, "%V/%V.accepted%Z", &store->path,
                    id);
    }

    if (!(files & NGX_HTTP_TSB_FILE_TSB)) {
        job->file = job->accepted;
        ngx_str_null(&job->accepted);
    }

    *jp = job;

    return NGX_OK;
}


/* hands the job over: on failure it is freed here */

static ngx_int_t
ngx_http_tsb_store_post(ngx_http_tsb_store_job_t *job,
    void (*handler)(void *data, ngx_log_t *log), ngx_event_handler_pt done)
{
#if (NGX_THREADS)

    ngx_thread_task_t  *task;

    task = ngx_thread_task_alloc(job->pool, 0);

    if (task == NULL) {
        ngx_destroy_pool(job->pool);
        return NGX_ERROR;
    }

    task->ctx = job;
    task->handler = handler;
    task->event.handler = done;
    task->event.data = job;
    task->event.log = job->log;

    if (ngx_thread_task_post(job->store->thread_pool, task) != NGX_OK) {
        ngx_destroy_pool(job->pool);
        return NGX_ERROR;
    }

    return NGX_OK;

#else

    /* inline, but finished from an event: callers never re-enter */
    handler(job, job->log);

    job->event.handler = done;
    job->event.data = job;
    job->event.log = job->log;

    ngx_post_event(&job->event, &ngx_posted_events);

    return NGX_OK;

#endif
}


/* in a thread: no nginx events, pools or logging of our own here */

static void
ngx_http_tsb_store_write(void *data, ngx_log_t *log)
{
    ngx_http_tsb_store_job_t  *job = data;

    u_char    tmp[NGX_MAX_PATH];
    ssize_t   n;
    ngx_fd_t  fd;

    if (job->file.len + sizeof(ngx_http_tsb_store_host) + 48
        >= NGX_MAX_PATH)
    {
        job->rc = NGX_ERROR;
        job->failed = "path";
        return;
    }

    ngx_sprintf(tmp, "%V.%s.%P.%ui.tmp%Z", &job->file,
                ngx_http_tsb_store_host, ngx_pid, job->seq);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        job->err = ngx_errno;
        job->failed = "open()";
        job->rc = NGX_ERROR;
        return;
    }

    n = write(fd, job->data.data, job->data.len);

    if (n != (ssize_t) job->data.len) {
        job->err = (n == -1) ? ngx_errno : 0;
        job->failed = "write()";

    } else if (fsync(fd) == -1) {
        job->err = ngx_errno;
        job->failed = "fsync()";
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR && job->failed == NULL) {
        job->err = ngx_errno;
        job->failed = "close()";
    }

    if (job->failed == NULL
        && ngx_rename_file(tmp, job->file.data) == NGX_FILE_ERROR)
    {
        job->err = ngx_errno;
        job->failed = "rename()";
    }

    if (job->failed) {
        (void) ngx_delete_file(tmp);
        job->rc = NGX_ERROR;
        return;
    }

    /* the file is in place: what follows can fail only to be logged */

    job->rc = NGX_OK;

    if (job->accepted.len
        && ngx_delete_file(job->accepted.data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        job->err = ngx_errno;
        job->failed = "unlink() of the .accepted file";
        return;
    }

    ngx_http_tsb_store_sync_dir(job);
}


/*
 * The host name as nginx knows it (gethostname(), lowercased), as a safe
 * file name part: [a-z0-9-] and dots only, at most 63 bytes, "-" if none.
 */

static void
ngx_http_tsb_store_set_host(void)
{
    u_char      c;
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < ngx_cycle->hostname.len
                && n < sizeof(ngx_http_tsb_store_host) - 1; i++)
    {
        c = ngx_cycle->hostname.data[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
            || (c == '.' && n > 0))
        {
            ngx_http_tsb_store_host[n++] = c;
        }
    }

    if (n == 0) {
        ngx_http_tsb_store_host[n++] = '-';
    }

    ngx_http_tsb_store_host[n] = '\0';
}


/* in a thread: the request ended without a certificate */

static void
ngx_http_tsb_store_forget(void *data, ngx_log_t *log)
{
    ngx_http_tsb_store_job_t  *job = data;

    job->rc = NGX_OK;

    if (ngx_delete_file(job->file.data) == NGX_FILE_ERROR) {
        if (ngx_errno != NGX_ENOENT) {
            job->err = ngx_errno;
            job->failed = "unlink()";
            job->rc = NGX_ERROR;
        }

        return;
    }

    ngx_http_tsb_store_sync_dir(job);
}


/*
 * A rename or an unlink is durable only once the directory is: without
 * this, a power loss after the answer could lose a new file, or leave only
 * its temporary name, which a read never looks at.
 */

static void
ngx_http_tsb_store_sync_dir(ngx_http_tsb_store_job_t *job)
{
    u_char    dir[NGX_MAX_PATH];
    ngx_fd_t  fd;

    ngx_cpystrn(dir, job->file.data, job->store->path.len + 1);

    fd = ngx_open_file(dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        job->err = ngx_errno;
        job->failed = "open() of the directory";
        return;
    }

    if (fsync(fd) == -1) {
        job->err = ngx_errno;
        job->failed = "fsync() of the directory";
    }

    (void) ngx_close_file(fd);
}


static void
ngx_http_tsb_store_read(void *data, ngx_log_t *log)
{
    ngx_http_tsb_store_job_t  *job = data;

    /* no certificate yet: perhaps what was accepted for the request */

    job->rc = ngx_http_tsb_store_read_file(job, job->file.data);

    if (job->rc == NGX_DECLINED && job->accepted.len) {
        job->read_accepted = 1;
        job->rc = ngx_http_tsb_store_read_file(job, job->accepted.data);

        /*
         * Gone in between: another worker or gateway sharing the store
         * stored the certificate, and a writer renames the .tsb file into
         * place before it removes the .accepted one, so it is there now.
         */
        if (job->rc == NGX_DECLINED) {
            job->read_accepted = 0;
            job->rc = ngx_http_tsb_store_read_file(job, job->file.data);
        }
    }
}


static ngx_int_t
ngx_http_tsb_store_read_file(ngx_http_tsb_store_job_t *job, u_char *file)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(file, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        job->err = ngx_errno;

        if (job->err != NGX_ENOENT) {
            job->failed = "open()";
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_TSB_STORE_MAX)
    {
        job->failed = "size";
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    /* ngx_palloc() is not for threads: the buffer is malloc()ed */
    job->data.len = ngx_file_size(&fi);
    job->data.data = malloc(job->data.len + 1);

    if (job->data.data == NULL) {
        job->failed = "malloc()";
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = read(fd, job->data.data, job->data.len);

    (void) ngx_close_file(fd);

    if (n != (ssize_t) job->data.len) {
        job->err = (n == -1) ? ngx_errno : 0;
        job->failed = "read()";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_tsb_store_saved(ngx_event_t *ev)
{
    ngx_http_tsb_store_job_t  *job = ev->data;

    if (job->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, job->log, job->err,
                      "tsb: storing \"%V\" failed in %s", &job->file,
                      job->failed);

    } else if (job->failed) {
        ngx_log_error(NGX_LOG_ERR, job->log, job->err,
                      "tsb: stored \"%V\", but %s failed: the file may "
                      "not survive a power loss", &job->file, job->failed);
    }

    ngx_destroy_pool(job->pool);
}


static void
ngx_http_tsb_store_read_done(ngx_event_t *ev)
{
    ngx_http_tsb_store_job_t  *job = ev->data;

    u_char                *p;
    ngx_str_t              id, accepted, *file;
    ngx_http_tsb_entry_t  *e;

    e = NULL;
    ngx_str_null(&accepted);
    file = job->read_accepted ? &job->accepted : &job->file;

    if (job->rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, job->log, job->err,
                      "tsb: reading \"%V\" failed in %s", file,
                      job->failed);
    }

    if (job->rc == NGX_OK && job->read_accepted) {
        p = job->data.data;

        if (job->data.len > sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1
            && job->data.len <= sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1
                                + NGX_HTTP_TSB_ACCEPT_MAX
            && ngx_memcmp(p, NGX_HTTP_TSB_ACCEPT_MAGIC,
                          sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1)
               == 0)
        {
            /* the blob itself is checked where it is used */
            accepted.data = p + sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1;
            accepted.len = job->data.len
                           - (sizeof(NGX_HTTP_TSB_ACCEPT_MAGIC) - 1);

        } else {
            ngx_log_error(NGX_LOG_ERR, job->log, 0,
                          "tsb: \"%V\" is not a tsb_store file, ignored",
                          file);
        }

    } else if (job->rc == NGX_OK) {
        /* the id is the file name, without the directory and ".tsb" */
        p = job->file.data + job->store->path.len + 1;
        id.data = p;
        id.len = job->file.len - job->store->path.len - 1
                 - (sizeof(".tsb") - 1);

        e = ngx_pcalloc(job->pool, sizeof(ngx_http_tsb_entry_t));

        if (e && ngx_http_tsb_store_decode(&job->data, &id, e) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, job->log, 0,
                          "tsb: \"%V\" is not a tsb_store file, ignored",
                          &job->file);
            e = NULL;
        }
    }

    job->loaded(job->ctx, e, accepted.len ? &accepted : NULL);

    free(job->data.data);
    ngx_destroy_pool(job->pool);
}


/*
 * The file: a magic line, then seven length-prefixed fields (status JSON,
 * DER, expectation, serial, file name, ETag, and two times as text), all
 * lengths as 32-bit big-endian.
 */

static ngx_int_t
ngx_http_tsb_store_encode(ngx_pool_t *pool, ngx_http_tsb_entry_t *e,
    ngx_str_t *out)
{
    u_char      *p, times[2 * NGX_TIME_T_LEN + 2];
    size_t       len;
    ngx_str_t    f[NGX_HTTP_TSB_STORE_FIELDS];
    ngx_uint_t   i;

    f[0] = e->status_json;
    f[1] = e->der;
    f[2] = e->expect;
    f[3] = e->serial;
    f[4] = e->filename;
    f[5] = e->etag;

    f[6].data = times;
    f[6].len = ngx_sprintf(times, "%T %T", e->not_after, e->last_modified)
               - times;

    len = sizeof(NGX_HTTP_TSB_STORE_MAGIC) - 1;

    for (i = 0; i < NGX_HTTP_TSB_STORE_FIELDS; i++) {
        len += 4 + f[i].len;
    }

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, NGX_HTTP_TSB_STORE_MAGIC,
                   sizeof(NGX_HTTP_TSB_STORE_MAGIC) - 1);

    for (i = 0; i < NGX_HTTP_TSB_STORE_FIELDS; i++) {
        *p++ = (u_char) (f[i].len >> 24);
        *p++ = (u_char) (f[i].len >> 16);
        *p++ = (u_char) (f[i].len >> 8);
        *p++ = (u_char) f[i].len;
        p = ngx_http_tsb_cpymem(p, f[i].data, f[i].len);
    }

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_tsb_store_decode(ngx_str_t *in, ngx_str_t *id,
    ngx_http_tsb_entry_t *e)
{
    u_char      *p, *last, *t;
    size_t       len;
    ngx_str_t    f[NGX_HTTP_TSB_STORE_FIELDS];
    ngx_uint_t   i;

    p = in->data;
    last = p + in->len;

    if (in->len < sizeof(NGX_HTTP_TSB_STORE_MAGIC) - 1
        || ngx_memcmp(p, NGX_HTTP_TSB_STORE_MAGIC,
                      sizeof(NGX_HTTP_TSB_STORE_MAGIC) - 1) != 0)
    {
        return NGX_ERROR;
    }

    p += sizeof(NGX_HTTP_TSB_STORE_MAGIC) - 1;

    for (i = 0; i < NGX_HTTP_TSB_STORE_FIELDS; i++) {
        if (last - p < 4) {
            return NGX_ERROR;
        }

        len = ((size_t) p[0] << 24) | ((size_t) p[1] << 16)
              | ((size_t) p[2] << 8) | p[3];
        p += 4;

        if ((size_t) (last - p) < len) {
            return NGX_ERROR;
        }

        f[i].data = p;
        f[i].len = len;
        p += len;
    }

    if (p != last || f[1].len == 0 || f[2].len > NGX_HTTP_TSB_ACCEPT_MAX
        || f[3].len > 80 || f[4].len > 255
        || (f[5].len != 0 && f[5].len != 18))
    {
        return NGX_ERROR;
    }

    e->id = *id;
    e->status = TSB_STATUS_EXECUTED;
    e->status_json = f[0];
    e->der = f[1];
    e->expect = f[2];
    e->serial = f[3];
    e->filename = f[4];
    e->etag = f[5];
    e->fetched = ngx_http_tsb_now_ms();

    /* "<not_after> <last_modified>" */
    t = ngx_strlchr(f[6].data, f[6].data + f[6].len, ' ');
    if (t == NULL) {
        return NGX_ERROR;
    }

    e->not_after = ngx_atotm(f[6].data, t - f[6].data);
    e->last_modified = ngx_atotm(t + 1, f[6].data + f[6].len - t - 1);

    if (e->not_after == NGX_ERROR || e->last_modified == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
