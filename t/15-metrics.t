#!/usr/bin/perl
# Observability: tsb_metrics counts what the handlers did, summed over two
# workers, and the $tsb_* variables put the request id, TSB status, refusal
# reason, cache status and TSB time into the access log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp);

my $KEY = 'test-api-key-SECRET';
my $PEM = 'application/x-pem-file';

my $t = TsbTest->new;
my $tmp = $t->tmp;

$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 2);
tsb_cache_zone tsb:1m;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache tsb;
log_format tsb '\$status id=\$tsb_request_id tsb=\$tsb_status '
               'reason=\$tsb_policy_reason cache=\$tsb_cache_status '
               'up=\$tsb_upstream_time';
server {
    listen 127.0.0.1:%%PORT%%;
    access_log $tmp/tsb.log tsb;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location = /metrics { tsb_metrics; }
}
EOF

sub metrics {
    my $r = $t->get('/metrics');
    my %m;
    for (split /\n/, $r->{content} // '') {
        next if /^#/;
        my ($k, $v) = /^(\S+)\s+(\S+)$/ or next;
        $m{$k} = $v;
    }
    return ($r, \%m);
}

my ($r0, $m0) = metrics();
is($r0->{status}, 200, 'tsb_metrics answers 200');
like($r0->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'in the Prometheus text format');

# one accepted sign, one refused, a status MISS then HIT, an unknown id
my ($csr) = $t->make_csr(cn => 'm1.svc.example');
my $s = $t->request(POST => '/sign', content_type => $PEM, body => $csr);
is($s->{status}, 200, 'a sign accepted');
my $id = $s->{json}{signRequestId} // 'none';

my ($bad) = $t->make_csr(cn => 'evil.example');
my $b = $t->request(POST => '/sign', content_type => $PEM, body => $bad);
is($b->{status}, 403, 'a sign refused');

is($t->get("/request/$id")->{status}, 200, 'status: first');
is($t->get("/request/$id")->{status}, 200, 'status: again');
is($t->get('/request/0b7e2c52-98c1-4bb4-9a55-3c7bfe8a1d11')->{status}, 404,
   'an unknown id');

my ($r1, $m1) = metrics();

sub delta { ($m1->{$_[0]} // 0) - ($m0->{$_[0]} // 0) }

is(delta('tsb_requests_total{handler="sign",code="2xx"}'), 1,
   'one sign answered 2xx');
is(delta('tsb_requests_total{handler="sign",code="4xx"}'), 1,
   'one sign answered 4xx');
is(delta('tsb_requests_total{handler="status",code="2xx"}'), 2,
   'two status requests answered 2xx');
is(delta('tsb_refusals_total{reason="policy.common_name"}'), 1,
   'the refusal counted by its reason');
is(delta('tsb_refusals_total{reason="request.unknown"}'), 1,
   'the unknown id counted by its reason');
is(delta('tsb_cache_requests_total{result="hit"}'), 1, 'one cache hit');
cmp_ok(delta('tsb_cache_requests_total{result="miss"}'), '>=', 1,
       'a cache miss');
cmp_ok(delta('tsb_upstream_requests_total{result="2xx"}'), '>=', 2,
       'TSB calls counted by result');
is(delta('tsb_upstream_duration_seconds_count'),
   delta('tsb_upstream_duration_seconds_bucket{le="+Inf"}'),
   'the latency histogram counts every call');
cmp_ok(delta('tsb_upstream_duration_seconds_count'), '>=', 3,
       'and the calls are in it');
is($m1->{tsb_waiters} // '', '0', 'no waiter left');

# the access log
ok($t->wait_for(sub { (slurp("$tmp/tsb.log") // '') =~ /^404 /m }, 3),
   'the access log is written');
my $log = slurp("$tmp/tsb.log") // '';
like($log, qr/^403 id=- tsb=- reason=policy\.common_name /m,
     '$tsb_policy_reason of a refusal');
like($log, qr/^200 id=\Q$id\E /m, '$tsb_request_id of a sign');
like($log, qr/^200 id=\Q$id\E tsb=PENDING reason=- cache=MISS up=\d+\.\d{3}$/m,
     'a status MISS: TSB status, cache status and TSB time');
like($log, qr/^200 id=\Q$id\E tsb=PENDING reason=- cache=HIT up=-$/m,
     'a status HIT: no TSB time');
unlike($log, qr/\Q$KEY\E/, 'no secret in the access log');

$t->no_worker_crash;
done_testing();
