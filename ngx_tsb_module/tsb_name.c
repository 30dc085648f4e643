
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Host name syntax, and just enough IDNA to tell a real A-label from a
 * made-up one.  OpenSSL has no IDNA, and a gateway should not link a
 * Unicode library to refuse names: the Punycode codec here is RFC 3492's
 * reference algorithm, strict (basic code points only, overflow checked),
 * and a label is an A-label only when it decodes to a label of permitted,
 * non-ASCII code points and encodes back to itself.  The code point rules
 * are a conservative subset of IDNA2008 (RFC 5892): what a host name in an
 * internal PKI needs, not every script's fine print; they refuse rather
 * than guess.
 */


#include <string.h>

#include "tsb_name.h"


#define TSB_PUNY_BASE      36
#define TSB_PUNY_TMIN      1
#define TSB_PUNY_TMAX      26
#define TSB_PUNY_SKEW      38
#define TSB_PUNY_DAMP      700
#define TSB_PUNY_BIAS      72
#define TSB_PUNY_N         0x80
#define TSB_PUNY_MAXINT    0xffffffffu

#define TSB_SCRIPT_NONE      0
#define TSB_SCRIPT_LATIN     1
#define TSB_SCRIPT_GREEK     2
#define TSB_SCRIPT_CYRILLIC  4


static int tsb_name_ldh(unsigned char c);
static uint32_t tsb_puny_adapt(uint32_t delta, uint32_t points, int first);
static int tsb_puny_digit(unsigned char c);
static char tsb_puny_char(uint32_t d);
static int tsb_name_code_point(uint32_t c);
static unsigned tsb_name_script(uint32_t c);


int
tsb_name_host_check(const char *name, size_t len, int allow_wildcard,
    const char **why)
{
    size_t         i, start, label;
    unsigned char  c;

    if (len == 0) {
        *why = "it is empty";
        return -1;
    }

    if (name[len - 1] == '.') {
        *why = "it ends in a dot";
        return -1;
    }

    if (len > TSB_NAME_MAX) {
        *why = "it is longer than 253 characters";
        return -1;
    }

    start = 0;

    if (allow_wildcard && len > 2 && name[0] == '*' && name[1] == '.') {
        start = 2;
    }

    for (i = start; i <= len; i++) {

        if (i < len && name[i] != '.') {
            c = (unsigned char) name[i];

            if (c >= 0x80) {
                *why = "it holds non-ASCII characters (an internationalised "
                       "name must be given as xn-- A-labels)";
                return -1;
            }

            if (!tsb_name_ldh(c)) {
                *why = (c == '*') ? "\"*\" is allowed only as the whole "
                                    "leftmost label"
                                  : "it holds a character other than "
                                    "letters, digits, \"-\" and \".\"";
                return -1;
            }

            continue;
        }

        label = i - start;

        if (label == 0) {
            *why = "it has an empty label";
            return -1;
        }

        if (label > TSB_NAME_LABEL_MAX) {
            *why = "it has a label longer than 63 characters";
            return -1;
        }

        if (name[start] == '-' || name[i - 1] == '-') {
            *why = "it has a label that starts or ends with \"-\"";
            return -1;
        }

        if (label >= 4 && name[start + 2] == '-' && name[start + 3] == '-')
        {
            if ((name[start] | 0x20) != 'x'
                || (name[start + 1] | 0x20) != 'n')
            {
                *why = "it has a reserved label (\"--\" in its third and "
                       "fourth place)";
                return -1;
            }

            if (tsb_name_alabel_check(name + start, label, why) != 0) {
                return -1;
            }
        }

        start = i + 1;
    }

    return 0;
}


