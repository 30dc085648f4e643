
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * Post-issuance verification: the expectation written when the policy
 * accepted a request, and the check of the issued certificate against it.
 *
 * The expectation is a versioned big-endian blob, stored by the status
 * cache in shared memory (so: no pointers, nothing but bytes):
 *
 *     0   2  "TX"
 *     2   1  version (1 or 2)
 *     3   1  flags: 0x01 a CA was accepted, 0x02 with a pathLenConstraint
 *     4   2  keyUsage (TSB_KU_* bits)
 *     6   2  extendedKeyUsage (TSB_EKU_* bits)
 *     8   4  pathLenConstraint (with flag 0x02)
 *    12  32  SHA-256 of the CSR's DER SubjectPublicKeyInfo
 *    44   2  commonName length n
 *    46   n  commonName, UTF-8
 *     .   2  SAN count m
 *     .  17m SAN type (TSB_SAN_*), then the first 16 bytes of the SHA-256
 *            of the type byte and the normalised value
 *
 * and, from version 2 on, records to the end of the blob, each a tag
 * byte, a 2-byte length and that many bytes (a record of an unknown tag
 * makes the blob unreadable, never skipped):
 *
 *     'S'  n  the subject besides the commonName: 2 count k, then k
 *             times 1 OID length, the dotted OID, 2 value length, the
 *             UTF-8 value
 *     'L' 14  lifetime: 4 seconds accepted (the requested validity, or
 *             tsb_max_validity), 2 days requested (0: none), 8 Unix time
 *             of the acceptance
 *     'E'  n  one accepted extension beyond the four above: dotted OID
 *
 * in that order, 'S' and 'L' exactly once.
 *
 * A version 1 blob (written before these existed, kept by tsb_store)
 * reads as no lifetime to check, no extension accepted and the commonName
 * as the only subject attribute known (the rest is not checked).
 *
 * SANs are hashed rather than copied: the check only needs "is this one of
 * them", and a hash keeps every entry at 17 bytes.  The detail of a
 * mismatch names the value from the issued certificate.
 */


#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsb_verify.h"
#include "tsb_policy.h"


#define TSB_EXPECT_VERSION    2
#define TSB_EXPECT_V1         1

#define TSB_EXPECT_REC_LIFE   'L'
#define TSB_EXPECT_REC_EXT    'E'
#define TSB_EXPECT_REC_SUBJECT 'S'
#define TSB_EXPECT_LIFE_SIZE  14

#define TSB_EXPECT_CA         0x01
#define TSB_EXPECT_PATHLEN    0x02

#define TSB_EXPECT_HEAD       46      /* through the commonName length */
#define TSB_EXPECT_HASH       16
#define TSB_EXPECT_SAN_SIZE   (1 + TSB_EXPECT_HASH)

#define TSB_VERIFY_QUOTE_MAX  64
#define TSB_EXPECT_SUBJECT_MAX  64    /* attributes in an 'S' section */
#define TSB_VERIFY_MISMATCH   "issued.mismatch"
#define TSB_CHAIN_REASON      "config.issuer_chain"


typedef struct {
    unsigned              flags;
    unsigned              key_usage;
    unsigned              ext_key_usage;
    long                  path_len;
    const unsigned char  *spki;
    const unsigned char  *cn;
    size_t                cn_len;
    const unsigned char  *sans;
    size_t                n_sans;
    const unsigned char  *subject;     /* section 'S' after its count, */
    size_t                subject_len; /* or NULL in an older blob */
    size_t                n_subject;

    /* version 2 records */
    int                   has_life;
    long                  life;            /* seconds */
    long                  life_days;       /* requested; 0: none */
    int64_t               accepted_at;
    const unsigned char  *exts;            /* the 'E' records */
    size_t                exts_len;
} tsb_expect_t;


static int tsb_expect_parse(const unsigned char *blob, size_t len,
    tsb_expect_t *e);
static int tsb_expect_san_hash(int type, const char *value, size_t len,
    unsigned char *out);
static int tsb_expect_dns_like(const char *s, size_t len);
static int tsb_verify_key(const tsb_expect_t *e, X509 *x,
    const tsb_cert_t *cert, tsb_error_t *err);
static int tsb_verify_cn(const tsb_expect_t *e, X509 *x, tsb_error_t *err);
static size_t tsb_expect_subject_size(const tsb_csr_t *csr);
static unsigned char *tsb_expect_subject_write(const tsb_csr_t *csr,
    unsigned char *p);
static int tsb_expect_parse_subject(const unsigned char *body, size_t len,
    tsb_expect_t *e);
static int tsb_verify_subject(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);
static int tsb_verify_sans(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);
static X509 *tsb_verify_d2i(const unsigned char *der, size_t der_len,
    tsb_error_t *err);
static int tsb_verify_absent(int crit, unsigned accepted, const char *ext,
    const char *what, tsb_error_t *err);
static int tsb_verify_key_usage(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);
static int tsb_verify_ext_key_usage(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);
static int tsb_verify_ca(const tsb_expect_t *e, X509 *x, tsb_error_t *err);
static int tsb_verify_issuer(X509 *x, const tsb_chain_t *issuers,
    tsb_error_t *err);
static const char *tsb_verify_quote(const unsigned char *s, size_t len,
    char *buf, size_t size);
static const char *tsb_verify_name(const X509_NAME *name, char *buf,
    size_t size);
static unsigned tsb_verify_lowest_bit(unsigned mask);
static int tsb_expect_parse_records(const unsigned char *p,
    const unsigned char *end, tsb_expect_t *e);
static size_t tsb_expect_records_size(const tsb_csr_t *csr);
static unsigned char *tsb_expect_put_records(const tsb_csr_t *csr,
    const tsb_sign_req_t *req, long max_validity, int64_t accepted_at,
    unsigned char *p);
static int tsb_verify_extensions(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);
static int tsb_verify_lifetime(const tsb_expect_t *e, X509 *x,
    tsb_error_t *err);


/* X.509 KeyUsage bit positions, in order, as TSB_KU_* bits */
static const unsigned  tsb_verify_ku_bits[] = {
    TSB_KU_DIGITAL_SIGNATURE,
    TSB_KU_CONTENT_COMMITMENT,
    TSB_KU_KEY_ENCIPHERMENT,
    TSB_KU_DATA_ENCIPHERMENT,
    TSB_KU_KEY_AGREEMENT,
    TSB_KU_KEY_CERT_SIGN,
    TSB_KU_CRL_SIGN,
    TSB_KU_ENCIPHER_ONLY,
    TSB_KU_DECIPHER_ONLY
};


