
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * ACME codecs (tsb_acme.h).  Client payloads are read from tsb_jws.c's
 * strict JSON tree; everything written goes through yajl_gen.
 */


#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>

#include <yajl/yajl_gen.h>

#include "tsb_acme.h"


static const char  *tsb_acme_statuses[] = {
    "pending", "ready", "processing", "valid", "invalid", "deactivated",
    "revoked", "expired", NULL
};


const char *
tsb_acme_status_name(int status)
{
    if (status < 0 || status > TSB_ACME_EXPIRED) {
        return "invalid";
    }

    return tsb_acme_statuses[status];
}


int
tsb_acme_status_from_name(const char *name)
{
    int  i;

    for (i = 0; tsb_acme_statuses[i]; i++) {
        if (strcmp(tsb_acme_statuses[i], name) == 0) {
            return i;
        }
    }

    return -1;
}


void
tsb_acme_time(long long t, char *buf, size_t len)
{
    time_t     tt;
    struct tm  tm;

    tt = (time_t) t;

    if (gmtime_r(&tt, &tm) == NULL
        || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        if (len) {
            buf[0] = '\0';
        }
    }
}


static char *
tsb_acme_strdup(const char *s, size_t len)
{
    char  *p;

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


/* ------------------------------------------------------ identifiers */

/*
 * A DNS name as an ACME identifier: LDH labels of 1 to 63 characters, 253
 * in all, optionally "*." first; lower-cased in place, one trailing dot
 * dropped.  Returns the new length, or 0 when it is no such name.
 */
static size_t
tsb_acme_dns_name(char *s, size_t len)
{
    size_t  i, label;

    if (len && s[len - 1] == '.') {
        s[--len] = '\0';
    }

    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        i = 2;

    } else {
        i = 0;
    }

    if (len == i || len > 253) {
        return 0;
    }

    label = 0;

    for ( /* void */ ; i < len; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z') {
            s[i] = (char) (s[i] - 'A' + 'a');
        }

        if (s[i] == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return 0;
            }

            label = 0;
            continue;
        }

        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '-'))
        {
            return 0;
        }

        if (s[i] == '-' && label == 0) {
            return 0;
        }

        if (++label > 63) {
            return 0;
        }
    }

    if (label == 0 || s[len - 1] == '-') {
        return 0;
    }

    return len;
}


static int
tsb_acme_idents_parse(const tsb_jv_t *arr, tsb_acme_ident_t *ids,
    size_t *n, tsb_error_t *err)
{
    size_t           i, len;
    char            *v;
    const tsb_jv_t  *e, *type, *value;

    *n = 0;

    if (arr == NULL || arr->type != TSB_JV_ARRAY || arr->n == 0) {
        tsb_error_set(err, 400, "malformed",
                      "\"identifiers\" is a non-empty array");
        return -1;
    }

    if (arr->n > TSB_ACME_MAX_IDENTS) {
        tsb_error_set(err, 400, "rejectedIdentifier",
                      "an order has at most %d identifiers",
                      TSB_ACME_MAX_IDENTS);
        return -1;
    }

    for (e = arr->child; e; e = e->next) {
        type = tsb_jv_get(e, "type");
        value = tsb_jv_get(e, "value");

        if (type == NULL || value == NULL || type->type != TSB_JV_STRING
            || value->type != TSB_JV_STRING)
        {
            tsb_error_set(err, 400, "malformed",
                          "an identifier is {\"type\": ..., \"value\": ...}");
            return -1;
        }

        if (strcmp(type->str, "dns") != 0) {
            tsb_error_set(err, 400, "unsupportedIdentifier",
                          "this server issues for \"dns\" identifiers "
                          "only");
            return -1;
        }

        v = tsb_acme_strdup(value->str, value->len);
        if (v == NULL) {
            tsb_error_set(err, 500, "serverInternal", "out of memory");
            return -1;
        }

        len = tsb_acme_dns_name(v, value->len);

        if (len == 0) {
            free(v);
            tsb_error_set(err, 400, "rejectedIdentifier",
                          "identifier %zu is not a DNS name", *n + 1);
            return -1;
        }

        /* the same name twice is the same request */
        for (i = 0; i < *n; i++) {
            if (ids[i].len == len && memcmp(ids[i].value, v, len) == 0) {
                break;
            }
        }

        if (i < *n) {
            free(v);
            continue;
        }

        ids[*n].value = v;
        ids[*n].len = len;
        (*n)++;
    }

    return 0;
}


static void
tsb_acme_idents_free(tsb_acme_ident_t *ids, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(ids[i].value);
        ids[i].value = NULL;
    }
}


/* ------------------------------------------------ client payloads */