int
tsb_name_alabel_check(const char *label, size_t len, const char **why)
{
    char      enc[TSB_NAME_LABEL_MAX + 1];
    size_t    i, n, elen;
    uint32_t  cp[TSB_PUNY_MAX];
    unsigned  scripts;
    int       non_ascii;

    if (len < 5 || len > TSB_NAME_LABEL_MAX
        || (label[0] | 0x20) != 'x' || (label[1] | 0x20) != 'n'
        || label[2] != '-' || label[3] != '-')
    {
        *why = "it has a malformed xn-- label";
        return -1;
    }

    if (tsb_punycode_decode(label + 4, len - 4, cp, TSB_PUNY_MAX, &n) != 0
        || n == 0)
    {
        *why = "it has an xn-- label that is not valid Punycode";
        return -1;
    }

    non_ascii = 0;
    scripts = 0;

    for (i = 0; i < n; i++) {

        /* the literal ASCII part compares case-insensitively, as DNS does */

        if (cp[i] >= 'A' && cp[i] <= 'Z') {
            cp[i] |= 0x20;
        }

        if (!tsb_name_code_point(cp[i])) {
            *why = "it has an xn-- label with a code point not permitted "
                   "in a host name";
            return -1;
        }

        if (cp[i] >= 0x80) {
            non_ascii = 1;
        }

        scripts |= tsb_name_script(cp[i]);
    }

    if (!non_ascii) {
        *why = "it has an xn-- label that decodes to plain ASCII";
        return -1;
    }

    /* the U-label's own hyphen rules (RFC 5891 4.2.3.1) */

    if (cp[0] == '-' || cp[n - 1] == '-'
        || (n >= 4 && cp[2] == '-' && cp[3] == '-'))
    {
        *why = "it has an xn-- label whose Unicode form has misplaced "
               "hyphens";
        return -1;
    }

    /* a combining mark cannot begin a label (RFC 5891 4.2.3.2) */

    if (cp[0] >= 0x300 && cp[0] <= 0x36f) {
        *why = "it has an xn-- label that begins with a combining mark";
        return -1;
    }

    /*
     * Latin letters mixed with Greek or Cyrillic ones in one label is how
     * look-alikes of ASCII names are made ("pаypal" with a Cyrillic "а");
     * no real name of an internal service needs it.
     */

    if (scripts != TSB_SCRIPT_NONE && (scripts & (scripts - 1)) != 0) {
        *why = "it has an xn-- label mixing Latin, Greek or Cyrillic "
               "letters";
        return -1;
    }

    /* one encoding only: what decodes must encode back to the same label */

    if (tsb_punycode_encode(cp, n, enc, sizeof(enc), &elen) != 0
        || elen != len - 4)
    {
        *why = "it has an xn-- label that is not in canonical form";
        return -1;
    }

    for (i = 0; i < elen; i++) {
        if (((unsigned char) enc[i] | 0x20)
            != ((unsigned char) label[4 + i] | 0x20))
        {
            *why = "it has an xn-- label that is not in canonical form";
            return -1;
        }
    }

    return 0;
}


int
tsb_punycode_decode(const char *in, size_t len, uint32_t *out, size_t max,
    size_t *n)
{
    int       digit;
    size_t    b, j, pos, o;
    uint32_t  cp, i, bias, oldi, w, k, t;

    *n = 0;

    b = 0;

    for (j = 0; j < len; j++) {
        if (in[j] == '-') {
            b = j;
        }
    }

    if (b > max) {
        return -1;
    }

    for (j = 0; j < b; j++) {
        if ((unsigned char) in[j] >= 0x80) {
            return -1;
        }

        out[j] = (unsigned char) in[j];
    }

    o = b;
    cp = TSB_PUNY_N;
    i = 0;
    bias = TSB_PUNY_BIAS;

    for (pos = (b > 0) ? b + 1 : 0; pos < len; /* void */) {
        oldi = i;
        w = 1;

        for (k = TSB_PUNY_BASE; /* void */; k += TSB_PUNY_BASE) {
            if (pos >= len) {
                return -1;
            }

            digit = tsb_puny_digit((unsigned char) in[pos++]);

            if (digit < 0
                || (uint32_t) digit > (TSB_PUNY_MAXINT - i) / w)
            {
                return -1;
            }

            i += (uint32_t) digit * w;

            t = (k <= bias) ? TSB_PUNY_TMIN
                : (k >= bias + TSB_PUNY_TMAX) ? TSB_PUNY_TMAX : k - bias;

            if ((uint32_t) digit < t) {
                break;
            }

            if (w > TSB_PUNY_MAXINT / (TSB_PUNY_BASE - t)) {
                return -1;
            }

            w *= TSB_PUNY_BASE - t;
        }

        bias = tsb_puny_adapt(i - oldi, (uint32_t) o + 1, oldi == 0);

        if (i / (o + 1) > TSB_PUNY_MAXINT - cp) {
            return -1;
        }

        cp += i / (uint32_t) (o + 1);
        i %= (uint32_t) (o + 1);

        /* a basic code point must be literal, not encoded */

        if (cp < 0x80 || cp > 0x10ffff || o >= max) {
            return -1;
        }

        memmove(out + i + 1, out + i, (o - i) * sizeof(uint32_t));
        out[i++] = cp;
        o++;
    }

    *n = o;

    return 0;
}