static void
tsb_put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char) (v >> 8);
    p[1] = (unsigned char) v;
}


static void
tsb_put32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


static unsigned
tsb_get16(const unsigned char *p)
{
    return ((unsigned) p[0] << 8) | p[1];
}


static unsigned long
tsb_get32(const unsigned char *p)
{
    return ((unsigned long) p[0] << 24) | ((unsigned long) p[1] << 16)
           | ((unsigned long) p[2] << 8) | p[3];
}


int
tsb_expect_build(const tsb_csr_t *csr, const tsb_sign_req_t *req,
    tsb_buf_t *blob)
{
    return tsb_expect_build_ex(csr, req, TSB_POLICY_MAX_VALIDITY,
                               (int64_t) time(NULL), blob);
}


int
tsb_expect_build_ex(const tsb_csr_t *csr, const tsb_sign_req_t *req,
    long max_validity, int64_t accepted_at, tsb_buf_t *blob)
{
    size_t          i, n, cn_len, size;
    unsigned        flags;
    const char     *cn;
    unsigned char  *p, *b;

    blob->data = NULL;
    blob->len = 0;

    cn = req->common_name;

    if (cn == NULL && csr->n_common_names == 1) {
        cn = csr->common_names[0];
    }

    cn_len = (cn != NULL) ? strlen(cn) : 0;

    n = 0;

    for (i = 0; i < csr->n_sans; i++) {
        if (csr->sans[i].type != TSB_SAN_OTHER) {
            n++;
        }
    }

    /* a TSB may copy a DNS-like commonName into the SANs: that is no news */

    if (cn_len > 0 && tsb_expect_dns_like(cn, cn_len)) {
        n++;
    }

    size = TSB_EXPECT_HEAD + cn_len + 2 + n * TSB_EXPECT_SAN_SIZE
           + tsb_expect_records_size(csr) + tsb_expect_subject_size(csr);

    if (cn_len > 0xffff || n > 0xffff || size > TSB_EXPECT_MAX) {
        return -1;
    }

    b = malloc(size);
    if (b == NULL) {
        return -1;
    }

    flags = 0;

    if (req->certificate_authority == 1) {
        flags |= TSB_EXPECT_CA;

        if (csr->has_basic_constraints && csr->basic_ca
            && csr->basic_pathlen >= 0)
        {
            flags |= TSB_EXPECT_PATHLEN;
        }
    }

    b[0] = 'T';
    b[1] = 'X';
    b[2] = TSB_EXPECT_VERSION;
    b[3] = (unsigned char) flags;
    tsb_put16(b + 4, req->key_usage & 0xffff);
    tsb_put16(b + 6, req->ext_key_usage & 0xffff);
    tsb_put32(b + 8, (flags & TSB_EXPECT_PATHLEN)
                     ? (unsigned long) csr->basic_pathlen : 0);
    memcpy(b + 12, csr->spki_sha256, 32);
    tsb_put16(b + 44, (unsigned) cn_len);

    p = b + TSB_EXPECT_HEAD;

    if (cn_len) {
        memcpy(p, cn, cn_len);
        p += cn_len;
    }

    tsb_put16(p, (unsigned) n);
    p += 2;

    for (i = 0; i < csr->n_sans; i++) {
        if (csr->sans[i].type == TSB_SAN_OTHER) {
            continue;
        }

        *p = (unsigned char) csr->sans[i].type;

        if (tsb_expect_san_hash(csr->sans[i].type, csr->sans[i].value,
                                strlen(csr->sans[i].value), p + 1)
            != 0)
        {
            free(b);
            return -1;
        }

        p += TSB_EXPECT_SAN_SIZE;
    }

    if (cn_len > 0 && tsb_expect_dns_like(cn, cn_len)) {
        *p = TSB_SAN_DNS;

        if (tsb_expect_san_hash(TSB_SAN_DNS, cn, cn_len, p + 1) != 0) {
            free(b);
            return -1;
        }

        p += TSB_EXPECT_SAN_SIZE;
    }

    p = tsb_expect_subject_write(csr, p);

    if (p == NULL) {
        free(b);
        return -1;
    }

    (void) tsb_expect_put_records(csr, req, max_validity, accepted_at, p);

    blob->data = b;
    blob->len = size;

    return 0;
}


static int
tsb_expect_parse(const unsigned char *blob, size_t len, tsb_expect_t *e)
{
    size_t                 n;
    const unsigned char   *p, *end;

    memset(e, 0, sizeof(tsb_expect_t));

    if (blob == NULL || len < TSB_EXPECT_HEAD + 2
        || blob[0] != 'T' || blob[1] != 'X'
        || (blob[2] != TSB_EXPECT_VERSION && blob[2] != TSB_EXPECT_V1)
        || (blob[3] & ~(TSB_EXPECT_CA | TSB_EXPECT_PATHLEN)) != 0)
    {
        return -1;
    }

    end = blob + len;

    e->flags = blob[3];
    e->key_usage = tsb_get16(blob + 4);
    e->ext_key_usage = tsb_get16(blob + 6);
    e->path_len = (e->flags & TSB_EXPECT_PATHLEN)
                  ? (long) tsb_get32(blob + 8) : -1;
    e->spki = blob + 12;
    e->cn_len = tsb_get16(blob + 44);

    p = blob + TSB_EXPECT_HEAD;

    if ((size_t) (end - p) < e->cn_len + 2) {
        return -1;
    }

    e->cn = p;
    p += e->cn_len;

    n = tsb_get16(p);
    p += 2;

    if ((size_t) (end - p) < n * TSB_EXPECT_SAN_SIZE
        || (blob[2] == TSB_EXPECT_V1
            && (size_t) (end - p) != n * TSB_EXPECT_SAN_SIZE))
    {
        return -1;
    }

    e->sans = p;
    e->n_sans = n;

    if (tsb_expect_parse_records(p + n * TSB_EXPECT_SAN_SIZE, end, e) != 0) {
        return -1;
    }

    /* a version 2 blob without its subject or lifetime was cut short */
    if (blob[2] == TSB_EXPECT_VERSION && (e->subject == NULL || !e->has_life))
    {
        return -1;
    }

    return 0;
}


/*
 * The 'S' section: what tsb_verify_subject() compares the issued
 * certificate's subject with.  Only a CSR attribute with an OID and a
 * text value is written; the policy refused any other.
 */