static int
tsb_acme_contacts_parse(const tsb_jv_t *arr, char **contact, size_t *n,
    tsb_error_t *err)
{
    size_t           i;
    const tsb_jv_t  *e;

    if (arr->type != TSB_JV_ARRAY) {
        tsb_error_set(err, 400, "malformed", "\"contact\" is an array");
        return -1;
    }

    if (arr->n > TSB_ACME_MAX_CONTACTS) {
        tsb_error_set(err, 400, "invalidContact",
                      "at most %d contact addresses",
                      TSB_ACME_MAX_CONTACTS);
        return -1;
    }

    for (e = arr->child; e; e = e->next) {
        if (e->type != TSB_JV_STRING) {
            tsb_error_set(err, 400, "malformed",
                          "\"contact\" holds strings");
            return -1;
        }

        if (e->len <= 7 || e->len > TSB_ACME_MAX_CONTACT
            || strncmp(e->str, "mailto:", 7) != 0)
        {
            tsb_error_set(err, 400, "unsupportedContact",
                          "a contact is a mailto: URL of at most %d "
                          "characters", TSB_ACME_MAX_CONTACT);
            return -1;
        }

        /* printable ASCII, one address, no header fields (hfields) */
        for (i = 7; i < e->len; i++) {
            if (e->str[i] <= 0x20 || e->str[i] >= 0x7f || e->str[i] == ','
                || e->str[i] == '?')
            {
                tsb_error_set(err, 400, "invalidContact",
                              "a contact is one mailto: address without "
                              "blanks, commas or header fields");
                return -1;
            }
        }

        if (strchr(e->str + 7, '@') == NULL) {
            tsb_error_set(err, 400, "invalidContact",
                          "a contact address has no '@'");
            return -1;
        }

        contact[*n] = tsb_acme_strdup(e->str, e->len);
        if (contact[*n] == NULL) {
            tsb_error_set(err, 500, "serverInternal", "out of memory");
            return -1;
        }

        (*n)++;
    }

    return 0;
}


static int
tsb_acme_bool(const tsb_jv_t *v, const char *name, int *out,
    tsb_error_t *err)
{
    if (v == NULL) {
        return 0;
    }

    if (v->type != TSB_JV_BOOL) {
        tsb_error_set(err, 400, "malformed", "\"%s\" is a boolean", name);
        return -1;
    }

    *out = v->boolean;

    return 0;
}


int
tsb_acme_account_req_parse(const unsigned char *buf, size_t len, int kind,
    tsb_acme_account_req_t *req, tsb_error_t *err)
{
    tsb_jv_t        *v;
    const tsb_jv_t  *m;

    memset(req, 0, sizeof(tsb_acme_account_req_t));
    req->tos_agreed = -1;

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    m = tsb_jv_get(v, "contact");

    if (m) {
        req->contact_present = 1;

        if (tsb_acme_contacts_parse(m, req->contact, &req->n_contact, err)
            != 0)
        {
            goto failed;
        }
    }

    if (kind == TSB_ACME_UPDATE) {
        m = tsb_jv_get(v, "status");

        if (m) {
            if (m->type != TSB_JV_STRING
                || strcmp(m->str, "deactivated") != 0)
            {
                tsb_error_set(err, 400, "malformed",
                              "an account's \"status\" can only be set to "
                              "\"deactivated\"");
                goto failed;
            }

            req->deactivate = 1;
        }

        tsb_jv_free(v);
        return 0;
    }

    if (tsb_acme_bool(tsb_jv_get(v, "termsOfServiceAgreed"),
                      "termsOfServiceAgreed", &req->tos_agreed, err) != 0
        || tsb_acme_bool(tsb_jv_get(v, "onlyReturnExisting"),
                         "onlyReturnExisting", &req->only_existing, err)
           != 0)
    {
        goto failed;
    }

    m = tsb_jv_get(v, "externalAccountBinding");

    if (m) {
        if (tsb_jws_from_jv(m, TSB_JWS_EAB, &req->eab, err) != 0) {
            goto failed;
        }

        req->has_eab = 1;
    }

    tsb_jv_free(v);

    return 0;

failed:

    tsb_jv_free(v);
    tsb_acme_account_req_free(req);

    return -1;
}


void
tsb_acme_account_req_free(tsb_acme_account_req_t *req)
{
    size_t  i;

    for (i = 0; i < req->n_contact; i++) {
        free(req->contact[i]);
    }

    if (req->has_eab) {
        tsb_jws_free(&req->eab);
    }

    memset(req, 0, sizeof(tsb_acme_account_req_t));
}


