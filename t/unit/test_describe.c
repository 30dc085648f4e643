
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The effective policy as JSON (tsb_describe.c): parsed back with yajl's
 * tree parser and compared field by field with the policy it came from.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "tsb_describe.h"
#include "tap.h"


static yajl_val
describe(const tsb_policy_t *policy)
{
    char       errbuf[128];
    tsb_buf_t  out;
    yajl_val   v;

    if (tsb_policy_describe(policy, &out) != 0) {
        return NULL;
    }

    v = yajl_tree_parse((const char *) out.data, errbuf, sizeof(errbuf));
    tsb_buf_free(&out);

    return v;
}


static const char *
str_at(yajl_val v, const char **path)
{
    yajl_val  s;

    s = yajl_tree_get(v, path, yajl_t_string);

    return s ? YAJL_GET_STRING(s) : NULL;
}


/* the array at path as "A,B,C" (strings only), in a static buffer */
static const char *
list_at(yajl_val v, const char **path)
{
    static char  buf[512];
    size_t       i, n;
    yajl_val     a, e;

    a = yajl_tree_get(v, path, yajl_t_array);
    if (a == NULL) {
        return NULL;
    }

    buf[0] = '\0';
    n = 0;

    for (i = 0; i < YAJL_GET_ARRAY(a)->len; i++) {
        e = YAJL_GET_ARRAY(a)->values[i];
        if (!YAJL_IS_STRING(e)) {
            return NULL;
        }
        n += snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "",
                      YAJL_GET_STRING(e));
    }

    return buf;
}