static size_t
tsb_expect_subject_size(const tsb_csr_t *csr)
{
    size_t                     i, size;
    const tsb_subject_attr_t  *a;

    size = 1 + 2 + 2;

    for (i = 0; i < csr->n_subject_attrs; i++) {
        a = &csr->subject_attrs[i];
        size += 1 + strlen(a->oid) + 2 + a->value_len;
    }

    return size;
}


static unsigned char *
tsb_expect_subject_write(const tsb_csr_t *csr, unsigned char *p)
{
    size_t                     i, olen;
    unsigned char             *start;
    const tsb_subject_attr_t  *a;

    if (csr->n_subject_attrs > 0xffff
        || tsb_expect_subject_size(csr) - 3 > 0xffff)
    {
        return NULL;
    }

    *p++ = TSB_EXPECT_REC_SUBJECT;
    start = p;
    p += 2;

    tsb_put16(p, (unsigned) csr->n_subject_attrs);
    p += 2;

    for (i = 0; i < csr->n_subject_attrs; i++) {
        a = &csr->subject_attrs[i];
        olen = strlen(a->oid);

        if (olen == 0 || a->value == NULL || a->value_len > 0xffff) {
            return NULL;
        }

        *p++ = (unsigned char) olen;
        memcpy(p, a->oid, olen);
        p += olen;
        tsb_put16(p, (unsigned) a->value_len);
        p += 2;
        memcpy(p, a->value, a->value_len);
        p += a->value_len;
    }

    tsb_put16(start, (unsigned) (p - start - 2));

    return p;
}


/* the 'S' record: every entry whole and within the record */

static int
tsb_expect_parse_subject(const unsigned char *body, size_t len,
    tsb_expect_t *e)
{
    size_t                i, olen, vlen;
    const unsigned char  *q, *end;

    if (len < 2) {
        return -1;
    }

    end = body + len;

    e->n_subject = tsb_get16(body);
    e->subject = body + 2;
    e->subject_len = len - 2;

    q = e->subject;

    for (i = 0; i < e->n_subject; i++) {
        if ((size_t) (end - q) < 1) {
            return -1;
        }

        olen = q[0];

        if (olen == 0 || (size_t) (end - q) < 1 + olen + 2) {
            return -1;
        }

        vlen = tsb_get16(q + 1 + olen);

        if ((size_t) (end - q) < 1 + olen + 2 + vlen) {
            return -1;
        }

        q += 1 + olen + 2 + vlen;
    }

    return q == end ? 0 : -1;
}


/*
 * Version 2 records: the subject, the lifetime, then the extensions, each
 * record whole; the 'E' records stay in place (one run) for
 * tsb_verify_extensions().
 */

static int
tsb_expect_parse_records(const unsigned char *p, const unsigned char *end,
    tsb_expect_t *e)
{
    size_t                 len;
    const unsigned char   *q;

    for (q = p; q < end; q += 3 + len) {
        if (end - q < 3) {
            return -1;
        }

        len = tsb_get16(q + 1);

        if ((size_t) (end - q - 3) < len) {
            return -1;
        }

        switch (q[0]) {

        case TSB_EXPECT_REC_SUBJECT:
            if (e->subject != NULL
                || tsb_expect_parse_subject(q + 3, len, e) != 0)
            {
                return -1;
            }

            break;

        case TSB_EXPECT_REC_LIFE:
            if (e->subject == NULL || e->has_life
                || len != TSB_EXPECT_LIFE_SIZE)
            {
                return -1;
            }

            e->has_life = 1;
            e->life = (long) tsb_get32(q + 3);
            e->life_days = (long) tsb_get16(q + 7);
            e->accepted_at = (int64_t) (((uint64_t) tsb_get32(q + 9) << 32)
                                        | tsb_get32(q + 13));
            break;

        case TSB_EXPECT_REC_EXT:
            if (len == 0 || len >= TSB_OID_MAX || !e->has_life) {
                return -1;
            }

            if (e->exts == NULL) {
                e->exts = q;
            }

            e->exts_len = (size_t) (q + 3 + len - e->exts);
            break;

        default:
            return -1;
        }
    }

    return 0;
}


/* the accepted extensions: what the policy let through, SKI aside */

static int
tsb_expect_ext_kept(const tsb_csr_ext_t *x)
{
    return !(x->nid == NID_subject_key_identifier && x->readable);
}


static size_t
tsb_expect_records_size(const tsb_csr_t *csr)
{
    size_t  i, size;

    size = 3 + TSB_EXPECT_LIFE_SIZE;

    for (i = 0; i < csr->n_exts; i++) {
        if (tsb_expect_ext_kept(&csr->exts[i])) {
            size += 3 + strlen(csr->exts[i].oid);
        }
    }

    return size;
}


static unsigned char *
tsb_expect_put_records(const tsb_csr_t *csr, const tsb_sign_req_t *req,
    long max_validity, int64_t accepted_at, unsigned char *p)
{
    long      life, days;
    size_t    i, n;
    uint64_t  t;

    days = (req->validity > 0 && req->validity <= 0xffff) ? req->validity
                                                         : 0;
    life = days ? days * 86400
                : (max_validity > 0 ? max_validity : TSB_POLICY_MAX_VALIDITY);
    t = (uint64_t) accepted_at;

    p[0] = TSB_EXPECT_REC_LIFE;
    tsb_put16(p + 1, TSB_EXPECT_LIFE_SIZE);
    tsb_put32(p + 3, (unsigned long) life);
    tsb_put16(p + 7, (unsigned) days);
    tsb_put32(p + 9, (unsigned long) (t >> 32));
    tsb_put32(p + 13, (unsigned long) (t & 0xffffffff));
    p += 3 + TSB_EXPECT_LIFE_SIZE;

    for (i = 0; i < csr->n_exts; i++) {
        if (!tsb_expect_ext_kept(&csr->exts[i])) {
            continue;
        }

        n = strlen(csr->exts[i].oid);

        p[0] = TSB_EXPECT_REC_EXT;
        tsb_put16(p + 1, (unsigned) n);
        memcpy(p + 3, csr->exts[i].oid, n);
        p += 3 + n;
    }

    return p;
}


/*
 * DNS names are compared as DNS compares them: ASCII case folded, one
 * trailing dot dropped; the domain of an email address likewise.  URIs
 * and IP addresses (in inet_ntop() text form on both sides) are exact.
 */

