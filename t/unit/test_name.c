
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Host name syntax and the Punycode codec (tsb_name.c): RFC 3492's own
 * samples, and the names an attacker would try under "*.svc.example".
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tsb_name.h"


typedef struct {
    const char  *name;
    int          wild;
    int          ok;
} host_case_t;


static const host_case_t  host_cases[] = {
    { "a.svc.example", 0, 1 },
    { "A-1.SVC.Example", 0, 1 },
    { "localhost", 0, 1 },
    { "10.0.0.1", 0, 1 },
    { "*.svc.example", 1, 1 },
    { "*.svc.example", 0, 0 },
    { "a.*.example", 1, 0 },
    { "f*o.svc.example", 1, 0 },
    { "**.svc.example", 1, 0 },
    { "*", 1, 0 },
    { "a.svc.example.", 0, 0 },
    { ".a.svc.example", 0, 0 },
    { "a..svc.example", 0, 0 },
    { "", 0, 0 },
    { "a b.svc.example", 0, 0 },
    { "x/y.svc.example", 0, 0 },
    { "x@y.svc.example", 0, 0 },
    { "_srv.svc.example", 0, 0 },
    { "-a.svc.example", 0, 0 },
    { "a-.svc.example", 0, 0 },
    { "a.svc.example-", 0, 0 },
    { "ab--cd.svc.example", 0, 0 },
    { "a--b.svc.example", 0, 1 },
    /* Cyrillic a, full-width a, as raw UTF-8 */
    { "\xd0\xb0.svc.example", 0, 0 },
    { "\xef\xbd\x81.svc.example", 0, 0 },
    /* A-labels */
    { "xn--bcher-kva.example", 0, 1 },
    { "XN--BCHER-KVA.example", 0, 1 },
    { "xn--h1ahn.svc.example", 0, 1 },
    { "xn--mnchen-3ya.svc.example", 0, 1 },
    /* "аpple" with a Cyrillic а: mixed scripts */
    { "xn--pple-43d.svc.example", 0, 0 },
    /* decodes to "abc": pure ASCII */
    { "xn--abc-.svc.example", 0, 0 },
    /* an emoji, a full-width letter */
    { "xn--e28h.svc.example", 0, 0 },
    { "xn--ni7c.svc.example", 0, 0 },
    /* not Punycode at all */
    { "xn--.svc.example", 0, 0 },
    { "xn--zz.svc.example", 0, 0 },
    { "xn--a-b-c.svc.example", 0, 0 },
    { NULL, 0, 0 }
};


static void
test_lengths(void)
{
    char         buf[300];
    const char  *why;

    memset(buf, 'a', 63);
    strcpy(buf + 63, ".example");
    ok(tsb_name_host_check(buf, strlen(buf), 0, &why) == 0,
       "a 63-octet label is a host name");

    memset(buf, 'a', 64);
    strcpy(buf + 64, ".example");
    ok(tsb_name_host_check(buf, strlen(buf), 0, &why) != 0
       && strstr(why, "63") != NULL, "a 64-octet label is not");

    /* 4 * 63 + 3 dots = 255 */
    memset(buf, 'a', 255);
    buf[63] = buf[127] = buf[191] = '.';
    ok(tsb_name_host_check(buf, 253, 0, &why) == 0,
       "253 octets are a host name");
    ok(tsb_name_host_check(buf, 254, 0, &why) != 0
       && strstr(why, "253") != NULL, "254 octets are not");
}


static void
test_punycode(void)
{
    size_t    n, len;
    char      enc[64];
    uint32_t  cp[TSB_PUNY_MAX];

    /* RFC 3492 7.1 (A), Arabic (Egyptian) */
    static const uint32_t  arabic[] = {
        0x0644, 0x064a, 0x0647, 0x0645, 0x0627, 0x0628, 0x062a, 0x0643,
        0x0644, 0x0645, 0x0648, 0x0634, 0x0639, 0x0631, 0x0628, 0x064a,
        0x061f
    };

    ok(tsb_punycode_decode("egbpdaj6bu4bxfgehfvwxn", 22, cp, TSB_PUNY_MAX,
                           &n) == 0
       && n == 17 && memcmp(cp, arabic, sizeof(arabic)) == 0,
       "RFC 3492 sample A decodes");

    ok(tsb_punycode_encode(arabic, 17, enc, sizeof(enc), &len) == 0
       && len == 22 && memcmp(enc, "egbpdaj6bu4bxfgehfvwxn", 22) == 0,
       "and encodes back");

    ok(tsb_punycode_decode("bcher-kva", 9, cp, TSB_PUNY_MAX, &n) == 0
       && n == 6 && cp[0] == 'b' && cp[1] == 0xfc && cp[5] == 'r',
       "bcher-kva is b\\u00fccher");

    ok(tsb_punycode_decode("bcher-kva", 9, cp, 5, &n) != 0,
       "more code points than room is refused");

    ok(tsb_punycode_decode("b\xc3\xbc-kva", 7, cp, TSB_PUNY_MAX, &n) != 0,
       "a non-basic byte in the input is refused");

    ok(tsb_punycode_decode("99999999999999", 14, cp, TSB_PUNY_MAX, &n) != 0,
       "overflow is refused");

    ok(tsb_punycode_decode("abc-", 4, cp, TSB_PUNY_MAX, &n) == 0 && n == 3,
       "basic code points alone decode (and are refused as a label)");
}


int
main(void)
{
    const char         *why;
    const host_case_t  *c;

    for (c = host_cases; c->name; c++) {
        why = NULL;
        if (c->ok) {
            ok(tsb_name_host_check(c->name, strlen(c->name), c->wild, &why)
               == 0, "host name: \"%s\"%s (%s)", c->name,
               c->wild ? " with wildcards" : "", why ? why : "ok");
        } else {
            ok(tsb_name_host_check(c->name, strlen(c->name), c->wild, &why)
               == -1 && why != NULL, "not a host name: \"%s\"%s (%s)",
               c->name, c->wild ? " with wildcards" : "", why ? why : "?");
        }
    }

    test_lengths();
    test_punycode();

    return done_testing();
}
