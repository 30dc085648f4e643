#!/usr/bin/perl
# A TSB cluster of two simulators behind one tsb_upstream.  Requests go to
# the first node while it is healthy; when it stops, the gateway moves to
# the second (a connection refused means nothing was sent, so even a sign
# POST may move), skips the dead node for tsb_upstream_fail_timeout, and
# comes back to it once it answers again.  A GET that fails on a node is
# tried once on the other; a sign POST that reached a node is never sent
# again: not after a timeout, not after a 5xx, not after the connection
# broke (curl's own retry of a request on a dead reused connection
# included).  The simulators count what they received.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use TsbTest;

my $KEY = 'failover-key-SECRET';
my $PEM = 'application/x-pem-file';
my $SIGN = 'POST /v1/certificate/sign';
my $GET = 'GET /v1/request/{id}';
my $BACKOFF = 0.3;                      # tsb_upstream_fail_timeout

my $a = TsbTest->new;
my $url_a = $a->start_sim('--api-key', $KEY);
my $b = TsbTest->new;
my $url_b = $b->start_sim('--api-key', $KEY);
(my $port_a = $url_a) =~ s{.*:}{};

# one worker: the back-off state is per worker
$a->start_nginx(<<"EOF", workers => 1);
tsb_upstream $url_a;
tsb_upstream $url_b;
tsb_api_key $KEY;
tsb_upstream_fail_timeout 300ms;
tsb_connect_timeout 1s;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location = /slow/sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_timeout 1s;
    }
    location /request/ { tsb_status; }
    location /slow/request/ { tsb_status; tsb_timeout 1s; }
}
EOF
my $t = $a;                             # nginx's harness

my $n = 0;
sub sign {
    my ($path) = @_;
    my ($csr) = $t->make_csr(cn => 'node' . ++$n . '.svc.example',
                             key => 'ec:P-256');
    return $t->request(POST => $path // '/sign', body => $csr,
                       content_type => $PEM);
}

