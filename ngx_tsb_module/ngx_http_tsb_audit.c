
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The audit log: one JSON line per sign decision, who asked for what and
 * what the gateway answered.  It is written the way access_log writes: a
 * file opened by ngx_conf_open_file() (so USR1 reopens it), one write() of
 * a whole line per decision, appended (O_APPEND keeps the lines of several
 * workers whole).  Nothing secret goes in: no key password, no upstream
 * credential, no CSR.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <yajl/yajl_gen.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_policy.h"


#define ngx_http_tsb_gen_ok(rc)  ((rc) == yajl_gen_status_ok)


static ngx_int_t ngx_http_tsb_audit_build(ngx_http_request_t *r,
    yajl_gen g, ngx_http_tsb_ctx_t *ctx, ngx_uint_t accepted,
    ngx_uint_t status, const char *reason, const char *detail,
    const char *id);
static ngx_int_t ngx_http_tsb_audit_variable(ngx_http_request_t *r,
    yajl_gen g, const char *key, ngx_str_t *name);
static ngx_int_t ngx_http_tsb_audit_key(yajl_gen g, const char *key);
static ngx_int_t ngx_http_tsb_audit_str(yajl_gen g, const char *key,
    const u_char *s, size_t len);
static ngx_int_t ngx_http_tsb_audit_cstr(yajl_gen g, const char *key,
    const char *s);
static ngx_int_t ngx_http_tsb_audit_int(yajl_gen g, const char *key,
    long long n);
static ngx_int_t ngx_http_tsb_audit_bool(yajl_gen g, const char *key,
    int b);
static ngx_int_t ngx_http_tsb_audit_usages(yajl_gen g, const char *key,
    unsigned mask, int eku, int unknown);
static ngx_int_t ngx_http_tsb_audit_subject(ngx_http_request_t *r,
    yajl_gen g, tsb_csr_t *csr);
static ngx_int_t ngx_http_tsb_audit_sans(ngx_http_request_t *r, yajl_gen g,
    tsb_csr_t *csr);
static const char *ngx_http_tsb_audit_key_type(int type);


static ngx_str_t  ngx_http_tsb_var_s_dn = ngx_string("ssl_client_s_dn");
static ngx_str_t  ngx_http_tsb_var_verify = ngx_string("ssl_client_verify");
static ngx_str_t  ngx_http_tsb_var_user = ngx_string("remote_user");


char *
ngx_http_tsb_audit_log(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->audit_log != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->audit_log = NULL;
        return NGX_CONF_OK;
    }

    tlcf->audit_log = ngx_conf_open_file(cf->cycle, &value[1]);
    if (tlcf->audit_log == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_http_tsb_audit(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t accepted, ngx_uint_t status, const char *reason,
    const char *detail, const char *id)
{
    u_char                   *line;
    size_t                    len;
    ssize_t                   n;
    yajl_gen                  g;
    ngx_open_file_t          *file;
    const unsigned char      *buf;
    ngx_http_tsb_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tsb_module);
    file = tlcf->audit_log;

    if (file == NULL) {
        return;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tsb: audit line not written: out of memory");
        return;
    }

    /* strings from CSRs may be anything: yajl refuses bad UTF-8 */
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);

    if (ngx_http_tsb_audit_build(r, g, ctx, accepted, status, reason, detail,
                                 id)
        != NGX_OK
        || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
    {
        yajl_gen_free(g);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tsb: audit line for \"%V\" not written",
                      &file->name);
        return;
    }

    /* the line and its newline in one write(), as access_log does */

    line = ngx_pnalloc(r->pool, len + 1);
    if (line == NULL) {
        yajl_gen_free(g);
        return;
    }

    ngx_memcpy(line, buf, len);
    line[len] = '\n';

    yajl_gen_free(g);

    n = ngx_write_fd(file->fd, line, len + 1);

    if (n == -1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_write_fd_n " to \"%V\" failed", &file->name);

    } else if ((size_t) n != len + 1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_write_fd_n " to \"%V\" was incomplete: %z of %uz",
                      &file->name, n, len + 1);
    }
}