static int
tsb_expect_san_hash(int type, const char *value, size_t len,
    unsigned char *out)
{
    int             rc;
    size_t          i, fold;
    unsigned char  *buf, c, md[EVP_MAX_MD_SIZE];

    buf = malloc(len + 1);
    if (buf == NULL) {
        return -1;
    }

    buf[0] = (unsigned char) type;

    if (type == TSB_SAN_DNS && len > 0 && value[len - 1] == '.') {
        len--;
    }

    /* case is folded from here on: all of a DNS name, an email's domain */

    fold = len;

    if (type == TSB_SAN_DNS) {
        fold = 0;

    } else if (type == TSB_SAN_EMAIL) {
        for (i = len; i > 0; i--) {
            if (value[i - 1] == '@') {
                fold = i;
                break;
            }
        }
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) value[i];

        if (i >= fold && (type == TSB_SAN_DNS || type == TSB_SAN_EMAIL)
            && c >= 'A' && c <= 'Z')
        {
            c |= 0x20;
        }

        buf[i + 1] = c;
    }

    rc = EVP_Digest(buf, len + 1, md, NULL, EVP_sha256(), NULL);

    free(buf);

    if (rc != 1) {
        ERR_clear_error();
        return -1;
    }

    memcpy(out, md, TSB_EXPECT_HASH);

    return 0;
}


static int
tsb_expect_dns_like(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '.'
              || c == '_'))
        {
            return 0;
        }
    }

    return 1;
}


/* the issued certificate, one whole DER X509 and nothing after it */

static X509 *
tsb_verify_d2i(const unsigned char *der, size_t der_len, tsb_error_t *err)
{
    X509                 *x;
    const unsigned char  *p;

    if (der == NULL || der_len == 0 || der_len > LONG_MAX) {
        tsb_error_set(err, 502, "upstream.certificate",
                      "the TSB gave no certificate");
        return NULL;
    }

    p = der;
    x = d2i_X509(NULL, &p, (long) der_len);

    if (x == NULL || p != der + der_len) {
        X509_free(x);
        ERR_clear_error();
        tsb_error_set(err, 502, "upstream.certificate",
                      "the TSB's certificate cannot be parsed");
        return NULL;
    }

    return x;
}


int
tsb_expect_verify(const unsigned char *blob, size_t len,
    const tsb_cert_t *cert, const unsigned char *der, size_t der_len,
    const tsb_chain_t *issuers, tsb_error_t *err)
{
    int            rc;
    X509          *x;
    tsb_expect_t   e;

    if (tsb_expect_parse(blob, len, &e) != 0) {
        tsb_error_set(err, 500, "internal.expect",
                      "what the gateway accepted for this request is not "
                      "readable");
        return -1;
    }

    if ((der == NULL || der_len == 0) && cert != NULL) {
        der = cert->der.data;
        der_len = cert->der.len;
    }

    x = tsb_verify_d2i(der, der_len, err);
    if (x == NULL) {
        return -1;
    }

    rc = -1;

    if (tsb_verify_key(&e, x, cert, err) != 0
        || tsb_verify_cn(&e, x, err) != 0
        || tsb_verify_subject(&e, x, err) != 0
        || tsb_verify_sans(&e, x, err) != 0
        || tsb_verify_key_usage(&e, x, err) != 0
        || tsb_verify_ext_key_usage(&e, x, err) != 0
        || tsb_verify_ca(&e, x, err) != 0
        || tsb_verify_issuer(x, issuers, err) != 0
        || tsb_verify_extensions(&e, x, err) != 0
        || tsb_verify_lifetime(&e, x, err) != 0)
    {
        goto done;
    }

    rc = 0;

done:

    X509_free(x);
    ERR_clear_error();

    return rc;
}


/*
 * Extensions a CA sets of its own accord, whatever was asked for: they
 * say who issued the certificate and where to check it, not what its key
 * may do.
 */

static const char *const  tsb_verify_ca_exts[] = {
    "2.5.29.14",                    /* subjectKeyIdentifier */
    "2.5.29.35",                    /* authorityKeyIdentifier */
    "1.3.6.1.5.5.7.1.1",            /* authorityInfoAccess */
    "2.5.29.31",                    /* cRLDistributionPoints */
    "2.5.29.32",                    /* certificatePolicies */
    "1.3.6.1.4.1.11129.2.4.2",      /* signed certificate timestamps */
    NULL
};


static int
tsb_verify_extensions(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int                    i, j, n, nid;
    char                   oid[TSB_OID_MAX];
    size_t                 len;
    const char            *sn;
    const char *const     *c;
    ASN1_OBJECT           *obj;
    const unsigned char   *q, *end;

    n = X509_get_ext_count(x);

    for (i = 0; i < n; i++) {
        obj = X509_EXTENSION_get_object(X509_get_ext(x, i));

        for (j = 0; j < i; j++) {
            if (OBJ_cmp(obj, X509_EXTENSION_get_object(X509_get_ext(x, j)))
                == 0)
            {
                tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                              "the issued certificate carries an extension "
                              "twice");
                return -1;
            }
        }

        nid = OBJ_obj2nid(obj);

        /* judged by the checks above */

        if (nid == NID_subject_alt_name || nid == NID_key_usage
            || nid == NID_ext_key_usage || nid == NID_basic_constraints)
        {
            continue;
        }

        len = (size_t) OBJ_obj2txt(oid, sizeof(oid), obj, 1);

        if (len == 0 || len >= sizeof(oid)) {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate carries an extension "
                          "with an unreadable OID");
            return -1;
        }

        for (c = tsb_verify_ca_exts; *c; c++) {
            if (strcmp(*c, oid) == 0) {
                break;
            }
        }

        if (*c != NULL) {
            continue;
        }

        end = e->exts ? e->exts + e->exts_len : NULL;

        for (q = e->exts; q != NULL && q < end; q += 3 + tsb_get16(q + 1)) {
            if (q[0] == TSB_EXPECT_REC_EXT && tsb_get16(q + 1) == len
                && memcmp(q + 3, oid, len) == 0)
            {
                break;
            }
        }

        if (q != NULL && q < end) {
            continue;
        }

        sn = (nid != NID_undef) ? OBJ_nid2ln(nid) : NULL;

        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate carries extension %s%s%s%s, "
                      "which was not accepted", sn ? sn : oid,
                      sn ? " (" : "", sn ? oid : "", sn ? ")" : "");
        return -1;
    }

    return 0;
}


/*
 * notAfter - notBefore within the accepted lifetime, and a notBefore
 * that neither predates the acceptance (beyond the TSB's midnight
 * dating) nor lies in the future: a certificate valid before anyone
 * asked for it, or only later, is not what was approved.
 */

