
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
#include "ngx_http_tsb_upstream.h"


#define NGX_HTTP_TSB_MAX_RESPONSE  (1024 * 1024)


typedef struct {
    ngx_http_tsb_upstream_conf_t   upstream;

    size_t                         max_body_size;
    time_t                         retry_after;
    ngx_str_t                      status_uri;

    /* policy, as configured (NGX_CONF_UNSET_* until merged) */
    ngx_array_t                   *names;              /* ngx_str_t */
    ngx_uint_t                     allowed_key_usage;
    ngx_uint_t                     default_key_usage;
    ngx_uint_t                     allowed_ext_key_usage;
    ngx_uint_t                     default_ext_key_usage;
    ngx_flag_t                     allow_ca;
    ngx_str_t                      sign_key_name;
    ngx_array_t                   *signature_algorithms; /* ngx_str_t */

    /* the plain C view of the above, built at merge time */
    tsb_policy_t                   policy;
} ngx_http_tsb_loc_conf_t;


extern ngx_module_t  ngx_http_tsb_module;


ngx_int_t ngx_http_tsb_sign_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_tsb_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_tsb_certificate_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TSB_MODULE_H_INCLUDED_ */
