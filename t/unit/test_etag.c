
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The status document's entity tag and If-None-Match (tsb_etag.c): the tag
 * changes with every byte a watcher of the document sees, and only then;
 * If-None-Match lists match as RFC 9110 says.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tsb_etag.h"
#include "tap.h"


#define PENDING0                                                              \
    "{\"id\":\"r1\",\"status\":\"PENDING\",\"executionTime\":null,"          \
    "\"approvedBy\":[],\"notYetApprovedBy\":[\"alice\",\"bob\"],"           \
    "\"rejectedBy\":[],\"result\":null}"

#define PENDING1                                                              \
    "{\"id\":\"r1\",\"status\":\"PENDING\",\"executionTime\":null,"          \
    "\"approvedBy\":[\"alice\"],\"notYetApprovedBy\":[\"bob\"],"            \
    "\"rejectedBy\":[],\"result\":null}"


static void
etag(const char *json, const char *der, size_t der_len, char *out)
{
    memset(out, 0, TSB_STATUS_ETAG_LEN + 1);

    if (tsb_status_etag((const unsigned char *) json, strlen(json),
                        (const unsigned char *) der, der_len,
                        (unsigned char *) out)
        != 0)
    {
        strcpy(out, "(failed)");
    }
}


static int
match(const char *value, const char *tag)
{
    return tsb_etag_match((const unsigned char *) value, strlen(value),
                          (const unsigned char *) tag, strlen(tag));
}


int
main(void)
{
    size_t         i;
    char           a[TSB_STATUS_ETAG_LEN + 1], b[TSB_STATUS_ETAG_LEN + 1];
    char           c[TSB_STATUS_ETAG_LEN + 1], d[TSB_STATUS_ETAG_LEN + 1];
    char           list[128], want[TSB_STATUS_ETAG_LEN + 1];
    unsigned char  md[EVP_MAX_MD_SIZE], in[8 + sizeof(PENDING0) - 1];

    /* the shape: a quoted strong tag, lower-case hex, "-json" */

    etag(PENDING0, NULL, 0, a);
    is_int(strlen(a), TSB_STATUS_ETAG_LEN, "the tag is %d bytes",
           TSB_STATUS_ETAG_LEN);
    ok(a[0] == '"' && a[TSB_STATUS_ETAG_LEN - 1] == '"', "quoted: %s", a);
    ok(strncmp(a + 17, "-json", 5) == 0, "ends in -json");
    ok(strspn(a + 1, "0123456789abcdef") == 16, "16 hex digits");

    /* the first 64 bits of SHA-256 over the length and the document */
    memset(in, 0, 8);
    in[7] = (unsigned char) (sizeof(PENDING0) - 1);
    memcpy(in + 8, PENDING0, sizeof(PENDING0) - 1);
    EVP_Digest(in, sizeof(in), md, NULL, EVP_sha256(), NULL);
    want[0] = '"';
    for (i = 0; i < 8; i++) {
        sprintf(want + 1 + 2 * i, "%02x", md[i]);
    }
    strcpy(want + 17, "-json\"");
    is_str(a, want, "SHA-256 of the length and the document");

    /* stable, and different for every change a watcher sees */

    etag(PENDING0, NULL, 0, b);
    is_str(a, b, "the same document: the same tag");

    etag(PENDING1, NULL, 0, b);
    ok(strcmp(a, b) != 0, "an approval changes the tag");

    etag(PENDING1, "\x30\x03\x02\x01\x01", 5, c);
    ok(strcmp(b, c) != 0, "a certificate changes the tag");

    etag(PENDING1, "\x30\x03\x02\x01\x02", 5, d);
    ok(strcmp(c, d) != 0, "another certificate: another tag");

    /* the document's last byte moved into the certificate: still another */
    etag("{\"a\":1}", "}", 1, c);
    etag("{\"a\":1}}", NULL, 0, d);
    ok(strcmp(c, d) != 0, "document and certificate are not concatenated");

    /* If-None-Match */

    ok(match(a, a), "the tag itself matches");
    snprintf(list, sizeof(list), "W/%s", a);
    ok(match(list, a), "its weak twin matches (weak comparison)");
    snprintf(list, sizeof(list), "\"x\", %s ,\"y\"", a);
    ok(match(list, a), "in a list with spaces");
    snprintf(list, sizeof(list), "\"x\",%s", a);
    ok(match(list, a), "in a list without spaces");
    ok(match("*", a), "* matches any");
    ok(!match("", a), "an empty value matches nothing");
    ok(!match(" , ,", a), "a list of nothing matches nothing");
    ok(!match(b, a), "another tag does not match");
    snprintf(list, sizeof(list), "%.*s", TSB_STATUS_ETAG_LEN - 1, a);
    ok(!match(list, a), "a prefix does not match");
    snprintf(list, sizeof(list), "%sx", a);
    ok(!match(list, a), "a longer tag does not match");
    ok(!match("W/", a), "W/ alone matches nothing");
    ok(!tsb_etag_match((const unsigned char *) "\"\"", 2,
                       (const unsigned char *) "", 0),
       "no tag: nothing matches it");

    return done_testing();
}