static int
tsb_verify_lifetime(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int64_t          nb, na, now;
    struct tm        tm;
    const ASN1_TIME  *t;

    if (!e->has_life) {
        return 0;
    }

    t = X509_get0_notBefore(x);

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        goto unreadable;
    }

    nb = (int64_t) timegm(&tm);

    t = X509_get0_notAfter(x);

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        goto unreadable;
    }

    na = (int64_t) timegm(&tm);
    now = (int64_t) time(NULL);

    if (na - nb > (int64_t) e->life + TSB_VERIFY_SKEW) {
        if (e->life_days) {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate is valid for %lld "
                          "seconds; %ld days were accepted",
                          (long long) (na - nb), e->life_days);

        } else {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate is valid for %lld "
                          "seconds; tsb_max_validity was %ld",
                          (long long) (na - nb), e->life);
        }

        return -1;
    }

    if (nb < e->accepted_at - TSB_VERIFY_BACKDATE - TSB_VERIFY_SKEW) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's notBefore lies %lld "
                      "seconds before the request was accepted",
                      (long long) (e->accepted_at - nb));
        return -1;
    }

    if (nb > now + TSB_VERIFY_SKEW) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's notBefore lies %lld "
                      "seconds in the future",
                      (long long) (nb - now));
        return -1;
    }

    return 0;

unreadable:

    ERR_clear_error();
    tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                  "the issued certificate's validity cannot be read");
    return -1;
}


int
tsb_chain_verify_issued(const tsb_chain_t *issuers, const unsigned char *der,
    size_t der_len, tsb_error_t *err)
{
    int    rc;
    X509  *x;

    x = tsb_verify_d2i(der, der_len, err);
    if (x == NULL) {
        return -1;
    }

    rc = tsb_verify_issuer(x, issuers, err);

    X509_free(x);
    ERR_clear_error();

    return rc;
}


static int
tsb_verify_key(const tsb_expect_t *e, X509 *x, const tsb_cert_t *cert,
    tsb_error_t *err)
{
    int             n;
    unsigned char  *spki, md[EVP_MAX_MD_SIZE];

    if (cert != NULL) {
        memcpy(md, cert->spki_sha256, 32);

    } else {
        spki = NULL;
        n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);

        if (n <= 0
            || EVP_Digest(spki, (size_t) n, md, NULL, EVP_sha256(), NULL)
               != 1)
        {
            OPENSSL_free(spki);
            tsb_error_set(err, 502, "upstream.certificate",
                          "the public key of the TSB's certificate cannot "
                          "be read");
            return -1;
        }

        OPENSSL_free(spki);
    }

    if (memcmp(md, e->spki, 32) != 0) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's public key is not the "
                      "CSR's");
        return -1;
    }

    return 0;
}


static int
tsb_verify_cn(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int               n, idx, count;
    char              q1[TSB_VERIFY_QUOTE_MAX + 8];
    char              q2[TSB_VERIFY_QUOTE_MAX + 8];
    X509_NAME        *subject;
    unsigned char    *utf8;
    X509_NAME_ENTRY  *entry;

    subject = X509_get_subject_name(x);

    count = 0;
    idx = -1;

    while ((n = X509_NAME_get_index_by_NID(subject, NID_commonName, idx))
           >= 0)
    {
        count++;
        idx = n;
    }

    if (count != 1) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate has %d commonNames, not one",
                      count);
        return -1;
    }

    entry = X509_NAME_get_entry(subject, idx);
    utf8 = NULL;
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));

    if (n < 0) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's commonName is not text");
        return -1;
    }

    if ((size_t) n != e->cn_len || memcmp(utf8, e->cn, e->cn_len) != 0) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's commonName %s is not the "
                      "accepted %s",
                      tsb_verify_quote(utf8, (size_t) n, q1, sizeof(q1)),
                      tsb_verify_quote(e->cn, e->cn_len, q2, sizeof(q2)));
        OPENSSL_free(utf8);
        return -1;
    }

    OPENSSL_free(utf8);

    return 0;
}


/*
 * The subject besides the commonName: the same attributes with the same
 * values as accepted, in any order (a CA may order the RDNs its own way),
 * each in an RDN of its own.  A CA that adds one (O=system:masters), drops
 * one or changes a value is refused.  Values are compared as UTF-8, so a
 * PrintableString and a UTF8String of the same text are equal.
 */

static int
tsb_verify_subject(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int                   i, count, set, last_set, olen, vlen, nid;
    char                  oid[TSB_SUBJECT_OID_MAX];
    char                  q[TSB_VERIFY_QUOTE_MAX + 8];
    size_t                j, ol, vl;
    X509_NAME            *subject;
    const char           *type;
    unsigned char        *utf8, used[TSB_EXPECT_SUBJECT_MAX];
    X509_NAME_ENTRY      *entry;
    const ASN1_OBJECT    *obj;
    const unsigned char  *p;

    if (e->subject == NULL) {
        /* written before subjects were recorded: only the CN is known */
        return 0;
    }

    if (e->n_subject > TSB_EXPECT_SUBJECT_MAX) {
        tsb_error_set(err, 500, "internal.expect",
                      "what the gateway accepted for this request is not "
                      "readable");
        return -1;
    }

    memset(used, 0, sizeof(used));

    subject = X509_get_subject_name(x);
    count = X509_NAME_entry_count(subject);
    last_set = -1;

    for (i = 0; i < count; i++) {
        entry = X509_NAME_get_entry(subject, i);
        set = X509_NAME_ENTRY_set(entry);

        if (set == last_set) {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's subject has an RDN of "
                          "several attributes");
            return -1;
        }

        last_set = set;
        obj = X509_NAME_ENTRY_get_object(entry);
        nid = OBJ_obj2nid(obj);

        if (nid == NID_commonName) {
            continue;
        }

        olen = OBJ_obj2txt(oid, sizeof(oid), obj, 1);

        if (olen <= 0 || olen >= (int) sizeof(oid)) {
            oid[0] = '\0';
            olen = 0;
        }

        type = (nid != NID_undef) ? OBJ_nid2sn(nid)
                                  : (olen ? oid : "(a long OID)");

        utf8 = NULL;
        vlen = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));

        if (vlen < 0) {
            ERR_clear_error();
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's subject attribute %s "
                          "is not text", type);
            return -1;
        }

        /* the first accepted entry not yet matched with the same value */

        p = e->subject;

        for (j = 0; j < e->n_subject; j++) {
            ol = p[0];
            vl = tsb_get16(p + 1 + ol);

            if (!used[j] && olen > 0 && ol == (size_t) olen
                && memcmp(p + 1, oid, ol) == 0 && vl == (size_t) vlen
                && memcmp(p + 1 + ol + 2, utf8, vl) == 0)
            {
                used[j] = 1;
                break;
            }

            p += 1 + ol + 2 + vl;
        }

        if (j == e->n_subject) {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's subject has %s=%s, "
                          "which was not accepted", type,
                          tsb_verify_quote(utf8, (size_t) vlen, q,
                                           sizeof(q)));
            OPENSSL_free(utf8);
            return -1;
        }

        OPENSSL_free(utf8);
    }

    p = e->subject;

    for (j = 0; j < e->n_subject; j++) {
        ol = p[0];
        vl = tsb_get16(p + 1 + ol);

        if (!used[j]) {
            memcpy(oid, p + 1, ol < sizeof(oid) ? ol : sizeof(oid) - 1);
            oid[ol < sizeof(oid) ? ol : sizeof(oid) - 1] = '\0';
            nid = OBJ_txt2nid(oid);

            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's subject lacks the "
                          "accepted %s=%s",
                          nid != NID_undef ? OBJ_nid2sn(nid) : oid,
                          tsb_verify_quote(p + 1 + ol + 2, vl, q,
                                           sizeof(q)));
            return -1;
        }

        p += 1 + ol + 2 + vl;
    }

    return 0;
}