int
tsb_acme_order_req_parse(const unsigned char *buf, size_t len,
    tsb_acme_order_req_t *req, tsb_error_t *err)
{
    tsb_jv_t  *v;

    memset(req, 0, sizeof(tsb_acme_order_req_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    if (tsb_jv_get(v, "notBefore") || tsb_jv_get(v, "notAfter")) {
        tsb_jv_free(v);
        tsb_error_set(err, 400, "malformed",
                      "the validity is the CA's: leave out notBefore and "
                      "notAfter");
        return -1;
    }

    if (tsb_acme_idents_parse(tsb_jv_get(v, "identifiers"), req->idents,
                              &req->n, err)
        != 0)
    {
        tsb_jv_free(v);
        tsb_acme_order_req_free(req);
        return -1;
    }

    tsb_jv_free(v);

    return 0;
}


void
tsb_acme_order_req_free(tsb_acme_order_req_t *req)
{
    tsb_acme_idents_free(req->idents, req->n);
    req->n = 0;
}


int
tsb_acme_finalize_parse(const unsigned char *buf, size_t len, tsb_buf_t *der,
    tsb_error_t *err)
{
    tsb_jv_t        *v;
    const tsb_jv_t  *csr;

    der->data = NULL;
    der->len = 0;

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    csr = tsb_jv_get(v, "csr");

    if (csr == NULL || csr->type != TSB_JV_STRING
        || tsb_b64url_decode(csr->str, csr->len, der) != 0
        || der->len == 0)
    {
        tsb_jv_free(v);
        tsb_buf_free(der);
        tsb_error_set(err, 400, "badCSR",
                      "\"csr\" is the CSR's DER in base64url");
        return -1;
    }

    tsb_jv_free(v);

    return 0;
}


int
tsb_acme_key_change_parse(const unsigned char *buf, size_t len,
    char **account, tsb_jwk_t *old_key, tsb_error_t *err)
{
    tsb_jv_t        *v;
    const tsb_jv_t  *acct, *old;

    *account = NULL;
    memset(old_key, 0, sizeof(tsb_jwk_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    acct = tsb_jv_get(v, "account");
    old = tsb_jv_get(v, "oldKey");

    if (acct == NULL || acct->type != TSB_JV_STRING || old == NULL) {
        tsb_jv_free(v);
        tsb_error_set(err, 400, "malformed",
                      "a key change names \"account\" and \"oldKey\"");
        return -1;
    }

    if (tsb_jwk_from_jv(old, old_key, err) != 0) {
        tsb_jv_free(v);
        return -1;
    }

    *account = tsb_acme_strdup(acct->str, acct->len);
    tsb_jv_free(v);

    if (*account == NULL) {
        tsb_jwk_free(old_key);
        tsb_error_set(err, 500, "serverInternal", "out of memory");
        return -1;
    }

    return 0;
}


/* the CSR's names against the order's (both DNS, compared lower-case) */

static int
tsb_acme_ident_index(const tsb_acme_ident_t *ids, size_t n, const char *name)
{
    size_t  i, len;

    len = strlen(name);

    if (len && name[len - 1] == '.') {
        len--;
    }

    for (i = 0; i < n; i++) {
        if (ids[i].len == len && strncasecmp(ids[i].value, name, len) == 0) {
            return (int) i;
        }
    }

    return -1;
}


int
tsb_acme_csr_matches(const tsb_csr_t *csr, const tsb_acme_ident_t *ids,
    size_t n, tsb_error_t *err)
{
    int       i;
    size_t    k;
    unsigned  char  seen[TSB_ACME_MAX_IDENTS];

    memset(seen, 0, sizeof(seen));

    if (csr->n_common_names > 1) {
        tsb_error_set(err, 400, "badCSR", "the CSR has more than one "
                      "commonName");
        return -1;
    }

    if (csr->n_common_names == 1
        && (csr->cn_has_nul
            || tsb_acme_ident_index(ids, n, csr->common_names[0]) < 0))
    {
        tsb_error_set(err, 400, "badCSR",
                      "the CSR's commonName is not one of the order's "
                      "identifiers");
        return -1;
    }

    for (k = 0; k < csr->n_sans; k++) {
        if (csr->sans[k].type != TSB_SAN_DNS) {
            tsb_error_set(err, 400, "badCSR",
                          "the CSR has a subjectAltName that is not a DNS "
                          "name; the order has DNS identifiers only");
            return -1;
        }

        i = tsb_acme_ident_index(ids, n, csr->sans[k].value);

        if (i < 0) {
            tsb_error_set(err, 400, "badCSR",
                          "the CSR names \"%.100s\", which is not one of "
                          "the order's identifiers", csr->sans[k].value);
            return -1;
        }

        seen[i] = 1;
    }

    for (k = 0; k < n; k++) {
        if (!seen[k]) {
            tsb_error_set(err, 400, "badCSR",
                          "the CSR has no subjectAltName for the order's "
                          "identifier \"%.100s\"", ids[k].value);
            return -1;
        }
    }

    return 0;
}


/* ---------------------------------------------------------- writing */

#define tsb_gen_ok(x)  ((x) == yajl_gen_status_ok)


static yajl_gen
tsb_acme_gen(void)
{
    yajl_gen  g;

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NULL;
    }

    if (!yajl_gen_config(g, yajl_gen_validate_utf8, 1)
        || !yajl_gen_config(g, yajl_gen_beautify, 0))
    {
        yajl_gen_free(g);
        return NULL;
    }

    return g;
}


static int
tsb_acme_str(yajl_gen g, const char *s)
{
    return tsb_gen_ok(yajl_gen_string(g, (const unsigned char *) s,
                                      strlen(s)))
           ? 0 : -1;
}


static int
tsb_acme_kv(yajl_gen g, const char *k, const char *v)
{
    return (tsb_acme_str(g, k) == 0 && tsb_acme_str(g, v) == 0) ? 0 : -1;
}


/* "<base><a><b>" as a string value */
static int
tsb_acme_url(yajl_gen g, const char *base, const char *a, const char *b)
{
    int     rc;
    char   *p;
    size_t  n;

    n = strlen(base) + strlen(a) + (b ? strlen(b) : 0) + 1;
    p = malloc(n);
    if (p == NULL) {
        return -1;
    }

    snprintf(p, n, "%s%s%s", base, a, b ? b : "");
    rc = tsb_acme_str(g, p);
    free(p);

    return rc;
}


static int
tsb_acme_time_kv(yajl_gen g, const char *k, long long t)
{
    char  buf[32];

    tsb_acme_time(t, buf, sizeof(buf));

    return tsb_acme_kv(g, k, buf);
}


static int
tsb_acme_finish(yajl_gen g, int rc, tsb_buf_t *out)
{
    size_t                len;
    const unsigned char  *p;

    out->data = NULL;
    out->len = 0;

    if (rc == 0 && tsb_gen_ok(yajl_gen_get_buf(g, &p, &len))) {
        out->data = malloc(len + 1);

        if (out->data) {
            memcpy(out->data, p, len);
            out->data[len] = '\0';
            out->len = len;
        }
    }

    yajl_gen_free(g);

    return out->data ? 0 : -1;
}


int
tsb_acme_directory_build(const char *base, const char *tos,
    int eab_required, tsb_buf_t *out)
{
    int       rc;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_str(g, "newNonce") == 0
          && tsb_acme_url(g, base, "new-nonce", NULL) == 0
          && tsb_acme_str(g, "newAccount") == 0
          && tsb_acme_url(g, base, "new-account", NULL) == 0
          && tsb_acme_str(g, "newOrder") == 0
          && tsb_acme_url(g, base, "new-order", NULL) == 0
          && tsb_acme_str(g, "revokeCert") == 0
          && tsb_acme_url(g, base, "revoke-cert", NULL) == 0
          && tsb_acme_str(g, "keyChange") == 0
          && tsb_acme_url(g, base, "key-change", NULL) == 0
          && tsb_acme_str(g, "meta") == 0
          && tsb_gen_ok(yajl_gen_map_open(g))
          && (tos == NULL || tsb_acme_kv(g, "termsOfService", tos) == 0)
          && tsb_acme_str(g, "externalAccountRequired") == 0
          && tsb_gen_ok(yajl_gen_bool(g, eab_required))
          && tsb_gen_ok(yajl_gen_map_close(g))
          && tsb_gen_ok(yajl_gen_map_close(g)))
         ? 0 : -1;

    return tsb_acme_finish(g, rc, out);
}


/* an account's orders list (RFC 8555 section 7.1.2.1): order URLs */
int
tsb_acme_orders_build(const char *base, char *const *ids, size_t n,
    tsb_buf_t *out)
{
    int       rc;
    size_t    i;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_str(g, "orders") == 0
          && tsb_gen_ok(yajl_gen_array_open(g)))
         ? 0 : -1;

    for (i = 0; rc == 0 && i < n; i++) {
        rc = tsb_acme_url(g, base, "order/", ids[i]);
    }

    if (rc == 0) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && tsb_gen_ok(yajl_gen_map_close(g)))
             ? 0 : -1;
    }

    return tsb_acme_finish(g, rc, out);
}


