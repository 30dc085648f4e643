#!/usr/bin/perl
# The worker never blocks on the HSM: with ONE worker process and a sign
# request stuck upstream for 3 s, the same worker keeps answering other
# requests at full speed, status polls go through, and the slow sign still
# completes with 200.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use Test::More;
use Time::HiRes qw(time);
use TsbTest;

my $KEY = 'test-api-key-SECRET';
my $DELAY_MS = 3000;
my $SIGN = 'POST /v1/certificate/sign';
my $PEM = 'application/x-pem-file';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location = /ping { return 200 "pong\\n"; }
    location = /pid { return 200 "\$pid"; }
}
EOF
is(scalar(my @w = $t->worker_pids), 1, 'one worker process');

# A request whose status we poll while the slow sign is in flight.
my ($csr0) = $t->make_csr(cn => 'first.svc.example', key => 'ec:P-256');
my $first = $t->request(POST => '/sign', content_type => $PEM,
                        body => $csr0);
is($first->{status}, 200, 'a first sign request is accepted')
    or $t->explain_response($first);
my $id0 = $first->{json}{signRequestId} // 'none';

# The slow one: the simulator holds its answer for 3 s.
my ($csr) = $t->make_csr(cn => 'slow.svc.example', key => 'ec:P-256');
$t->sim_fault(route => $SIGN, delay_ms => $DELAY_MS, times => 1);
my $t_sign = time;
my $sock = $t->raw_send(POST => '/sign', content_type => $PEM, body => $csr);
ok($t->wait_for(sub { $t->sim_counts->{$SIGN} == 2 }, 2),
   'the slow sign request reached the simulator');

# 200 sequential requests on fresh connections to the same worker.
my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
my $url = $t->base_url . '/ping';
my ($good, $t0) = (0, time);
for (1 .. 200) {
    my $r = $ua->get($url);
    $good++ if $r->{status} == 200 && $r->{content} eq "pong\n";
}
my $took = time - $t0;
diag(sprintf '200 x GET /ping while a sign waits upstream: %.3f s', $took);
is($good, 200, 'all 200 /ping requests answered');
cmp_ok($took, '<', 1.0, '200 /ping requests took well under a second');
ok(!$t->raw_ready($sock, 0), 'the sign was still in flight meanwhile');

# A status poll goes upstream too and must not wait for the sign.
$t0 = time;
my $st = $t->get("/request/$id0");
my $poll = time - $t0;
diag(sprintf 'status poll while a sign waits upstream: %.3f s', $poll);
is($st->{status}, 200, 'status poll answered') or $t->explain_response($st);
is($st->{json}{status}, 'PENDING', 'status poll says PENDING');
cmp_ok($poll, '<', 0.5, 'status poll was fast');
ok(!$t->raw_ready($sock, 0), 'the sign was still in flight after the poll');

# And the slow sign finishes normally.
my $r = $t->raw_read($sock, 10);
my $total = time - $t_sign;
diag(sprintf 'slow sign answered after %.3f s', $total);
is($r->{status}, 200, 'the slow sign completes with 200')
    or $t->explain_response($r);
like($r->{json}{signRequestId} // '', qr/^[0-9a-f-]{36}$/,
     'the slow sign got its signRequestId');
cmp_ok($total, '>=', $DELAY_MS / 1000 - 0.1,
       'it really waited for the upstream');

is($t->get('/pid')->{content}, $w[0], 'the same worker served everything');
$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
