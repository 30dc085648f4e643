
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The policy glue: the directives that feed tsb_policy_t beyond plain
 * slots, the per-request expansion of name patterns that hold nginx
 * variables, and $tsb_ssl_client_cn.
 *
 * A pattern such as "$tsb_ssl_client_cn.svc.example" binds the names a
 * client may ask for to who the client is.  It is kept as literal pieces
 * and one complex value per variable, not as one complex value, so that
 * each variable's value can be judged on its own: a value must be a plain
 * name (letters, digits, '-', '_', dots between labels).  An empty value
 * would otherwise turn the pattern into ".svc.example", and a value
 * of "*" or "~.*" into a wildcard or a regex that lets anyone through.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_tsb_module.h"
#include "ngx_http_tsb_policy.h"

#include <openssl/err.h>
#include <openssl/objects.h>


#define NGX_HTTP_TSB_NAME_MAX  253


typedef struct {
    ngx_str_t    name;
    ngx_uint_t   bit;
} ngx_http_tsb_san_type_t;


static ngx_int_t ngx_http_tsb_name_parse(ngx_conf_t *cf,
    ngx_http_tsb_name_t *n);
static ngx_int_t ngx_http_tsb_name_expand(ngx_http_request_t *r,
    ngx_http_tsb_name_t *n, tsb_name_pattern_t *out);