int
tsb_acme_account_build(const tsb_acme_account_t *a, const char *base,
    const char *id, tsb_buf_t *out)
{
    int       rc;
    size_t    i;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_kv(g, "status", tsb_acme_status_name(a->status)) == 0
          && tsb_acme_str(g, "contact") == 0
          && tsb_gen_ok(yajl_gen_array_open(g)))
         ? 0 : -1;

    for (i = 0; rc == 0 && i < a->n_contact; i++) {
        rc = tsb_acme_str(g, a->contact[i]);
    }

    if (rc == 0) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && tsb_acme_str(g, "orders") == 0
              && tsb_acme_url(g, base, "orders/", id) == 0
              && tsb_gen_ok(yajl_gen_map_close(g)))
             ? 0 : -1;
    }

    return tsb_acme_finish(g, rc, out);
}


static int
tsb_acme_ident_gen(yajl_gen g, const tsb_acme_ident_t *id, int strip)
{
    const char  *v;

    v = id->value;

    /* an authorization names the base domain of a wildcard (7.1.4) */
    if (strip && id->len > 2 && v[0] == '*' && v[1] == '.') {
        v += 2;
    }

    return (tsb_gen_ok(yajl_gen_map_open(g))
            && tsb_acme_kv(g, "type", "dns") == 0
            && tsb_acme_kv(g, "value", v) == 0
            && tsb_gen_ok(yajl_gen_map_close(g)))
           ? 0 : -1;
}


