
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The policy glue: directives that feed tsb_policy_t, name patterns with
 * nginx variables resolved per request, the module's variables, and the
 * audit log of sign decisions.
 */


#ifndef _NGX_HTTP_TSB_POLICY_H_INCLUDED_
#define _NGX_HTTP_TSB_POLICY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


/* one tsb_allow_common_name pattern, as configured */
typedef struct {
    ngx_str_t                  pattern;    /* NUL-terminated */
    ngx_array_t               *parts;      /* NULL: used as it is;
                                              else ngx_http_tsb_name_part_t */
    void                      *regex;      /* a compiled "~regex" */
} ngx_http_tsb_name_t;


/* one tsb_allow_subject_attribute: an attribute type and its values */
typedef struct {
    ngx_str_t                  name;       /* as configured */
    u_char                     oid[TSB_SUBJECT_OID_MAX];
    ngx_array_t               *values;     /* ngx_http_tsb_subject_value_t */
} ngx_http_tsb_subject_conf_t;


typedef struct {
    ngx_str_t                  value;      /* as configured; a regex
                                              without its '~' */
    ngx_http_complex_value_t  *cv;         /* NULL: no variables */
    void                      *regex;      /* a compiled "~regex" */
} ngx_http_tsb_subject_value_t;


/* a literal piece of a pattern, or one variable in it */
typedef struct {
    ngx_str_t                  text;
    ngx_http_complex_value_t  *value;      /* NULL for text */
} ngx_http_tsb_name_part_t;


/* ngx_http_tsb_policy.c */
ngx_int_t ngx_http_tsb_add_variables(ngx_conf_t *cf);
char *ngx_http_tsb_allow_name(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_san_types(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_allow_subject(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_tsb_policy_subject(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *conf);
char *ngx_http_tsb_max_path_len(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_issuer_chain(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_allow_extension(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_max_validity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_ec_curves(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_rsa_exponents(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_tsb_policy_limits(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *conf);
ngx_int_t ngx_http_tsb_policy_names(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *conf);
ngx_int_t ngx_http_tsb_policy_algorithms(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *conf);
const tsb_policy_t *ngx_http_tsb_request_policy(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf);

/* ngx_http_tsb_audit.c */
char *ngx_http_tsb_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * One JSON line for one sign decision, when the location has an audit
 * log.  ctx may be NULL (refused before anything was parsed); id is the
 * signRequestId when there is one.
 */
void ngx_http_tsb_audit(ngx_http_request_t *r, ngx_http_tsb_ctx_t *ctx,
    ngx_uint_t accepted, ngx_uint_t status, const char *reason,
    const char *detail, const char *id);


#endif /* _NGX_HTTP_TSB_POLICY_H_INCLUDED_ */
