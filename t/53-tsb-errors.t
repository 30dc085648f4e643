#!/usr/bin/perl
# Errors in the TSB's shape for TSB clients (issue 13, point 7): on TSB
# paths (/v1/...) and through tsb_pass, every error, the module's and
# nginx's own through tsb_error (a 401 from auth_basic), carries a numeric
# errorCode, reason and message, as the TSB's do (Securosys' Go client reads
# errorCode from every 401 and crashes without it), with the gateway's
# error and detail beside them.  A malformed id is 404 there, as on the
# TSB.  Elsewhere the gateway's own {"error", "reason", "detail"} stays, and
# tsb_error_format chooses either shape explicitly.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use MIME::Base64 qw(encode_base64);
use Test::More;
use TsbTest qw(json_encode json_decode spew);

my $KEY = 'errors-api-key-SECRET';
my $JSON = 'application/json';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');

# alice:secret
my $salt = 'saltsalt';
my $hash = `openssl passwd -apr1 -salt $salt secret`;
chomp $hash;
spew($t->tmp . '/htpasswd', "alice:$hash\n");

$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;

    error_page 400 401 403 404 405 413 /_tsb/error;

    location = /_tsb/error {
        internal;
        tsb_error;
    }

    location = /v1/certificate/sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /v1/request/ {
        tsb_status;
    }
    location /v1/key/ {
        auth_basic "TSB";
        auth_basic_user_file %%TMP%%/htpasswd;
        tsb_pass;
        tsb_pass_allow GET /v1/key/*/attributes;
    }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/request/*;
    }

    location /tsb/request/ {
        tsb_status;
    }
    location /gw/v1/request/ {
        tsb_status;
    }
    location /plain/request/ {
        tsb_status;
        tsb_error_format tsb;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    tsb_error_format gateway;
    location /v1/request/ {
        tsb_status;
    }
}
EOF

# the TSB's own error, for the shape
my $UA = HTTP::Tiny->new(timeout => 10);
my $direct = $UA->get($t->sim_url . '/v1/request/' . ('0' x 8) . '-0000-'
                      . '0000-0000-' . ('0' x 12),
                      { headers => { 'X-API-KEY' => $KEY } });
my $tsb = json_decode($direct->{content});
ok(ref $tsb eq 'HASH' && defined $tsb->{errorCode},
   'the TSB (simulator) answers errors as {"errorCode", ...}');

# A TSB-shaped error: the TSB's keys with the TSB's types, and ours
sub tsb_error_is {
    my ($r, $status, $reason, $name) = @_;
    my $j = $r->{json};
    my $ok = $r->{status} == $status
        && ref $j eq 'HASH'
        && $r->{content} =~ /"errorCode":\d+[,}]/
        && $j->{errorCode} == $status
        && ($j->{reason} // '') eq $reason
        && defined $j->{message} && length $j->{message}
        && defined $j->{error} && defined $j->{detail}
        && !grep { ref $j->{$_} || !defined $j->{$_} }
                 grep { $_ ne 'errorCode' } keys %$tsb;
    ok($ok, "$name: $status, TSB shape (errorCode $status, $reason)")
        or $t->explain_response($r);
    return $r;
}

sub gateway_error_is {
    my ($r, $status, $reason, $name) = @_;
    $t->error_is($r, $status, $reason, $name);
    ok(!exists(($r->{json} // {})->{errorCode}), '... no errorCode there');
}

my $UUID = '11111111-2222-3333-4444-555555555555';

# ------------------------------------------------- the module's errors

{
    my ($csr) = $t->make_csr(cn => 'evil.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
        body => json_encode({ signCertificateRequest => {
            certificateSigningRequest => $csr } }));
    tsb_error_is($r, 403, 'policy.common_name', 'tsb_sign on the TSB path: '
                 . 'a policy refusal');
    is_deeply([sort keys %{$r->{json}}],
              [sort qw(errorCode reason message error detail)],
              '... errorCode, reason, message, and error and detail beside');

    $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                     body => '{"signCertificateRequest": ');
    tsb_error_is($r, 400, 'json.syntax', '... malformed JSON');

    $r = $t->get('/v1/certificate/sign');
    tsb_error_is($r, 405, 'request.method', '... a wrong method');
}

{
    my $r = $t->get('/v1/request/not$an-id');
    tsb_error_is($r, 404, 'request.id',
                 'tsb_status on the TSB path: a malformed id is 404, as on '
                 . 'the TSB');
    $r = $t->get("/v1/request/$UUID");
    tsb_error_is($r, 404, 'request.unknown', '... an unknown id');

    $r = $t->get('/v1/other/thing');
    tsb_error_is($r, 403, 'policy.front',
                 'tsb_pass: a path the allow-list does not name');
}

# --------------------------------------------- nginx's own, via tsb_error

{
    my $r = $t->get('/v1/key/CA-Key/attributes');
    tsb_error_is($r, 401, 'request.unauthorized',
                 'auth_basic on a TSB path, through tsb_error');
    like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="TSB"/,
         '... WWW-Authenticate kept');

    $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                     body => 'x' x (2 * 1024 * 1024));
    tsb_error_is($r, 413, 'request.too_large', '... a body too large');
}

# ------------------------------------------- the gateway's own shape

{
    my $r = $t->get('/tsb/request/not$an-id');
    gateway_error_is($r, 400, 'request.id',
                     'a REST path: the gateway\'s shape, 400 for a bad id');
    $r = $t->get('/gw/v1/request/not$an-id');
    gateway_error_is($r, 400, 'request.id',
                     '... /v1/ further down the path is no TSB path');

    $r = $t->get('/plain/request/not$an-id');
    tsb_error_is($r, 404, 'request.id', 'tsb_error_format tsb: the TSB\'s');

    $r = $t->get('/v1/request/not$an-id', port => 2);
    gateway_error_is($r, 400, 'request.id',
                     'tsb_error_format gateway on a TSB path: the gateway\'s');
}

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