/*
 * The identifier a problem is about is named in the detail only: certbot
 * 2.1's acme library fails on a problem document with an "identifier"
 * ("can't set attribute"), and hides the detail with it.
 */
static int
tsb_acme_problem_gen(yajl_gen g, const char *type, const char *detail,
    int status, const tsb_acme_ident_t *ident)
{
    (void) ident;

    size_t  n;
    char    buf[128];

    n = (size_t) snprintf(buf, sizeof(buf), "%s%s", TSB_ACME_ERROR_PREFIX,
                          type);
    if (n >= sizeof(buf)) {
        return -1;
    }

    return (tsb_gen_ok(yajl_gen_map_open(g))
            && tsb_acme_kv(g, "type", buf) == 0
            && tsb_acme_kv(g, "detail", detail ? detail : "") == 0
            && (status == 0
                || (tsb_acme_str(g, "status") == 0
                    && tsb_gen_ok(yajl_gen_integer(g, status))))
            && tsb_gen_ok(yajl_gen_map_close(g)))
           ? 0 : -1;
}


int
tsb_acme_problem_build(const char *type, const char *detail, int status,
    const tsb_acme_ident_t *ident, tsb_buf_t *out)
{
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    /* a detail that is not UTF-8 would fail the whole document */
    if (tsb_acme_problem_gen(g, type, detail, status, ident) != 0) {
        yajl_gen_free(g);

        g = tsb_acme_gen();
        if (g == NULL) {
            return -1;
        }

        return tsb_acme_finish(g, tsb_acme_problem_gen(g, type,
                                   "(no readable detail)", status, NULL),
                               out);
    }

    return tsb_acme_finish(g, 0, out);
}


/* a URL of three parts as a string value */
static int
tsb_acme_url3(yajl_gen g, const char *base, const char *a, const char *b,
    const char *c)
{
    int     rc;
    char   *p;
    size_t  n;

    n = strlen(base) + strlen(a) + strlen(b) + strlen(c) + 1;
    p = malloc(n);
    if (p == NULL) {
        return -1;
    }

    snprintf(p, n, "%s%s%s%s", base, a, b, c);
    rc = tsb_acme_str(g, p);
    free(p);

    return rc;
}


int
tsb_acme_order_build(const tsb_acme_order_t *o, const char *base,
    const char *id, tsb_buf_t *out)
{
    int       rc;
    char      n[32];
    size_t    i;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_kv(g, "status", tsb_acme_status_name(o->status)) == 0
          && tsb_acme_time_kv(g, "expires", o->expires) == 0
          && tsb_acme_str(g, "identifiers") == 0
          && tsb_gen_ok(yajl_gen_array_open(g)))
         ? 0 : -1;

    for (i = 0; rc == 0 && i < o->n; i++) {
        rc = tsb_acme_ident_gen(g, &o->idents[i], 0);
    }

    if (rc == 0) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && tsb_acme_str(g, "authorizations") == 0
              && tsb_gen_ok(yajl_gen_array_open(g)))
             ? 0 : -1;
    }

    for (i = 0; rc == 0 && i < o->n; i++) {
        snprintf(n, sizeof(n), "-%zu", i);
        rc = tsb_acme_url3(g, base, "authz/", id, n);
    }

    if (rc == 0) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && tsb_acme_str(g, "finalize") == 0
              && tsb_acme_url(g, base, "finalize/", id) == 0)
             ? 0 : -1;
    }

    if (rc == 0 && o->status == TSB_ACME_VALID) {
        rc = (tsb_acme_str(g, "certificate") == 0
              && tsb_acme_url(g, base, "cert/", id) == 0)
             ? 0 : -1;
    }

    if (rc == 0 && o->status == TSB_ACME_INVALID && o->error_type) {
        rc = (tsb_acme_str(g, "error") == 0
              && tsb_acme_problem_gen(g, o->error_type, o->error_detail, 0,
                                      NULL) == 0)
             ? 0 : -1;
    }

    if (rc == 0) {
        rc = tsb_gen_ok(yajl_gen_map_close(g)) ? 0 : -1;
    }

    return tsb_acme_finish(g, rc, out);
}


