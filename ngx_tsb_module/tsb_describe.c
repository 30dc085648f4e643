
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The effective policy of one location, as JSON for the people and pages
 * that ask what they may request (a GET on a tsb_sign location).  Written
 * from the same tsb_policy_t that tsb_policy_check() judges with, after the
 * glue expanded the name patterns for the client, so what is shown is what
 * is enforced.  No secret is in a policy: keyPassword is shown only as
 * whether a client may send one.
 */


#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "tsb_describe.h"


/* a writer that remembers its first failure, so callers check once */
typedef struct {
    yajl_gen  g;
    int       failed;
} tsb_desc_t;


static void
tsb_desc_str(tsb_desc_t *d, const char *s, size_t len)
{
    if (!d->failed
        && yajl_gen_string(d->g, (const unsigned char *) s, len)
           != yajl_gen_status_ok)
    {
        d->failed = 1;
    }
}


static void
tsb_desc_key(tsb_desc_t *d, const char *key)
{
    tsb_desc_str(d, key, strlen(key));
}


static void
tsb_desc_check(tsb_desc_t *d, yajl_gen_status s)
{
    if (s != yajl_gen_status_ok) {
        d->failed = 1;
    }
}


static void
tsb_desc_bool(tsb_desc_t *d, const char *key, int value)
{
    tsb_desc_key(d, key);
    if (!d->failed) {
        tsb_desc_check(d, yajl_gen_bool(d->g, value != 0));
    }
}


static void
tsb_desc_int(tsb_desc_t *d, const char *key, long value)
{
    tsb_desc_key(d, key);
    if (!d->failed) {
        tsb_desc_check(d, yajl_gen_integer(d->g, value));
    }
}


static void
tsb_desc_open(tsb_desc_t *d, int array)
{
    if (!d->failed) {
        tsb_desc_check(d, array ? yajl_gen_array_open(d->g)
                                : yajl_gen_map_open(d->g));
    }
}


static void
tsb_desc_close(tsb_desc_t *d, int array)
{
    if (!d->failed) {
        tsb_desc_check(d, array ? yajl_gen_array_close(d->g)
                                : yajl_gen_map_close(d->g));
    }
}


/* the names of the bits of mask, as an array, in the tables' order */
static void
tsb_desc_usages(tsb_desc_t *d, const char *key, unsigned mask,
    const char *(*name)(unsigned bit))
{
    unsigned     bit;
    const char  *n;

    tsb_desc_key(d, key);
    tsb_desc_open(d, 1);

    for (bit = 1; bit != 0 && bit <= mask; bit <<= 1) {
        if ((mask & bit) && (n = name(bit)) != NULL) {
            tsb_desc_key(d, n);
        }
    }

    tsb_desc_close(d, 1);
}


static const char *
tsb_desc_name_kind(const tsb_name_pattern_t *p)
{
    if (p->pattern[0] == '~') {
        return "regex";
    }

    if (p->pattern[0] == '*') {
        return "wildcard";
    }

    return "exact";
}


static void
tsb_desc_names(tsb_desc_t *d, const tsb_policy_t *policy)
{
    size_t                     i;
    const tsb_name_pattern_t  *p;

    tsb_desc_key(d, "names");
    tsb_desc_open(d, 1);

    for (i = 0; i < policy->n_names; i++) {
        p = &policy->names[i];

        /* a pattern whose variables had no value here matches nothing */
        if (p->len == 0) {
            continue;
        }

        tsb_desc_open(d, 0);
        tsb_desc_key(d, "pattern");
        tsb_desc_str(d, p->pattern, p->len);
        tsb_desc_key(d, "kind");
        tsb_desc_key(d, tsb_desc_name_kind(p));
        tsb_desc_close(d, 0);
    }

    tsb_desc_close(d, 1);
}


static void
tsb_desc_san_types(tsb_desc_t *d, unsigned mask)
{
    static const struct {
        int          type;
        const char  *name;
    } types[] = {
        { TSB_SAN_DNS, "DNS" },
        { TSB_SAN_IP, "IP" },
        { TSB_SAN_EMAIL, "EMAIL" },
        { TSB_SAN_URI, "URI" },
    };

    size_t  i;

    /* tsb_policy_t: 0 is DNS alone, 1 is no SAN at all */
    if (mask == 0) {
        mask = 1u << TSB_SAN_DNS;
    }

    tsb_desc_key(d, "sanTypes");
    tsb_desc_open(d, 1);

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (mask & (1u << types[i].type)) {
            tsb_desc_key(d, types[i].name);
        }
    }

    tsb_desc_close(d, 1);
}


