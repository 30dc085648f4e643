
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Directives, configuration and process hooks of ngx_http_tsb_module.
 * The handlers live in ngx_http_tsb_handlers.c, the upstream client in
 * ngx_http_tsb_upstream.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_policy.h"
#include "ngx_http_tsb_cache.h"
#include "ngx_http_tsb_store.h"
#include "ngx_http_tsb_metrics.h"
#include "ngx_http_tsb_acme.h"


#define NGX_HTTP_TSB_HANDLER_NONE         0
#define NGX_HTTP_TSB_HANDLER_SIGN         1
#define NGX_HTTP_TSB_HANDLER_STATUS       2
#define NGX_HTTP_TSB_HANDLER_CERTIFICATE  3
#define NGX_HTTP_TSB_HANDLER_ERROR        4


static void *ngx_http_tsb_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_tsb_cert_key(ngx_conf_t *cf, ngx_str_t *name);
static void *ngx_http_tsb_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tsb_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_tsb_build_policy(ngx_conf_t *cf,
    ngx_http_tsb_loc_conf_t *conf);
static char *ngx_http_tsb_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tsb_usage_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tsb_str_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tsb_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_tsb_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_tsb_init_process(ngx_cycle_t *cycle);
static void ngx_http_tsb_exit_process(ngx_cycle_t *cycle);


/* which usage table a *_key_usage directive parses against */
#define NGX_HTTP_TSB_KU   0
#define NGX_HTTP_TSB_EKU  1

typedef struct {
    ngx_uint_t   table;
    size_t       offset;
} ngx_http_tsb_usage_post_t;