sub counts { ($a->sim_counts->{$_[0]} // 0, $b->sim_counts->{$_[0]} // 0) }

# Wait until every back-off has run out, and make sure node A answers again
# (a success resets its failure count).
sub settle {
    sleep 8 * $BACKOFF + 0.1;
    $a->sim_clear_fault;
    $b->sim_clear_fault;
    $t->get('/request/settle');
}

# ---------------------------------------------------------- healthy

my $r = sign();
is($r->{status}, 200, 'sign: 200') or $t->explain_response($r);
my $id = $r->{json}{signRequestId} // 'none';
is_deeply([counts($SIGN)], [1, 0], 'the first node takes it');

is($t->get("/request/$id")->{status}, 200, 'status from the first node');

# ------------------------------------------- GET retried on the other node

{
    my @before = counts($GET);
    $a->sim_fault(route => $GET, status => 503, times => 1);
    $t->log_mark;
    my $r = $t->get("/request/$id");
    my @after = counts($GET);
    is($after[0] - $before[0], 1, 'GET answered 503 by the first node');
    is($after[1] - $before[1], 1, '... was tried once on the second');
    $t->error_is($r, 404, 'request.unknown',
                 "... whose answer (it does not know the id) the client gets");
    ok($t->wait_log(qr/GET \Q$url_a\E\S+ failed after \d+ ms \(answered 503\), trying the next TSB node/, 1),
       '... logged with the URL, the time and why');
    ok($t->wait_log(qr/upstream \Q$url_a\E failed \(answered 503\), skipped for \d+ ms/, 1),
       '... and the node is backed off');

    # while it is backed off, the second node gets the work directly
    my @s = counts($SIGN);
    is(sign()->{status}, 200, 'sign during the back-off: 200');
    my @s2 = counts($SIGN);
    is_deeply([$s2[0] - $s[0], $s2[1] - $s[1]], [0, 1],
              '... went straight to the second node');
}

settle();

{
    my @s = counts($SIGN);
    $t->log_mark;
    is(sign()->{status}, 200, 'after the back-off: 200');
    my @s2 = counts($SIGN);
    is_deeply([$s2[0] - $s[0], $s2[1] - $s[1]], [1, 0],
              '... back on the first node');
}

{
    # both nodes fail: one retry, no more
    my @before = counts($GET);
    $a->sim_fault(route => $GET, status => 500, times => 5);
    $b->sim_fault(route => $GET, status => 500, times => 5);
    my $r = $t->get("/request/$id");
    my @after = counts($GET);
    $t->error_is($r, 502, 'upstream.status', 'GET failing on both nodes');
    is_deeply([$after[0] - $before[0], $after[1] - $before[1]], [1, 1],
              '... was sent once to each, and not again');
}

settle();

{
    # a GET that times out is tried on the other node too
    $a->sim_fault(route => $GET, delay_ms => 2500, times => 1);
    my @before = counts($GET);
    my $t0 = time;
    my $r = $t->get("/slow/request/$id");
    my $took = time - $t0;
    my @after = counts($GET);
    is($r->{status}, 404, 'GET timing out on the first node: the second '
                          . 'answers');
    is($after[1] - $before[1], 1, '... one GET on the second node');
    cmp_ok($took, '<', 2.4, sprintf('... after one timeout (%.1f s)', $took));
}

settle();

# --------------------------------------------- a sign is never sent twice

{
    $a->sim_fault(route => $SIGN, delay_ms => 2500, times => 1);
    my @before = counts($SIGN);
    my $r = sign('/slow/sign');
    $t->error_is($r, 504, 'upstream.timeout', 'a sign POST that times out');
    sleep 1.8;                          # the slow node answers meanwhile
    my @after = counts($SIGN);
    is_deeply([$after[0] - $before[0], $after[1] - $before[1]], [1, 0],
              '... was sent once, and not to the other node');
}

settle();

{
    $a->sim_fault(route => $SIGN, status => 500, times => 1);
    my @before = counts($SIGN);
    my $r = sign();
    $t->error_is($r, 502, 'upstream.status', 'a sign POST answered 500');
    my @after = counts($SIGN);
    is_deeply([$after[0] - $before[0], $after[1] - $before[1]], [1, 0],
              '... was sent once, and not to the other node');
}

settle();

{
    # a warm, reused connection that dies under the sign request: curl
    # would resend on a fresh connection if it could rewind the body
    $t->get("/request/$id");
    $a->sim_fault(route => $SIGN, reset => JSON::PP::true(), times => 1);
    my @before = counts($SIGN);
    my $r = sign();
    $t->error_is($r, 502, 'upstream.error',
                 'a sign POST whose connection is reset');
    my @after = counts($SIGN);
    is_deeply([$after[0] - $before[0], $after[1] - $before[1]], [1, 0],
              '... was sent once, not resent on a fresh connection');
}

settle();

# ---------------------------------------------- a node stops and returns

{
    $a->_kill_group('sim_pid');
    my @b0 = counts_b($SIGN);
    $t->log_mark;
    my $r = sign();
    is($r->{status}, 200, 'the first node is down: sign still 200')
        or $t->explain_response($r);
    is(counts_b($SIGN) - $b0[0], 1, '... the second node took it');
    ok($t->wait_log(qr/POST \Q$url_a\E\S+ failed after \d+ ms \(.*\), trying the next TSB node/, 1),
       '... a connection refused moves even a sign POST (nothing was sent)')
        or diag($t->log_since);

    $t->log_mark;
    is(sign()->{status}, 200, 'again: 200');
    ok($t->log_since !~ /trying the next TSB node/,
       '... without trying the dead node again during its back-off');

    # it comes back on the same port
    $a->start_sim('--api-key', $KEY, '--port', $port_a);
    sleep 2 * $BACKOFF + 0.1;
    $t->log_mark;
    my $deadline = time + 5;
    my $back = 0;
    while (time < $deadline) {
        my $r = sign();
        last unless $r->{status} == 200;
        if (($a->sim_counts->{$SIGN} // 0) > 0) { $back = 1; last }
        sleep $BACKOFF;
    }
    ok($back, 'the first node is used again once it is back');
    ok($t->wait_log(qr/upstream \Q$url_a\E is back/, 1),
       '... and the gateway says so');
}

sub counts_b { ($b->sim_counts->{$_[0]} // 0) }

{
    $a->_kill_group('sim_pid');
    $b->_kill_group('sim_pid');
    $t->log_mark;
    my $r = sign();
    $t->error_is($r, 502, 'upstream.unreachable', 'the whole cluster down');
    ok($t->wait_log(qr/\Q$url_b\E\S+ failed after \d+ ms, 2 attempts/, 1),
       '... both nodes were tried, and the log says so')
        or diag($t->log_since);
}

$t->no_worker_crash;
ok($t->stop, 'nginx stops gracefully');

done_testing;
