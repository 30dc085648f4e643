
/*
 * Copyright (C) ngx_tsb_module authors
 */


#ifndef _NGX_HTTP_TSB_MODULE_H_INCLUDED_
#define _NGX_HTTP_TSB_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "tsb_common.h"
#include "tsb_csr.h"
#include "tsb_json.h"
#include "tsb_policy.h"
#include "tsb_cert.h"
#include "tsb_verify.h"
#include "ngx_http_tsb_upstream.h"


#define NGX_HTTP_TSB_MAX_RESPONSE  (1024 * 1024)


typedef struct ngx_http_tsb_store_s  ngx_http_tsb_store_t;


typedef struct {
    ngx_http_tsb_upstream_conf_t   upstream;

    size_t                         max_body_size;
    time_t                         retry_after;
    ngx_str_t                      status_uri;

    /* status cache (ngx_http_tsb_cache.c) */
    ngx_shm_zone_t                *cache_zone;
    time_t                         cache_valid[8];     /* by TSB_STATUS_* */
    time_t                         cache_use_stale;
    time_t                         wait_max;
    ngx_msec_t                     refresh_interval;
    ngx_http_tsb_store_t          *store;

    /* policy, as configured (NGX_CONF_UNSET_* until merged) */
    ngx_array_t                   *names;    /* ngx_http_tsb_name_t */
    ngx_array_t                   *subject_attrs;
                                   /* ngx_http_tsb_subject_conf_t */
    ngx_uint_t                     allowed_key_usage;
    ngx_uint_t                     default_key_usage;
    ngx_uint_t                     allowed_ext_key_usage;
    ngx_uint_t                     default_ext_key_usage;
    ngx_flag_t                     allow_ca;
    ngx_str_t                      sign_key_name;
    ngx_array_t                   *signature_algorithms; /* ngx_str_t */
    ngx_uint_t                     allowed_san_types;  /* 1 << TSB_SAN_* */
    ngx_int_t                      min_rsa_bits;
    ngx_flag_t                     allow_ed25519;
    ngx_int_t                      max_path_len;       /* -1: unlimited */
    ngx_flag_t                     allow_key_password;
    ngx_flag_t                     sign_describe;
    ngx_str_t                      key_password;       /* never logged */
    ngx_flag_t                     names_variables;    /* set at merge */
    ngx_flag_t                     subject_variables;  /* set at merge */
    ngx_array_t                   *extensions;  /* dotted OIDs (char *) */
    time_t                         max_validity;
    ngx_uint_t                     ec_curves;          /* TSB_CURVE_* */
    ngx_int_t                      max_rsa_bits;
    ngx_array_t                   *rsa_exponents;      /* unsigned long */

    /* ngx_http_tsb_policy.c, ngx_http_tsb_audit.c */
    tsb_chain_t                   *issuers;            /* tsb_issuer_chain */
    ngx_uint_t                     verify_issued;      /* tsb_error_format */
#define NGX_HTTP_TSB_ERRORS_AUTO     1
#define NGX_HTTP_TSB_ERRORS_TSB      2
#define NGX_HTTP_TSB_ERRORS_GATEWAY  3


/* tsb_verify_issued */
    ngx_open_file_t               *audit_log;

    /* ngx_http_tsb_proxy.c: tsb_pass_allow, tsb_allow_rule_t */
    ngx_array_t                   *pass_allow;

    /* ngx_http_tsb_owner.c: tsb_owner (NULL: none), tsb_owner_check */
    ngx_http_complex_value_t      *owner;
    ngx_uint_t                     owner_check;

    /* tsb_sign_status: 200 as the TSB answers, or 202 where chosen */
    ngx_uint_t                     sign_status;

    /* tsb_error_format: NGX_HTTP_TSB_ERRORS_* */
    ngx_uint_t                     error_format;

    /* ngx_http_tsb_acme.c: tsb_acme and tsb_acme_* (NULL elsewhere) */
    void                          *acme;

    /* the plain C view of the above, built at merge time */
    tsb_policy_t                   policy;
} ngx_http_tsb_loc_conf_t;


/*
 * Every key the configuration issues certificates with (tsb_sign_key_name
 * of every location, as char *): tsb_pass never passes a key operation
 * that names one of them.
 */
typedef struct {
    ngx_array_t                   *cert_keys;
} ngx_http_tsb_main_conf_t;


/* tsb_owner_check */
#define NGX_HTTP_TSB_OWNER_OFF      0
#define NGX_HTTP_TSB_OWNER_CANCEL   1
#define NGX_HTTP_TSB_OWNER_ALL      2


/* tsb_verify_issued */
#define NGX_HTTP_TSB_VERIFY_ON      1
#define NGX_HTTP_TSB_VERIFY_STRICT  2


#define NGX_HTTP_TSB_FORMAT_JSON  0
#define NGX_HTTP_TSB_FORMAT_PEM   1
#define NGX_HTTP_TSB_FORMAT_DER   2
#define NGX_HTTP_TSB_FORMAT_CHAIN 3