static ngx_uint_t ngx_http_tsb_name_value_ok(ngx_str_t *v);
static ngx_int_t ngx_http_tsb_subject_expand(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf, tsb_policy_t *p);
static void ngx_http_tsb_regex_cleanup(void *data);
static void ngx_http_tsb_chain_cleanup(void *data);
static ngx_int_t ngx_http_tsb_variable_client_cn(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_tsb_san_type_t  ngx_http_tsb_san_types_list[] = {
    { ngx_string("dns"), 1u << TSB_SAN_DNS },
    { ngx_string("ip"), 1u << TSB_SAN_IP },
    { ngx_string("email"), 1u << TSB_SAN_EMAIL },
    { ngx_string("uri"), 1u << TSB_SAN_URI },
    { ngx_null_string, 0 }
};


static ngx_http_variable_t  ngx_http_tsb_vars[] = {

    { ngx_string("tsb_ssl_client_cn"), NULL,
      ngx_http_tsb_variable_client_cn, 0, 0, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_tsb_add_variables(ngx_conf_t *cf)
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


/*
 * The commonName of a verified TLS client certificate, read from the
 * certificate itself: picking "CN=" out of $ssl_client_s_dn with a regex
 * is easy to fool (an O of "x\,CN=bob" holds ",CN=bob").  Not found
 * without a verified certificate, or with no or several CNs.
 */

static ngx_int_t
ngx_http_tsb_variable_client_cn(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
#if (NGX_HTTP_SSL)

    int               idx, n;
    X509             *x;
    u_char           *p;
    X509_NAME        *name;
    unsigned char    *utf8;

    v->not_found = 1;

    if (r->connection->ssl == NULL) {
        return NGX_OK;
    }

    if (SSL_get_verify_result(r->connection->ssl->connection) != X509_V_OK) {
        return NGX_OK;
    }

    x = SSL_get_peer_certificate(r->connection->ssl->connection);
    if (x == NULL) {
        return NGX_OK;
    }

    name = X509_get_subject_name(x);
    idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);

    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
    {
        X509_free(x);
        return NGX_OK;
    }

    utf8 = NULL;
    n = ASN1_STRING_to_UTF8(&utf8,
                            X509_NAME_ENTRY_get_data(
                                X509_NAME_get_entry(name, idx)));
    X509_free(x);

    if (n <= 0 || ngx_strlchr(utf8, utf8 + n, '\0') != NULL) {
        OPENSSL_free(utf8);
        ERR_clear_error();
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, n);
    if (p == NULL) {
        OPENSSL_free(utf8);
        return NGX_ERROR;
    }

    ngx_memcpy(p, utf8, n);
    OPENSSL_free(utf8);

    v->data = p;
    v->len = n;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

#else

    v->not_found = 1;

#endif

    return NGX_OK;
}


char *
ngx_http_tsb_allow_name(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    char                 errbuf[NGX_MAX_CONF_ERRSTR];
    ngx_str_t           *value;
    ngx_uint_t           i;
    ngx_pool_cleanup_t  *cln;
    ngx_http_tsb_name_t *n;

    if (tlcf->names == NGX_CONF_UNSET_PTR) {
        tlcf->names = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_tsb_name_t));
        if (tlcf->names == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0) {
            return "takes no empty values";
        }

        n = ngx_array_push(tlcf->names);
        if (n == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(n, sizeof(ngx_http_tsb_name_t));
        n->pattern = value[i];

        /* a regex is compiled once, here, and never variable-expanded */

        if (value[i].data[0] == '~') {
            cln = ngx_pool_cleanup_add(cf->pool, 0);
            if (cln == NULL) {
                return NGX_CONF_ERROR;
            }

            if (tsb_policy_regex_compile((char *) value[i].data,
                                         value[i].len, &n->regex, errbuf,
                                         sizeof(errbuf))
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid name pattern \"%V\": %s",
                                   &value[i], errbuf);
                return NGX_CONF_ERROR;
            }

            cln->handler = ngx_http_tsb_regex_cleanup;
            cln->data = n->regex;

            continue;
        }

        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '$')) {
            if (ngx_http_tsb_name_parse(cf, n) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (tsb_policy_pattern_check((char *) value[i].data, value[i].len,
                                     errbuf, sizeof(errbuf))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid name pattern \"%V\": %s",
                               &value[i], errbuf);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * "$name.svc.example", "${name}-a.svc.example": literal pieces and one
 * complex value per variable.  The shape is checked with every variable
 * standing for one label, so "*.$user.example" passes and "$user*" does
 * not.
 */

static ngx_int_t
ngx_http_tsb_name_parse(ngx_conf_t *cf, ngx_http_tsb_name_t *n)
{
    char                               errbuf[NGX_MAX_CONF_ERRSTR];
    u_char                            *p, *end, *start, *vstart, *shape, *s;
    ngx_str_t                          var;
    ngx_http_tsb_name_part_t          *part;
    ngx_http_compile_complex_value_t   ccv;

    n->parts = ngx_array_create(cf->pool, 4,
                                sizeof(ngx_http_tsb_name_part_t));
    if (n->parts == NULL) {
        return NGX_ERROR;
    }

    /* each variable ("$x" at least) becomes one character: never longer */
    shape = ngx_pnalloc(cf->pool, n->pattern.len);
    if (shape == NULL) {
        return NGX_ERROR;
    }

    s = shape;
    p = n->pattern.data;
    end = p + n->pattern.len;

    while (p < end) {

        part = ngx_array_push(n->parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        start = p;

        if (*p != '$') {
            while (p < end && *p != '$') {
                p++;
            }

            part->text.data = start;
            part->text.len = p - start;
            part->value = NULL;

            s = ngx_cpymem(s, start, p - start);
            continue;
        }

        p++;

        if (p < end && *p == '{') {
            vstart = ++p;

            while (p < end && *p != '}') {
                p++;
            }

            if (p == end) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid name pattern \"%V\": "
                                   "missing \"}\"", &n->pattern);
                return NGX_ERROR;
            }

            var.data = vstart;
            var.len = p - vstart;
            p++;

        } else {
            vstart = p;

            while (p < end
                   && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                       || (*p >= '0' && *p <= '9') || *p == '_'))
            {
                p++;
            }

            var.data = vstart;
            var.len = p - vstart;
        }

        if (var.len == 0 || (var.data[0] >= '0' && var.data[0] <= '9')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid name pattern \"%V\": a variable "
                               "name must follow \"$\" (for a regex "
                               "capture, use a named one)", &n->pattern);
            return NGX_ERROR;
        }

        part->text.data = start;
        part->text.len = p - start;

        part->value = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (part->value == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &part->text;
        ccv.complex_value = part->value;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_ERROR;
        }

        *s++ = 'x';
    }

    if (tsb_policy_pattern_check((char *) shape, s - shape, errbuf,
                                 sizeof(errbuf))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid name pattern \"%V\": %s",
                           &n->pattern, errbuf);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the plain C view of the names, at merge time */

