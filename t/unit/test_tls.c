
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The upstream client's TLS material (tsb_tls.c): CA bundles, the client
 * certificate with an encrypted key and a password file, public key pins,
 * and secret files.  Keys and certificates are made here with OpenSSL and
 * written to a temporary directory.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tsb_tls.h"
#include "tap.h"


static char  dir[] = "/tmp/tsb-test-tls-XXXXXX";
static char  path_buf[8][512];


static const char *
path(int n, const char *name)
{
    snprintf(path_buf[n], sizeof(path_buf[n]), "%s/%s", dir, name);
    return path_buf[n];
}


static void
spew(const char *file, const char *data)
{
    FILE  *fp = fopen(file, "w");

    if (fp) {
        fputs(data, fp);
        fclose(fp);
    }
}


static EVP_PKEY *
make_key(void)
{
    return EVP_EC_gen("P-256");
}


static X509 *
make_cert(EVP_PKEY *key, const char *cn)
{
    X509       *x;
    X509_NAME  *name;

    x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);

    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *) cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, key, EVP_sha256());

    return x;
}


static void
write_cert(const char *file, X509 *x, const char *before)
{
    FILE  *fp = fopen(file, "w");

    if (fp) {
        if (before) {
            fputs(before, fp);
        }

        PEM_write_X509(fp, x);
        fclose(fp);
    }
}


static void
append_cert(const char *file, X509 *x)
{
    FILE  *fp = fopen(file, "a");

    if (fp) {
        fputs("some text between blocks\n", fp);
        PEM_write_X509(fp, x);
        fclose(fp);
    }
}


static void
write_key(const char *file, EVP_PKEY *key, const char *password)
{
    FILE  *fp = fopen(file, "w");

    if (fp) {
        PEM_write_PKCS8PrivateKey(fp, key,
                                  password ? EVP_aes_256_cbc() : NULL,
                                  (char *) password,
                                  password ? (int) strlen(password) : 0,
                                  NULL, NULL);
        fclose(fp);
    }
}