#define NGX_HTTP_TSB_ID_MAX       64


/* per request: what the handlers parsed and must free */
typedef struct {
    tsb_csr_t                     *csr;
    tsb_sign_req_t                 req;
    tsb_buf_t                      expect;   /* tsb_expect_build() */
    ngx_str_t                      id;
    ngx_uint_t                     format;

    /* what the logs and metrics see ($tsb_* variables) */
    ngx_uint_t                     handler;         /* NGX_HTTP_TSB_H_* */
    const char                    *reason;          /* a refusal's */
    ngx_uint_t                     tsb_status;      /* TSB_STATUS_* */
    ngx_uint_t                     cache_status;
    ngx_msec_t                     upstream_time;
    unsigned                       upstream_timed:1;
    unsigned                       negotiated:1;    /* format from Accept */

    /* ngx_http_tsb_proxy.c: set when the request came through tsb_pass */
    void                          *front;

    /* ngx_http_tsb_acme.c: the ACME request, for $tsb_acme_account */
    void                          *acme;
} ngx_http_tsb_ctx_t;


/* memcpy() from a NULL pointer is undefined even for 0 bytes: empty
 * ngx_str_t values have data NULL */
#define ngx_http_tsb_cpymem(dst, src, n)                                     \
    ((n) ? ngx_cpymem(dst, src, n) : (u_char *) (dst))


extern ngx_module_t  ngx_http_tsb_module;

extern ngx_str_t  ngx_http_tsb_type_json;
extern ngx_str_t  ngx_http_tsb_type_pem;
extern ngx_str_t  ngx_http_tsb_type_der;


ngx_int_t ngx_http_tsb_sign_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_tsb_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_tsb_certificate_handler(ngx_http_request_t *r);

/* ngx_http_tsb_response.c */
ngx_int_t ngx_http_tsb_error_handler(ngx_http_request_t *r);
ngx_http_tsb_ctx_t *ngx_http_tsb_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_tsb_body(ngx_http_request_t *r, ngx_str_t *body);
ngx_int_t ngx_http_tsb_upstream_error(ngx_log_t *log,
    ngx_http_tsb_fetch_t *f, tsb_error_t *err);
ngx_int_t ngx_http_tsb_upstream_failed(ngx_http_request_t *r,
    ngx_http_tsb_fetch_t *f);
ngx_int_t ngx_http_tsb_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_tsb_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, const u_char *data, size_t len);
ngx_int_t ngx_http_tsb_send_data(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len, ngx_uint_t copy);
ngx_int_t ngx_http_tsb_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason, const char *detail);
ngx_int_t ngx_http_tsb_send_tsb_error(ngx_http_request_t *r,
    tsb_error_t *err);
ngx_int_t ngx_http_tsb_method_not_allowed(ngx_http_request_t *r,
    const char *allow);
ngx_int_t ngx_http_tsb_upstream_pass(ngx_http_request_t *r,
    ngx_http_tsb_fetch_t *f);
ngx_int_t ngx_http_tsb_json_rc(ngx_http_request_t *r, ngx_int_t rc);

/* ngx_http_tsb_owner.c: whose request it is (tsb_owner) */
char *ngx_http_tsb_owner(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_tsb_owner_tag(ngx_http_request_t *r, tsb_buf_t *expect,
    tsb_error_t *err);
ngx_int_t ngx_http_tsb_owner_allowed(ngx_http_request_t *r,
    ngx_str_t *record, tsb_error_t *err);
ngx_int_t ngx_http_tsb_cancel_handler(ngx_http_request_t *r);

/* ngx_http_tsb_proxy.c: tsb_pass, the front of the TSB API */
ngx_int_t ngx_http_tsb_pass_handler(ngx_http_request_t *r);
char *ngx_http_tsb_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_tsb_pass_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_pass_merge(ngx_conf_t *cf, void *parent, void *child);

/*
 * For the sign handler (tsb_sign and tsb_pass alike): a request its client
 * signed goes to the TSB byte for byte (*up becomes body) if the gateway
 * forwards it unchanged, and is refused (NGX_ERROR, err set) if it would
 * have to change it.  NGX_OK otherwise, *up untouched.
 */
/*
 * 1 when the client is a TSB client, whose errors take the TSB's shape
 * (tsb_error_format): through tsb_pass, or a request for a TSB path.
 */
ngx_uint_t ngx_http_tsb_tsb_client(ngx_http_request_t *r);

ngx_int_t ngx_http_tsb_front_sign_body(ngx_http_request_t *r,
    ngx_http_tsb_ctx_t *ctx, ngx_str_t *body, ngx_str_t *up,
    tsb_error_t *err);


/* ngx_http_tsb_build.c: refuse a build that lacks the loading nginx's
 * features */
ngx_int_t ngx_http_tsb_build_check(ngx_conf_t *cf);


#endif /* _NGX_HTTP_TSB_MODULE_H_INCLUDED_ */