ngx_int_t
ngx_http_tsb_policy_names(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    void                 **regex;
    ngx_uint_t             i;
    tsb_policy_t          *p;
    tsb_name_pattern_t    *names;
    ngx_http_tsb_name_t   *n;

    p = &conf->policy;
    conf->names_variables = 0;

    if (conf->names == NULL || conf->names->nelts == 0) {
        return NGX_OK;
    }

    n = conf->names->elts;

    names = ngx_pcalloc(cf->pool,
                        conf->names->nelts * sizeof(tsb_name_pattern_t));
    regex = ngx_pcalloc(cf->pool, conf->names->nelts * sizeof(void *));

    if (names == NULL || regex == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < conf->names->nelts; i++) {
        names[i].pattern = (const char *) n[i].pattern.data;
        names[i].len = n[i].pattern.len;
        regex[i] = n[i].regex;

        if (n[i].parts) {
            conf->names_variables = 1;
        }
    }

    p->names = names;
    p->n_names = conf->names->nelts;
    p->name_regex = regex;

    return NGX_OK;
}


/*
 * A sign location with an issuer chain: every signatureAlgorithm it may
 * send must fit the key of that chain ("fit the CA key"), so that a
 * client's choice, or the default SHA256_WITH_RSA under an EC CA, never
 * makes the TSB fail a request the policy accepted.
 */