int
main(void)
{
    size_t       n;
    X509        *x1, *x2;
    EVP_PKEY    *k1, *k2;
    tsb_buf_t    a, b;
    tsb_error_t  err;
    char         pin[200];

    if (mkdtemp(dir) == NULL) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }

    k1 = make_key();
    k2 = make_key();
    x1 = make_cert(k1, "one");
    x2 = make_cert(k2, "two");

    /* CA bundles */

    write_cert(path(0, "ca.pem"), x1, "Certificate:\n  text first\n");
    append_cert(path(0, "ca.pem"), x2);

    ok(tsb_tls_load_ca_file(path(0, "ca.pem"), &a, &n, &err) == 0,
       "a CA bundle of two, with text around: loaded");
    is_int(n, 2, "... two certificates");
    ok(a.data && strstr((char *) a.data, "some text") == NULL,
       "... only the certificate blocks are kept");
    tsb_buf_free(&a);

    spew(path(1, "empty.pem"), "nothing here\n");
    ok(tsb_tls_load_ca_file(path(1, "empty.pem"), &a, &n, &err) != 0,
       "a file without certificates: refused");
    ok(strstr(err.detail, "no PEM certificate") != NULL, "... says so: %s",
       err.detail);

    ok(tsb_tls_load_ca_file(path(1, "missing.pem"), &a, &n, &err) != 0,
       "a missing file: refused");
    ok(strstr(err.detail, "cannot open") != NULL, "... says so: %s",
       err.detail);

    spew(path(1, "broken.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n"
         "-----END CERTIFICATE-----\n");
    ok(tsb_tls_load_ca_file(path(1, "broken.pem"), &a, &n, &err) != 0,
       "a broken certificate: refused");

    /* the client certificate and key */

    write_cert(path(2, "client.pem"), x1, NULL);
    write_key(path(3, "client.key"), k1, NULL);

    ok(tsb_tls_load_client(path(2, "client.pem"), path(3, "client.key"),
                           NULL, &a, &b, &err) == 0,
       "client certificate and plain key: loaded (%s)", err.detail);
    ok(b.data && strstr((char *) b.data, "BEGIN PRIVATE KEY") != NULL,
       "... key as unencrypted PKCS#8");
    tsb_buf_free(&a);
    tsb_buf_free(&b);

    write_key(path(3, "enc.key"), k1, "s3cret-pass");
    spew(path(4, "pw.txt"), "wrong-one\ns3cret-pass\n");

    ok(tsb_tls_load_client(path(2, "client.pem"), path(3, "enc.key"),
                           NULL, &a, &b, &err) != 0,
       "encrypted key without a password file: refused");
    ok(strstr(err.detail, "tsb_ssl_password_file") != NULL,
       "... names the directive: %s", err.detail);

    ok(tsb_tls_load_client(path(2, "client.pem"), path(3, "enc.key"),
                           path(4, "pw.txt"), &a, &b, &err) == 0,
       "encrypted key, the second password fits: loaded (%s)", err.detail);
    ok(strstr(err.detail, "s3cret") == NULL, "... no password in errors");
    tsb_buf_free(&a);
    tsb_buf_free(&b);

    spew(path(4, "bad.txt"), "nope\n");
    ok(tsb_tls_load_client(path(2, "client.pem"), path(3, "enc.key"),
                           path(4, "bad.txt"), &a, &b, &err) != 0,
       "no fitting password: refused");

    write_key(path(3, "other.key"), k2, NULL);
    ok(tsb_tls_load_client(path(2, "client.pem"), path(3, "other.key"),
                           NULL, &a, &b, &err) != 0,
       "a key of another certificate: refused");
    ok(strstr(err.detail, "does not belong") != NULL, "... says so: %s",
       err.detail);

    /* pins */

    ok(tsb_tls_pin(path(2, "client.pem"), strlen(path(2, "client.pem")), &a,
                   &err) == 0, "pin from a certificate file");
    ok(a.len == 52 && memcmp(a.data, "sha256//", 8) == 0,
       "... sha256// and 44 characters");
    snprintf(pin, sizeof(pin), "%s", (char *) a.data);
    tsb_buf_free(&a);

    {
        FILE  *fp = fopen(path(5, "pub.pem"), "w");

        PEM_write_PUBKEY(fp, k1);
        fclose(fp);
    }

    ok(tsb_tls_pin(path(5, "pub.pem"), strlen(path(5, "pub.pem")), &a, &err)
       == 0, "pin from a public key file");
    is_str(a.data ? (char *) a.data : NULL, pin,
           "... the same pin as its certificate's");
    tsb_buf_free(&a);

    ok(tsb_tls_pin(pin, strlen(pin), &a, &err) == 0, "a pin as given");
    tsb_buf_free(&a);

    strcat(pin, ";");
    ok(tsb_tls_pin(pin, strlen(pin), &a, &err) != 0,
       "a pin list ending in ';' refused");

    ok(tsb_tls_pin("sha256//abc", 11, &a, &err) != 0, "a short pin refused");

    /* secrets */

    spew(path(6, "token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln  \r\nsecond line\n");
    ok(tsb_tls_load_secret(path(6, "token"), &a, &err) == 0,
       "a token file");
    is_str(a.data ? (char *) a.data : NULL, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
           "... its first line, trimmed");
    tsb_buf_free(&a);

    spew(path(6, "token2"), "two words\n");
    ok(tsb_tls_load_secret(path(6, "token2"), &a, &err) != 0,
       "a secret with a space refused");
    ok(strstr(err.detail, "two") == NULL, "... without quoting it");

    spew(path(6, "token3"), "\n");
    ok(tsb_tls_load_secret(path(6, "token3"), &a, &err) != 0,
       "an empty secret refused");

    ok(tsb_tls_secret_valid((unsigned char *) "abc\r\nX: y", 9) == 0,
       "CR LF in a secret is not header-safe");
    ok(tsb_tls_secret_valid((unsigned char *) "abc", 3) == 1,
       "a token is header-safe");

    X509_free(x1);
    X509_free(x2);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);

    {
        char  cmd[600];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            /* a leftover temporary directory is not a failure */
        }
    }

    return done_testing();
}
