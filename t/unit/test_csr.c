
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * CSR intake: encodings, framing errors, self-signature, and the facts
 * handed to the policy.  Fixtures come from t/fixtures/ of the checkout
 * (TSB_FIXTURES, set by the Makefile) or argv[1].
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tap.h"
#include "tsb_test_csr.h"
#include "tsb_csr.h"


/* the checkout's t/fixtures/, absolute (the Makefile sets it) */
#ifndef TSB_FIXTURES
#define TSB_FIXTURES  "t/fixtures"
#endif


static EVP_PKEY  *rsa2048, *rsa1024, *p256, *k256, *ed25519;


/* the base64 lines of a PEM block, without the armor */
static char *
pem_body(const char *pem)
{
    char        *b;
    const char  *s, *e;

    s = strchr(pem, '\n') + 1;
    e = strstr(s, "-----END");

    b = malloc((size_t) (e - s) + 1);
    if (b == NULL) {
        tt_die("malloc");
    }

    memcpy(b, s, (size_t) (e - s));
    b[e - s] = '\0';

    return b;
}


/* two buffers back to back; heap */
static unsigned char *
cat(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char  *p;

    p = malloc(alen + blen + 1);
    if (p == NULL) {
        tt_die("malloc");
    }

    memcpy(p, a, alen);
    memcpy(p + alen, b, blen);
    p[alen + blen] = '\0';

    return p;
}


static void
decode_fails(const char *what, const void *in, size_t len,
    const char *reason)
{
    int          rc;
    tsb_buf_t    der;
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));

    rc = tsb_csr_decode(in, len, &der, &err);

    is_int(rc, -1, "%s: refused", what);
    is_str(err.reason, reason, "%s: reason %s", what, reason);
    is_int(err.status, 400, "%s: status 400", what);
    ok(der.data == NULL && der.len == 0, "%s: no output", what);
    ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear", what);
    printf("#   detail: %s\n", err.detail);

    if (rc == 0) {
        tsb_buf_free(&der);
    }
}


static void
load_fails(const char *what, const void *in, size_t len, const char *reason)
{
    int          rc;
    tsb_csr_t   *csr;
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));

    rc = tsb_csr_load(in, len, &csr, &err);

    is_int(rc, -1, "%s: refused", what);
    is_str(err.reason, reason, "%s: reason %s", what, reason);
    is_int(err.status, 400, "%s: status 400", what);
    ok(csr == NULL, "%s: no CSR", what);
    ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear", what);
    printf("#   detail: %s\n", err.detail);

    if (rc == 0) {
        tsb_csr_free(csr);
    }
}


static tsb_csr_t *
load_ok(const char *what, const void *in, size_t len)
{
    int          rc;
    tsb_csr_t   *csr;
    tsb_error_t  err;

    memset(&err, 0, sizeof(err));

    rc = tsb_csr_load(in, len, &csr, &err);

    ok(rc == 0 && csr != NULL, "%s: loads", what);

    if (rc != 0) {
        printf("#   %s: %s\n", err.reason, err.detail);
        return NULL;
    }

    return csr;
}


static void
test_fixture(const char *dir)
{
    int             n;
    X509           *x;
    char           *pem, *crlf, *body;
    size_t          len;
    tsb_buf_t       der, der2;
    tsb_csr_t      *csr;
    tsb_error_t     err;
    unsigned char  *spki, md[32];

    pem = tt_read_file(dir, "tsb-csr-new-label.pem", &len);
    ok(pem != NULL, "fixture tsb-csr-new-label.pem is readable in %s", dir);

    if (pem == NULL) {
        return;
    }

    ok(strncmp(pem, "-----BEGIN NEW CERTIFICATE REQUEST-----", 39) == 0,
       "fixture: uses the NEW CERTIFICATE REQUEST label");

    is_int(tsb_csr_decode((unsigned char *) pem, len, &der, &err), 0,
           "fixture: decodes");

    csr = NULL;
    is_int(tsb_csr_parse(der.data, der.len, &csr, &err), 0,
           "fixture: parses and its signature verifies");

    if (csr == NULL) {
        printf("#   %s: %s\n", err.reason, err.detail);
        tsb_buf_free(&der);
        free(pem);
        return;
    }

    is_int(csr->n_common_names, 1, "fixture: one CN");
    is_str(csr->common_names[0], "Approver-Intermediate-SUB",
           "fixture: CN");
    is_int(csr->cn_has_nul, 0, "fixture: no NUL in CN");
    is_int(csr->key_type, TSB_KEY_RSA, "fixture: RSA");
    is_int(csr->key_bits, 2048, "fixture: 2048 bits");
    is_int(csr->sig_md_nid, NID_sha256, "fixture: SHA-256 signature");
    is_int(csr->has_ext_key_usage, 1, "fixture: EKU requested");
    is_int(csr->ext_key_usage, TSB_EKU_CODE_SIGNING,
           "fixture: EKU CODE_SIGNING");
    is_int(csr->has_unknown_eku, 0, "fixture: no unknown EKU");
    is_int(csr->has_key_usage, 1, "fixture: KU requested");
    is_int(csr->key_usage, TSB_KU_DIGITAL_SIGNATURE,
           "fixture: KU DIGITAL_SIGNATURE");
    is_int(csr->has_basic_constraints, 0, "fixture: no basicConstraints");
    is_int(csr->basic_pathlen, -1, "fixture: no pathlen");
    is_int(csr->n_sans, 0, "fixture: no SANs");
    ok(csr->der.len == der.len
       && memcmp(csr->der.data, der.data, der.len) == 0,
       "fixture: DER kept");

    /* the certificate the TSB issued for it carries the same key */

    body = tt_read_file(dir, "seed-certificate.pem", &len);
    ok(body != NULL, "fixture seed-certificate.pem is readable");

    if (body != NULL) {
        BIO  *bio;

        bio = BIO_new_mem_buf(body, (int) len);
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        free(body);

        spki = NULL;
        n = (x != NULL) ? i2d_PUBKEY(X509_get0_pubkey(x), &spki) : -1;

        ok(n > 0 && EVP_Digest(spki, (size_t) n, md, NULL, EVP_sha256(),
                               NULL) == 1
           && memcmp(md, csr->spki_sha256, 32) == 0,
           "fixture: spki_sha256 equals the issued certificate's");

        OPENSSL_free(spki);
        X509_free(x);
    }

    tsb_csr_free(csr);

    /* the same CSR with CRLF line ends and blanks around it */

    crlf = tt_replace(pem, "\n", "\r\n");
    body = (char *) cat(" \r\n\t", 4, crlf, strlen(crlf));
    free(crlf);
    crlf = (char *) cat(body, strlen(body), "\r\n\r\n  ", 7);
    free(body);

    is_int(tsb_csr_decode((unsigned char *) crlf, strlen(crlf), &der2, &err),
           0, "fixture with CRLF and surrounding whitespace: decodes");
    ok(der2.len == der.len && memcmp(der2.data, der.data, der.len) == 0,
       "fixture with CRLF: same DER");
    tsb_buf_free(&der2);
    free(crlf);

    /* the standard label */

    crlf = tt_replace(pem, "NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST");
    csr = load_ok("fixture relabelled CERTIFICATE REQUEST", crlf,
                  strlen(crlf));
    tsb_csr_free(csr);
    free(crlf);

    /* as bare base64 */

    body = pem_body(pem);
    csr = load_ok("fixture as bare base64", body, strlen(body));
    tsb_csr_free(csr);
    free(body);

    /* as DER */

    csr = load_ok("fixture as DER", der.data, der.len);
    tsb_csr_free(csr);

    tsb_buf_free(&der);
    free(pem);
}


