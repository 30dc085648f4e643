#!/usr/bin/perl
# Many clients, one request id, two workers: 200 concurrent clients on an
# uncached id cost one upstream GET; ?wait= holds a request until the TSB
# request is final and answers within one tsb_refresh_interval of the
# approval (APPROVED is not final: the waiter keeps waiting for EXECUTED),
# times out cleanly with 202 + Retry-After, is capped by tsb_wait_max,
# answers 409 when rejected meanwhile; 200 waiters cost one upstream GET per
# interval; clients that hang up release their waiters.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(xcs);

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';
my $PEM_T = 'application/x-pem-file';
my $INTERVAL = 0.5;                 # tsb_refresh_interval below
my $WORKERS = 2;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
# reuseport: the kernel spreads the clients' connections over both workers
$t->start_nginx(<<"EOF", workers => $WORKERS);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    add_header X-Worker \$pid always;
    tsb_cache tsb;
    tsb_refresh_interval 500ms;
    tsb_wait_max 10s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /capped/ { tsb_status; tsb_wait_max 1s; }
    location = /pid { return 200 "\$pid"; }
}
EOF

my @workers = $t->worker_pids;
is(scalar @workers, $WORKERS, "$WORKERS workers");

# ---------------------------------------------------------------- helpers

my ($CSR) = $t->make_csr(cn => 'wait.svc.example', key => 'ec:P-256');

sub new_id { $t->sign_id($CSR) }

sub sim_ok {
    my ($path, $body) = @_;
    my $r = $t->sim_post($path, $body);
    die "$path: $r->{status} $r->{content}\n" unless $r->{status} == 200;
}

