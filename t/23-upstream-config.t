#!/usr/bin/perl
# Mistakes in the upstream and front configuration stop nginx at start
# ("nginx -t") with a message that says what is wrong, instead of failing
# the first request: credentials in a URL, header injection in a key,
# missing or mismatched TLS material, a key that needs a password, a
# password file that does not fit, wildcards that would grant a whole API
# area, synchronous signing, a sign endpoint without a signing key.  No
# secret appears in the messages.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(spew);
use TsbPki;

my $t = TsbTest->new;
my $pki = TsbPki::make($t);
my $tmp = $t->tmp;

spew("$tmp/token-ok", "eyJ0b2tlbiI6MX0.e30.c2ln\n");
spew("$tmp/token-bad", "two words SECRET-IN-FILE\n");

my $OK = "tsb_upstream http://127.0.0.1:1;\n";

my @cases = (
    [ 'a minimal upstream', $OK, 1 ],
    [ 'several URLs, repeated directive',
      "tsb_upstream http://127.0.0.1:1 https://127.0.0.1:2;\n"
      . "tsb_upstream http://127.0.0.1:3;\n", 1 ],
    [ 'credentials in the URL',
      "tsb_upstream https://user:PASSWORD-IN-URL\@127.0.0.1:1;\n", 0,
      qr/no credentials in the URL/ ],
    [ 'a URL listed twice',
      "tsb_upstream http://127.0.0.1:1 http://127.0.0.1:1/;\n", 0,
      qr/listed twice/ ],
    [ 'not http(s)', "tsb_upstream ftp://127.0.0.1:1;\n", 0,
      qr/must start with/ ],
    [ 'a query in the URL', "tsb_upstream http://127.0.0.1:1/?a=b;\n", 0,
      qr/no spaces, query or fragment/ ],
    [ 'an API key with a space', $OK . "tsb_api_key \"KEY WITH SPACE\";\n",
      0, qr/printable ASCII without spaces/ ],
    [ 'a bearer token file', $OK
      . "tsb_bearer_token_file %%TMP%%/token-ok;\n", 1 ],
    [ 'a bearer token file with two words', $OK
      . "tsb_bearer_token_file %%TMP%%/token-bad;\n", 0,
      qr/first line of .* must be the secret alone/ ],
    [ 'a missing token file', $OK
      . "tsb_api_key_file %%TMP%%/no-such-file;\n", 0, qr/cannot open/ ],
    [ 'mTLS with an encrypted key and its password file', $OK
      . "tsb_ssl_certificate $pki->{client};\n"
      . "tsb_ssl_certificate_key $pki->{client_key};\n"
      . "tsb_ssl_password_file $pki->{password};\n"
      . "tsb_ssl_trusted_certificate $pki->{ca};\n", 1 ],
    [ 'an encrypted key without a password file', $OK
      . "tsb_ssl_certificate $pki->{client};\n"
      . "tsb_ssl_certificate_key $pki->{client_key};\n", 0,
      qr/encrypted: set tsb_ssl_password_file/ ],
    [ 'a password file that does not fit', $OK
      . "tsb_ssl_certificate $pki->{client};\n"
      . "tsb_ssl_certificate_key $pki->{client_key};\n"
      . "tsb_ssl_password_file $pki->{wrong_password};\n", 0,
      qr/no password in the password file fits/ ],
    [ 'a key of another certificate', $OK
      . "tsb_ssl_certificate $pki->{server};\n"
      . "tsb_ssl_certificate_key $pki->{client_plain};\n", 0,
      qr/does not belong to the certificate/ ],
    [ 'a certificate without a key', $OK
      . "tsb_ssl_certificate $pki->{client};\n", 0,
      qr/no "tsb_ssl_certificate_key"/ ],
    [ 'a CA file without certificates', $OK
      . "tsb_ssl_trusted_certificate $pki->{garbage};\n", 0,
      qr/holds no PEM certificate/ ],
    [ 'a missing CA file', $OK
      . "tsb_ssl_trusted_certificate %%TMP%%/nope.pem;\n", 0,
      qr/cannot open/ ],
    [ 'a pin file', $OK . "tsb_ssl_pinned_public_key $pki->{server};\n", 1 ],
    [ 'a malformed pin', $OK
      . "tsb_ssl_pinned_public_key sha256//tooshort;\n", 0,
      qr/a pin must be/ ],
    [ 'TLSv1.1', $OK . "tsb_ssl_protocols TLSv1.1 TLSv1.2;\n", 0,
      qr/unsupported protocol "TLSv1.1"/ ],
    [ 'verification off', $OK . "tsb_ssl_verify off;\n", 1,
      qr/\[warn\].*tsb_ssl_verify is off/ ],
    [ 'a zero response cap', $OK . "tsb_max_response_size 0;\n", 0,
      qr/must not be 0/ ],
    [ 'a front', $OK . "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow GET /v1/request/* /v1/key/**; } }\n", 1 ],
    [ 'a front without an allow-list', $OK
      . "server { location /v1/ { tsb_pass; } }\n", 1,
      qr/\[warn\].*every request is refused/ ],
    [ 'a wildcard over a whole API area', $OK
      . "server { location /v1/ { tsb_pass; tsb_pass_allow GET /v1/*; } }\n",
      0, qr/first two segments must be written out/ ],
    [ 'a pattern with a dot segment', $OK
      . "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow GET /v1/request/../key; } }\n", 0,
      qr/invalid pattern/ ],
    [ 'an unknown method', $OK
      . "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow HEAD /v1/request/*; } }\n", 0,
      qr/unknown method "HEAD"/ ],
    [ 'synchronous signing', $OK
      . "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow POST /v1/certificate/synchronous/sign; } }\n", 0,
      qr/synchronous signing would skip/ ],
    [ 'the sign endpoint without a signing key', $OK
      . "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow POST /v1/certificate/sign; } }\n", 0,
      qr/needs "tsb_sign_key_name"/ ],
    [ 'tsb_pass without tsb_upstream',
      "server { location /v1/ { tsb_pass;\n"
      . "tsb_pass_allow GET /v1/request/*; } }\n", 0,
      qr/needs "tsb_upstream"/ ],
);

for my $case (@cases) {
    my ($name, $conf, $good, $re) = @$case;
    my ($ok, $out) = TsbPki::config_test($t, $conf);
    is($ok ? 1 : 0, $good, "$name: " . ($good ? 'accepted' : 'refused'))
        or diag($out);
    like($out, $re, "$name: says so") if $re;
    ok($out !~ /PASSWORD-IN-URL|SECRET-IN-FILE|\Q$TsbPki::PASSWORD\E/,
       "$name: no secret in the output");
}

done_testing;