static void
test_encodings(void)
{
    char           *pem, *pem2, *body, *s;
    tsb_buf_t       der, got, pemout;
    tsb_csr_t      *csr;
    tsb_error_t     err;
    unsigned char  *u;
    tt_csr_t        g = { .key = NULL };

    g.key = rsa2048;
    g.cn[0] = "a.svc.example";
    g.san = "DNS:a.svc.example";

    der = tt_csr_der(&g);
    pem = tt_der_to_pem(der.data, der.len);

    is_int(tsb_csr_decode((unsigned char *) pem, strlen(pem), &got, &err), 0,
           "PEM CERTIFICATE REQUEST decodes");
    ok(got.len == der.len && memcmp(got.data, der.data, der.len) == 0,
       "PEM: DER as made");
    tsb_buf_free(&got);

    pem2 = tt_replace(pem, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    is_int(tsb_csr_decode((unsigned char *) pem2, strlen(pem2), &got, &err),
           0, "PEM NEW CERTIFICATE REQUEST decodes");
    ok(got.len == der.len && memcmp(got.data, der.data, der.len) == 0,
       "PEM NEW: DER as made");
    tsb_buf_free(&got);
    free(pem2);

    /* CRLF, no final newline */

    pem2 = tt_replace(pem, "\n", "\r\n");
    pem2[strlen(pem2) - 2] = '\0';
    csr = load_ok("PEM with CRLF and no final newline", pem2, strlen(pem2));
    tsb_csr_free(csr);
    free(pem2);

    /* DER, alone and with trailing whitespace */

    is_int(tsb_csr_decode(der.data, der.len, &got, &err), 0, "DER decodes");
    ok(got.len == der.len && memcmp(got.data, der.data, der.len) == 0,
       "DER: the same bytes");
    tsb_buf_free(&got);

    u = cat(der.data, der.len, "\r\n ", 3);
    csr = load_ok("DER followed by whitespace", u, der.len + 3);
    tsb_csr_free(csr);
    free(u);

    /* bare base64, with and without line breaks */

    body = pem_body(pem);
    csr = load_ok("bare base64 with newlines", body, strlen(body));
    tsb_csr_free(csr);

    s = tt_replace(body, "\n", "");
    csr = load_ok("bare base64 on one line", s, strlen(s));
    tsb_csr_free(csr);
    free(s);

    s = tt_replace(body, "\n", " \r\n\t");
    csr = load_ok("bare base64 with mixed whitespace", s, strlen(s));
    tsb_csr_free(csr);
    free(s);

    /* tsb_csr_to_pem gives back the standard label and the same DER */

    csr = load_ok("for to_pem", pem, strlen(pem));

    if (csr != NULL) {
        is_int(tsb_csr_to_pem(csr, &pemout), 0, "to_pem");
        ok(pemout.data != NULL && pemout.data[pemout.len] == '\0'
           && strstr((char *) pemout.data,
                     "-----BEGIN CERTIFICATE REQUEST-----") != NULL,
           "to_pem: standard label, NUL-terminated");
        ok(pemout.len == strlen(pem)
           && memcmp(pemout.data, pem, pemout.len) == 0,
           "to_pem: same text as OpenSSL writes");
        tsb_buf_free(&pemout);
        tsb_csr_free(csr);
    }

    /* framing errors */

    decode_fails("empty", "", 0, "csr.empty");
    decode_fails("NULL", NULL, 0, "csr.empty");
    decode_fails("whitespace only", " \r\n\t\n", 5, "csr.empty");

    s = (char *) cat(pem, strlen(pem), "garbage\n", 8);
    decode_fails("garbage after the PEM END line", s, strlen(s),
                 "csr.trailing_data");
    free(s);

    s = (char *) cat(pem, strlen(pem), pem, strlen(pem));
    decode_fails("two PEM blocks", s, strlen(s), "csr.multiple");
    free(s);

    pem2 = tt_replace(pem, "CERTIFICATE REQUEST", "CERTIFICATE");
    s = (char *) cat(pem, strlen(pem), pem2, strlen(pem2));
    decode_fails("a CSR and a CERTIFICATE block", s, strlen(s),
                 "csr.multiple");
    free(s);

    memset(&err, 0, sizeof(err));
    decode_fails("PEM labelled CERTIFICATE", pem2, strlen(pem2),
                 "csr.encoding");
    tsb_csr_decode((unsigned char *) pem2, strlen(pem2), &got, &err);
    ok(strstr(err.detail, "labelled CERTIFICATE") != NULL,
       "CERTIFICATE label named in the detail: %s", err.detail);
    free(pem2);

    pem2 = tt_replace(pem, "CERTIFICATE REQUEST", "PRIVATE KEY");
    decode_fails("PEM labelled PRIVATE KEY", pem2, strlen(pem2),
                 "csr.encoding");
    tsb_csr_decode((unsigned char *) pem2, strlen(pem2), &got, &err);
    ok(strstr(err.detail, "PRIVATE KEY") != NULL,
       "PRIVATE KEY label named in the detail");
    free(pem2);

    pem2 = tt_replace(pem, "CERTIFICATE REQUEST", "evil\x1b[31m label");
    tsb_csr_decode((unsigned char *) pem2, strlen(pem2), &got, &err);
    is_str(err.reason, "csr.encoding", "odd PEM label: csr.encoding");
    ok(strstr(err.detail, "evil") == NULL && strchr(err.detail, 0x1b) == NULL,
       "odd PEM label is not echoed: %s", err.detail);
    free(pem2);

    pem2 = tt_replace(pem, "-----END CERTIFICATE REQUEST",
                      "-----END NEW CERTIFICATE REQUEST");
    decode_fails("END label differs from BEGIN", pem2, strlen(pem2),
                 "csr.encoding");
    free(pem2);

    s = strstr(pem, "-----END");
    pem2 = (char *) cat(pem, (size_t) (s - pem), "", 0);
    decode_fails("no END line", pem2, strlen(pem2), "csr.encoding");
    free(pem2);

    pem2 = tt_replace(pem, "\nMII", "\nM@I");
    decode_fails("a bad base64 character in PEM", pem2, strlen(pem2),
                 "csr.encoding");
    free(pem2);

    decode_fails("bare text that is no base64", "not base64!!", 12,
                 "csr.encoding");
    decode_fails("base64 with padding in the middle", "MII=MIIB", 8,
                 "csr.encoding");
    decode_fails("base64 of the wrong length", "MIIBA", 5, "csr.encoding");
    decode_fails("base64 that is no DER", "aGVsbG8gd29ybGQ=", 16,
                 "csr.encoding");
    decode_fails("empty PEM block",
                 "-----BEGIN CERTIFICATE REQUEST-----\n"
                 "-----END CERTIFICATE REQUEST-----\n", 70, "csr.encoding");
    decode_fails("PEM BEGIN line without dashes",
                 "-----BEGIN CERTIFICATE REQUEST\nMIIB\n", 36,
                 "csr.encoding");
    decode_fails("text before the PEM block",
                 "Certificate Request:\n-----BEGIN CERTIFICATE REQUEST-----"
                 "\n", 57, "csr.encoding");

    u = cat(der.data, der.len, "\x00\x01", 2);
    decode_fails("garbage after DER", u, der.len + 2, "csr.trailing_data");
    free(u);

    u = cat(der.data, der.len, " x", 2);
    decode_fails("whitespace then garbage after DER", u, der.len + 2,
                 "csr.trailing_data");
    free(u);

    decode_fails("truncated DER", der.data, der.len - 1, "csr.encoding");

    /* base64 of DER with a byte after it */

    u = cat(der.data, der.len, "\x00", 1);
    s = malloc(4 * (der.len + 3) / 3 + 8);
    EVP_EncodeBlock((unsigned char *) s, u, (int) der.len + 1);
    decode_fails("base64 of DER plus a byte", s, strlen(s),
                 "csr.trailing_data");
    free(s);
    free(u);

    /* valid framing, not a CSR */

    load_fails("DER that is no CSR", "\x30\x03\x02\x01\x00", 5, "csr.parse");

    /* tsb_csr_parse itself refuses bytes after the CSR */

    u = cat(der.data, der.len, "\x00", 1);
    memset(&err, 0, sizeof(err));
    is_int(tsb_csr_parse(u, der.len + 1, &csr, &err), -1,
           "parse: DER plus a byte refused");
    is_str(err.reason, "csr.trailing_data", "parse: csr.trailing_data");
    ok(ERR_peek_error() == 0, "parse: OpenSSL error queue is clear");
    free(u);

    free(body);
    free(pem);
    tsb_buf_free(&der);
}


static void
test_signature(void)
{
    size_t          i;
    tsb_buf_t       der;
    tt_csr_t        g = { .key = NULL };
    unsigned char  *u;
    const char     *needle;

    g.key = rsa2048;
    g.cn[0] = "tamper.svc.example";

    der = tt_csr_der(&g);

    /* the signature is the last element: flip its last byte */

    der.data[der.len - 1] ^= 0x01;
    load_fails("flipped byte in the signature", der.data, der.len,
               "csr.signature");
    der.data[der.len - 1] ^= 0x01;

    /* change the subject after signing */

    needle = "tamper";
    u = NULL;

    for (i = 0; i + 6 <= der.len; i++) {
        if (memcmp(der.data + i, needle, 6) == 0) {
            u = der.data + i;
            break;
        }
    }

    ok(u != NULL, "found the CN in the DER");

    if (u != NULL) {
        u[0] = 'T';
        load_fails("subject changed after signing", der.data, der.len,
                   "csr.signature");
    }

    tsb_buf_free(&der);

    /* Ed25519 and SHA-1 signatures verify; the policy judges them */

    g.key = ed25519;
    g.md = "none";
    der = tt_csr_der(&g);
    {
        tsb_csr_t  *csr = load_ok("Ed25519 CSR", der.data, der.len);

        if (csr) {
            is_int(csr->key_type, TSB_KEY_ED25519, "Ed25519: key type");
            is_int(csr->sig_md_nid, NID_undef, "Ed25519: no digest");
            tsb_csr_free(csr);
        }
    }
    tsb_buf_free(&der);

    g.key = rsa2048;
    g.md = "sha1";
    der = tt_csr_der(&g);
    {
        tsb_csr_t  *csr = load_ok("SHA-1 CSR", der.data, der.len);

        if (csr) {
            is_int(csr->sig_md_nid, NID_sha1, "SHA-1: digest NID");
            is_int(csr->sig_nid, NID_sha1WithRSAEncryption,
                   "SHA-1: signature NID");
            tsb_csr_free(csr);
        }
    }
    tsb_buf_free(&der);
}


static void
test_facts(void)
{
    char            *pem;
    tsb_csr_t       *csr;
    tt_csr_t         g;
    ASN1_OBJECT     *obj;
    ASN1_OCTET_STRING  *os;
    GENERAL_NAME    *gn;
    GENERAL_NAMES   *gns;
    ASN1_IA5STRING  *ia5;
    X509_REQ        *req;
    tsb_buf_t        der;
    int              n;
    X509_ATTRIBUTE  *attr;
    STACK_OF(X509_EXTENSION)  *exts;

    /* keys */

    memset(&g, 0, sizeof(g));
    g.cn[0] = "k.svc.example";

    g.key = p256;
    pem = tt_csr_pem(&g);
    csr = load_ok("P-256 CSR", pem, strlen(pem));
    if (csr) {
        is_int(csr->key_type, TSB_KEY_EC, "P-256: EC");
        is_str(csr->key_curve, "P-256", "P-256: curve name");
        is_int(csr->key_bits, 256, "P-256: 256 bits");
        is_int(csr->sig_md_nid, NID_sha256, "P-256: ecdsa-with-SHA256");
        tsb_csr_free(csr);
    }
    free(pem);

    g.key = k256;
    pem = tt_csr_pem(&g);
    csr = load_ok("secp256k1 CSR", pem, strlen(pem));
    if (csr) {
        is_str(csr->key_curve, "secp256k1", "secp256k1: curve short name");
        tsb_csr_free(csr);
    }
    free(pem);

    g.key = rsa1024;
    pem = tt_csr_pem(&g);
    csr = load_ok("RSA-1024 CSR", pem, strlen(pem));
    if (csr) {
        is_int(csr->key_bits, 1024, "RSA-1024: bits");
        tsb_csr_free(csr);
    }
    free(pem);

    /* SANs of every kind */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "s.svc.example";
    g.san = "DNS:s.svc.example,DNS:Other.Example.,IP:10.1.2.3,"
            "IP:2001:db8::1,email:ops@example.com,"
            "URI:https://s.svc.example/x,RID:1.2.3.4";

    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with SANs", pem, strlen(pem));
    if (csr) {
        is_int(csr->n_sans, 7, "SANs: 7");

        if (csr->n_sans == 7) {
            is_int(csr->sans[0].type, TSB_SAN_DNS, "SAN 0 DNS");
            is_str(csr->sans[0].value, "s.svc.example", "SAN 0 value");
            is_str(csr->sans[1].value, "Other.Example.",
                   "SAN 1 value as given");
            is_int(csr->sans[2].type, TSB_SAN_IP, "SAN 2 IP");
            is_str(csr->sans[2].value, "10.1.2.3", "SAN 2 IPv4 text");
            is_int(csr->sans[3].type, TSB_SAN_IP, "SAN 3 IP");
            is_str(csr->sans[3].value, "2001:db8::1", "SAN 3 IPv6 text");
            is_int(csr->sans[4].type, TSB_SAN_EMAIL, "SAN 4 email");
            is_str(csr->sans[4].value, "ops@example.com", "SAN 4 value");
            is_int(csr->sans[5].type, TSB_SAN_URI, "SAN 5 URI");
            is_str(csr->sans[5].value, "https://s.svc.example/x",
                   "SAN 5 value");
            is_int(csr->sans[6].type, TSB_SAN_OTHER, "SAN 6 other");
            is_str(csr->sans[6].value, "registeredID", "SAN 6 kind");
        }

        tsb_csr_free(csr);
    }
    free(pem);

    /* keyUsage bits in X.509 order, EKU, basicConstraints */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "u.svc.example";
    g.ku = "critical,digitalSignature,nonRepudiation,keyEncipherment,"
           "dataEncipherment,keyAgreement,keyCertSign,cRLSign,"
           "encipherOnly,decipherOnly";
    g.eku = "serverAuth,clientAuth,codeSigning,emailProtection,"
            "timeStamping,OCSPSigning,anyExtendedKeyUsage";
    g.bc = "critical,CA:TRUE,pathlen:2";

    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with KU, EKU, BC", pem, strlen(pem));
    if (csr) {
        is_int(csr->has_key_usage, 1, "KU present");
        is_int(csr->key_usage, 0x1ff, "KU: all nine bits");
        is_int(csr->ext_key_usage, 0x7f, "EKU: all seven named");
        is_int(csr->has_unknown_eku, 0, "EKU: none unknown");
        is_int(csr->has_basic_constraints, 1, "BC present");
        is_int(csr->basic_ca, 1, "BC CA:TRUE");
        is_int(csr->basic_pathlen, 2, "BC pathlen 2");
        tsb_csr_free(csr);
    }
    free(pem);

    g.ku = "keyEncipherment,decipherOnly";
    g.eku = "clientAuth,1.2.3.4.5";
    g.bc = "CA:FALSE";
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with some KU, unknown EKU", pem, strlen(pem));
    if (csr) {
        is_int(csr->key_usage,
               TSB_KU_KEY_ENCIPHERMENT | TSB_KU_DECIPHER_ONLY,
               "KU: keyEncipherment and decipherOnly");
        is_int(csr->ext_key_usage, TSB_EKU_CLIENT_AUTH, "EKU: clientAuth");
        is_int(csr->has_unknown_eku, 1, "EKU: an unknown OID noticed");
        is_int(csr->basic_ca, 0, "BC CA:FALSE");
        is_int(csr->basic_pathlen, -1, "BC without pathlen");
        tsb_csr_free(csr);
    }
    free(pem);

    /* commonNames: two, none, NUL inside, non-ASCII */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "one.svc.example";
    g.cn[1] = "two.svc.example";
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with two CNs", pem, strlen(pem));
    if (csr) {
        is_int(csr->n_common_names, 2, "two CNs recorded");
        is_str(csr->common_names[1], "two.svc.example", "second CN");
        tsb_csr_free(csr);
    }
    free(pem);

    memset(&g, 0, sizeof(g));
    g.key = p256;
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR without CN", pem, strlen(pem));
    if (csr) {
        is_int(csr->n_common_names, 0, "no CN recorded");
        tsb_csr_free(csr);
    }
    free(pem);

    g.cn[0] = "a.svc.example\0.evil";
    g.cn_len[0] = 19;
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with NUL in CN", pem, strlen(pem));
    if (csr) {
        is_int(csr->n_common_names, 1, "NUL CN recorded");
        is_int(csr->cn_has_nul, 1, "NUL CN marked");
        is_int(csr->common_name_lens[0], 19, "NUL CN: raw length kept");
        tsb_csr_free(csr);
    }
    free(pem);

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "Z\xc3\xbcrich";
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with UTF-8 CN", pem, strlen(pem));
    if (csr) {
        is_str(csr->common_names[0], "Z\xc3\xbcrich", "UTF-8 CN kept");
        tsb_csr_free(csr);
    }
    free(pem);

    /*
     * A CN OpenSSL cannot convert to UTF-8.  (Invalid UTF-8 or BMP
     * surrogates are refused by d2i itself, as "csr.parse".)
     */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "\x30\x00";
    g.cn_len[0] = 2;
    g.cn_type[0] = V_ASN1_SEQUENCE;
    pem = tt_csr_pem(&g);
    load_fails("CN as a SEQUENCE", pem, strlen(pem), "csr.common_name");
    free(pem);

    /* a malformed keyUsage extension */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "m.svc.example";
    os = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(os, (const unsigned char *) "\x04\x01\x00", 3);
    g.raw[0] = X509_EXTENSION_create_by_NID(NULL, NID_key_usage, 1, os);
    ASN1_OCTET_STRING_free(os);
    pem = tt_csr_pem(&g);
    load_fails("malformed keyUsage extension", pem, strlen(pem),
               "csr.extensions");
    free(pem);

    /* the same extension twice */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "d.svc.example";
    g.san = "DNS:d.svc.example";
    g.raw[0] = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                                   "DNS:evil.example");
    pem = tt_csr_pem(&g);
    load_fails("subjectAltName extension twice", pem, strlen(pem),
               "csr.extensions");
    free(pem);

    /* a DNS SAN with a NUL in it */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "n.svc.example";
    ia5 = ASN1_IA5STRING_new();
    ASN1_STRING_set(ia5, "n.svc.example\0.evil.com", 23);
    gn = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    gns = GENERAL_NAMES_new();
    sk_GENERAL_NAME_push(gns, gn);
    g.raw[0] = X509V3_EXT_i2d(NID_subject_alt_name, 0, gns);
    GENERAL_NAMES_free(gns);
    pem = tt_csr_pem(&g);
    load_fails("DNS SAN with a NUL", pem, strlen(pem), "csr.san");
    free(pem);

    /* an IP SAN of the wrong size */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "i.svc.example";
    os = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(os, (const unsigned char *) "\x0a\x00\x00", 3);
    gn = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
    gns = GENERAL_NAMES_new();
    sk_GENERAL_NAME_push(gns, gn);
    g.raw[0] = X509V3_EXT_i2d(NID_subject_alt_name, 0, gns);
    GENERAL_NAMES_free(gns);
    pem = tt_csr_pem(&g);
    load_fails("IP SAN of 3 bytes", pem, strlen(pem), "csr.san");
    free(pem);

    /* an extension request that is no SEQUENCE, and two of them */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "r.svc.example";
    req = tt_csr_req(&g);
    X509_REQ_add1_attr_by_NID(req, NID_ext_req, V_ASN1_UTF8STRING,
                              (const unsigned char *) "x", 1);
    X509_REQ_sign(req, p256, EVP_sha256());
    der.data = NULL;
    n = i2d_X509_REQ(req, &der.data);
    load_fails("extensionRequest that is no SEQUENCE", der.data, (size_t) n,
               "csr.extensions");
    OPENSSL_free(der.data);
    X509_REQ_free(req);

    g.san = "DNS:r.svc.example";
    g.raw[0] = NULL;
    req = tt_csr_req(&g);
    gns = GENERAL_NAMES_new();
    gn = GENERAL_NAME_new();
    ia5 = ASN1_IA5STRING_new();
    ASN1_STRING_set(ia5, "evil.example", 12);
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    sk_GENERAL_NAME_push(gns, gn);
    exts = sk_X509_EXTENSION_new_null();
    sk_X509_EXTENSION_push(exts, X509V3_EXT_i2d(NID_subject_alt_name, 0,
                                                gns));

    /* X509_REQ_add_extensions() would merge: add the attribute raw */

    der.data = NULL;
    n = ASN1_item_i2d((ASN1_VALUE *) exts, &der.data,
                      ASN1_ITEM_rptr(X509_EXTENSIONS));
    ok(X509_REQ_add1_attr_by_NID(req, NID_ms_ext_req, V_ASN1_SEQUENCE,
                                 der.data, n) == 1, "add msExtReq");
    X509_REQ_sign(req, p256, EVP_sha256());
    OPENSSL_free(der.data);
    der.data = NULL;
    n = i2d_X509_REQ(req, &der.data);
    load_fails("extensionRequest and msExtReq", der.data, (size_t) n,
               "csr.extensions");
    OPENSSL_free(der.data);
    X509_REQ_free(req);

    /* one extensionRequest attribute with two values */

    g.san = NULL;
    req = tt_csr_req(&g);
    der.data = NULL;
    n = ASN1_item_i2d((ASN1_VALUE *) exts, &der.data,
                      ASN1_ITEM_rptr(X509_EXTENSIONS));
    attr = X509_ATTRIBUTE_create_by_NID(NULL, NID_ext_req, V_ASN1_SEQUENCE,
                                        der.data, n);
    ok(attr != NULL
       && X509_ATTRIBUTE_set1_data(attr, V_ASN1_SEQUENCE, der.data, n) == 1
       && X509_ATTRIBUTE_count(attr) == 2
       && X509_REQ_add1_attr(req, attr) == 1,
       "add an extensionRequest with two values");
    X509_ATTRIBUTE_free(attr);
    OPENSSL_free(der.data);
    X509_REQ_sign(req, p256, EVP_sha256());
    der.data = NULL;
    n = i2d_X509_REQ(req, &der.data);
    load_fails("extensionRequest with two values", der.data, (size_t) n,
               "csr.extensions");
    OPENSSL_free(der.data);
    X509_REQ_free(req);

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gns);

    /* an extension OpenSSL does not know is passed over */

    memset(&g, 0, sizeof(g));
    g.key = p256;
    g.cn[0] = "x.svc.example";
    obj = OBJ_txt2obj("1.3.6.1.4.1.99999.1", 1);
    os = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(os, (const unsigned char *) "\x05\x00", 2);
    g.raw[0] = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os);
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(os);
    pem = tt_csr_pem(&g);
    csr = load_ok("CSR with a private extension", pem, strlen(pem));
    tsb_csr_free(csr);
    free(pem);
}