int
tsb_acme_challenge_token(const tsb_acme_order_t *o, size_t k,
    const char *id, char *out, size_t size)
{
    char       n[TSB_ACME_TOKEN_MAX];
    tsb_buf_t  tok;

    if (o->token) {
        /* random: what the client serves cannot be guessed by another */
        if ((size_t) snprintf(out, size, "%s-%zu", o->token, k) >= size) {
            return -1;
        }

        return 0;
    }

    snprintf(n, sizeof(n), "%s-%zu", id, k);

    if (tsb_b64url_encode((const unsigned char *) n, strlen(n), &tok) != 0) {
        return -1;
    }

    if (tok.len >= size) {
        tsb_buf_free(&tok);
        return -1;
    }

    memcpy(out, tok.data, tok.len + 1);
    tsb_buf_free(&tok);

    return 0;
}


int
tsb_acme_http01_check(const unsigned char *body, size_t len,
    const char *token, const char *thumbprint, tsb_error_t *err)
{
    size_t  tl, hl;

    while (len && (body[len - 1] == ' ' || body[len - 1] == '\t'
                   || body[len - 1] == '\r' || body[len - 1] == '\n'))
    {
        len--;
    }

    tl = strlen(token);
    hl = strlen(thumbprint);

    if (len == tl + 1 + hl
        && memcmp(body, token, tl) == 0
        && body[tl] == '.'
        && memcmp(body + tl + 1, thumbprint, hl) == 0)
    {
        return 0;
    }

    tsb_error_set(err, 403, "incorrectResponse",
                  len == 0 ? "the http-01 answer is empty; it must be the "
                             "key authorization (token.thumbprint)"
                           : "the http-01 answer is not the key "
                             "authorization (token.thumbprint) of this "
                             "challenge and account");
    return -1;
}


/*
 * The authorization's one challenge.  Without http-01 validation its
 * identifier was authorised by the location's policy, so the challenge
 * is valid from the start: a client sees nothing to do (RFC 8555 section
 * 7.1.4 lets a server hold authorizations that are valid before any
 * challenge was answered).  With it, the challenge is pending until the
 * client answers it, then valid or invalid with the order's error.
 */
static int
tsb_acme_challenge_gen(yajl_gen g, const tsb_acme_order_t *o, size_t k,
    const char *base, const char *id)
{
    char         n[32], tok[TSB_ACME_TOKEN_MAX];
    const char  *status;

    snprintf(n, sizeof(n), "%s-%zu", id, k);

    if (tsb_acme_challenge_token(o, k, id, tok, sizeof(tok)) != 0) {
        return -1;
    }

    if (o->has_authz) {
        status = tsb_acme_status_name(o->authz[k]);

    } else {
        status = o->status == TSB_ACME_INVALID && o->request == NULL
                 ? "invalid" : "valid";
    }

    return (tsb_gen_ok(yajl_gen_map_open(g))
            && tsb_acme_kv(g, "type", "http-01") == 0
            && tsb_acme_str(g, "url") == 0
            && tsb_acme_url(g, base, "chall/", n) == 0
            && tsb_acme_kv(g, "status", status) == 0
            && tsb_acme_kv(g, "token", tok) == 0
            && (!o->has_authz || o->authz[k] != TSB_ACME_INVALID
                || o->error_type == NULL
                || (tsb_acme_str(g, "error") == 0
                    && tsb_acme_problem_gen(g, o->error_type,
                                            o->error_detail, 0, NULL) == 0))
            && tsb_gen_ok(yajl_gen_map_close(g)))
           ? 0 : -1;
}


int
tsb_acme_authz_build(const tsb_acme_order_t *o, size_t k, const char *base,
    const char *id, tsb_buf_t *out)
{
    int          rc;
    yajl_gen     g;
    const char  *v;

    if (k >= o->n) {
        return -1;
    }

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    v = o->idents[k].value;

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_kv(g, "status", o->has_authz
                                      ? tsb_acme_status_name(o->authz[k])
                                      : "valid") == 0
          && tsb_acme_time_kv(g, "expires", o->expires) == 0
          && tsb_acme_str(g, "identifier") == 0
          && tsb_acme_ident_gen(g, &o->idents[k], 1) == 0
          && tsb_acme_str(g, "challenges") == 0
          && tsb_gen_ok(yajl_gen_array_open(g))
          && tsb_acme_challenge_gen(g, o, k, base, id) == 0
          && tsb_gen_ok(yajl_gen_array_close(g))
          && (v[0] != '*'
              || (tsb_acme_str(g, "wildcard") == 0
                  && tsb_gen_ok(yajl_gen_bool(g, 1))))
          && tsb_gen_ok(yajl_gen_map_close(g)))
         ? 0 : -1;

    return tsb_acme_finish(g, rc, out);
}