int
main(void)
{
    yajl_val             v, names, e, t;
    tsb_policy_t         p;
    tsb_name_pattern_t   pats[3];
    const char          *algs[] = { "SHA256_WITH_ECDSA",
                                    "SHA384_WITH_ECDSA", NULL };
    const char          *k_key[] = { "signKeyName", NULL };
    const char          *k_names[] = { "names", NULL };
    const char          *k_san[] = { "sanTypes", NULL };
    const char          *k_ku[] = { "keyUsage", "allowed", NULL };
    const char          *k_kud[] = { "keyUsage", "default", NULL };
    const char          *k_eku[] = { "extendedKeyUsage", "allowed", NULL };
    const char          *k_ca[] = { "certificateAuthority", "allowed", NULL };
    const char          *k_pl[] = { "certificateAuthority", "maxPathLen",
                                    NULL };
    const char          *k_rsa[] = { "keys", "rsaMinBits", NULL };
    const char          *k_ed[] = { "keys", "ed25519", NULL };
    const char          *k_alg[] = { "signatureAlgorithm", NULL };
    const char          *k_algs[] = { "signatureAlgorithms", NULL };
    const char          *k_pw[] = { "keyPassword", NULL };
    const char          *k_pat[] = { "pattern", NULL };
    const char          *k_kind[] = { "kind", NULL };
    const char          *k_subj[] = { "subject", NULL };
    const char          *k_attr[] = { "attribute", NULL };
    tsb_subject_value_t  org[2];
    tsb_subject_rule_t   rules[1];

    memset(&p, 0, sizeof(p));
    pats[0].pattern = "*.svc.example";
    pats[0].len = strlen(pats[0].pattern);
    pats[1].pattern = "";                   /* a variable with no value */
    pats[1].len = 0;
    pats[2].pattern = "~^[a-z]+\\.users\\.example$";
    pats[2].len = strlen(pats[2].pattern);

    p.names = pats;
    p.n_names = 3;
    p.allowed_key_usage = TSB_KU_DIGITAL_SIGNATURE | TSB_KU_KEY_ENCIPHERMENT;
    p.default_key_usage = TSB_KU_DIGITAL_SIGNATURE;
    p.allowed_ext_key_usage = TSB_EKU_SERVER_AUTH | TSB_EKU_CLIENT_AUTH;
    p.max_path_len = -1;
    p.min_rsa_bits = 3072;
    p.sign_key_name = "CA-Key";
    p.allowed_san_types = (1u << TSB_SAN_DNS) | (1u << TSB_SAN_IP);

    memset(org, 0, sizeof(org));
    org[0].value = "Example Corp";
    org[0].len = strlen(org[0].value);
    org[1].value = "";                      /* a variable with no value */
    rules[0].oid = "2.5.4.10";
    rules[0].name = "O";
    rules[0].values = org;
    rules[0].n_values = 2;
    p.subject_rules = rules;
    p.n_subject_rules = 1;

    v = describe(&p);
    ok(v != NULL, "a policy is described as valid JSON");

    is_str(str_at(v, k_key), "CA-Key", "signKeyName");

    names = yajl_tree_get(v, k_names, yajl_t_array);
    ok(names != NULL && YAJL_GET_ARRAY(names)->len == 2,
       "names: the empty pattern (no variable value) is left out");

    if (names != NULL && YAJL_GET_ARRAY(names)->len == 2) {
        e = YAJL_GET_ARRAY(names)->values[0];
        is_str(str_at(e, k_pat), "*.svc.example", "names[0].pattern");
        is_str(str_at(e, k_kind), "wildcard", "names[0].kind");
        e = YAJL_GET_ARRAY(names)->values[1];
        is_str(str_at(e, k_kind), "regex", "names[1].kind");
    }

    is_str(list_at(v, k_san), "DNS,IP", "sanTypes from the mask");

    t = yajl_tree_get(v, k_subj, yajl_t_array);
    ok(t != NULL && YAJL_GET_ARRAY(t)->len == 1, "one subject rule");
    if (t != NULL && YAJL_GET_ARRAY(t)->len == 1) {
        e = YAJL_GET_ARRAY(t)->values[0];
        is_str(str_at(e, k_attr), "O", "subject[0].attribute");
        names = yajl_tree_get(e, (const char *[]) { "values", NULL },
                              yajl_t_array);
        ok(names != NULL && YAJL_GET_ARRAY(names)->len == 1,
           "subject[0].values: the empty value is left out");
    }
    is_str(list_at(v, k_ku), "DIGITAL_SIGNATURE,KEY_ENCIPHERMENT",
           "keyUsage.allowed");
    is_str(list_at(v, k_kud), "DIGITAL_SIGNATURE", "keyUsage.default");
    is_str(list_at(v, k_eku), "SERVER_AUTH,CLIENT_AUTH",
           "extendedKeyUsage.allowed");
    ok(YAJL_IS_FALSE(yajl_tree_get(v, k_ca, yajl_t_any)),
       "certificateAuthority.allowed false");
    ok(yajl_tree_get(v, k_pl, yajl_t_any) == NULL,
       "no maxPathLen when CA issuance is off");

    t = yajl_tree_get(v, k_rsa, yajl_t_number);
    ok(t != NULL && YAJL_GET_INTEGER(t) == 3072, "keys.rsaMinBits");
    ok(YAJL_IS_FALSE(yajl_tree_get(v, k_ed, yajl_t_any)), "keys.ed25519");
    is_str(str_at(v, k_alg), "SHA256_WITH_RSA",
           "the TSB's default signature algorithm");
    is_str(list_at(v, k_algs), "SHA256_WITH_RSA",
           "only the default when no list is configured");
    ok(YAJL_IS_FALSE(yajl_tree_get(v, k_pw, yajl_t_any)), "keyPassword");
    yajl_tree_free(v);

    /* a CA location, no SAN at all, a list of algorithms, no key name */
    memset(&p, 0, sizeof(p));
    p.allow_ca = 1;
    p.max_path_len = 0;
    p.allowed_san_types = 1;
    p.signature_algorithm = "SHA256_WITH_ECDSA";
    p.allowed_signature_algorithms = algs;
    p.allow_key_password = 1;

    v = describe(&p);
    ok(v != NULL, "a second policy is described");
    ok(YAJL_IS_NULL(yajl_tree_get(v, k_key, yajl_t_any)),
       "signKeyName null when the client chooses");
    is_str(list_at(v, k_san), "", "sanTypes empty: no SAN allowed");
    ok(YAJL_IS_TRUE(yajl_tree_get(v, k_ca, yajl_t_any)), "CA allowed");
    t = yajl_tree_get(v, k_pl, yajl_t_number);
    ok(t != NULL && YAJL_GET_INTEGER(t) == 0, "maxPathLen 0");
    is_str(list_at(v, k_algs), "SHA256_WITH_ECDSA,SHA384_WITH_ECDSA",
           "signatureAlgorithms from the list");
    is_str(list_at(v, k_names), "", "no names: nothing is allowed");
    is_str(list_at(v, k_subj), "", "no subject rules: only the CN");
    ok(YAJL_IS_TRUE(yajl_tree_get(v, k_pw, yajl_t_any)), "keyPassword");
    yajl_tree_free(v);

    return done_testing();
}