/*
 * The fast path (tsb_csr_parse_fast: no provider decoder for the key)
 * against the reference path (d2i_X509_REQ + X509_REQ_verify): the same
 * facts and PEM where it takes a CSR, TSB_CSR_FALLBACK and nothing else
 * where it does not, and tsb_csr_parse() answering as the reference does.
 */

static void
fast_same(const char *what, const tsb_csr_t *a, const tsb_csr_t *b)
{
    int        same;
    size_t     i;
    tsb_buf_t  pa, pb;

    same = a->der.len == b->der.len
           && memcmp(a->der.data, b->der.data, a->der.len) == 0
           && a->n_common_names == b->n_common_names
           && a->cn_has_nul == b->cn_has_nul
           && a->n_sans == b->n_sans
           && a->key_type == b->key_type
           && a->key_bits == b->key_bits
           && ((a->key_curve == NULL && b->key_curve == NULL)
               || (a->key_curve != NULL && b->key_curve != NULL
                   && strcmp(a->key_curve, b->key_curve) == 0))
           && a->sig_nid == b->sig_nid
           && a->sig_md_nid == b->sig_md_nid
           && a->key_usage == b->key_usage
           && a->has_key_usage == b->has_key_usage
           && a->ext_key_usage == b->ext_key_usage
           && a->has_ext_key_usage == b->has_ext_key_usage
           && a->has_unknown_eku == b->has_unknown_eku
           && a->basic_ca == b->basic_ca
           && a->has_basic_constraints == b->has_basic_constraints
           && a->basic_pathlen == b->basic_pathlen
           && memcmp(a->spki_sha256, b->spki_sha256, 32) == 0;

    for (i = 0; same && i < a->n_common_names; i++) {
        same = a->common_name_lens[i] == b->common_name_lens[i]
               && memcmp(a->common_names[i], b->common_names[i],
                         a->common_name_lens[i]) == 0;
    }

    for (i = 0; same && i < a->n_sans; i++) {
        same = a->sans[i].type == b->sans[i].type
               && strcmp(a->sans[i].value, b->sans[i].value) == 0;
    }

    ok(same, "%s: the same facts as the reference path", what);

    if (tsb_csr_to_pem(a, &pa) != 0 || tsb_csr_to_pem(b, &pb) != 0) {
        tt_die("tsb_csr_to_pem");
    }

    ok(pa.len == pb.len && memcmp(pa.data, pb.data, pa.len) == 0,
       "%s: the same PEM upstream", what);

    tsb_buf_free(&pa);
    tsb_buf_free(&pb);
}