int
tsb_acme_challenge_build(const tsb_acme_order_t *o, size_t k,
    const char *base, const char *id, tsb_buf_t *out)
{
    yajl_gen  g;

    if (k >= o->n) {
        return -1;
    }

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    return tsb_acme_finish(g, tsb_acme_challenge_gen(g, o, k, base, id),
                           out);
}


/* ---------------------------------------------------------- records */

static int
tsb_acme_strings_gen(yajl_gen g, const char *k, char *const *a, size_t n)
{
    size_t  i;

    if (tsb_acme_str(g, k) != 0 || !tsb_gen_ok(yajl_gen_array_open(g))) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (tsb_acme_str(g, a[i]) != 0) {
            return -1;
        }
    }

    return tsb_gen_ok(yajl_gen_array_close(g)) ? 0 : -1;
}


int
tsb_acme_account_encode(const tsb_acme_account_t *a, tsb_buf_t *out)
{
    int       rc;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_kv(g, "key", a->key) == 0
          && tsb_acme_kv(g, "status", tsb_acme_status_name(a->status)) == 0
          && tsb_acme_strings_gen(g, "contact", a->contact, a->n_contact)
             == 0
          && (a->binding == NULL
              || tsb_acme_kv(g, "binding", a->binding) == 0)
          && tsb_acme_str(g, "created") == 0
          && tsb_gen_ok(yajl_gen_integer(g, a->created))
          && tsb_gen_ok(yajl_gen_map_close(g)))
         ? 0 : -1;

    return tsb_acme_finish(g, rc, out);
}


static int
tsb_acme_rec_str(const tsb_jv_t *v, const char *k, int need, char **out)
{
    const tsb_jv_t  *m;

    *out = NULL;
    m = tsb_jv_get(v, k);

    if (m == NULL) {
        return need ? -1 : 0;
    }

    if (m->type != TSB_JV_STRING) {
        return -1;
    }

    *out = tsb_acme_strdup(m->str, m->len);

    return *out ? 0 : -1;
}


static int
tsb_acme_rec_int(const tsb_jv_t *v, const char *k, long long *out)
{
    char            *end;
    const tsb_jv_t  *m;

    m = tsb_jv_get(v, k);

    if (m == NULL || m->type != TSB_JV_NUMBER) {
        return -1;
    }

    *out = strtoll(m->str, &end, 10);

    return *end == '\0' ? 0 : -1;
}


static int
tsb_acme_rec_status(const tsb_jv_t *v, int *out)
{
    const tsb_jv_t  *m;

    m = tsb_jv_get(v, "status");

    if (m == NULL || m->type != TSB_JV_STRING) {
        return -1;
    }

    *out = tsb_acme_status_from_name(m->str);

    return *out < 0 ? -1 : 0;
}


