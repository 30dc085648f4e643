#!/usr/bin/perl
# Clients that go away mid-transfer do not hurt the worker, and a reload
# (HUP) while sign requests are in flight lets the old workers finish them:
# every client still gets its 200, new workers take new requests, and the
# old workers exit without leaking sockets.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest;

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';
my $PEM = 'application/x-pem-file';
my $F = $TsbTest::TIME_FACTOR;      # > 1 under valgrind/ASan (t/sanitize)
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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

my $n = 0;
sub csr { ($t->make_csr(cn => 'c' . ++$n . '.svc.example',
                        key => 'ec:P-256'))[0] }
sub signs { $t->sim_counts->{$SIGN} }

sub sign_ok {
    my ($name) = @_;
    my $r = $t->request(POST => '/sign', content_type => $PEM, body => csr());
    ok($r->{status} == 200 && ($r->{json}{signRequestId} // '') =~ $UUID,
       "$name: sign -> 200 with an id") or $t->explain_response($r);
    return $r->{json}{signRequestId};
}

my $pid = $t->get('/pid')->{content};
like($pid, qr/^\d+$/, "worker pid $pid");

# -------------------------------------------------------------- aborts
{
    # 1. The client hangs up while the sign waits upstream (2 s).
    $t->sim_fault(route => $SIGN, delay_ms => 2000, times => 1);
    my $t0 = time;
    my $s = $t->raw_send(POST => '/sign', content_type => $PEM, body => csr());
    ok($t->wait_for(sub { signs() == 1 }, 2),
       'the sign reached the simulator before the client left');
    sleep(0.2 - (time - $t0)) if time - $t0 < 0.2;
    close $s;

    is($t->get('/ping')->{content}, "pong\n", 'ping right after the abort');
    is($t->get('/pid')->{content}, $pid, 'same worker after the abort');

    # 2. The client sends half a body and hangs up.
    my $half = $t->raw_connect;
    my $body = csr();
    my $req = $t->raw_request_text(POST => '/sign', content_type => $PEM,
                                   body => $body);
    syswrite($half, substr($req, 0, length($req) - 300));
    sleep 0.1;
    close $half;

    # 3. Several clients leave at once while their signs are upstream.
    $t->sim_fault(route => $SIGN, delay_ms => 1000, times => 3);
    my @s = map { $t->raw_send(POST => '/sign', content_type => $PEM,
                               body => csr()) } 1 .. 3;
    ok($t->wait_for(sub { signs() == 4 }, 2),
       'three more signs reached the simulator');
    close $_ for @s;

    # Let the upstream answers of the abandoned requests come back.
    sleep(2.2 - (time - $t0)) if time - $t0 < 2.2;
    $t->sim_clear_fault;

    is($t->get('/pid')->{content}, $pid,
       'same worker after the late upstream answers');
    sign_ok('after the aborts');
    is($t->get('/ping')->{content}, "pong\n", 'ping after the aborts');
    unlike($t->error_log, qr/exited on signal/, 'no worker crashed');
    $t->no_worker_crash('after aborts');
}

# -------------------------------------------------------------- reload
{
    my @csrs = map { csr() } 1 .. 5;
    my $before = signs();
    # the signs must still be upstream when the reload is done: under a
    # checker a reload takes longer, and the TSB's delay grows with it
    $t->sim_fault(route => $SIGN, delay_ms => 1500 * $F, times => 5);
    my @s = map { $t->raw_send(POST => '/sign', content_type => $PEM,
                               body => $_) } @csrs;
    ok($t->wait_for(sub { signs() == $before + 5 }, 2),
       'five signs in flight upstream');

    my @old = $t->worker_pids;
    my @new = $t->reload;
    ok(@new && !grep({ my $n = $_; grep { $_ == $n } @old } @new),
       "reload started new workers (@new; old @old)");
    # not a time bound: what matters is that no sign has its answer yet
    ok(!grep({ $t->raw_ready($_) } @s),
       'reloaded while the signs were still upstream (none answered yet)');

    # New requests are served by the new worker at once.
    my $p = $t->get('/pid')->{content};
    ok((grep { $_ == $p } @new), "new requests go to a new worker ($p)");
    is($t->get('/ping')->{content}, "pong\n", 'ping after reload');

    my $got = 0;
    for my $i (0 .. $#s) {
        my $r = $t->raw_read($s[$i], 10);
        if ($r->{status} == 200 && ($r->{json}{signRequestId} // '') =~ $UUID) {
            $got++;
        } else {
            diag("in-flight sign $i after reload:");
            $t->explain_response($r);
        }
    }
    is($got, 5, 'every in-flight sign got its 200 across the reload');
    $t->sim_clear_fault;

    my $id = sign_ok('after reload');
    my $st = $t->get("/request/" . ($id // 'none'));
    is($st->{json}{status}, 'PENDING', 'status after reload')
        or $t->explain_response($st);

    ok($t->wait_for(sub { !grep { kill 0, $_ } @old }, 5),
       'the old worker exited once its requests were done');
}

$t->no_worker_crash('before shutdown');
ok($t->stop, 'nginx exits gracefully');
unlike($t->error_log, qr/open socket|leak/i,
       'no open socket or leak reported at exit');
$t->no_worker_crash('after shutdown');

done_testing;