static int
tsb_verify_sans(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int                   i, n, crit, type, found;
    char                  ip[INET6_ADDRSTRLEN], q[TSB_VERIFY_QUOTE_MAX + 8];
    size_t                j, vlen, k;
    const char           *value, *kind;

    kind = "";
    GENERAL_NAME         *gen;
    GENERAL_NAMES        *gens;
    unsigned char         hash[TSB_EXPECT_HASH];
    const ASN1_STRING    *s;
    const unsigned char  *d, *entry;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);

    if (gens == NULL) {
        if (crit == -1) {
            return 0;
        }

        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's subjectAltName extension "
                      "is repeated or malformed");
        return -1;
    }

    n = sk_GENERAL_NAME_num(gens);

    for (i = 0; i < n; i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        value = NULL;
        vlen = 0;
        s = NULL;

        switch (gen->type) {

        case GEN_DNS:
            type = TSB_SAN_DNS;
            kind = "DNS";
            s = gen->d.dNSName;
            break;

        case GEN_EMAIL:
            type = TSB_SAN_EMAIL;
            kind = "email";
            s = gen->d.rfc822Name;
            break;

        case GEN_URI:
            type = TSB_SAN_URI;
            kind = "URI";
            s = gen->d.uniformResourceIdentifier;
            break;

        case GEN_IPADD:
            type = TSB_SAN_IP;
            kind = "IP";
            s = gen->d.iPAddress;

            if (ASN1_STRING_length(s) != 4 && ASN1_STRING_length(s) != 16)
            {
                goto bad_value;
            }

            if (inet_ntop(ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6,
                          ASN1_STRING_get0_data(s), ip, sizeof(ip))
                == NULL)
            {
                goto bad_value;
            }

            value = ip;
            vlen = strlen(ip);
            break;

        default:
            switch (gen->type) {
            case GEN_OTHERNAME:
                kind = "otherName";
                break;
            case GEN_X400:
                kind = "x400Address";
                break;
            case GEN_DIRNAME:
                kind = "directoryName";
                break;
            case GEN_EDIPARTY:
                kind = "ediPartyName";
                break;
            case GEN_RID:
                kind = "registeredID";
                break;
            default:
                kind = "unknown";
                break;
            }

            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate has a %s subjectAltName, "
                          "a type that was not accepted", kind);
            GENERAL_NAMES_free(gens);
            return -1;
        }

        if (value == NULL) {
            d = ASN1_STRING_get0_data(s);
            vlen = (size_t) ASN1_STRING_length(s);

            /* the CSR's side held printable ASCII only */

            for (k = 0; k < vlen; k++) {
                if (d[k] < 0x20 || d[k] >= 0x7f) {
                    goto bad_value;
                }
            }

            value = (const char *) d;
        }

        if (tsb_expect_san_hash(type, value, vlen, hash) != 0) {
            tsb_error_set(err, 500, "internal.memory", "out of memory");
            GENERAL_NAMES_free(gens);
            return -1;
        }

        found = 0;

        for (j = 0; j < e->n_sans; j++) {
            entry = e->sans + j * TSB_EXPECT_SAN_SIZE;

            if (entry[0] == type
                && memcmp(entry + 1, hash, TSB_EXPECT_HASH) == 0)
            {
                found = 1;
                break;
            }
        }

        if (!found) {
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's subjectAltName %s:%s was "
                          "not accepted", kind,
                          tsb_verify_quote((const unsigned char *) value,
                                           vlen, q, sizeof(q)));
            GENERAL_NAMES_free(gens);
            return -1;
        }
    }

    GENERAL_NAMES_free(gens);

    return 0;

bad_value:

    tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                  "the issued certificate has a malformed %s "
                  "subjectAltName", kind);
    GENERAL_NAMES_free(gens);

    return -1;
}


/*
 * An extension X509_get_ext_d2i() did not give: repeated or malformed
 * (crit is not -1) is a mismatch, and so is its absence, which leaves the
 * key unrestricted, when what was accepted restricted it.
 */

static int
tsb_verify_absent(int crit, unsigned accepted, const char *ext,
    const char *what, tsb_error_t *err)
{
    if (crit != -1) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's %s extension is repeated "
                      "or malformed", ext);
        return -1;
    }

    if (accepted != 0) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate has no %s extension, so no "
                      "restriction of its %s", ext, what);
        return -1;
    }

    return 0;
}


static int
tsb_verify_key_usage(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int               i, nbits, crit;
    unsigned          bits, bad;
    const char       *name;
    ASN1_BIT_STRING  *ku;

    ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);

    if (ku == NULL) {
        return tsb_verify_absent(crit, e->key_usage, "keyUsage", "usage",
                                 err);
    }

    bits = 0;
    nbits = ASN1_STRING_length(ku) * 8;

    for (i = 0; i < nbits; i++) {
        if (!ASN1_BIT_STRING_get_bit(ku, i)) {
            continue;
        }

        if (i >= (int) (sizeof(tsb_verify_ku_bits) / sizeof(unsigned))) {
            ASN1_BIT_STRING_free(ku);
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's keyUsage sets an "
                          "unknown bit");
            return -1;
        }

        bits |= tsb_verify_ku_bits[i];
    }

    ASN1_BIT_STRING_free(ku);

    bad = bits & ~e->key_usage;

    if (bad) {
        name = tsb_key_usage_name(tsb_verify_lowest_bit(bad));
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's keyUsage %s was not "
                      "accepted", name ? name : "(unknown)");
        return -1;
    }

    return 0;
}


