#!/usr/bin/perl
# Several gateways in front of one TSB (make bench-ha; docs/operations-ha.md):
# N waiters (?wait=30) on one PENDING id, spread evenly over G nginx
# instances that share one tsb_store and each have their own zone.  The
# simulator's counters give the TSB status GETs per tsb_refresh_interval
# (1 s) over five intervals: at most G (one per gateway) is the target.
# Then the approval: every waiter must get the certificate.  Prints one
# line per G (markdown table rows for docs/benchmarks.md).
#
#   perl bench/ha_bench.pl [--module SO] [--waiters N] [--gateways 2,3]
#
# The nginx binary, the simulator and the harness are the tests' own
# (t/lib/TsbTest.pm); the clients are bench/cache_client.py's "waiters".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Getopt::Long;
use POSIX ();
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp json_decode);

Test::More->builder->no_ending(1);      # the harness loads Test::More

my %o = (waiters => 1000, gateways => '2,3');
GetOptions(\%o, 'module=s', 'waiters=i', 'gateways=s') or die "usage\n";
$TsbTest::MODULE = $o{module} if $o{module};

my $KEY = 'bench-api-key';
my $GET = 'GET /v1/request/{id}';
my $CLIENT = "$FindBin::Bin/cache_client.py";

print "| gateways | waiters | TSB GETs in 5 s | per 1 s interval "
    . "| target | answered after approval |\n|---|---:|---:|---:|---:|---|\n";

for my $g (split /,/, $o{gateways}) {
    my $sim = TsbTest->new;
    $sim->start_sim('--api-key', $KEY);
    my $store = $sim->tmp . '/store';
    my $url = $sim->sim_url;
    my @gw;
    for (1 .. $g) {
        my $t = TsbTest->new;
        $t->start_nginx(<<"EOF", workers => 2);
tsb_upstream $url;
tsb_api_key $KEY;
tsb_cache_zone tsb:10m;
tsb_store $store;
server {
    listen 127.0.0.1:%%PORT%% reuseport backlog=4096;
    access_log off;
    tsb_cache tsb;
    tsb_refresh_interval 1s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
EOF
        push @gw, $t;
    }

    my ($csr) = $gw[0]->make_csr(cn => 'ha.svc.example', key => 'ec:P-256');
    my $id = $gw[0]->sign_id($csr);

    my (@pids, @ready, @out);
    my $per = int($o{waiters} / $g);
    for my $i (0 .. $#gw) {
        my $n = $i == $#gw ? $o{waiters} - $per * $#gw : $per;
        push @ready, $gw[$i]->tmp . '/ready';
        push @out, $gw[$i]->tmp . '/waiters.json';
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>', $out[-1] or POSIX::_exit(126);
            { exec '/usr/bin/python3', $CLIENT, 'waiters',
                   '--port', $gw[$i]->port, '--path',
                   '/request/{id}.pem?wait=30', '--id', $id, '-n', $n,
                   '--ready', $ready[-1], '--timeout', 40; }
            POSIX::_exit(127);
        }
        push @pids, $pid;
    }
    my $deadline = time + 30;
    sleep 0.05 until !grep({ !-e } @ready) || time > $deadline;
    die "the waiters did not connect\n" if grep { !-e } @ready;
    sleep 0.5;                  # every request has reached nginx

    my $g0 = $sim->sim_counts->{$GET} // 0;
    my $t0 = time;
    sleep 5;
    my $seconds = time - $t0;
    my $gets = ($sim->sim_counts->{$GET} // 0) - $g0;
    my $t_a = time;
    $sim->sim_approve($id);
    waitpid($_, 0) for @pids;

    my (%status, @done);
    for my $f (@out) {
        my $w = json_decode(slurp($f) // '') or die "waiters: no result\n";
        $status{$_} += $w->{status}{$_} for keys %{$w->{status}};
        push @done, map { $_ - $t_a } @{$w->{done_epoch}};
    }
    @done = sort { $a <=> $b } @done;
    printf "| %d | %d | %d | %.2f | <= %d | %s in %.2f .. %.2f s |\n",
        $g, $o{waiters}, $gets, $gets / $seconds, $g,
        join(', ', map { "$status{$_} x $_" } sort keys %status),
        $done[0] // -1, $done[-1] // -1;
    $_->stop for @gw, $sim;
}