static ngx_conf_enum_t  ngx_http_tsb_owner_check[] = {
    { ngx_string("off"), NGX_HTTP_TSB_OWNER_OFF },
    { ngx_string("cancel"), NGX_HTTP_TSB_OWNER_CANCEL },
    { ngx_string("all"), NGX_HTTP_TSB_OWNER_ALL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_tsb_verify_issued[] = {
    { ngx_string("on"), NGX_HTTP_TSB_VERIFY_ON },
    { ngx_string("strict"), NGX_HTTP_TSB_VERIFY_STRICT },
    { ngx_null_string, 0 }
};


/* a TSB client takes 200 (the TSB's own answer) and nothing else */
static ngx_conf_enum_t  ngx_http_tsb_sign_status[] = {
    { ngx_string("200"), NGX_HTTP_OK },
    { ngx_string("202"), NGX_HTTP_ACCEPTED },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_tsb_error_format[] = {
    { ngx_string("auto"), NGX_HTTP_TSB_ERRORS_AUTO },
    { ngx_string("tsb"), NGX_HTTP_TSB_ERRORS_TSB },
    { ngx_string("gateway"), NGX_HTTP_TSB_ERRORS_GATEWAY },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_tsb_min_rsa_bounds = {
    ngx_conf_check_num_bounds, 2048, 16384
};

static ngx_conf_num_bounds_t  ngx_http_tsb_max_rsa_bounds = {
    ngx_conf_check_num_bounds, 2048, 16384
};


static ngx_http_tsb_usage_post_t  ngx_http_tsb_allow_ku = {
    NGX_HTTP_TSB_KU, offsetof(ngx_http_tsb_loc_conf_t, allowed_key_usage)
};

static ngx_http_tsb_usage_post_t  ngx_http_tsb_default_ku = {
    NGX_HTTP_TSB_KU, offsetof(ngx_http_tsb_loc_conf_t, default_key_usage)
};

static ngx_http_tsb_usage_post_t  ngx_http_tsb_allow_eku = {
    NGX_HTTP_TSB_EKU,
    offsetof(ngx_http_tsb_loc_conf_t, allowed_ext_key_usage)
};

static ngx_http_tsb_usage_post_t  ngx_http_tsb_default_eku = {
    NGX_HTTP_TSB_EKU,
    offsetof(ngx_http_tsb_loc_conf_t, default_ext_key_usage)
};


static ngx_command_t  ngx_http_tsb_commands[] = {

    /* the upstream client (ngx_http_tsb_upstream.c) */

    { ngx_string("tsb_upstream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_upstream_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream),
      NULL },

    { ngx_string("tsb_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_secret_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.api_key),
      NULL },

    { ngx_string("tsb_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.api_key),
      NULL },

    { ngx_string("tsb_bearer_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_secret_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.bearer),
      NULL },

    { ngx_string("tsb_bearer_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.bearer),
      NULL },

    { ngx_string("tsb_max_response_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.max_response),
      NULL },

    { ngx_string("tsb_max_transfers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.max_transfers),
      NULL },

    { ngx_string("tsb_upstream_fail_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.fail_timeout),
      NULL },

    { ngx_string("tsb_http2"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.http2),
      NULL },

    { ngx_string("tsb_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_tsb_ssl_verify,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_verify),
      NULL },

    { ngx_string("tsb_ssl_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_ssl_protocols,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_protocols),
      NULL },

    { ngx_string("tsb_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_trusted_certificate),
      NULL },

    { ngx_string("tsb_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_certificate),
      NULL },

    { ngx_string("tsb_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_certificate_key),
      NULL },

    { ngx_string("tsb_ssl_password_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_password_file),
      NULL },

    { ngx_string("tsb_ssl_pinned_public_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.ssl_pinned_public_key),
      NULL },

    /* the front of the TSB API (ngx_http_tsb_proxy.c) */

    { ngx_string("tsb_pass"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_pass_allow"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_tsb_pass_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.connect_timeout),
      NULL },

    { ngx_string("tsb_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, upstream.timeout),
      NULL },

    { ngx_string("tsb_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("tsb_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, retry_after),
      NULL },

    { ngx_string("tsb_status_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, status_uri),
      NULL },

    { ngx_string("tsb_sign_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, sign_status),
      &ngx_http_tsb_sign_status },

    { ngx_string("tsb_error_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, error_format),
      &ngx_http_tsb_error_format },

    { ngx_string("tsb_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_cache_zone,
      0,
      0,
      NULL },

    { ngx_string("tsb_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_cache_valid"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_tsb_cache_valid,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_cache_use_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, cache_use_stale),
      NULL },

    { ngx_string("tsb_wait_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, wait_max),
      NULL },

    { ngx_string("tsb_refresh_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, refresh_interval),
      NULL },

    { ngx_string("tsb_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_metrics_directive,
      0,
      0,
      NULL },

    { ngx_string("tsb_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_store,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_sign"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_TSB_HANDLER_SIGN,
      NULL },

    { ngx_string("tsb_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_TSB_HANDLER_STATUS,
      NULL },

    { ngx_string("tsb_certificate"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_TSB_HANDLER_CERTIFICATE,
      NULL },

    { ngx_string("tsb_error"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tsb_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_TSB_HANDLER_ERROR,
      NULL },

    { ngx_string("tsb_sign_key_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, sign_key_name),
      NULL },

    { ngx_string("tsb_signature_algorithm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_str_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, signature_algorithms),
      NULL },

    { ngx_string("tsb_allow_common_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_allow_name,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_allow_subject_attribute"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_tsb_allow_subject,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_allow_key_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_usage_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_tsb_allow_ku },

    { ngx_string("tsb_default_key_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_usage_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_tsb_default_ku },

    { ngx_string("tsb_allow_extended_key_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_usage_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_tsb_allow_eku },

    { ngx_string("tsb_default_extended_key_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_usage_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_tsb_default_eku },

    { ngx_string("tsb_allow_ca"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, allow_ca),
      NULL },

    { ngx_string("tsb_max_path_len"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_max_path_len,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_allow_san_types"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_san_types,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_min_rsa_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, min_rsa_bits),
      &ngx_http_tsb_min_rsa_bounds },

    { ngx_string("tsb_allow_ed25519"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, allow_ed25519),
      NULL },

    { ngx_string("tsb_allow_key_password"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, allow_key_password),
      NULL },

    { ngx_string("tsb_sign_describe"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, sign_describe),
      NULL },

    { ngx_string("tsb_key_password"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, key_password),
      NULL },

    { ngx_string("tsb_issuer_chain"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_issuer_chain,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_verify_issued"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, verify_issued),
      &ngx_http_tsb_verify_issued },

    { ngx_string("tsb_allow_extension"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_allow_extension,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_max_validity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_max_validity,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_allow_ec_curves"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_ec_curves,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_max_rsa_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, max_rsa_bits),
      &ngx_http_tsb_max_rsa_bounds },

    { ngx_string("tsb_allow_rsa_exponents"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tsb_rsa_exponents,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_audit_log,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_owner"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_owner,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_owner_check"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tsb_loc_conf_t, owner_check),
      &ngx_http_tsb_owner_check },

    { ngx_string("tsb_acme_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_tsb_acme_zone,
      0,
      0,
      NULL },

    { ngx_string("tsb_acme"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_acme_eab_keys"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme_eab_keys,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_acme_eab_required"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme_eab_required,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_acme_terms_of_service"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme_terms,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_acme_challenge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme_challenge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tsb_acme_http01_port"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tsb_acme_http01_port,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tsb_module_ctx = {
    ngx_http_tsb_preconfiguration,         /* preconfiguration */
    ngx_http_tsb_metrics_postconfiguration, /* postconfiguration */

    ngx_http_tsb_create_main_conf,         /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tsb_create_loc_conf,          /* create location configuration */
    ngx_http_tsb_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_tsb_module = {
    NGX_MODULE_V1,
    &ngx_http_tsb_module_ctx,              /* module context */
    ngx_http_tsb_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_tsb_init_module,              /* init module */
    ngx_http_tsb_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_tsb_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_tsb_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tsb_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    tmcf->cert_keys = ngx_array_create(cf->pool, 2, sizeof(char *));
    if (tmcf->cert_keys == NULL) {
        return NULL;
    }

    return tmcf;
}


/* a certificate key, once, whichever location names it (config time) */

static char *
ngx_http_tsb_cert_key(ngx_conf_t *cf, ngx_str_t *name)
{
    char                      **key;
    ngx_uint_t                  i;
    ngx_http_tsb_main_conf_t   *tmcf;

    if (name->len == 0) {
        return NGX_CONF_OK;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tsb_module);
    key = tmcf->cert_keys->elts;

    for (i = 0; i < tmcf->cert_keys->nelts; i++) {
        if (ngx_strcmp(key[i], name->data) == 0) {
            return NGX_CONF_OK;
        }
    }

    key = ngx_array_push(tmcf->cert_keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    /* directive arguments end in '\0' */
    *key = (char *) name->data;

    return NGX_CONF_OK;
}


static void *
ngx_http_tsb_create_loc_conf(ngx_conf_t *cf)
{
    ngx_uint_t                i;
    ngx_http_tsb_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tsb_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->upstream.url = { 0, NULL };
     *     conf->upstream.api_key = { 0, NULL };
     *     conf->upstream.bearer = { 0, NULL };
     *     conf->status_uri = { 0, NULL };
     *     conf->sign_key_name = { 0, NULL };
     *     conf->policy = { 0 };
     */

    ngx_http_tsb_upstream_conf_init(&conf->upstream);
    conf->pass_allow = NGX_CONF_UNSET_PTR;

    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->retry_after = NGX_CONF_UNSET;
    conf->sign_status = NGX_CONF_UNSET_UINT;
    conf->error_format = NGX_CONF_UNSET_UINT;

    conf->cache_zone = NGX_CONF_UNSET_PTR;
    conf->cache_use_stale = NGX_CONF_UNSET;
    conf->wait_max = NGX_CONF_UNSET;
    conf->refresh_interval = NGX_CONF_UNSET_MSEC;
    conf->store = NGX_CONF_UNSET_PTR;

    for (i = 0; i < 8; i++) {
        conf->cache_valid[i] = NGX_CONF_UNSET;
    }

    conf->names = NGX_CONF_UNSET_PTR;
    conf->subject_attrs = NGX_CONF_UNSET_PTR;
    conf->signature_algorithms = NGX_CONF_UNSET_PTR;
    conf->allowed_key_usage = NGX_CONF_UNSET_UINT;
    conf->default_key_usage = NGX_CONF_UNSET_UINT;
    conf->allowed_ext_key_usage = NGX_CONF_UNSET_UINT;
    conf->default_ext_key_usage = NGX_CONF_UNSET_UINT;
    conf->allow_ca = NGX_CONF_UNSET;
    conf->allowed_san_types = NGX_CONF_UNSET_UINT;
    conf->min_rsa_bits = NGX_CONF_UNSET;
    conf->allow_ed25519 = NGX_CONF_UNSET;
    conf->max_path_len = NGX_CONF_UNSET;
    conf->allow_key_password = NGX_CONF_UNSET;
    conf->sign_describe = NGX_CONF_UNSET;
    conf->issuers = NGX_CONF_UNSET_PTR;
    conf->verify_issued = NGX_CONF_UNSET_UINT;
    conf->owner = NGX_CONF_UNSET_PTR;
    conf->owner_check = NGX_CONF_UNSET_UINT;
    conf->audit_log = NGX_CONF_UNSET_PTR;
    conf->extensions = NGX_CONF_UNSET_PTR;
    conf->max_validity = NGX_CONF_UNSET;
    conf->ec_curves = NGX_CONF_UNSET_UINT;
    conf->max_rsa_bits = NGX_CONF_UNSET;
    conf->rsa_exponents = NGX_CONF_UNSET_PTR;

    return conf;
}


/* freshness by status, as in the TSB_STATUS_* order */
static time_t  ngx_http_tsb_cache_valid_default[8] = {
    0,                  /* unknown */
    2,                  /* PENDING */
    2,                  /* APPROVED */
    30 * 86400,         /* EXECUTED */
    3600,               /* FAILED */
    3600,               /* EXPIRED */
    3600,               /* REJECTED */
    3600                /* CANCELLED */
};


static char *
ngx_http_tsb_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tsb_loc_conf_t *prev = parent;
    ngx_http_tsb_loc_conf_t *conf = child;

    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (ngx_http_tsb_upstream_merge(cf, &prev->upstream, &conf->upstream)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              64 * 1024);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 5);
    ngx_conf_merge_uint_value(conf->sign_status, prev->sign_status,
                              NGX_HTTP_OK);
    ngx_conf_merge_uint_value(conf->error_format, prev->error_format,
                              NGX_HTTP_TSB_ERRORS_AUTO);
    ngx_conf_merge_str_value(conf->status_uri, prev->status_uri,
                             "/tsb/request/");

    ngx_conf_merge_ptr_value(conf->cache_zone, prev->cache_zone, NULL);
    ngx_conf_merge_sec_value(conf->cache_use_stale, prev->cache_use_stale,
                             3600);
    ngx_conf_merge_sec_value(conf->wait_max, prev->wait_max, 60);
    ngx_conf_merge_msec_value(conf->refresh_interval,
                              prev->refresh_interval, 1000);
    ngx_conf_merge_ptr_value(conf->store, prev->store, NULL);

    for (i = 0; i < 8; i++) {
        ngx_conf_merge_sec_value(conf->cache_valid[i], prev->cache_valid[i],
                                 ngx_http_tsb_cache_valid_default[i]);
    }

    ngx_conf_merge_ptr_value(conf->names, prev->names, NULL);
    ngx_conf_merge_ptr_value(conf->subject_attrs, prev->subject_attrs, NULL);
    ngx_conf_merge_ptr_value(conf->signature_algorithms,
                             prev->signature_algorithms, NULL);
    ngx_conf_merge_uint_value(conf->allowed_key_usage,
                              prev->allowed_key_usage,
                              TSB_KU_DIGITAL_SIGNATURE
                              |TSB_KU_KEY_ENCIPHERMENT);
    ngx_conf_merge_uint_value(conf->default_key_usage,
                              prev->default_key_usage,
                              TSB_KU_DIGITAL_SIGNATURE);
    ngx_conf_merge_uint_value(conf->allowed_ext_key_usage,
                              prev->allowed_ext_key_usage,
                              TSB_EKU_SERVER_AUTH|TSB_EKU_CLIENT_AUTH);
    ngx_conf_merge_uint_value(conf->default_ext_key_usage,
                              prev->default_ext_key_usage,
                              TSB_EKU_SERVER_AUTH);
    ngx_conf_merge_value(conf->allow_ca, prev->allow_ca, 0);
    ngx_conf_merge_uint_value(conf->allowed_san_types,
                              prev->allowed_san_types, 1u << TSB_SAN_DNS);
    ngx_conf_merge_value(conf->min_rsa_bits, prev->min_rsa_bits, 2048);
    ngx_conf_merge_value(conf->allow_ed25519, prev->allow_ed25519, 0);
    ngx_conf_merge_value(conf->max_path_len, prev->max_path_len, -1);
    ngx_conf_merge_value(conf->allow_key_password,
                         prev->allow_key_password, 0);
    ngx_conf_merge_value(conf->sign_describe, prev->sign_describe, 0);
    ngx_conf_merge_str_value(conf->key_password, prev->key_password, "");
    ngx_conf_merge_ptr_value(conf->issuers, prev->issuers, NULL);
    ngx_conf_merge_uint_value(conf->verify_issued, prev->verify_issued,
                              NGX_HTTP_TSB_VERIFY_ON);
    ngx_conf_merge_ptr_value(conf->audit_log, prev->audit_log, NULL);
    ngx_conf_merge_ptr_value(conf->owner, prev->owner, NULL);
    ngx_conf_merge_uint_value(conf->owner_check, prev->owner_check,
                              NGX_HTTP_TSB_OWNER_CANCEL);
    ngx_conf_merge_str_value(conf->sign_key_name, prev->sign_key_name, "");

    if (ngx_http_tsb_cert_key(cf, &conf->sign_key_name) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* issue 10: extensions, lifetime and keys */
    ngx_conf_merge_ptr_value(conf->extensions, prev->extensions, NULL);
    ngx_conf_merge_sec_value(conf->max_validity, prev->max_validity,
                             TSB_POLICY_MAX_VALIDITY);
    ngx_conf_merge_uint_value(conf->ec_curves, prev->ec_curves,
                              TSB_CURVE_P256|TSB_CURVE_P384|TSB_CURVE_P521);
    ngx_conf_merge_value(conf->max_rsa_bits, prev->max_rsa_bits,
                         TSB_POLICY_MAX_RSA);
    ngx_conf_merge_ptr_value(conf->rsa_exponents, prev->rsa_exponents,
                             NULL);

    if (conf->max_rsa_bits < conf->min_rsa_bits) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tsb_max_rsa_bits is below tsb_min_rsa_bits");
        return NGX_CONF_ERROR;
    }

    if (conf->default_key_usage & ~conf->allowed_key_usage) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tsb_default_key_usage is not within "
                           "tsb_allow_key_usage");
        return NGX_CONF_ERROR;
    }

    if (conf->default_ext_key_usage & ~conf->allowed_ext_key_usage) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tsb_default_extended_key_usage is not within "
                           "tsb_allow_extended_key_usage");
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (ngx_http_tsb_pass_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_tsb_acme_merge(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (clcf->handler == ngx_http_tsb_sign_handler
        || clcf->handler == ngx_http_tsb_status_handler
        || clcf->handler == ngx_http_tsb_certificate_handler
        || clcf->handler == ngx_http_tsb_pass_handler)
    {
        if (conf->upstream.url.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a tsb handler in location \"%V\" needs "
                               "\"tsb_upstream\"", &clcf->name);
            return NGX_CONF_ERROR;
        }

        if (conf->cache_zone
            && ngx_http_tsb_cache_check_issuers(cf, conf, &clcf->name)
               != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (clcf->handler == ngx_http_tsb_sign_handler) {

        if (conf->sign_key_name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tsb_sign\" in location \"%V\" needs "
                               "\"tsb_sign_key_name\"", &clcf->name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_tsb_policy_algorithms(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        /*
         * The sign handler reads the body from memory only: make sure a
         * body that tsb_max_body_size accepts is never written to a
         * temporary file (and read back with blocking I/O).
         */
        if (clcf->client_body_buffer_size < conf->max_body_size) {
            clcf->client_body_buffer_size = conf->max_body_size;
        }
    }

    return ngx_http_tsb_build_policy(cf, conf);
}


static char *
ngx_http_tsb_build_policy(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    ngx_uint_t           i;
    ngx_str_t           *s;
    const char         **algs;
    tsb_policy_t        *p;

    p = &conf->policy;
    ngx_memzero(p, sizeof(tsb_policy_t));

    /* names, their compiled regexes, and whether any holds a variable */
    if (ngx_http_tsb_policy_names(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the subject attributes allowed besides the CN, likewise */
    if (ngx_http_tsb_policy_subject(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    p->allowed_key_usage = conf->allowed_key_usage;
    p->default_key_usage = conf->default_key_usage;
    p->allowed_ext_key_usage = conf->allowed_ext_key_usage;
    p->default_ext_key_usage = conf->default_ext_key_usage;
    p->allow_ca = conf->allow_ca;
    p->max_path_len = conf->max_path_len;
    p->min_rsa_bits = conf->min_rsa_bits;
    p->allow_ed25519 = conf->allow_ed25519;
    p->allow_key_password = conf->allow_key_password;
    p->allowed_san_types = conf->allowed_san_types;

    if (ngx_http_tsb_policy_limits(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* configuration strings are NUL-terminated by the parser */
    p->sign_key_name = conf->sign_key_name.len
                       ? (const char *) conf->sign_key_name.data : NULL;

    if (conf->signature_algorithms) {
        s = conf->signature_algorithms->elts;

        algs = ngx_pcalloc(cf->pool, (conf->signature_algorithms->nelts + 1)
                                     * sizeof(char *));
        if (algs == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < conf->signature_algorithms->nelts; i++) {
            algs[i] = (const char *) s[i].data;
        }

        p->signature_algorithm = algs[0];
        p->allowed_signature_algorithms = algs;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_tsb_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    switch (cmd->offset) {

    case NGX_HTTP_TSB_HANDLER_SIGN:
        clcf->handler = ngx_http_tsb_sign_handler;
        break;

    case NGX_HTTP_TSB_HANDLER_STATUS:
        clcf->handler = ngx_http_tsb_status_handler;
        break;

    case NGX_HTTP_TSB_HANDLER_CERTIFICATE:
        clcf->handler = ngx_http_tsb_certificate_handler;
        break;

    default: /* NGX_HTTP_TSB_HANDLER_ERROR */
        clcf->handler = ngx_http_tsb_error_handler;

        /*
         * The body was refused already.  Over HTTP/2 discarding it does
         * not mark the request (r->discard_body), so nginx would check the
         * size again on the way into this location and answer its own
         * HTML 413; unlimited here, the check cannot fire twice.
         */
        if (clcf->client_max_body_size == NGX_CONF_UNSET) {
            clcf->client_max_body_size = 0;
        }

        break;
    }

    return NGX_CONF_OK;
}


/* a list directive; repeating it adds to the list */

static char *
ngx_http_tsb_str_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t     *value, *s;
    ngx_uint_t     i;
    ngx_array_t  **a;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a == NGX_CONF_UNSET_PTR) {
        *a = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (*a == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            return "takes no empty values";
        }

        s = ngx_array_push(*a);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_tsb_usage_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    long                        bits;
    size_t                      bad_len;
    ngx_str_t                  *value;
    ngx_uint_t                  i, *mask;
    const char                 *bad;
    ngx_http_tsb_usage_post_t  *post;

    post = cmd->post;
    mask = (ngx_uint_t *) (p + post->offset);

    if (*mask != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    *mask = 0;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "none") == 0 && cf->args->nelts == 2) {
            break;
        }

        bits = (post->table == NGX_HTTP_TSB_KU)
               ? tsb_key_usage_parse_list((char *) value[i].data,
                                          value[i].len, &bad, &bad_len)
               : tsb_ext_key_usage_parse_list((char *) value[i].data,
                                              value[i].len, &bad, &bad_len);

        if (bits < 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown %s \"%*s\"",
                               post->table == NGX_HTTP_TSB_KU
                               ? "key usage" : "extended key usage",
                               bad_len, bad);
            return NGX_CONF_ERROR;
        }

        *mask |= (ngx_uint_t) bits;
    }

    return NGX_CONF_OK;
}


/* the policy's variables and the observability ones */

static ngx_int_t
ngx_http_tsb_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_tsb_build_check(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_tsb_add_variables(cf) != NGX_OK
        || ngx_http_tsb_acme_add_variables(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_tsb_metrics_preconfiguration(cf);
}


static ngx_int_t
ngx_http_tsb_init_module(ngx_cycle_t *cycle)
{
    return ngx_http_tsb_upstream_init_module(cycle);
}


static ngx_int_t
ngx_http_tsb_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_tsb_metrics_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_tsb_upstream_init_process(cycle);
}


static void
ngx_http_tsb_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_tsb_upstream_exit_process(cycle);
    tsb_csr_cleanup();
}