static int
tsb_verify_ext_key_usage(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int                  i, n, crit;
    char                 oid[80];
    unsigned             bit;
    const char          *name;
    ASN1_OBJECT         *obj;
    EXTENDED_KEY_USAGE  *eku;

    eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);

    if (eku == NULL) {
        return tsb_verify_absent(crit, e->ext_key_usage, "extendedKeyUsage",
                                 "purpose", err);
    }

    n = sk_ASN1_OBJECT_num(eku);

    for (i = 0; i < n; i++) {
        obj = sk_ASN1_OBJECT_value(eku, i);
        bit = tsb_ext_key_usage_from_nid(OBJ_obj2nid(obj));

        if (bit != 0 && (bit & e->ext_key_usage)) {
            continue;
        }

        if (bit != 0) {
            name = tsb_ext_key_usage_name(bit);
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's extendedKeyUsage %s was "
                          "not accepted", name ? name : "(unknown)");

        } else {
            if (OBJ_obj2txt(oid, sizeof(oid), obj, 1) <= 0) {
                strcpy(oid, "(unreadable)");
            }

            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate's extendedKeyUsage %s was "
                          "not accepted", oid);
        }

        EXTENDED_KEY_USAGE_free(eku);
        return -1;
    }

    EXTENDED_KEY_USAGE_free(eku);

    return 0;
}


static int
tsb_verify_ca(const tsb_expect_t *e, X509 *x, tsb_error_t *err)
{
    int                 crit, is_ca;
    int64_t             v;
    BASIC_CONSTRAINTS  *bc;

    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);

    if (bc == NULL && crit != -1) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's basicConstraints extension "
                      "is repeated or malformed");
        return -1;
    }

    is_ca = (bc != NULL && bc->ca);

    if (!(e->flags & TSB_EXPECT_CA)) {

        /*
         * X509_check_ca() also counts what OpenSSL itself would take for
         * a CA without basicConstraints: a v1 self-signed certificate,
         * keyCertSign alone, a Netscape CA cert type.
         */

        if (is_ca || X509_check_ca(x) != 0) {
            BASIC_CONSTRAINTS_free(bc);
            tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                          "the issued certificate is a CA certificate; a "
                          "CA was not accepted");
            return -1;
        }

        BASIC_CONSTRAINTS_free(bc);
        return 0;
    }

    if (!is_ca || !(e->flags & TSB_EXPECT_PATHLEN)) {
        BASIC_CONSTRAINTS_free(bc);
        return 0;
    }

    if (bc->pathlen == NULL) {
        BASIC_CONSTRAINTS_free(bc);
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued CA certificate has no pathLenConstraint; "
                      "%ld was accepted", e->path_len);
        return -1;
    }

    if (ASN1_INTEGER_get_int64(&v, bc->pathlen) != 1 || v < 0
        || v > e->path_len)
    {
        BASIC_CONSTRAINTS_free(bc);
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued CA certificate's pathLenConstraint is "
                      "larger than the accepted %ld", e->path_len);
        return -1;
    }

    BASIC_CONSTRAINTS_free(bc);

    return 0;
}


static int
tsb_verify_issuer(X509 *x, const tsb_chain_t *issuers, tsb_error_t *err)
{
    int              i, n, named;
    char             buf[TSB_VERIFY_QUOTE_MAX + 8];
    X509            *ic;
    EVP_PKEY        *pkey;
    STACK_OF(X509)  *sk;

    if (issuers == NULL || issuers->certs == NULL) {
        return 0;
    }

    sk = issuers->certs;
    n = sk_X509_num(sk);
    named = 0;

    for (i = 0; i < n; i++) {
        ic = sk_X509_value(sk, i);

        if (X509_NAME_cmp(X509_get_issuer_name(x),
                          X509_get_subject_name(ic))
            != 0)
        {
            continue;
        }

        named = 1;
        pkey = X509_get0_pubkey(ic);

        if (pkey != NULL && X509_verify(x, pkey) == 1) {
            return 0;
        }
    }

    if (named) {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate names issuer %s, but its "
                      "signature does not verify with that issuer's key",
                      tsb_verify_name(X509_get_issuer_name(x), buf,
                                      sizeof(buf)));

    } else {
        tsb_error_set(err, 502, TSB_VERIFY_MISMATCH,
                      "the issued certificate's issuer %s is not in the "
                      "issuer chain",
                      tsb_verify_name(X509_get_issuer_name(x), buf,
                                      sizeof(buf)));
    }

    return -1;
}


int
tsb_chain_load_file(const char *path, tsb_chain_t *chain, tsb_error_t *err)
{
    int                   rc;
    BIO                  *bio;
    FILE                 *f;
    long                  len;
    X509                 *x;
    char                 *name, *header, buf[TSB_VERIFY_QUOTE_MAX + 8];
    size_t                n;
    unsigned long         e;
    unsigned char        *data;
    STACK_OF(X509)       *sk;
    const unsigned char  *p;

    chain->certs = NULL;
    chain->n = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        tsb_error_set(err, 500, TSB_CHAIN_REASON, "cannot open \"%s\": %s",
                      path, strerror(errno));
        return -1;
    }

    bio = BIO_new_fp(f, BIO_CLOSE);
    sk = sk_X509_new_null();

    if (bio == NULL || sk == NULL) {
        if (bio == NULL) {
            fclose(f);
        }

        BIO_free(bio);
        sk_X509_free(sk);
        ERR_clear_error();
        tsb_error_set(err, 500, "internal.memory", "out of memory");
        return -1;
    }

    rc = -1;
    n = 0;

    for ( ;; ) {
        name = NULL;
        header = NULL;
        data = NULL;

        if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
            e = ERR_peek_last_error();

            if (ERR_GET_LIB(e) == ERR_LIB_PEM
                && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            {
                break;
            }

            tsb_error_set(err, 500, TSB_CHAIN_REASON,
                          "\"%s\": certificate %zu is not valid PEM",
                          path, n + 1);
            goto done;
        }

        n++;

        if (strcmp(name, "CERTIFICATE") != 0) {
            tsb_error_set(err, 500, TSB_CHAIN_REASON,
                          "\"%s\": PEM block %zu is \"%.40s\", not a "
                          "CERTIFICATE", path, n, name);
            goto next_failed;
        }

        if (header[0] != '\0') {
            tsb_error_set(err, 500, TSB_CHAIN_REASON,
                          "\"%s\": certificate %zu has PEM headers",
                          path, n);
            goto next_failed;
        }

        p = data;
        x = d2i_X509(NULL, &p, len);

        if (x == NULL || p != data + len) {
            X509_free(x);
            tsb_error_set(err, 500, TSB_CHAIN_REASON,
                          "\"%s\": certificate %zu cannot be parsed",
                          path, n);
            goto next_failed;
        }

        /* an issuer that is no CA would sign certificates nobody accepts */

        if (X509_check_ca(x) < 1) {
            tsb_error_set(err, 500, TSB_CHAIN_REASON,
                          "\"%s\": certificate %zu (%s) is not a CA "
                          "certificate", path, n,
                          tsb_verify_name(X509_get_subject_name(x), buf,
                                          sizeof(buf)));
            X509_free(x);
            goto next_failed;
        }

        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            tsb_error_set(err, 500, "internal.memory", "out of memory");
            goto next_failed;
        }

        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }

    if (sk_X509_num(sk) == 0) {
        tsb_error_set(err, 500, TSB_CHAIN_REASON,
                      "\"%s\" holds no certificate", path);
        goto done;
    }

    chain->certs = sk;
    chain->n = (size_t) sk_X509_num(sk);
    sk = NULL;
    rc = 0;
    goto done;

