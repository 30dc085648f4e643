#!/usr/bin/perl
# A worker told to exit does (issue 11, point 5).  On reload or quit, the
# old worker answers its ?wait= clients at once with what it knows (202
# with Retry-After for a certificate not issued yet, JSON), schedules no
# new refresh, lets a transfer in flight finish, and is gone within about
# a second of having nothing in flight.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest;

my $KEY = 'exit-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $SIGN = 'POST /v1/certificate/sign';
my $GET = 'GET /v1/request/{id}';
my $F = $TsbTest::TIME_FACTOR;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    tsb_refresh_interval 1s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
}
EOF

my $n = 0;
sub csr { ($t->make_csr(cn => 'x' . ++$n . '.svc.example',
                        key => 'ec:P-256'))[0] }

sub gone {
    my ($pid, $timeout) = @_;
    return $t->wait_for(sub { !grep { $_ == $pid } $t->worker_pids },
                        $timeout, 0.02);
}

# waiters on a pending request: two for the certificate, one for the status
sub waiters {
    my ($id) = @_;
    my @w = map { $t->raw_send(GET => "/request/$id.pem?wait=20") } 1 .. 2;
    push @w, $t->raw_send(GET => "/request/$id?wait=20");
    # they have their first answer from the TSB and wait for a final one
    my $gets = $t->sim_counts->{$GET} // 0;
    $t->wait_for(sub { ($t->sim_counts->{$GET} // 0) > $gets }, 5);
    sleep 0.3;
    ok(!grep({ $t->raw_ready($_) } @w), 'the three clients wait');
    return @w;
}

sub answered_at_once {
    my ($name, $t0, @w) = @_;
    my @r = map { $t->raw_read($_, 5) } @w;
    my $took = time - $t0;
    for my $i (0 .. 1) {
        my $r = $r[$i];
        ok($r->{status} == 202 && $r->{headers}{'retry-after'}
           && ($r->{headers}{'content-type'} // '') =~ m{^application/json}
           && ($r->{json}{status} // '') eq 'PENDING',
           "$name: certificate waiter $i: 202, Retry-After, JSON PENDING")
            or $t->explain_response($r);
    }
    ok($r[2]{status} == 200 && ($r[2]{json}{status} // '') eq 'PENDING',
       "$name: status waiter: 200 JSON PENDING")
        or $t->explain_response($r[2]);
    ok($took < 1.5 * $F, sprintf("$name: answered %.2f s after the signal, "
                                 . "not at the end of ?wait=20", $took));
}

# ------------------------------------------------------ reload, waiters
my $id = $t->sign_id(csr());
my ($old) = $t->worker_pids;
my @w = waiters($id);

my $t0 = time;
$t->reload;
answered_at_once('reload', $t0, @w);
# counted once the waiters have their answer, i.e. once the old worker
# was told to exit: before that it refreshes every second as it should,
# and under a checker the new configuration takes seconds to read
my $gets = $t->sim_counts->{$GET};
ok(gone($old, 2), sprintf('the old worker %d is gone %.2f s after the '
                          . 'reload', $old, time - $t0));
sleep 1.2;
is($t->sim_counts->{$GET}, $gets,
   'the old worker asked the TSB nothing more');

# -------------------------------------- reload, a transfer in flight
($old) = $t->worker_pids;
$t->sim_fault(route => $SIGN, delay_ms => 1500, times => 1);
my $s = $t->raw_send(POST => '/sign', content_type => $PEM, body => csr());
ok($t->wait_for(sub { ($t->sim_counts->{$SIGN} // 0) >= 2 }, 3),
   'a sign is at the TSB');
$t->reload;
my $r = $t->raw_read($s, 10);
my $done = time;
is($r->{status}, 200, 'the sign in flight at the reload finishes: 200')
    or $t->explain_response($r);
ok(gone($old, 2), sprintf('the old worker is gone %.2f s after its last '
                          . 'transfer', time - $done));

# ----------------------------------- reload, a POST /sign?wait= waiting
{
    my $n0 = $t->sim_counts->{$SIGN} // 0;
    my $g0 = $t->sim_counts->{$GET} // 0;
    my $s = $t->raw_send(POST => '/sign?wait=20', content_type => $PEM,
                         body => csr());
    ok($t->wait_for(sub { ($t->sim_counts->{$SIGN} // 0) > $n0
                          && ($t->sim_counts->{$GET} // 0) > $g0 }, 5),
       'sign?wait=20: signed, and its first status read done');
    sleep 0.3;
    ok(!$t->raw_ready($s), 'sign?wait=20: the client waits');
    my $t0 = time;
    $t->reload;
    my $r = $t->raw_read($s, 5);
    my $took = time - $t0;
    ok($r->{status} == 200 && ($r->{json}{signRequestId} // '') =~ /\S/
       && $r->{headers}{location},
       'sign?wait=20 across a reload: the usual 200 with the id and Location')
        or $t->explain_response($r);
    ok($took < 1.5 * $F, sprintf('... %.2f s after the signal, not at the '
                                 . 'end of ?wait=20', $took));
}

# ----------------------------------------------------- quit, waiters
$id = $t->sign_id(csr());
@w = waiters($id);
$t0 = time;
my $master = $t->nginx_pid;
kill 'QUIT', $master;
answered_at_once('quit', $t0, @w);
ok($t->wait_for(sub { !TsbTest::_alive($master) }, 2, 0.02),
   sprintf('nginx has quit %.2f s after the signal', time - $t0));

my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/ }
          split /\n/, $t->error_log;
ok(!@bad, 'no crash, no alert') or diag(join "\n", @bad);
like($t->error_log, qr/worker exiting/, 'the exit is logged');

# ------------------ worker_shutdown_timeout: a TSB call that takes too long
{
    my $u = TsbTest->new;
    $u->start_sim('--api-key', $KEY);
    $u->start_nginx(<<"EOF2", workers => 1,
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
}
EOF2
                    main => 'worker_shutdown_timeout 1s;');
    my ($old) = $u->worker_pids;
    $u->sim_fault(route => $SIGN, delay_ms => 8000, times => 1);
    my ($c) = $u->make_csr(cn => 'late.svc.example', key => 'ec:P-256');
    my $s = $u->raw_send(POST => '/sign', content_type => $PEM, body => $c);
    ok($u->wait_for(sub { ($u->sim_counts->{$SIGN} // 0) >= 1 }, 3),
       'worker_shutdown_timeout: a sign is at the TSB for 8 s');
    my $t1 = time;
    $u->reload;
    my $r = $u->raw_read($s, 10);
    my $took = time - $t1;
    ok($r->{status} == 504 && ($r->{json}{reason} // '') eq 'upstream.timeout',
       sprintf('... its client gets a JSON 504 upstream.timeout %.2f s '
               . 'after the reload', $took))
        or $u->explain_response($r);
    ok($took < 2.5 * $F, '... at worker_shutdown_timeout, not after 8 s');
    ok($u->wait_for(sub { !grep { $_ == $old } $u->worker_pids }, 2, 0.02),
       sprintf('... and the old worker is gone %.2f s after the reload',
               time - $t1));
    like($u->error_log, qr/aborted at worker_shutdown_timeout/,
         '... logged');
}

done_testing;