sub gets { $t->sim_counts->{$GET} // 0 }

# upstream GETs for one id among the simulator's last 200 requests
sub gets_for {
    my ($id) = @_;
    return scalar grep { $_->{method} eq 'GET'
                         && $_->{path} eq "/v1/request/$id" } @{$t->sim_requests};
}

sub parse_http {
    my ($buf) = @_;
    return { status => 599, headers => {}, content => $buf }
        unless $buf =~ /\r\n\r\n/;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($sl, @lines) = split /\r\n/, $head;
    my ($status) = $sl =~ m{^HTTP/\S+\s+(\d+)};
    my %h;
    for (@lines) { my ($k, $v) = /^([^:]+):\s*(.*)$/ or next; $h{lc $k} = $v }
    return { status => $status // 599, headers => \%h, content => $body };
}

# Send every client's request at once, run the actions at their times
# (seconds after the start), collect every answer with the time it
# completed.  Returns ($t0, {name => response}, {action => time}).
sub run_clients {
    my (%o) = @_;
    my $t0 = time;
    my (%sock, %name, %buf, %res, %at);
    for my $c (@{$o{clients}}) {
        my ($name, $path) = @$c;
        my $s = $t->raw_send(GET => $path);
        $sock{$name} = $s;
        $name{fileno $s} = $name;
        $buf{$name} = '';
    }
    my @actions = sort { $a->[0] <=> $b->[0] } @{$o{actions} || []};
    my $sel = IO::Select->new(values %sock);
    my $deadline = $t0 + ($o{timeout} // 10) * $TsbTest::TIME_FACTOR;
    while (($sel->count || @actions) && time < $deadline) {
        while (@actions && time >= $t0 + $actions[0][0]) {
            my $a = shift @actions;
            $at{$a->[1]} = time;
            $a->[2]->();
        }
        my $wait = $deadline - time;
        $wait = $t0 + $actions[0][0] - time
            if @actions && $t0 + $actions[0][0] - time < $wait;
        $wait = 0 if $wait < 0;
        if (!$sel->count) { sleep $wait; next }
        for my $s ($sel->can_read($wait)) {
            my $name = $name{fileno $s};
            my $got = sysread($s, $buf{$name}, 65536, length $buf{$name});
            next if !defined $got && ($!{EAGAIN} || $!{EINTR});
            next if $got;
            $sel->remove($s);
            close $s;
            $res{$name} = parse_http($buf{$name});
            $res{$name}{t_done} = time;
        }
    }
    for my $name (keys %sock) {
        next if $res{$name};
        close $sock{$name};
        $res{$name} = { status => 599, headers => {}, content => '',
                        t_done => time };
    }
    return ($t0, \%res, \%at);
}

sub is_pem {
    my ($r) = @_;
    return $r->{status} == 200
        && ($r->{headers}{'content-type'} // '') eq $PEM_T
        && $r->{content} =~ /\A-----BEGIN CERTIFICATE-----\n.*-----END CERTIFICATE-----\n?\z/s;
}

sub show {
    my ($name, $r) = @_;
    diag("$name: $r->{status}\n"
         . join('', map { "$_: $r->{headers}{$_}\n" } sort keys %{$r->{headers}})
         . substr($r->{content}, 0, 300));
}

# ------------------------ 200 concurrent clients on an uncached id: one GET
{
    my $C = new_id();
    # the first GET must still be upstream when the other worker's
    # clients arrive: under a checker (TSB_TIME_FACTOR) they come later
    $t->sim_fault(route => $GET, delay_ms => 600 * $TsbTest::TIME_FACTOR,
                  times => 4);
    my $g0 = gets();
    my ($t0, $res) = run_clients(
        clients => [ map { ["c$_", "/request/$C"] } 1 .. 200 ]);
    $t->sim_clear_fault;
    my $g = gets() - $g0;
    my @r = values %$res;
    is(scalar(grep { $_->{status} == 200
                     && $_->{content} =~ /"status":"PENDING"/ } @r), 200,
       '200 concurrent clients: all 200 with the PENDING status');
    my %by;
    $by{$_->{headers}{'x-worker'} // '?'}++ for @r;
    is(scalar(keys %by), $WORKERS, 'both workers served some of them')
        or diag(explain(\%by));
    cmp_ok($g, '<=', $WORKERS,
           "at most one upstream GET per worker ($g for $WORKERS workers)");
    is($g, 1, 'one upstream GET in all: the other worker waited for it');
    diag('clients per worker: ' . join(', ', map { "$_=$by{$_}" } sort keys %by));
}

# --------------------------------- ?wait: approve, APPROVED, reject, timeout
{
    my ($A, $AP, $B, $CAP, $RJ) = map { new_id() } 1 .. 5;
    my ($t0, $res, $at) = run_clients(
        clients => [
            [A   => "/request/$A.pem?wait=5"],
            [AP  => "/request/$AP.pem?wait=5"],
            [B   => "/request/$B.pem?wait=2"],
            [CAP => "/capped/$CAP.pem?wait=30"],
            [RJ  => "/request/$RJ.pem?wait=5"],
        ],
        actions => [
            [0.5, 'approved', sub { sim_ok("/_sim/approve/$AP",
                                           { execute => JSON::PP::false }) }],
            [0.7, 'reject', sub { sim_ok("/_sim/reject/$RJ") }],
            [1.2, 'approve', sub { sim_ok("/_sim/approve/$A") }],
            [1.4, 'execute', sub { sim_ok("/_sim/approve/$AP") }],
        ],
        timeout => 8);
    my $slack = 0.35 * $TsbTest::TIME_FACTOR;     # > 1 under a checker

    my $a = $res->{A};
    ok(is_pem($a), '?wait=5, approved after 1.2 s: 200 and the certificate')
        or show(A => $a);
    my $lag = $a->{t_done} - $at->{approve};
    cmp_ok($lag, '<=', $INTERVAL + $slack,
           sprintf('answered %.2f s after the approval (interval %.1f s)',
                   $lag, $INTERVAL));
    cmp_ok($lag, '>=', 0, 'and not before it');
    my ($ok) = $t->verify_cert($a->{content});
    ok($ok, 'the certificate verifies against the simulator CA');

    my $ap = $res->{AP};
    ok(is_pem($ap), 'APPROVED is not final: the waiter got the certificate '
                    . 'once EXECUTED') or show(AP => $ap);
    cmp_ok($ap->{t_done}, '>=', $at->{execute},
           'APPROVED did not end the wait');

    my $b = $res->{B};
    is($b->{status}, 202, '?wait=2 and nobody approves: 202')
        or show(B => $b);
    like($b->{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
    like($b->{content}, qr/"status":"PENDING"/, 'with the PENDING status');
    my $tb = $b->{t_done} - $t0;
    ok($tb >= 1.9 && $tb <= 2 + $slack + 0.2,
       sprintf('after the 2 s it asked for (%.2f s)', $tb));

    my $c = $res->{CAP};
    is($c->{status}, 202, 'tsb_wait_max 1s caps ?wait=30: 202');
    my $tc = $c->{t_done} - $t0;
    ok($tc >= 0.9 && $tc <= 1 + $slack + 0.2,
       sprintf('after the 1 s cap (%.2f s)', $tc));

    my $rj = $res->{RJ};
    is($rj->{status}, 409, 'rejected while waiting: 409') or show(RJ => $rj);
    like($rj->{content}, qr/"reason":"request\.rejected"/,
         'rejected while waiting: reason request.rejected');
    my $lr = $rj->{t_done} - $at->{reject};
    cmp_ok($lr, '<=', $INTERVAL + $slack,
           sprintf('rejected: answered %.2f s after the rejection', $lr));
}

# ------------------------------------------------ odd ?wait values, unknown
{
    my $id = new_id();
    for my $arg ('wait=abc', 'wait=0', 'wait=-5', 'wait=') {
        my $t0 = time;
        my $r = $t->get("/request/$id.pem?$arg");
        is($r->{status}, 202, "?$arg: 202 at once");
        cmp_ok(time - $t0, '<', 0.5, "?$arg: not held");
    }
    my $unknown = '00000000-0000-4000-8000-000000000404';
    my $t0 = time;
    my $r = $t->get("/request/$unknown.pem?wait=5");
    is($r->{status}, 404, '?wait=5 on an id the TSB does not know: 404');
    like($r->{content}, qr/"reason":"request\.unknown"/, 'request.unknown');
    cmp_ok(time - $t0, '<', 1, 'at once, not after the wait');
}

# ------------------------------------------- one call: POST /sign?wait=
{
    my $before = { map { $_->{id} => 1 }
                   @{$t->sim_get('/_sim/sign-requests')->{json} || []} };
    my $s = $t->raw_send(POST => '/sign?wait=5', body => $CSR,
                         content_type => $PEM_T);
    my $id;
    $t->wait_for(sub {
        ($id) = grep { !$before->{$_} } map { $_->{id} }
                @{$t->sim_get('/_sim/sign-requests')->{json} || []};
        $id;
    }, 3);
    ok($id, 'POST /sign?wait=5 reached the simulator');
    sleep 0.3;
    sim_ok("/_sim/approve/$id") if $id;
    my $t0 = time;
    my $r = $t->raw_read($s, 8);
    is($r->{status}, 200, 'sign ?wait=5, approved meanwhile: 200')
        or $t->explain_response($r);
    is($r->{headers}{'content-type'}, $PEM_T, 'sign ?wait: the PEM');
    ok(is_pem($r), 'sign ?wait: one PEM certificate');
    cmp_ok(time - $t0, '<=', $INTERVAL + 0.5,
           'sign ?wait: within one interval of the approval');

    # refused meanwhile: 409; nobody acts: 200 and the id after the wait
    my %seen = map { $_->{id} => 1 }
               @{$t->sim_get('/_sim/sign-requests')->{json} || []};
    my $s2 = $t->raw_send(POST => '/sign?wait=5', body => $CSR,
                          content_type => $PEM_T);
    my $s3 = $t->raw_send(POST => '/sign?wait=1', body => $CSR,
                          content_type => $PEM_T);
    my @new;
    $t->wait_for(sub {
        @new = grep { !$seen{$_} } map { $_->{id} }
               @{$t->sim_get('/_sim/sign-requests')->{json} || []};
        @new == 2;
    }, 3);
    is(scalar @new, 2, 'two more signs reached the simulator');
    my $t1 = time;
    my $r3 = $t->raw_read($s3, 5);
    is($r3->{status}, 200, 'sign ?wait=1, nobody acts: 200 after the wait');
    like($r3->{json}{signRequestId} // '', qr/^[0-9a-f-]{36}$/,
         'sign ?wait=1: with the signRequestId');
    my $rid = $r3->{json}{signRequestId} // '';
    my ($other) = grep { $_ ne $rid } @new;
    sim_ok("/_sim/reject/$other") if $other;
    my $r2 = $t->raw_read($s2, 8);
    is($r2->{status}, 409, 'sign ?wait=5, rejected meanwhile: 409')
        or $t->explain_response($r2);
}

# ------------------------------------- clients that hang up while waiting
{
    my $D = new_id();
    my $pid_before = join ',', $t->worker_pids;
    $t->log_mark;
    my @s = map { $t->raw_send(GET => "/request/$D.pem?wait=10") } 1 .. 20;
    sleep 0.6;
    close $_ for @s;
    sleep 0.2;
    my $g0 = gets_for($D);
    sleep 3 * $INTERVAL + 0.2;
    is(gets_for($D) - $g0, 0,
       'no more upstream GETs for the id once its waiters hung up');
    is(join(',', $t->worker_pids), $pid_before, 'the workers are alive');
    my $r = $t->get("/request/$D");
    is($r->{status}, 200, 'a later request for the id: 200');
    is($r->{json}{status}, 'PENDING', 'a later request: PENDING');
    my ($t1) = time;
    my $w = $t->get("/request/$D.pem?wait=1");
    is($w->{status}, 202, 'a later ?wait=1: 202');
    unlike($t->log_since, qr/\[(alert|crit|emerg)\]/,
           'no alert in error.log after the hang-ups');
}

# ----------------------- 200 waiters: one upstream GET per interval, all served
{
    my $E = new_id();
    my $g0 = gets();
    my ($t0, $res, $at) = run_clients(
        clients => [ map { ["w$_", "/request/$E.pem?wait=5"] } 1 .. 200 ],
        actions => [[1.5, 'approve', sub { sim_ok("/_sim/approve/$E") }]],
        timeout => 8);
    my $elapsed = time - $t0;
    my $g = gets() - $g0;
    my @r = values %$res;
    my @pem = grep { is_pem($_) } @r;
    is(scalar @pem, 200, '200 waiters: all got the certificate')
        or show(first_bad => (grep { !is_pem($_) } @r)[0]);
    my %bodies = map { $_->{content} => 1 } @pem;
    is(scalar keys %bodies, 1, 'the same certificate for all');
    my ($max) = sort { $b <=> $a } map { $_->{t_done} - $at->{approve} } @r;
    # the interval is the module's; the slack for serving 200 clients
    # grows under a checker (t/sanitize: TSB_TIME_FACTOR)
    cmp_ok($max, '<=', $INTERVAL + 0.5 * $TsbTest::TIME_FACTOR,
           sprintf('the last one %.2f s after the approval', $max));
    my %by;
    $by{$_->{headers}{'x-worker'} // '?'}++ for @r;
    is(scalar(keys %by), $WORKERS, 'both workers held waiters');
    my $bound = int($elapsed / $INTERVAL + 2) * $WORKERS;
    cmp_ok($g, '<=', $bound,
           sprintf('%d upstream GETs in %.1f s <= (elapsed / interval + 2) '
                   . 'per worker = %d', $g, $elapsed, $bound));
    diag(sprintf '200 waiters over %.2f s: %d upstream GETs (%.1f per '
                 . 'interval), workers %s', $elapsed, $g,
                 $g / ($elapsed / $INTERVAL),
                 join(', ', map { "$_=$by{$_}" } sort keys %by));
}

is(join(',', sort { $a <=> $b } $t->worker_pids),
   join(',', sort { $a <=> $b } @workers), 'no worker was replaced');
$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