/* fast: 1 the fast path must take it, 0 it must fall back */

static void
fast_check(const char *what, const unsigned char *der, size_t len, int fast,
    const char *reason)
{
    int           rf, rr, rp;
    tsb_csr_t    *cf, *cr, *cp;
    tsb_error_t   ef, er, ep;

    memset(&ef, 0, sizeof(ef));
    memset(&er, 0, sizeof(er));
    memset(&ep, 0, sizeof(ep));

    rf = tsb_csr_parse_fast(der, len, &cf, &ef);
    rr = tsb_csr_parse_reference(der, len, &cr, &er);
    rp = tsb_csr_parse(der, len, &cp, &ep);

    if (fast) {
        is_int(rf, 0, "%s: the fast path takes it", what);

    } else {
        is_int(rf, TSB_CSR_FALLBACK, "%s: the fast path falls back", what);
        ok(cf == NULL && ef.reason == NULL && ef.status == 0,
           "%s: a fallback sets nothing", what);
    }

    is_int(rr, reason ? -1 : 0, "%s: the reference path %s", what,
           reason ? reason : "accepts");
    is_int(rp, rr, "%s: tsb_csr_parse() answers as the reference", what);

    if (reason != NULL) {
        is_str(er.reason, reason, "%s: reason %s", what, reason);
        ok(ep.reason != NULL && strcmp(ep.reason, er.reason) == 0
           && ep.status == er.status && strcmp(ep.detail, er.detail) == 0,
           "%s: the same refusal", what);
    }

    if (rf == 0 && rr == 0) {
        fast_same(what, cf, cr);
    }

    if (rp == 0 && rr == 0) {
        fast_same(what, cp, cr);
    }

    ok(ERR_peek_error() == 0, "%s: OpenSSL error queue is clear", what);

    tsb_csr_free(cf);
    tsb_csr_free(cr);
    tsb_csr_free(cp);
}