int
tsb_punycode_encode(const uint32_t *in, size_t n, char *out, size_t size,
    size_t *len)
{
    size_t    j, o, b, h;
    uint32_t  cp, delta, bias, m, q, k, t;

    *len = 0;
    o = 0;

    for (j = 0; j < n; j++) {
        if (in[j] < 0x80) {
            if (o >= size) {
                return -1;
            }

            out[o++] = (char) in[j];
        }
    }

    b = h = o;

    if (b > 0) {
        if (o >= size) {
            return -1;
        }

        out[o++] = '-';
    }

    cp = TSB_PUNY_N;
    delta = 0;
    bias = TSB_PUNY_BIAS;

    while (h < n) {
        m = TSB_PUNY_MAXINT;

        for (j = 0; j < n; j++) {
            if (in[j] >= cp && in[j] < m) {
                m = in[j];
            }
        }

        if (m - cp > (TSB_PUNY_MAXINT - delta) / (uint32_t) (h + 1)) {
            return -1;
        }

        delta += (m - cp) * (uint32_t) (h + 1);
        cp = m;

        for (j = 0; j < n; j++) {
            if (in[j] < cp && ++delta == 0) {
                return -1;
            }

            if (in[j] != cp) {
                continue;
            }

            q = delta;

            for (k = TSB_PUNY_BASE; /* void */; k += TSB_PUNY_BASE) {
                t = (k <= bias) ? TSB_PUNY_TMIN
                    : (k >= bias + TSB_PUNY_TMAX) ? TSB_PUNY_TMAX : k - bias;

                if (q < t) {
                    break;
                }

                if (o >= size) {
                    return -1;
                }

                out[o++] = tsb_puny_char(t + (q - t) % (TSB_PUNY_BASE - t));
                q = (q - t) / (TSB_PUNY_BASE - t);
            }

            if (o >= size) {
                return -1;
            }

            out[o++] = tsb_puny_char(q);
            bias = tsb_puny_adapt(delta, (uint32_t) h + 1, h == b);
            delta = 0;
            h++;
        }

        delta++;
        cp++;
    }

    *len = o;

    return 0;
}


static uint32_t
tsb_puny_adapt(uint32_t delta, uint32_t points, int first)
{
    uint32_t  k;

    delta = first ? delta / TSB_PUNY_DAMP : delta / 2;
    delta += delta / points;

    for (k = 0;
         delta > ((TSB_PUNY_BASE - TSB_PUNY_TMIN) * TSB_PUNY_TMAX) / 2;
         k += TSB_PUNY_BASE)
    {
        delta /= TSB_PUNY_BASE - TSB_PUNY_TMIN;
    }

    return k + (TSB_PUNY_BASE - TSB_PUNY_TMIN + 1) * delta
               / (delta + TSB_PUNY_SKEW);
}


static int
tsb_puny_digit(unsigned char c)
{
    if (c >= 'a' && c <= 'z') {
        return c - 'a';
    }

    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 26;
    }

    return -1;
}


static char
tsb_puny_char(uint32_t d)
{
    return (char) (d < 26 ? 'a' + d : '0' + d - 26);
}


static int
tsb_name_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-';
}


/*
 * Code points a U-label may hold here: in ASCII only what an LDH label
 * holds, lower case (an upper case letter would have been mapped away);
 * never controls, spaces, punctuation and symbol blocks, compatibility
 * forms (full-width letters, ligatures, mathematical letters), private
 * use, surrogates or noncharacters.
 */

static int
tsb_name_code_point(uint32_t c)
{
    if (c < 0x80) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    }

    if (c <= 0xbf || c == 0xd7 || c == 0xf7
        || c == 0x115f || c == 0x1160 || c == 0x3164
        || (c >= 0x2000 && c <= 0x2bff)
        || (c >= 0x2e00 && c <= 0x2e7f)
        || (c >= 0x3000 && c <= 0x303f)
        || (c >= 0xd800 && c <= 0xf8ff)
        || (c >= 0xfb00 && c <= 0xfb4f)
        || (c >= 0xfdd0 && c <= 0xfdef)
        || (c >= 0xfe00 && c <= 0xfe6f)
        || (c >= 0xfeff && c <= 0xffff)
        || (c & 0xfffe) == 0xfffe
        || (c >= 0x1d400 && c <= 0x1d7ff)
        || (c >= 0x1f000 && c <= 0x1faff)
        || c >= 0xe0000)
    {
        return 0;
    }

    return 1;
}


static unsigned
tsb_name_script(uint32_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 0xc0 && c <= 0x24f)) {
        return TSB_SCRIPT_LATIN;
    }

    if (c >= 0x370 && c <= 0x3ff) {
        return TSB_SCRIPT_GREEK;
    }

    if (c >= 0x400 && c <= 0x52f) {
        return TSB_SCRIPT_CYRILLIC;
    }

    return TSB_SCRIPT_NONE;
}
