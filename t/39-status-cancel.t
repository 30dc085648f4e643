#!/usr/bin/perl
# Issue 13, point 2: DELETE /v1/request/{id} on a tsb_status location (the
# drop-in configuration: tsb_status on /v1/request/) cancels as the TSB
# does, 200 {}, with the gateway's credentials, and the cached status is
# not served after it.  Without tsb_owner, the default tsb_owner_check
# (cancel) still refuses ids the gateway did not create.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use TsbTest qw(json_encode json_decode);

my $KEY = 'cancel-api-key-SECRET';
my $DEL = 'DELETE /v1/request/{id}';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF2");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    tsb_cache_valid PENDING APPROVED 60s;
    location = /v1/certificate/sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /v1/request/ { tsb_status; }
}
EOF2

my $http = HTTP::Tiny->new;

# at the TSB directly, for comparison
sub sim_sign {
    my ($cn) = @_;
    my ($csr) = $t->make_csr(cn => $cn);
    my $s = $http->request(POST => $t->sim_url . '/v1/certificate/sign', {
        headers => { 'X-API-KEY' => $KEY,
                     'Content-Type' => 'application/json' },
        content => json_encode({ signCertificateRequest => {
            signKeyName => 'CA-Key', commonName => $cn,
            certificateSigningRequest => $csr,
            signatureAlgorithm => 'SHA256_WITH_RSA',
            keyUsage => ['DIGITAL_SIGNATURE'] } }) });
    return (json_decode($s->{content}) // {})->{signRequestId};
}

my $direct = sim_sign('d.svc.example');
my $want = $http->request(DELETE => $t->sim_url . "/v1/request/$direct",
                          { headers => { 'X-API-KEY' => $KEY } });
is($want->{status}, 200, 'the TSB answers a cancel with 200');

my ($csr) = $t->make_csr(cn => 'a.svc.example');
my $id = $t->sign_id($csr, '/v1/certificate/sign');

my $r = $t->get("/v1/request/$id");
is(($r->{json} // {})->{status}, 'PENDING', 'PENDING, and cached for 60s');

my $d0 = $t->sim_counts->{$DEL} // 0;
$r = $t->request(DELETE => "/v1/request/$id");
is($r->{status}, $want->{status}, 'DELETE /v1/request/{id}: 200 as the TSB')
    or $t->explain_response($r);
is($r->{content}, $want->{content}, '... the same body ({})');
is($t->sim_counts->{$DEL} // 0, $d0 + 1, '... forwarded once');
my ($seen) = reverse $t->sim_seen(DELETE => "/v1/request/$id");
is(($seen // {})->{headers}{'x-api-key'}, $KEY,
   "... with the gateway's credentials");

$r = $t->get("/v1/request/$id");
is(($r->{json} // {})->{status}, 'CANCELLED',
   'the cached PENDING is not served after it: CANCELLED');

$r = $t->request(DELETE => "/v1/request/$id");
is($r->{status}, 409, 'cancelling again: what the TSB says (409)')
    or $t->explain_response($r);

# an id the gateway never saw
my $other = sim_sign('o.svc.example');
$d0 = $t->sim_counts->{$DEL} // 0;
$r = $t->request(DELETE => "/v1/request/$other");
is($r->{status}, 403, 'an id the gateway did not create: 403')
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'owner.unknown', '... owner.unknown');
is($t->sim_counts->{$DEL} // 0, $d0, '... nothing reached the TSB');

$r = $t->request(DELETE => '/v1/request/00000000-0000-4000-8000-000000000000');
is($r->{status}, 404, 'an id the TSB does not know: 404, as the TSB')
    or $t->explain_response($r);

$r = $t->request(PUT => "/v1/request/$id");
is($r->{status}, 405, 'other methods: still 405');
like($r->{headers}{allow} // '', qr/DELETE/, '... Allow names DELETE');

$t->no_worker_crash;
done_testing();