int
tsb_acme_account_decode(const unsigned char *buf, size_t len,
    tsb_acme_account_t *a, tsb_error_t *err)
{
    tsb_jv_t        *v;
    const tsb_jv_t  *m;

    memset(a, 0, sizeof(tsb_acme_account_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    m = tsb_jv_get(v, "contact");

    if (tsb_acme_rec_str(v, "key", 1, &a->key) != 0
        || tsb_acme_rec_str(v, "binding", 0, &a->binding) != 0
        || tsb_acme_rec_status(v, &a->status) != 0
        || tsb_acme_rec_int(v, "created", &a->created) != 0
        || m == NULL
        || tsb_acme_contacts_parse(m, a->contact, &a->n_contact, err) != 0)
    {
        tsb_jv_free(v);
        tsb_acme_account_free(a);
        tsb_error_set(err, 500, "serverInternal",
                      "a stored account record is damaged");
        return -1;
    }

    tsb_jv_free(v);

    return 0;
}


void
tsb_acme_account_free(tsb_acme_account_t *a)
{
    size_t  i;

    for (i = 0; i < a->n_contact; i++) {
        free(a->contact[i]);
    }

    free(a->key);
    free(a->binding);

    memset(a, 0, sizeof(tsb_acme_account_t));
}


int
tsb_acme_order_encode(const tsb_acme_order_t *o, tsb_buf_t *out)
{
    int       rc;
    size_t    i;
    yajl_gen  g;

    g = tsb_acme_gen();
    if (g == NULL) {
        return -1;
    }

    rc = (tsb_gen_ok(yajl_gen_map_open(g))
          && tsb_acme_kv(g, "account", o->account) == 0
          && tsb_acme_kv(g, "status", tsb_acme_status_name(o->status)) == 0
          && tsb_acme_str(g, "expires") == 0
          && tsb_gen_ok(yajl_gen_integer(g, o->expires))
          && tsb_acme_str(g, "identifiers") == 0
          && tsb_gen_ok(yajl_gen_array_open(g)))
         ? 0 : -1;

    for (i = 0; rc == 0 && i < o->n; i++) {
        rc = tsb_acme_ident_gen(g, &o->idents[i], 0);
    }

    if (rc == 0 && o->has_authz) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && tsb_acme_str(g, "authz") == 0
              && tsb_gen_ok(yajl_gen_array_open(g)))
             ? 0 : -1;

        for (i = 0; rc == 0 && i < o->n; i++) {
            rc = tsb_acme_str(g, tsb_acme_status_name(o->authz[i]));
        }
    }

    if (rc == 0) {
        rc = (tsb_gen_ok(yajl_gen_array_close(g))
              && (o->token == NULL
                  || tsb_acme_kv(g, "token", o->token) == 0)
              && (o->request == NULL
                  || tsb_acme_kv(g, "request", o->request) == 0)
              && (o->error_type == NULL
                  || (tsb_acme_kv(g, "errorType", o->error_type) == 0
                      && tsb_acme_kv(g, "errorDetail",
                                     o->error_detail ? o->error_detail : "")
                         == 0))
              && tsb_gen_ok(yajl_gen_map_close(g)))
             ? 0 : -1;
    }

    return tsb_acme_finish(g, rc, out);
}


/* "authz": one status a identifier, optional */
static int
tsb_acme_rec_authz(const tsb_jv_t *arr, tsb_acme_order_t *o)
{
    size_t           i;
    const tsb_jv_t  *e;

    if (arr == NULL) {
        return 0;
    }

    if (arr->type != TSB_JV_ARRAY || arr->n != o->n) {
        return -1;
    }

    for (i = 0, e = arr->child; e; i++, e = e->next) {
        if (e->type != TSB_JV_STRING) {
            return -1;
        }

        o->authz[i] = tsb_acme_status_from_name(e->str);

        if (o->authz[i] != TSB_ACME_PENDING && o->authz[i] != TSB_ACME_VALID
            && o->authz[i] != TSB_ACME_INVALID)
        {
            return -1;
        }
    }

    o->has_authz = 1;

    return 0;
}


int
tsb_acme_order_decode(const unsigned char *buf, size_t len,
    tsb_acme_order_t *o, tsb_error_t *err)
{
    tsb_jv_t  *v;

    memset(o, 0, sizeof(tsb_acme_order_t));

    if (tsb_jv_parse(buf, len, &v, err) != 0) {
        return -1;
    }

    if (tsb_acme_rec_str(v, "account", 1, &o->account) != 0
        || tsb_acme_rec_status(v, &o->status) != 0
        || tsb_acme_rec_int(v, "expires", &o->expires) != 0
        || tsb_acme_rec_str(v, "request", 0, &o->request) != 0
        || tsb_acme_rec_str(v, "errorType", 0, &o->error_type) != 0
        || tsb_acme_rec_str(v, "errorDetail", 0, &o->error_detail) != 0
        || tsb_acme_rec_str(v, "token", 0, &o->token) != 0
        || tsb_acme_idents_parse(tsb_jv_get(v, "identifiers"), o->idents,
                                 &o->n, err) != 0
        || tsb_acme_rec_authz(tsb_jv_get(v, "authz"), o) != 0)
    {
        tsb_jv_free(v);
        tsb_acme_order_free(o);
        tsb_error_set(err, 500, "serverInternal",
                      "a stored order record is damaged");
        return -1;
    }

    tsb_jv_free(v);

    return 0;
}


void
tsb_acme_order_free(tsb_acme_order_t *o)
{
    tsb_acme_idents_free(o->idents, o->n);
    free(o->account);
    free(o->request);
    free(o->error_type);
    free(o->error_detail);
    free(o->token);

    memset(o, 0, sizeof(tsb_acme_order_t));
}


int
tsb_acme_order_set_error(tsb_acme_order_t *o, const char *type,
    const char *detail)
{
    free(o->error_type);
    free(o->error_detail);

    o->error_type = tsb_acme_strdup(type, strlen(type));
    o->error_detail = tsb_acme_strdup(detail, strlen(detail));

    return (o->error_type && o->error_detail) ? 0 : -1;
}