/* a CSR of key, its SPKI changed by fix() before signing */

static tsb_buf_t
fast_csr(EVP_PKEY *key, const char *md, void (*fix)(X509_REQ *))
{
    int             n;
    X509_REQ       *req;
    tsb_buf_t       b;
    tt_csr_t        g;
    unsigned char  *p;

    memset(&g, 0, sizeof(g));
    g.key = key;
    g.md = md;
    g.cn[0] = "host.example.com";
    g.san = "DNS:host.example.com,IP:10.0.0.1";
    g.ku = "critical,digitalSignature";
    g.eku = "serverAuth";

    req = tt_csr_req(&g);

    if (fix != NULL) {
        fix(req);

        if (X509_REQ_sign(req, key, md && strcmp(md, "none") == 0 ? NULL
                          : EVP_get_digestbyname(md ? md : "sha256"))
            <= 0)
        {
            tt_die("X509_REQ_sign");
        }
    }

    n = i2d_X509_REQ(req, NULL);
    b.data = malloc((size_t) (n > 0 ? n : 1));
    if (n <= 0 || b.data == NULL) {
        tt_die("i2d_X509_REQ");
    }

    p = b.data;
    i2d_X509_REQ(req, &p);
    b.len = (size_t) n;

    X509_REQ_free(req);

    return b;
}