/* "subject": [{"attribute", "values": [{"value", "kind"}]}] */
static void
tsb_desc_subject(tsb_desc_t *d, const tsb_policy_t *policy)
{
    size_t                      i, j;
    const tsb_subject_rule_t   *rule;
    const tsb_subject_value_t  *v;

    tsb_desc_key(d, "subject");
    tsb_desc_open(d, 1);

    for (i = 0; i < policy->n_subject_rules; i++) {
        rule = &policy->subject_rules[i];

        tsb_desc_open(d, 0);
        tsb_desc_key(d, "attribute");
        tsb_desc_key(d, rule->name ? rule->name : rule->oid);
        tsb_desc_key(d, "values");
        tsb_desc_open(d, 1);

        for (j = 0; j < rule->n_values; j++) {
            v = &rule->values[j];

            /* an exact value whose variables had no value matches nothing */
            if (v->len == 0) {
                continue;
            }

            tsb_desc_open(d, 0);
            tsb_desc_key(d, "value");
            tsb_desc_str(d, v->value, v->len);
            tsb_desc_key(d, "kind");
            tsb_desc_key(d, v->is_regex ? "regex" : "exact");
            tsb_desc_close(d, 0);
        }

        tsb_desc_close(d, 1);
        tsb_desc_close(d, 0);
    }

    tsb_desc_close(d, 1);
}


static void
tsb_desc_keys(tsb_desc_t *d, const tsb_policy_t *policy)
{
    static const char  *curves[] = { "P-256", "P-384", "P-521" };

    size_t  i;

    tsb_desc_key(d, "keys");
    tsb_desc_open(d, 0);

    tsb_desc_int(d, "rsaMinBits",
                 policy->min_rsa_bits > 0 ? policy->min_rsa_bits : 2048);

    tsb_desc_key(d, "ecCurves");
    tsb_desc_open(d, 1);
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
        tsb_desc_key(d, curves[i]);
    }
    tsb_desc_close(d, 1);

    tsb_desc_bool(d, "ed25519", policy->allow_ed25519);
    tsb_desc_close(d, 0);
}


static void
tsb_desc_algorithms(tsb_desc_t *d, const tsb_policy_t *policy)
{
    const char         *def;
    const char *const  *a;

    def = policy->signature_algorithm ? policy->signature_algorithm
                                      : "SHA256_WITH_RSA";

    tsb_desc_key(d, "signatureAlgorithm");
    tsb_desc_key(d, def);

    tsb_desc_key(d, "signatureAlgorithms");
    tsb_desc_open(d, 1);

    if (policy->allowed_signature_algorithms == NULL) {
        tsb_desc_key(d, def);

    } else {
        for (a = policy->allowed_signature_algorithms; *a; a++) {
            tsb_desc_key(d, *a);
        }
    }

    tsb_desc_close(d, 1);
}


int
tsb_policy_describe(const tsb_policy_t *policy, tsb_buf_t *out)
{
    int                   rc;
    size_t                len;
    tsb_desc_t            d;
    const unsigned char  *p;

    out->data = NULL;
    out->len = 0;

    d.failed = 0;
    d.g = yajl_gen_alloc(NULL);
    if (d.g == NULL) {
        return -1;
    }

    if (!yajl_gen_config(d.g, yajl_gen_validate_utf8, 1)) {
        yajl_gen_free(d.g);
        return -1;
    }

    tsb_desc_open(&d, 0);

    tsb_desc_key(&d, "signKeyName");
    if (policy->sign_key_name != NULL) {
        tsb_desc_key(&d, policy->sign_key_name);

    } else if (!d.failed) {
        tsb_desc_check(&d, yajl_gen_null(d.g));
    }

    tsb_desc_names(&d, policy);
    tsb_desc_san_types(&d, policy->allowed_san_types);
    tsb_desc_int(&d, "maxSans", TSB_POLICY_MAX_SANS);
    tsb_desc_subject(&d, policy);

    tsb_desc_key(&d, "keyUsage");
    tsb_desc_open(&d, 0);
    tsb_desc_usages(&d, "allowed", policy->allowed_key_usage,
                    tsb_key_usage_name);
    tsb_desc_usages(&d, "default", policy->default_key_usage,
                    tsb_key_usage_name);
    tsb_desc_close(&d, 0);

    tsb_desc_key(&d, "extendedKeyUsage");
    tsb_desc_open(&d, 0);
    tsb_desc_usages(&d, "allowed", policy->allowed_ext_key_usage,
                    tsb_ext_key_usage_name);
    tsb_desc_usages(&d, "default", policy->default_ext_key_usage,
                    tsb_ext_key_usage_name);
    tsb_desc_close(&d, 0);

    tsb_desc_key(&d, "certificateAuthority");
    tsb_desc_open(&d, 0);
    tsb_desc_bool(&d, "allowed", policy->allow_ca);
    if (policy->allow_ca && policy->max_path_len >= 0) {
        tsb_desc_int(&d, "maxPathLen", policy->max_path_len);
    }
    tsb_desc_close(&d, 0);

    tsb_desc_keys(&d, policy);
    tsb_desc_algorithms(&d, policy);
    tsb_desc_bool(&d, "keyPassword", policy->allow_key_password);

    tsb_desc_close(&d, 0);

    rc = -1;

    if (!d.failed
        && yajl_gen_get_buf(d.g, &p, &len) == yajl_gen_status_ok)
    {
        out->data = malloc(len + 1);
        if (out->data != NULL) {
            memcpy(out->data, p, len);
            out->data[len] = '\0';
            out->len = len;
            rc = 0;
        }
    }

    yajl_gen_free(d.g);

    return rc;
}