static ngx_int_t
ngx_http_tsb_audit_build(ngx_http_request_t *r, yajl_gen g,
    ngx_http_tsb_ctx_t *ctx, ngx_uint_t accepted, ngx_uint_t status,
    const char *reason, const char *detail, const char *id)
{
    int                        ca;
    u_char                     hex[64];
    long                       path_len;
    unsigned                   ku, eku;
    tsb_csr_t                 *csr;
    tsb_sign_req_t            *req;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    csr = ctx ? ctx->csr : NULL;
    req = ctx ? &ctx->req : NULL;

    if (!ngx_http_tsb_gen_ok(yajl_gen_map_open(g))
        || ngx_http_tsb_audit_str(g, "time", ngx_cached_http_log_iso8601.data,
                                  ngx_cached_http_log_iso8601.len)
           != NGX_OK
        || ngx_http_tsb_audit_str(g, "client",
                                  r->connection->addr_text.data,
                                  r->connection->addr_text.len)
           != NGX_OK
        || ngx_http_tsb_audit_variable(r, g, "ssl_client_s_dn",
                                       &ngx_http_tsb_var_s_dn)
           != NGX_OK
        || ngx_http_tsb_audit_variable(r, g, "ssl_client_verify",
                                       &ngx_http_tsb_var_verify)
           != NGX_OK
        || ngx_http_tsb_audit_variable(r, g, "remote_user",
                                       &ngx_http_tsb_var_user)
           != NGX_OK
        || ngx_http_tsb_audit_str(g, "location", clcf->name.data,
                                  clcf->name.len)
           != NGX_OK
        || ngx_http_tsb_audit_cstr(g, "decision",
                                   accepted ? "accepted" : "refused")
           != NGX_OK
        || ngx_http_tsb_audit_int(g, "status", (long long) status) != NGX_OK
        || ngx_http_tsb_audit_cstr(g, "reason", reason) != NGX_OK
        || ngx_http_tsb_audit_cstr(g, "detail", detail) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the CN as the request will carry it, else the CSR's first */

    if (req && req->common_name) {
        if (ngx_http_tsb_audit_cstr(g, "common_name", req->common_name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (csr && csr->n_common_names > 0) {
        if (ngx_http_tsb_audit_str(g, "common_name",
                                   (u_char *) csr->common_names[0],
                                   csr->common_name_lens
                                   ? csr->common_name_lens[0]
                                   : ngx_strlen(csr->common_names[0]))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_http_tsb_audit_cstr(g, "common_name", NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_tsb_audit_sans(r, g, csr) != NGX_OK
        || ngx_http_tsb_audit_subject(r, g, csr) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Accepted: what goes to the TSB (the policy completed the request).
     * Refused: everything the envelope and the CSR asked for together.
     */

    ku = 0;
    eku = 0;
    ca = 0;
    path_len = -1;

    if (req && req->key_usage_present) {
        ku |= req->key_usage;
    }

    if (req && req->ext_key_usage_present) {
        eku |= req->ext_key_usage;
    }

    if (req && req->certificate_authority == 1) {
        ca = 1;
    }

    if (csr) {
        if (!accepted) {
            if (csr->has_key_usage) {
                ku |= csr->key_usage;
            }

            if (csr->has_ext_key_usage) {
                eku |= csr->ext_key_usage;
            }

            if ((csr->has_basic_constraints && csr->basic_ca)
                || (ku & (TSB_KU_KEY_CERT_SIGN|TSB_KU_CRL_SIGN)))
            {
                ca = 1;
            }
        }

        path_len = csr->basic_pathlen;
    }

    if (ngx_http_tsb_audit_usages(g, "key_usage", ku, 0, 0) != NGX_OK
        || ngx_http_tsb_audit_usages(g, "extended_key_usage", eku, 1,
                                     !accepted && csr
                                     && csr->has_unknown_eku)
           != NGX_OK
        || ngx_http_tsb_audit_bool(g, "ca", ca) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (path_len >= 0) {
        if (ngx_http_tsb_audit_int(g, "path_len", path_len) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_tsb_audit_cstr(g, "path_len", NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    if (csr) {
        ngx_hex_dump(hex, csr->spki_sha256, 32);

        if (ngx_http_tsb_audit_cstr(g, "key_type",
                                    ngx_http_tsb_audit_key_type(
                                        csr->key_type))
            != NGX_OK
            || ngx_http_tsb_audit_int(g, "key_bits", csr->key_bits) != NGX_OK
            || ngx_http_tsb_audit_cstr(g, "key_curve", csr->key_curve)
               != NGX_OK
            || ngx_http_tsb_audit_str(g, "spki_sha256", hex, 64) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        if (ngx_http_tsb_audit_cstr(g, "key_type", NULL) != NGX_OK
            || ngx_http_tsb_audit_cstr(g, "key_bits", NULL) != NGX_OK
            || ngx_http_tsb_audit_cstr(g, "key_curve", NULL) != NGX_OK
            || ngx_http_tsb_audit_cstr(g, "spki_sha256", NULL) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* the lifetime asked for, in days; null: the TSB's default */

    if (req && req->validity >= 0) {
        if (ngx_http_tsb_audit_int(g, "validity", req->validity) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_tsb_audit_cstr(g, "validity", NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_tsb_audit_cstr(g, "sign_key_name",
                                req ? req->sign_key_name : NULL)
        != NGX_OK
        || ngx_http_tsb_audit_cstr(g, "signature_algorithm",
                                   req ? req->signature_algorithm : NULL)
           != NGX_OK
        || ngx_http_tsb_audit_cstr(g, "sign_request_id", id) != NGX_OK
        || !ngx_http_tsb_gen_ok(yajl_gen_map_close(g)))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* null when the variable is unknown, not found or empty */

static ngx_int_t
ngx_http_tsb_audit_variable(ngx_http_request_t *r, yajl_gen g,
    const char *key, ngx_str_t *name)
{
    ngx_http_variable_value_t  *vv;

    vv = ngx_http_get_variable(r, name, ngx_hash_key(name->data, name->len));

    if (vv == NULL || vv->not_found || vv->len == 0) {
        return ngx_http_tsb_audit_cstr(g, key, NULL);
    }

    return ngx_http_tsb_audit_str(g, key, vv->data, vv->len);
}


static ngx_int_t
ngx_http_tsb_audit_key(yajl_gen g, const char *key)
{
    return ngx_http_tsb_gen_ok(yajl_gen_string(g, (const u_char *) key,
                                               ngx_strlen(key)))
           ? NGX_OK : NGX_ERROR;
}


/*
 * A string value; null for NULL, and "(invalid UTF-8)" for bytes yajl
 * will not take: the line is written either way.
 */

static ngx_int_t
ngx_http_tsb_audit_str(yajl_gen g, const char *key, const u_char *s,
    size_t len)
{
    yajl_gen_status  rc;

    if (ngx_http_tsb_audit_key(g, key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (s == NULL) {
        return ngx_http_tsb_gen_ok(yajl_gen_null(g)) ? NGX_OK : NGX_ERROR;
    }

    rc = yajl_gen_string(g, s, len);

    if (rc == yajl_gen_invalid_string) {
        rc = yajl_gen_string(g, (const u_char *) "(invalid UTF-8)",
                             sizeof("(invalid UTF-8)") - 1);
    }

    return ngx_http_tsb_gen_ok(rc) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tsb_audit_cstr(yajl_gen g, const char *key, const char *s)
{
    return ngx_http_tsb_audit_str(g, key, (const u_char *) s,
                                  s ? ngx_strlen(s) : 0);
}


static ngx_int_t
ngx_http_tsb_audit_int(yajl_gen g, const char *key, long long n)
{
    if (ngx_http_tsb_audit_key(g, key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_tsb_gen_ok(yajl_gen_integer(g, n)) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tsb_audit_bool(yajl_gen g, const char *key, int b)
{
    if (ngx_http_tsb_audit_key(g, key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_tsb_gen_ok(yajl_gen_bool(g, b)) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_tsb_audit_usages(yajl_gen g, const char *key, unsigned mask,
    int eku, int unknown)
{
    unsigned     bit;
    const char  *name;

    if (ngx_http_tsb_audit_key(g, key) != NGX_OK
        || !ngx_http_tsb_gen_ok(yajl_gen_array_open(g)))
    {
        return NGX_ERROR;
    }

    for (bit = 1; bit != 0 && bit <= mask; bit <<= 1) {
        if (!(mask & bit)) {
            continue;
        }

        name = eku ? tsb_ext_key_usage_name(bit) : tsb_key_usage_name(bit);

        if (name == NULL) {
            continue;
        }

        if (!ngx_http_tsb_gen_ok(yajl_gen_string(g, (const u_char *) name,
                                                 ngx_strlen(name))))
        {
            return NGX_ERROR;
        }
    }

    /* an EKU OID without a TSB name (the reason it was refused) */

    if (unknown
        && !ngx_http_tsb_gen_ok(yajl_gen_string(g, (const u_char *) "OTHER",
                                                sizeof("OTHER") - 1)))
    {
        return NGX_ERROR;
    }

    return ngx_http_tsb_gen_ok(yajl_gen_array_close(g)) ? NGX_OK : NGX_ERROR;
}


/* "DNS:a.example", "IP:10.0.0.1", ... as OpenSSL prints them */

static ngx_int_t
ngx_http_tsb_audit_sans(ngx_http_request_t *r, yajl_gen g, tsb_csr_t *csr)
{
    u_char           *buf, *p;
    size_t            i, len;
    ngx_str_t         type;
    yajl_gen_status   rc;

    if (ngx_http_tsb_audit_key(g, "sans") != NGX_OK
        || !ngx_http_tsb_gen_ok(yajl_gen_array_open(g)))
    {
        return NGX_ERROR;
    }

    for (i = 0; csr && i < csr->n_sans; i++) {

        switch (csr->sans[i].type) {
        case TSB_SAN_DNS:
            ngx_str_set(&type, "DNS:");
            break;
        case TSB_SAN_IP:
            ngx_str_set(&type, "IP:");
            break;
        case TSB_SAN_EMAIL:
            ngx_str_set(&type, "email:");
            break;
        case TSB_SAN_URI:
            ngx_str_set(&type, "URI:");
            break;
        default:
            /* the value is the kind of name, "otherName" and the like */
            ngx_str_set(&type, "");
            break;
        }

        len = type.len + ngx_strlen(csr->sans[i].value);

        buf = ngx_pnalloc(r->pool, len);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(buf, type.data, type.len);
        ngx_memcpy(p, csr->sans[i].value, len - type.len);

        rc = yajl_gen_string(g, buf, len);

        if (!ngx_http_tsb_gen_ok(rc)) {
            return NGX_ERROR;
        }
    }

    return ngx_http_tsb_gen_ok(yajl_gen_array_close(g)) ? NGX_OK : NGX_ERROR;
}


/*
 * The subject's attributes besides the CN, "O=Example Corp" each, in the
 * CSR's order: what a TSB may copy into the certificate.
 */

static ngx_int_t
ngx_http_tsb_audit_subject(ngx_http_request_t *r, yajl_gen g,
    tsb_csr_t *csr)
{
    u_char                    *buf, *p;
    size_t                     i, len;
    const char                *type;
    yajl_gen_status            rc;
    const tsb_subject_attr_t  *a;

    if (ngx_http_tsb_audit_key(g, "subject") != NGX_OK
        || !ngx_http_tsb_gen_ok(yajl_gen_array_open(g)))
    {
        return NGX_ERROR;
    }

    for (i = 0; csr && i < csr->n_subject_attrs; i++) {
        a = &csr->subject_attrs[i];

        type = a->name ? a->name : (a->oid[0] ? a->oid : "?");

        if (a->value == NULL) {
            rc = yajl_gen_string(g, (const u_char *) type,
                                 ngx_strlen(type));

            if (!ngx_http_tsb_gen_ok(rc)) {
                return NGX_ERROR;
            }

            continue;
        }

        len = ngx_strlen(type) + 1 + a->value_len;

        buf = ngx_pnalloc(r->pool, len);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(buf, type, ngx_strlen(type));
        *p++ = '=';
        ngx_memcpy(p, a->value, a->value_len);

        rc = yajl_gen_string(g, buf, len);

        if (rc == yajl_gen_invalid_string) {
            rc = yajl_gen_string(g, (const u_char *) "(invalid UTF-8)",
                                 sizeof("(invalid UTF-8)") - 1);
        }

        if (!ngx_http_tsb_gen_ok(rc)) {
            return NGX_ERROR;
        }
    }

    return ngx_http_tsb_gen_ok(yajl_gen_array_close(g)) ? NGX_OK : NGX_ERROR;
}


static const char *
ngx_http_tsb_audit_key_type(int type)
{
    switch (type) {
    case TSB_KEY_RSA:
        return "RSA";
    case TSB_KEY_EC:
        return "EC";
    case TSB_KEY_ED25519:
        return "Ed25519";
    case TSB_KEY_ED448:
        return "Ed448";
    case TSB_KEY_DSA:
        return "DSA";
    default:
        return "unknown";
    }
}