/* rsaEncryption with its NULL parameters left out (OpenSSL ignores them) */
static void
fix_rsa_no_params(X509_REQ *req)
{
    if (X509_PUBKEY_set0_param(X509_REQ_get_X509_PUBKEY(req),
                               OBJ_nid2obj(NID_rsaEncryption), V_ASN1_UNDEF,
                               NULL, NULL, 0)
        != 1)
    {
        tt_die("X509_PUBKEY_set0_param");
    }
}


static EVP_PKEY *
fast_ec_variant(EVP_PKEY *key, const char *name, const char *value)
{
    EVP_PKEY  *k;

    k = EVP_PKEY_dup(key);

    if (k == NULL || EVP_PKEY_set_utf8_string_param(k, name, value) != 1) {
        tt_die("EVP_PKEY_set_utf8_string_param");
    }

    return k;
}


static void
test_fast_path(void)
{
    size_t      i;
    EVP_PKEY   *p384, *p521, *explicit, *compressed;
    tsb_buf_t   b;

    struct {
        const char  *what;
        EVP_PKEY   **key;
        const char  *md;
    } keys[] = {
        { "fast RSA-2048 SHA-256", &rsa2048, NULL },
        { "fast RSA-1024 SHA-1", &rsa1024, "sha1" },
        { "fast EC P-256", &p256, NULL },
        { "fast EC P-384 SHA-384", &p384, "sha384" },
        { "fast EC P-521 SHA-512", &p521, "sha512" },
        { "fast Ed25519", &ed25519, "none" },
    };

    p384 = tt_key("EC-P-384");
    p521 = tt_key("EC-P-521");

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        b = fast_csr(*keys[i].key, keys[i].md, NULL);
        fast_check(keys[i].what, b.data, b.len, 1, NULL);

        /* the signature's last byte changed */

        b.data[b.len - 1] ^= 0x01;
        fast_check(keys[i].what, b.data, b.len, 0, "csr.signature");
        tsb_buf_free(&b);
    }

    /* unusual keys and encodings: the reference path decides */

    b = fast_csr(k256, NULL, NULL);
    fast_check("fast secp256k1 falls back", b.data, b.len, 0, NULL);
    tsb_buf_free(&b);

    explicit = fast_ec_variant(p256, "encoding", "explicit");
    b = fast_csr(explicit, NULL, NULL);
    fast_check("fast P-256 explicit parameters fall back", b.data, b.len, 0,
               NULL);
    tsb_buf_free(&b);
    EVP_PKEY_free(explicit);

    compressed = fast_ec_variant(p256, "point-format", "compressed");
    b = fast_csr(compressed, NULL, NULL);
    fast_check("fast P-256 compressed point falls back", b.data, b.len, 0,
               NULL);
    tsb_buf_free(&b);
    EVP_PKEY_free(compressed);

    b = fast_csr(rsa2048, NULL, fix_rsa_no_params);
    fast_check("fast RSA without NULL parameters", b.data, b.len, 1, NULL);
    tsb_buf_free(&b);

    /* trailing bytes, a truncated CSR: the reference path refuses */

    b = fast_csr(p256, NULL, NULL);
    fast_check("fast truncated", b.data, b.len - 1, 0, "csr.parse");
    tsb_buf_free(&b);

    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
}


