#!/usr/bin/perl
# The upstream client over TLS, as a production TSB wants it: the simulator
# serves HTTPS and requires a client certificate from our throwaway CA.
# The gateway connects with mTLS (an encrypted key and a password file), an
# API key and a bearer token from files, and verified TLS; what the TSB
# receives is the gateway's credentials and nothing the client sent.  Then
# what goes wrong: a wrong CA file, no client certificate, a wrong host
# name, a wrong pin, verification off (with its warning); token rotation on
# reload; the response size cap, the per-worker transfer cap (503 with
# Retry-After), connection reuse, and HTTP/2 against an nginx that offers
# it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use TsbTest qw(spew slurp json_encode);
use TsbPki;

my $KEY = 'tls-api-key-SECRET';
my $JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.c2lnLVNFQ1JFVA';
my $JWT2 = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdGVkIn0.cm90YXRlZC1TRUNSRVQ';
my $PEM = 'application/x-pem-file';
my $SIGN = 'POST /v1/certificate/sign';
my $GET = 'GET /v1/request/{id}';

my $t = TsbTest->new;
my $pki = TsbPki::make($t);
my $tmp = $t->tmp;

spew("$tmp/api-key", "$KEY\n");
spew("$tmp/jwt", "$JWT\n");
chmod 0644, "$tmp/api-key", "$tmp/jwt";
push @{$t->{secrets}}, $KEY, $JWT, $JWT2;