next_failed:

    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);

done:

    sk_X509_pop_free(sk, X509_free);
    BIO_free(bio);
    ERR_clear_error();

    return rc;
}


void
tsb_chain_free(tsb_chain_t *chain)
{
    if (chain == NULL) {
        return;
    }

    sk_X509_pop_free(chain->certs, X509_free);
    chain->certs = NULL;
    chain->n = 0;
}


int
tsb_chain_equal(const tsb_chain_t *a, const tsb_chain_t *b)
{
    int     i;
    size_t  na, nb;

    na = (a != NULL) ? a->n : 0;
    nb = (b != NULL) ? b->n : 0;

    if (na != nb) {
        return 0;
    }

    for (i = 0; i < (int) na; i++) {
        if (X509_cmp(sk_X509_value(a->certs, i), sk_X509_value(b->certs, i))
            != 0)
        {
            return 0;
        }
    }

    return 1;
}


int
tsb_chain_fits_algorithm(const tsb_chain_t *chain, const char *alg)
{
    int              i, n, id, want[2];
    X509            *x;
    EVP_PKEY        *pkey;
    STACK_OF(X509)  *sk;

    want[0] = EVP_PKEY_NONE;
    want[1] = EVP_PKEY_NONE;

    if (strstr(alg, "_WITH_RSA") != NULL) {
        want[0] = EVP_PKEY_RSA;
        want[1] = EVP_PKEY_RSA_PSS;

    } else if (strstr(alg, "_WITH_ECDSA") != NULL) {
        want[0] = EVP_PKEY_EC;

    } else if (strstr(alg, "ED25519") != NULL) {
        want[0] = EVP_PKEY_ED25519;

    } else if (strstr(alg, "ED448") != NULL) {
        want[0] = EVP_PKEY_ED448;

    } else if (strstr(alg, "EDDSA") != NULL) {
        want[0] = EVP_PKEY_ED25519;
        want[1] = EVP_PKEY_ED448;
    }

    if (want[0] == EVP_PKEY_NONE || chain == NULL || chain->certs == NULL) {
        return 1;
    }

    sk = chain->certs;
    n = sk_X509_num(sk);

    for (i = 0; i < n; i++) {
        x = sk_X509_value(sk, i);
        pkey = X509_get0_pubkey(x);

        if (pkey == NULL) {
            continue;
        }

        id = EVP_PKEY_get_base_id(pkey);

        if (id == want[0] || id == want[1]) {
            return 1;
        }
    }

    ERR_clear_error();

    return 0;
}


/* printable ASCII, quoted and cut, or a placeholder */

static const char *
tsb_verify_quote(const unsigned char *s, size_t len, char *buf, size_t size)
{
    size_t  i, n;

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] >= 0x7f) {
            return "(a value with non-ASCII or control characters)";
        }
    }

    n = (len > TSB_VERIFY_QUOTE_MAX) ? TSB_VERIFY_QUOTE_MAX : len;

    snprintf(buf, size, "\"%.*s\"%s", (int) n, (const char *) s,
             n < len ? "..." : "");

    return buf;
}


/* RFC 2253 with everything outside printable ASCII escaped, cut */

static const char *
tsb_verify_name(const X509_NAME *name, char *buf, size_t size)
{
    BIO         *bio;
    char        *data;
    long         n;
    const char  *q;

    bio = BIO_new(BIO_s_mem());

    if (bio == NULL
        || X509_NAME_print_ex(bio, name, 0,
                              XN_FLAG_RFC2253 | ASN1_STRFLGS_ESC_MSB)
           < 0)
    {
        BIO_free(bio);
        ERR_clear_error();
        return "(an unprintable name)";
    }

    n = BIO_get_mem_data(bio, &data);

    if (n <= 0) {
        BIO_free(bio);
        return "(an empty name)";
    }

    /* copied into buf (or a static placeholder) before the BIO goes */
    q = tsb_verify_quote((const unsigned char *) data, (size_t) n, buf, size);
    BIO_free(bio);

    return q;
}


static unsigned
tsb_verify_lowest_bit(unsigned mask)
{
    return mask & (~mask + 1);
}


int
tsb_chain_to_pem(const tsb_chain_t *chain, tsb_buf_t *out)
{
    int               i, n;
    BIO              *bio;
    char             *data;
    long              len;
    STACK_OF(X509)   *sk;

    out->data = NULL;
    out->len = 0;

    if (chain == NULL || chain->certs == NULL) {
        return 0;
    }

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return -1;
    }

    sk = chain->certs;
    n = sk_X509_num(sk);

    for (i = 0; i < n; i++) {
        if (PEM_write_bio_X509(bio, sk_X509_value(sk, i)) != 1) {
            BIO_free(bio);
            ERR_clear_error();
            return -1;
        }
    }

    len = BIO_get_mem_data(bio, &data);

    out->data = malloc((size_t) len + 1);
    if (out->data == NULL) {
        BIO_free(bio);
        return -1;
    }

    memcpy(out->data, data, (size_t) len);
    out->data[len] = '\0';
    out->len = (size_t) len;

    BIO_free(bio);

    return 0;
}