/* after tsb_csr_cleanup() (process exit) a CSR still parses, the slow way */

static void
test_cleanup(const char *dir)
{
    char         *pem;
    size_t        len;
    tsb_csr_t    *csr, *fast;
    tsb_buf_t     der;
    tsb_error_t   err;

    pem = tt_read_file(dir, "tsb-csr-new-label.pem", &len);

    if (pem == NULL
        || tsb_csr_decode((unsigned char *) pem, len, &der, &err) != 0)
    {
        ok(0, "cleanup: the fixture decodes");
        free(pem);
        return;
    }

    fast = NULL;
    is_int(tsb_csr_parse_fast(der.data, der.len, &fast, &err), 0,
           "cleanup: before it, the fast path takes the fixture");
    tsb_csr_free(fast);

    tsb_csr_cleanup();
    tsb_csr_cleanup();

    fast = NULL;
    is_int(tsb_csr_parse_fast(der.data, der.len, &fast, &err),
           TSB_CSR_FALLBACK, "cleanup: after it, the fast path steps aside");
    ok(fast == NULL, "cleanup: and makes nothing");

    csr = NULL;
    is_int(tsb_csr_parse(der.data, der.len, &csr, &err), 0,
           "cleanup: tsb_csr_parse() still parses and verifies");
    ok(csr != NULL && csr->n_common_names == 1
       && strcmp(csr->common_names[0], "Approver-Intermediate-SUB") == 0,
       "cleanup: with the same facts");

    tsb_csr_free(csr);
    tsb_buf_free(&der);
    free(pem);
}