$t->start_sim('--api-key', $KEY, '--bearer', $JWT, TsbPki::sim_args($pki));
TsbPki::harness_ua($t, $pki);
like($t->sim_url, qr{^https://}, 'the simulator serves HTTPS');

# A second simulator whose certificate names another host.
my $t2 = TsbTest->new;
my $wrong_url = $t2->start_sim('--api-key', $KEY,
                               TsbPki::sim_args($pki, wrongname => 1));
TsbPki::harness_ua($t2, $pki);

(my $sim_port = $t->sim_url) =~ s{.*:}{};
(my $wrong_port = $wrong_url) =~ s{.*:}{};

my $STUB_STATUS = json_encode({
    id => 'h2-probe', status => 'PENDING', executionTime => undef,
    approvedBy => [], notYetApprovedBy => ['approver'], rejectedBy => [],
    result => undef });
(my $stub_body = $STUB_STATUS) =~ s/'/\\'/g;

$t->start_nginx(<<"EOF", workers => 1);
log_format tsbproto '\$server_protocol \$request';
tsb_upstream %%SIM%%;
tsb_api_key_file %%TMP%%/api-key;
tsb_bearer_token_file %%TMP%%/jwt;

server {
    listen 127.0.0.1:%%PORT%%;

    tsb_ssl_trusted_certificate $pki->{ca};
    tsb_ssl_certificate $pki->{client};
    tsb_ssl_certificate_key $pki->{client_key};
    tsb_ssl_password_file $pki->{password};

    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /wrongca/ {
        tsb_status;
        tsb_ssl_trusted_certificate $pki->{other_ca};
    }
    location /noverify/ {
        tsb_status;
        tsb_ssl_trusted_certificate $pki->{other_ca};
        tsb_ssl_verify off;
    }
    location /byname/ {
        tsb_status;
        tsb_upstream https://localhost:$sim_port;
    }
    location /wrongname/ {
        tsb_status;
        tsb_upstream https://127.0.0.1:$wrong_port;
    }
    location /pin-ok/ {
        tsb_status;
        tsb_ssl_pinned_public_key $pki->{server};
    }
    location /pin-bad/ {
        tsb_status;
        tsb_ssl_pinned_public_key $pki->{client};
    }
    location /tls13/ {
        tsb_status;
        tsb_ssl_protocols TLSv1.3;
    }
    location /small/ {
        tsb_status;
        tsb_max_response_size 100;
    }
    location /busy/ {
        tsb_status;
        tsb_max_transfers 1;
    }
    location /h2/ {
        tsb_status;
        tsb_upstream https://127.0.0.1:%%PORT3%%;
    }
    location /h1/ {
        tsb_status;
        tsb_upstream https://127.0.0.1:%%PORT3%%;
        tsb_http2 off;
    }
}

# the same gateway without a client certificate
server {
    listen 127.0.0.1:%%PORT2%%;
    tsb_ssl_trusted_certificate $pki->{ca};
    location /request/ { tsb_status; }
}

# an nginx "TSB" that offers HTTP/2 in ALPN
server {
    listen 127.0.0.1:%%PORT3%% ssl http2;
    ssl_certificate $pki->{server};
    ssl_certificate_key $pki->{server_key};
    access_log %%TMP%%/stub.log tsbproto;
    location /v1/request/ {
        default_type application/json;
        return 200 '$stub_body';
    }
}
EOF

# ------------------------------------------------------- mTLS, all auth

my ($csr) = $t->make_csr(cn => 'mtls.svc.example', key => 'ec:P-256');
my $r = $t->request(POST => '/sign', body => $csr, content_type => $PEM,
                    headers => {
                        'Authorization' => 'Bearer client-own-token',
                        'X-API-KEY' => 'client-own-key',
                        'Cookie' => 'session=client-cookie',
                        'X-Client-Secret' => 'do-not-forward',
                    });
is($r->{status}, 200, 'sign over mTLS: 200') or $t->explain_response($r);
my $id = $r->{json}{signRequestId} // 'none';

my ($seen) = reverse $t->sim_seen('POST', '/v1/certificate/sign');
ok($seen, 'the simulator received the sign request');
my $h = $seen ? $seen->{headers} : {};
is($h->{'x-api-key'}, $KEY, 'X-API-KEY is the gateway key (from a file)');
is($h->{authorization}, "Bearer $JWT",
   'Authorization is the gateway bearer token (from a file)');
ok(!exists $h->{cookie}, "the client's cookie is not forwarded");
ok(!grep({ /client-own|client-cookie|do-not-forward/ } values %$h),
   "none of the client's header values reached the TSB")
    or diag(explain $h);
is_deeply([sort keys %$h],
          [sort grep { exists $h->{$_} }
                qw(host accept content-type content-length x-api-key
                   authorization)],
          'only the headers the gateway sets')
    or diag(explain $h);

$r = $t->get("/request/$id", headers => { 'X-API-KEY' => 'client-own-key' });
is($r->{status}, 200, 'status over mTLS: 200') or $t->explain_response($r);
is($r->{json}{status}, 'PENDING', '... PENDING');
($seen) = reverse $t->sim_seen('GET', "/v1/request/$id");
is($seen && $seen->{headers}{'x-api-key'}, $KEY,
   "the client's X-API-KEY was replaced by the gateway's");

# ----------------------------------------------------------- TLS failures

sub fails_tls {
    my ($name, $path, $reason, $log_re) = @_;
    $t->log_mark;
    my $r = $t->get($path);
    $t->error_is($r, 502, $reason, $name);
    ok($t->wait_log($log_re, 2), "$name: a clear line in error.log")
        or diag($t->log_since);
}

fails_tls('wrong CA file', "/wrongca/$id", 'upstream.tls',
          qr{GET https://127\.0\.0\.1:\d+/v1/request/\S+ failed after \d+ ms.*(certificate|issuer)}i);
fails_tls('certificate for another host name', "/wrongname/$id",
          'upstream.tls', qr{failed after \d+ ms.*(name|subject)}i);
fails_tls('pinned key does not match', "/pin-bad/$id", 'upstream.tls',
          qr{failed after \d+ ms.*(pinned|public key)}i);

{
    $t->log_mark;
    my $r = $t->get("/request/$id", port => 2);
    is($r->{status}, 502, 'no client certificate: 502')
        or $t->explain_response($r);
    ok($t->wait_log(qr{GET https://\S+ failed after}, 2),
       'no client certificate: logged with the URL');
}

is($t->get("/byname/$id")->{status}, 200,
   'host name checked: https://localhost matches the certificate');
is($t->get("/pin-ok/$id")->{status}, 200, 'the right pin: 200');
is($t->get("/tls13/$id")->{status}, 200, 'TLSv1.3 only: 200');
is($t->get("/noverify/$id")->{status}, 200,
   'tsb_ssl_verify off: 200 despite the wrong CA');
like($t->error_log, qr/\[warn\].*tsb_ssl_verify is off/,
     'tsb_ssl_verify off is warned about at start');

# --------------------------------------------------- token rotation

spew("$tmp/jwt", "$JWT2\n");
$t->reload;
$r = $t->get("/request/$id");
$t->error_is($r, 502, 'upstream.auth',
             'reload re-reads the bearer file (the TSB refuses the new one)');
spew("$tmp/jwt", "$JWT\n");
$t->reload;
is($t->get("/request/$id")->{status}, 200, '... and the right one works');

# ------------------------------------------------------------- limits

$t->error_is($t->get("/small/$id"), 502, 'upstream.too_large',
             'an answer beyond tsb_max_response_size');

{
    $t->sim_fault(route => $GET, delay_ms => 1500, times => 1);
    my $before = $t->sim_counts->{$GET} + 1;
    my $s = $t->raw_send(GET => "/busy/$id");
    ok($t->wait_for(sub { $t->sim_counts->{$GET} >= $before }, 3),
       'a slow status request is in flight');
    my $r = $t->get("/busy/$id");
    $t->error_is($r, 503, 'upstream.busy', 'over tsb_max_transfers');
    is($r->{headers}{'retry-after'}, '1', '... with Retry-After');
    is($t->sim_counts->{$GET}, $before, '... and nothing sent to the TSB');
    my $first = $t->raw_read($s, 5);
    is($first->{status}, 200, 'the transfer in flight still completes');
    $t->sim_clear_fault;
}

# --------------------------------------------------- connection reuse

{
    $t->get("/request/$id");            # a warm connection
    $t->sim_reset;
    my $n = 300;
    my $fail = 0;
    for (1 .. $n) {
        $fail++ unless $t->get("/request/$id")->{status} == 200;
    }
    is($fail, 0, "$n status requests over mTLS: all 200");
    my $c = $t->sim_get('/_sim/connections')->{json};
    cmp_ok($c->{accepted}, '<=', $n / 100,
           "... over at most one new TSB connection per 100 requests "
           . "($c->{accepted})");
}

# ------------------------------------------------------------ HTTP/2

{
    my $r = $t->get('/h2/h2-probe');
    is($r->{status}, 200, 'a TSB that offers HTTP/2: 200')
        or $t->explain_response($r);
    is($r->{json}{status}, 'PENDING', '... its answer');
    $t->get('/h1/h2-probe');
    my $log = slurp("$tmp/stub.log") // '';
    like($log, qr{^HTTP/2\.0 GET /v1/request/h2-probe}m,
         '... was spoken to in HTTP/2');
    like($log, qr{^HTTP/1\.1 GET /v1/request/h2-probe}m,
         'tsb_http2 off: HTTP/1.1');
}

$t->no_worker_crash;
ok(index($t->error_log, $TsbPki::PASSWORD) < 0,
   'the key password is not in error.log');
ok($t->stop, 'nginx stops gracefully');

done_testing;