ngx_int_t
ngx_http_tsb_policy_algorithms(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    ngx_str_t   *s, def;
    ngx_uint_t   i, n;

    if (conf->issuers == NULL) {
        return NGX_OK;
    }

    ngx_str_set(&def, "SHA256_WITH_RSA");

    if (conf->signature_algorithms) {
        s = conf->signature_algorithms->elts;
        n = conf->signature_algorithms->nelts;

    } else {
        s = &def;
        n = 1;
    }

    for (i = 0; i < n; i++) {
        if (!tsb_chain_fits_algorithm(conf->issuers, (char *) s[i].data)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "signature algorithm \"%V\" does not fit the "
                               "key of any certificate in tsb_issuer_chain%s",
                               &s[i], conf->signature_algorithms ? ""
                               : " (set tsb_signature_algorithm)");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The location's policy, or for a location whose patterns hold variables,
 * a copy with those patterns expanded for this request (in the same
 * order, so the compiled regexes still line up).
 */

const tsb_policy_t *
ngx_http_tsb_request_policy(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf)
{
    ngx_uint_t             i;
    tsb_policy_t          *p;
    tsb_name_pattern_t    *names;
    ngx_http_tsb_name_t   *n;

    if (!tlcf->names_variables && !tlcf->subject_variables) {
        return &tlcf->policy;
    }

    p = ngx_palloc(r->pool, sizeof(tsb_policy_t));
    if (p == NULL) {
        return NULL;
    }

    *p = tlcf->policy;

    if (tlcf->subject_variables
        && ngx_http_tsb_subject_expand(r, tlcf, p) != NGX_OK)
    {
        return NULL;
    }

    if (!tlcf->names_variables) {
        return p;
    }

    names = ngx_palloc(r->pool,
                       tlcf->names->nelts * sizeof(tsb_name_pattern_t));
    if (names == NULL) {
        return NULL;
    }

    n = tlcf->names->elts;

    for (i = 0; i < tlcf->names->nelts; i++) {

        if (n[i].parts == NULL) {
            names[i].pattern = (const char *) n[i].pattern.data;
            names[i].len = n[i].pattern.len;
            continue;
        }

        if (ngx_http_tsb_name_expand(r, &n[i], &names[i]) != NGX_OK) {
            return NULL;
        }
    }

    p->names = names;

    return p;
}


static ngx_int_t
ngx_http_tsb_name_expand(ngx_http_request_t *r, ngx_http_tsb_name_t *n,
    tsb_name_pattern_t *out)
{
    u_char                    *buf, *p;
    size_t                     len;
    ngx_str_t                 *values;
    ngx_uint_t                 i;
    ngx_http_tsb_name_part_t  *part;

    part = n->parts->elts;

    values = ngx_palloc(r->pool, n->parts->nelts * sizeof(ngx_str_t));
    if (values == NULL) {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < n->parts->nelts; i++) {

        if (part[i].value == NULL) {
            values[i] = part[i].text;

        } else {
            if (ngx_http_complex_value(r, part[i].value, &values[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (!ngx_http_tsb_name_value_ok(&values[i])) {

                /* matches nothing; the value itself is not worth a log */

                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "tsb: name pattern \"%V\" not used: %V is "
                              "empty or not a plain name",
                              &n->pattern, &part[i].text);

                out->pattern = "";
                out->len = 0;

                return NGX_OK;
            }
        }

        len += values[i].len;
    }

    buf = ngx_pnalloc(r->pool, len + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    for (i = 0; i < n->parts->nelts; i++) {
        p = ngx_cpymem(p, values[i].data, values[i].len);
    }

    *p = '\0';

    out->pattern = (const char *) buf;
    out->len = len;

    return NGX_OK;
}


/* letters, digits, '-' and '_', in labels joined by single dots */

static ngx_uint_t
ngx_http_tsb_name_value_ok(ngx_str_t *v)
{
    u_char      c;
    ngx_uint_t  i;

    if (v->len == 0 || v->len > NGX_HTTP_TSB_NAME_MAX
        || v->data[0] == '.' || v->data[v->len - 1] == '.')
    {
        return 0;
    }

    for (i = 0; i < v->len; i++) {
        c = v->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_')
        {
            continue;
        }

        if (c == '.' && v->data[i - 1] != '.') {
            continue;
        }

        return 0;
    }

    return 1;
}


/*
 * tsb_allow_subject_attribute O "Example Corp" "~^Team [A-Z]+$" $team;
 * The type is any name or dotted OID OpenSSL knows, kept as the dotted
 * OID the CSR's attributes are compared by; commonName has its own
 * directive.  A value is exact, a "~regex", or holds variables (an exact
 * value per request, never a regex, whatever the variable says).
 */

char *
ngx_http_tsb_allow_subject(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    int                                 len;
    char                                errbuf[NGX_MAX_CONF_ERRSTR];
    ngx_str_t                          *value;
    ngx_uint_t                          i;
    ASN1_OBJECT                        *obj;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_tsb_subject_conf_t        *a;
    ngx_http_tsb_subject_value_t       *v;
    ngx_http_compile_complex_value_t    ccv;

    if (tlcf->subject_attrs == NGX_CONF_UNSET_PTR) {
        tlcf->subject_attrs = ngx_array_create(cf->pool, 2,
                                  sizeof(ngx_http_tsb_subject_conf_t));
        if (tlcf->subject_attrs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    a = ngx_array_push(tlcf->subject_attrs);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(a, sizeof(ngx_http_tsb_subject_conf_t));
    a->name = value[1];

    /* config time: OpenSSL's object table, no I/O */

    obj = OBJ_txt2obj((char *) value[1].data, 0);

    if (obj == NULL) {
        ERR_clear_error();
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown subject attribute type \"%V\": use a "
                           "name such as O, OU, C, L, ST, serialNumber or a "
                           "dotted OID", &value[1]);
        return NGX_CONF_ERROR;
    }

    len = OBJ_obj2txt((char *) a->oid, sizeof(a->oid), obj, 1);

    if (OBJ_obj2nid(obj) == NID_commonName) {
        ASN1_OBJECT_free(obj);
        return "cannot allow commonName: use tsb_allow_common_name";
    }

    ASN1_OBJECT_free(obj);

    if (len <= 0 || len >= (int) sizeof(a->oid)) {
        return "takes an attribute type with a shorter OID";
    }

    a->values = ngx_array_create(cf->pool, cf->args->nelts - 2,
                                 sizeof(ngx_http_tsb_subject_value_t));
    if (a->values == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len == 0 || (value[i].len == 1
                                  && value[i].data[0] == '~'))
        {
            return "takes no empty values";
        }

        v = ngx_array_push(a->values);
        if (v == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(v, sizeof(ngx_http_tsb_subject_value_t));
        v->value = value[i];

        if (value[i].data[0] == '~') {
            v->value.data++;
            v->value.len--;

            cln = ngx_pool_cleanup_add(cf->pool, 0);
            if (cln == NULL) {
                return NGX_CONF_ERROR;
            }

            if (tsb_policy_value_regex_compile((char *) v->value.data,
                                               v->value.len, &v->regex,
                                               errbuf, sizeof(errbuf))
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid subject attribute value "
                                   "\"%V\": %s", &value[i], errbuf);
                return NGX_CONF_ERROR;
            }

            cln->handler = ngx_http_tsb_regex_cleanup;
            cln->data = v->regex;

            continue;
        }

        if (ngx_http_script_variables_count(&value[i]) == 0) {
            continue;
        }

        v->cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (v->cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &v->value;
        ccv.complex_value = v->cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* the plain C view of the allowed subject attributes, at merge time */

ngx_int_t
ngx_http_tsb_policy_subject(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    ngx_uint_t                     i, j;
    tsb_policy_t                  *p;
    tsb_subject_rule_t            *rules;
    tsb_subject_value_t           *values;
    ngx_http_tsb_subject_conf_t   *a;
    ngx_http_tsb_subject_value_t  *v;

    p = &conf->policy;
    conf->subject_variables = 0;

    if (conf->subject_attrs == NULL || conf->subject_attrs->nelts == 0) {
        return NGX_OK;
    }

    a = conf->subject_attrs->elts;

    rules = ngx_pcalloc(cf->pool,
                        conf->subject_attrs->nelts
                        * sizeof(tsb_subject_rule_t));
    if (rules == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < conf->subject_attrs->nelts; i++) {
        v = a[i].values->elts;

        values = ngx_pcalloc(cf->pool,
                             a[i].values->nelts * sizeof(tsb_subject_value_t));
        if (values == NULL) {
            return NGX_ERROR;
        }

        for (j = 0; j < a[i].values->nelts; j++) {
            values[j].value = (const char *) v[j].value.data;
            values[j].len = v[j].value.len;
            values[j].is_regex = (v[j].regex != NULL);
            values[j].regex = v[j].regex;

            if (v[j].cv) {
                conf->subject_variables = 1;
            }
        }

        rules[i].oid = (const char *) a[i].oid;
        rules[i].name = (const char *) a[i].name.data;
        rules[i].values = values;
        rules[i].n_values = a[i].values->nelts;
    }

    p->subject_rules = rules;
    p->n_subject_rules = conf->subject_attrs->nelts;

    return NGX_OK;
}


/*
 * A copy of the subject rules with the values that hold variables
 * evaluated for this request; an empty value matches nothing.
 */

static ngx_int_t
ngx_http_tsb_subject_expand(ngx_http_request_t *r,
    ngx_http_tsb_loc_conf_t *tlcf, tsb_policy_t *p)
{
    ngx_str_t                      val;
    ngx_uint_t                     i, j;
    tsb_subject_rule_t            *rules;
    tsb_subject_value_t           *values;
    ngx_http_tsb_subject_conf_t   *a;
    ngx_http_tsb_subject_value_t  *v;

    a = tlcf->subject_attrs->elts;

    rules = ngx_palloc(r->pool,
                       p->n_subject_rules * sizeof(tsb_subject_rule_t));
    if (rules == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < p->n_subject_rules; i++) {
        rules[i] = p->subject_rules[i];
        v = a[i].values->elts;

        values = ngx_palloc(r->pool,
                            rules[i].n_values * sizeof(tsb_subject_value_t));
        if (values == NULL) {
            return NGX_ERROR;
        }

        for (j = 0; j < rules[i].n_values; j++) {
            values[j] = p->subject_rules[i].values[j];

            if (v[j].cv == NULL) {
                continue;
            }

            if (ngx_http_complex_value(r, v[j].cv, &val) != NGX_OK) {
                return NGX_ERROR;
            }

            values[j].value = (const char *) val.data;
            values[j].len = val.len;
            values[j].is_regex = 0;
            values[j].regex = NULL;
        }

        rules[i].values = values;
    }

    p->subject_rules = rules;

    return NGX_OK;
}


char *
ngx_http_tsb_san_types(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t                *value;
    ngx_uint_t                i, mask;
    ngx_http_tsb_san_type_t  *t;

    if (tlcf->allowed_san_types != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "none") == 0) {
        /* no TSB_SAN_* bit, but not 0 (which means the default) */
        tlcf->allowed_san_types = 1;
        return NGX_CONF_OK;
    }

    mask = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        for (t = ngx_http_tsb_san_types_list; t->name.len; t++) {
            if (t->name.len == value[i].len
                && ngx_strcasecmp(t->name.data, value[i].data) == 0)
            {
                break;
            }
        }

        if (t->name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid subjectAltName type \"%V\": use "
                               "dns, ip, email, uri or none", &value[i]);
            return NGX_CONF_ERROR;
        }

        mask |= t->bit;
    }

    tlcf->allowed_san_types = mask;

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_max_path_len(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (tlcf->max_path_len != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->max_path_len = -1;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n > 255) {
        return "takes \"off\" or a number from 0 to 255";
    }

    tlcf->max_path_len = n;

    return NGX_CONF_OK;
}


/* blocking file I/O, at configuration time only */

char *
ngx_http_tsb_issuer_chain(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t           *value, file;
    tsb_error_t          err;
    tsb_chain_t         *chain;
    ngx_pool_cleanup_t  *cln;

    if (tlcf->issuers != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->issuers = NULL;
        return NGX_CONF_OK;
    }

    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    chain = ngx_pcalloc(cf->pool, sizeof(tsb_chain_t));
    cln = ngx_pool_cleanup_add(cf->pool, 0);

    if (chain == NULL || cln == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&err, sizeof(tsb_error_t));

    if (tsb_chain_load_file((char *) file.data, chain, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "tsb_issuer_chain: %s",
                           err.detail);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_tsb_chain_cleanup;
    cln->data = chain;

    tlcf->issuers = chain;

    return NGX_CONF_OK;
}


static void
ngx_http_tsb_regex_cleanup(void *data)
{
    tsb_policy_regex_free(data);
}


static void
ngx_http_tsb_chain_cleanup(void *data)
{
    tsb_chain_free(data);
}


/*
 * Issue 10, parts 4 and 5: the extensions a CSR may request beyond the
 * four judged by their own directives, the longest lifetime, the EC curves
 * and the RSA public exponents.  Names are resolved with OpenSSL's object
 * table at configuration time.
 */

char *
ngx_http_tsb_allow_extension(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    char         oid[TSB_OID_MAX], errbuf[NGX_MAX_CONF_ERRSTR];
    char       **e;
    size_t       len;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (tlcf->extensions == NGX_CONF_UNSET_PTR) {
        tlcf->extensions = ngx_array_create(cf->pool, 4, sizeof(char *));
        if (tlcf->extensions == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (tsb_policy_extension_check((char *) value[i].data, oid,
                                       sizeof(oid), errbuf, sizeof(errbuf))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid extension \"%V\": %s", &value[i],
                               errbuf);
            return NGX_CONF_ERROR;
        }

        e = ngx_array_push(tlcf->extensions);
        if (e == NULL) {
            return NGX_CONF_ERROR;
        }

        len = ngx_strlen(oid);

        *e = ngx_pnalloc(cf->pool, len + 1);
        if (*e == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(*e, oid, len + 1);
    }

    return NGX_CONF_OK;
}


/* nginx time syntax ("397d", "1y", "90d"), from one day to 100 years */

char *
ngx_http_tsb_max_validity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    time_t      t;
    ngx_str_t  *value;

    if (tlcf->max_validity != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    t = ngx_parse_time(&value[1], 1);

    if (t == (time_t) NGX_ERROR || t < 86400 || t > 36500L * 86400) {
        return "takes a time from 1d to 36500d, such as \"397d\"";
    }

    tlcf->max_validity = t;

    return NGX_CONF_OK;
}


char *
ngx_http_tsb_ec_curves(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, mask;

    if (tlcf->ec_curves != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mask = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcasecmp(value[i].data, (u_char *) "P-256") == 0) {
            mask |= TSB_CURVE_P256;

        } else if (ngx_strcasecmp(value[i].data, (u_char *) "P-384") == 0) {
            mask |= TSB_CURVE_P384;

        } else if (ngx_strcasecmp(value[i].data, (u_char *) "P-521") == 0) {
            mask |= TSB_CURVE_P521;

        } else if (ngx_strcmp(value[i].data, "none") == 0
                   && cf->args->nelts == 2)
        {
            /* no TSB_CURVE_* bit, but not 0 (which means all three) */
            mask = 0x100;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid curve \"%V\": use P-256, P-384, "
                               "P-521 or none", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    tlcf->ec_curves = mask;

    return NGX_CONF_OK;
}


/* odd, at least 3; 65537 is what every current key generator uses */

char *
ngx_http_tsb_rsa_exponents(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tsb_loc_conf_t *tlcf = conf;

    ngx_int_t       n;
    ngx_str_t      *value;
    ngx_uint_t      i;
    unsigned long  *e;

    if (tlcf->rsa_exponents != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    tlcf->rsa_exponents = ngx_array_create(cf->pool, cf->args->nelts,
                                           sizeof(unsigned long));
    if (tlcf->rsa_exponents == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        n = ngx_atoi(value[i].data, value[i].len);

        if (n == NGX_ERROR || n < 3 || n % 2 == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid RSA public exponent \"%V\": an odd "
                               "number of at least 3", &value[i]);
            return NGX_CONF_ERROR;
        }

        e = ngx_array_push(tlcf->rsa_exponents);
        if (e == NULL) {
            return NGX_CONF_ERROR;
        }

        *e = (unsigned long) n;
    }

    return NGX_CONF_OK;
}


/* the plain C view of the above, at merge time */

ngx_int_t
ngx_http_tsb_policy_limits(ngx_conf_t *cf, ngx_http_tsb_loc_conf_t *conf)
{
    const char    **list;
    ngx_uint_t      i;
    tsb_policy_t   *p;

    p = &conf->policy;

    p->max_validity = (long) conf->max_validity;
    p->allowed_ec_curves = (unsigned) conf->ec_curves;
    p->max_rsa_bits = (int) conf->max_rsa_bits;

    if (conf->rsa_exponents) {
        p->rsa_exponents = conf->rsa_exponents->elts;
        p->n_rsa_exponents = conf->rsa_exponents->nelts;
    }

    if (conf->extensions == NULL) {
        return NGX_OK;
    }

    list = ngx_pcalloc(cf->pool,
                       (conf->extensions->nelts + 1) * sizeof(char *));
    if (list == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < conf->extensions->nelts; i++) {
        list[i] = ((char **) conf->extensions->elts)[i];
    }

    p->allowed_extensions = list;

    return NGX_OK;
}