/*
 * Issue 10: every extension beyond the four with facts of their own is a
 * fact too (OID, criticality, readable), the same on both paths; so is
 * the RSA public exponent.  More than TSB_CSR_MAX_EXTS are refused.
 */

static unsigned char *
csr_n_exts(EVP_PKEY *key, int n, int critical, size_t *len)
{
    int                        i, m;
    char                       oid[32];
    X509_REQ                  *req;
    ASN1_OBJECT               *obj;
    unsigned char             *der, *p;
    X509_EXTENSION            *ext;
    ASN1_OCTET_STRING         *os;
    STACK_OF(X509_EXTENSION)  *exts;

    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    os = ASN1_OCTET_STRING_new();

    if (req == NULL || exts == NULL || os == NULL
        || X509_REQ_set_pubkey(req, key) != 1
        || X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN",
                                      MBSTRING_ASC,
                                      (const unsigned char *) "a.example",
                                      -1, -1, 0) != 1
        || ASN1_OCTET_STRING_set(os, (const unsigned char *) "\x05\x00", 2)
           != 1)
    {
        tt_die("csr_n_exts");
    }

    for (i = 0; i < n; i++) {
        snprintf(oid, sizeof(oid), "1.3.6.1.4.1.99.%d", i + 1);
        obj = OBJ_txt2obj(oid, 1);
        ext = obj ? X509_EXTENSION_create_by_OBJ(NULL, obj, critical, os)
                  : NULL;

        if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
            tt_die("extension");
        }

        ASN1_OBJECT_free(obj);
    }

    if (X509_REQ_add_extensions(req, exts) != 1
        || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
    {
        tt_die("X509_REQ_sign");
    }

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ASN1_OCTET_STRING_free(os);

    m = i2d_X509_REQ(req, NULL);
    der = malloc(m > 0 ? (size_t) m : 1);
    if (m <= 0 || der == NULL) {
        tt_die("i2d_X509_REQ");
    }

    p = der;
    i2d_X509_REQ(req, &p);
    X509_REQ_free(req);

    *len = (size_t) m;

    return der;
}


static void
test_ext_facts(void)
{
    int             rf, rr;
    size_t          len, i;
    tsb_csr_t      *cf, *cr;
    tsb_error_t     ef, er;
    unsigned char  *der;

    der = csr_n_exts(p256, 2, 1, &len);

    rf = tsb_csr_parse_fast(der, len, &cf, &ef);
    rr = tsb_csr_parse_reference(der, len, &cr, &er);

    is_int(rf, 0, "extensions: the fast path takes it");
    is_int(rr, 0, "extensions: the reference path takes it");

    if (rf == 0 && rr == 0) {
        is_int((int) cf->n_exts, 2, "extensions: two facts");
        is_int((int) cr->n_exts, 2, "extensions: two facts, reference");

        for (i = 0; i < cf->n_exts && i < cr->n_exts; i++) {
            is_str(cf->exts[i].oid, cr->exts[i].oid, "extension %zu: OID", i);
            ok(cf->exts[i].critical && cr->exts[i].critical,
               "extension %zu: critical on both paths", i);
            ok(!cf->exts[i].readable && !cr->exts[i].readable,
               "extension %zu: unreadable on both paths", i);
        }

        is_str(cf->exts[0].oid, "1.3.6.1.4.1.99.1", "extension 0: its OID");
    }

    tsb_csr_free(cf);
    tsb_csr_free(cr);
    free(der);

    der = csr_n_exts(p256, TSB_CSR_MAX_EXTS, 0, &len);
    cf = load_ok("32 extensions", der, len);
    ok(cf && cf->n_exts == TSB_CSR_MAX_EXTS, "32 extensions: all facts");
    tsb_csr_free(cf);
    free(der);

    der = csr_n_exts(p256, TSB_CSR_MAX_EXTS + 1, 0, &len);
    load_fails("33 extensions", der, len, "csr.extensions");
    free(der);

    /* the RSA exponent */

    der = csr_n_exts(rsa2048, 0, 0, &len);
    rf = tsb_csr_parse_fast(der, len, &cf, &ef);
    rr = tsb_csr_parse_reference(der, len, &cr, &er);
    ok(rf == 0 && rr == 0 && cf->key_rsa_exponent == 65537
       && cr->key_rsa_exponent == 65537,
       "RSA exponent 65537 on both paths");
    ok(rf == 0 && cf->n_exts == 0, "no extension, no fact");
    tsb_csr_free(cf);
    tsb_csr_free(cr);
    free(der);
}


int
main(int argc, char **argv)
{
    const char  *dir;

    dir = (argc > 1) ? argv[1] : TSB_FIXTURES;

    rsa2048 = tt_key("RSA-2048");
    rsa1024 = tt_key("RSA-1024");
    p256 = tt_key("EC-P-256");
    k256 = tt_key("EC-secp256k1");
    ed25519 = tt_key("ED25519");

    test_fixture(dir);
    test_encodings();
    test_signature();
    test_facts();
    test_fast_path();
    test_ext_facts();
    test_cleanup(dir);

    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(k256);
    EVP_PKEY_free(ed25519);

    return done_testing();
}
