
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The ACME server (RFC 8555) of a tsb_acme location: its directives, the
 * zone of nonces, accounts and orders, and $tsb_acme_account.
 */


#ifndef _NGX_HTTP_TSB_ACME_H_INCLUDED_
#define _NGX_HTTP_TSB_ACME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"


ngx_int_t ngx_http_tsb_acme_handler(ngx_http_request_t *r);

char *ngx_http_tsb_acme(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_tsb_acme_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_acme_eab_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_acme_eab_required(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_acme_terms(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_acme_challenge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_tsb_acme_http01_port(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* from merge_loc_conf: checks a tsb_acme location */
char *ngx_http_tsb_acme_merge(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf);

/* $tsb_acme_account, from preconfiguration */
ngx_int_t ngx_http_tsb_acme_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_TSB_ACME_H_INCLUDED_ */
