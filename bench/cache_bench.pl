#!/usr/bin/perl
# Status cache benchmarks (make bench-cache): writes its section of
# docs/benchmarks.md between the bench-cache markers, keeping the rest.
#
#   perl bench/cache_bench.pl [--seconds S] [--doc FILE] [--module SO]
#                             [--waiters N] [--capacity N] [--only LIST]
#
# 1. throughput: a cached certificate through the gateway against nginx
#    serving the same PEM bytes as a static file: same nginx, same workers,
#    same wrk settings, interleaved rounds in one run.  Target >= 0.9x.
# 2. waiters: N clients ?wait=30 on one PENDING id; the simulator's
#    counters give the upstream GETs per tsb_refresh_interval over five
#    intervals; then the approval, and every client must get the
#    certificate.  Target <= 1 GET per interval.
# 4. store: tsb_store's disk I/O.  Certificates issued through the
#    gateway are written to the store while strace watches every thread
#    of the workers (which thread opens, fsync()s and renames store files,
#    and how long an fsync takes); then GETs of more certificates than the
#    zone holds, so that most are read back from the store, against the
#    same PEM files served by nginx as static files, in interleaved rounds;
#    and strace again while they run.  No target: it says what the I/O
#    costs and that none of it runs on the event loop's thread.
# 3. capacity: zone bytes per EXECUTED entry (zone size / entries held
#    before evictions start), with real simulator-issued certificates
#    signed through the gateway, then a zone sized by that figure filled
#    with N entries (a static nginx location stands in for the TSB so
#    that N can be 100,000) and read back: all must be HITs.  Target
#    <= 2x the DER size.
#
# The nginx binary, the simulator and the harness are the tests' own
# (t/lib/TsbTest.pm); the load comes from wrk and bench/cache_client.py.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Getopt::Long;
use POSIX qw(ceil);
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp spew json_decode json_encode);

Test::More->builder->no_ending(1);      # the harness loads Test::More

my %o = (seconds => 5, rounds => 4, doc => "$FindBin::Bin/../docs/benchmarks.md",
         waiters => 1000, capacity => 100_000, real => 1100, store => 300,
         only => 'throughput,waiters,capacity,store');
GetOptions(\%o, 'seconds=i', 'rounds=i', 'doc=s', 'module=s', 'waiters=i',
           'capacity=i', 'real=i', 'store=i', 'only=s', 'no-doc') or die "usage\n";
$TsbTest::MODULE = $o{module} if $o{module};
my %only = map { $_ => 1 } split /,/, $o{only};

my $KEY = 'bench-api-key';
my $GET = 'GET /v1/request/{id}';
my $CLIENT = "$FindBin::Bin/cache_client.py";
my $PATHS = "$FindBin::Bin/paths.lua";
my $PY = '/usr/bin/python3';
my $WRK = 'wrk -t2 -c50';
my %res;

sub say { print @_, "\n" }

sub sign_conf {
    my ($zone) = @_;
    return <<"EOF";
        location = /sign {
            tsb_sign;
            tsb_cache $zone;
            tsb_sign_key_name CA-Key;
            tsb_allow_common_name *.svc.example;
            tsb_status_uri /request/;
        }
EOF
}

sub new_id {
    my ($t, $csr, $path) = @_;
    # one write: HTTP::Tiny's separate header and body writes meet Nagle
    # and delayed ACKs (40 ms a sign)
    my $r = $t->raw_read($t->raw_send(POST => $path // '/sign', body => $csr,
                         content_type => 'application/x-pem-file'));
    die "sign: $r->{status} $r->{content}\n" unless $r->{status} == 200;
    return $r->{json}{signRequestId};
}

sub approve {
    my ($t, $id) = @_;
    my $r = $t->sim_post("/_sim/approve/$id");
    die "approve: $r->{status} $r->{content}\n" unless $r->{status} == 200;
}

sub run_out {
    my ($t, @cmd) = @_;
    my ($rc, $out) = $t->run_cmd(@cmd);
    die "@cmd: exit $rc\n$out\n" if $rc;
    return $out;
}

# CPU seconds (user + system) the nginx workers have used so far
sub worker_cpu {
    my ($t) = @_;
    my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    my $ticks = 0;
    for my $pid ($t->worker_pids) {
        my $stat = slurp("/proc/$pid/stat") // next;
        $stat =~ s/^.*\)\s+//s;        # after "pid (comm) "
        my @f = split ' ', $stat;      # f[0] is field 3 (state)
        $ticks += $f[11] + $f[12];     # utime, stime: fields 14 and 15
    }
    return $ticks / $hz;
}

sub wrk {
    my ($t, $url, $seconds, $paths) = @_;
    $seconds //= $o{seconds};
    my $script = $paths ? "-s '$PATHS'" : '';
    my $args = $paths ? " -- '$paths'" : '';
    my $cpu0 = worker_cpu($t);
    my $out = run_out($t, 'sh', '-c', "$WRK -d${seconds}s --latency "
                                      . "$script '$url'$args 2>&1");
    my $cpu = worker_cpu($t) - $cpu0;
    my ($n) = $out =~ /(\d+) requests in/;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my ($lat) = $out =~ /^\s+Latency\s+(\S+)/m;
    my ($p99) = $out =~ /^\s+99%\s+(\S+)/m;
    die "wrk: non-2xx answers\n$out" if $out =~ /Non-2xx/;
    die "wrk: no result\n$out" unless $rps;
    return { rps => $rps, lat => $lat, p99 => $p99, n => $n, cpu => $cpu,
             us => $n ? $cpu / $n * 1e6 : 0 };
}

# wrk against each target in turn, $o{rounds} rounds, the order turning
# every round so that no target always runs first.  $targets: kind =>
# [URL, file of paths for bench/paths.lua or none].  Returns the rounds
# ([round, kind, wrk result] each) and, by kind, the sums of requests/s,
# worker CPU ("cpu_KIND") and requests ("n_KIND").
sub wrk_rounds {
    my ($t, $label, $targets, @kinds) = @_;
    my (@rounds, %sum);
    for my $round (1 .. $o{rounds}) {
        for my $kind (@kinds[map { ($_ + $round) % @kinds } 0 .. $#kinds]) {
            my $w = wrk($t, $targets->{$kind}[0], undef, $targets->{$kind}[1]);
            say sprintf "%s round %d %-6s %10.0f req/s  avg %s  p99 %s  "
                        . "%.1f us worker CPU/request", $label, $round,
                        $kind, $w->{rps}, $w->{lat}, $w->{p99}, $w->{us};
            push @rounds, [$round, $kind, $w];
            $sum{$kind} += $w->{rps};
            $sum{"cpu_$kind"} += $w->{cpu};
            $sum{"n_$kind"} += $w->{n};
        }
    }
    return (\@rounds, \%sum);
}

# ------------------------------------------------------------ throughput
sub bench_throughput {
    my $t = TsbTest->new;
    $t->start_sim('--api-key', $KEY);
    $t->start_nginx(<<"EOF", workers => 2);
    tsb_upstream %%SIM%%;
    tsb_api_key $KEY;
    tsb_cache_zone tsb:10m;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        access_log off;
        tsb_cache tsb;
@{[ sign_conf('tsb') ]}
        location /request/ { tsb_status; }
        location /static/ {
            alias %%TMP%%/static/;
            default_type application/x-pem-file;
            open_file_cache max=16 inactive=60s;   # static at its best
            open_file_cache_valid 60s;
        }
    }
EOF
    my ($csr) = $t->make_csr(cn => 'bench.svc.example', key => 'rsa:2048');
    my $id = new_id($t, $csr);
    approve($t, $id);
    my $r = $t->get("/request/$id.pem");
    die "certificate: $r->{status}\n" unless $r->{status} == 200;
    mkdir $t->tmp . '/static';
    spew($t->tmp . "/static/$id.pem", $r->{content});
    chmod 0644, $t->tmp . "/static/$id.pem";
    my $s = $t->get("/static/$id.pem");
    die "static copy differs\n" unless $s->{content} eq $r->{content};
    my $g0 = $t->sim_counts->{$GET};

    my $base = $t->base_url;
    my %url = (static => "$base/static/$id.pem",
               pem => "$base/request/$id.pem",
               der => "$base/request/$id.der");
    wrk($t, $url{pem}, 2);                      # warm-up
    my @kinds = qw(static pem der);
    my ($rounds, $sum) = wrk_rounds($t, 'throughput',
                                    { map { $_ => [$url{$_}] } @kinds },
                                    @kinds);
    my @rounds = @$rounds;
    my %sum = %$sum;
    my %ratios;
    for my $round (1 .. $o{rounds}) {
        my %rps = map { $_->[1] => $_->[2]{rps} }
                  grep { $_->[0] == $round } @rounds;
        push @{$ratios{$_}}, $rps{$_} / $rps{static} for qw(pem der);
    }
    my $median = sub {
        my @r = sort { $a <=> $b } @_;
        return @r % 2 ? $r[$#r / 2] : ($r[@r / 2 - 1] + $r[@r / 2]) / 2;
    };
    my $gets = $t->sim_counts->{$GET} - $g0;
    $t->stop;
    my %us = map { $_ => $sum{"cpu_$_"} / $sum{"n_$_"} * 1e6 } @kinds;
    $res{throughput} = {
        rounds => \@rounds, us => \%us, bytes => length $r->{content},
        gets => $gets,
        map { ($_ => { median => $median->(@{$ratios{$_}}),
                       ratios => $ratios{$_},
                       sum => $sum{$_} / $sum{static},
                       cpu => $us{static} / $us{$_} }) } qw(pem der),
    };
    for my $k (qw(pem der)) {
        my $x = $res{throughput}{$k};
        say sprintf 'throughput: gateway .%s / static = %.3f (median of %s), '
                    . 'by worker CPU per request %.3f', $k, $x->{median},
                    join(', ', map { sprintf '%.3f', $_ } @{$x->{ratios}}),
                    $x->{cpu};
    }
    say "throughput: upstream GETs during the runs: $gets";
}

# --------------------------------------------------------------- waiters
sub bench_waiters {
    my $n = $o{waiters};
    my $t = TsbTest->new;
    $t->start_sim('--api-key', $KEY);
    $t->start_nginx(<<"EOF", workers => 2);
    tsb_upstream %%SIM%%;
    tsb_api_key $KEY;
    tsb_cache_zone tsb:10m;
    server {
        listen 127.0.0.1:%%PORT%% reuseport backlog=4096;
        access_log off;
        tsb_cache tsb;
        tsb_refresh_interval 1s;
@{[ sign_conf('tsb') ]}
        location /request/ { tsb_status; }
    }
EOF
    my ($csr) = $t->make_csr(cn => 'wait.svc.example', key => 'rsa:2048');
    my $id = new_id($t, $csr);
    my $ready = $t->tmp . '/ready';
    my $out = $t->tmp . '/waiters.json';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out or POSIX::_exit(126);
        { exec $PY, $CLIENT, 'waiters', '--port', $t->port,
             '--path', '/request/{id}.pem?wait=30', '--id', $id,
             '-n', $n, '--ready', $ready, '--timeout', 40; }
        POSIX::_exit(127);
    }
    my $deadline = time + 30;
    sleep 0.05 until -e $ready || time > $deadline;
    die "the waiters did not connect\n" unless -e $ready;
    sleep 0.5;              # every request has reached nginx
    my $g0 = $t->sim_counts->{$GET};
    my $t0 = time;
    my @samples;
    for my $i (1 .. 5) {
        sleep($t0 + $i - time);
        push @samples, $t->sim_counts->{$GET} - $g0;
    }
    my $observed = time - $t0;
    my $g5 = $t->sim_counts->{$GET} - $g0;
    approve($t, $id);
    my $t_a = time;
    waitpid($pid, 0);
    my $w = json_decode(slurp($out) // '') or die "waiters: no result\n";
    my @done = sort { $a <=> $b } map { $_ - $t_a } @{$w->{done_epoch}};
    my $gets_total = $t->sim_counts->{$GET};
    my $conns = $t->sim_get('/_sim/connections')->{json}{accepted};
    $t->stop;
    $res{waiters} = {
        n => $n, gets => $g5, seconds => $observed, samples => \@samples,
        per_interval => $g5 / $observed, status => $w->{status},
        bodies => $w->{bodies}, certificates => $w->{certificates},
        first => $done[0], last => $done[-1],
        median => $done[int(@done / 2)], gets_total => $gets_total,
        errors => $w->{errors},
    };
    say sprintf 'waiters: %d clients, %d upstream GETs in %.1f s (%.2f per '
                . '1 s interval), cumulative %s; after approval: %s, '
                . 'answered %.2f .. %.2f s later', $n, $g5, $observed,
                $g5 / $observed, "@samples", json_encode($w->{status}),
                $done[0], $done[-1];
}

# -------------------------------------------------------------- capacity
sub bench_capacity {
    # (a) real entries: signed through the gateway (so they carry what the
    # gateway accepted), approved and issued by the simulator, fetched.
    my %real;
    for my $kind (['RSA-2048', 'rsa:2048'], ['P-256', 'ec:P-256']) {
        my ($name, $spec) = @$kind;
        # a fresh simulator and zone for each kind
        my $t = TsbTest->new;
        $t->start_sim('--api-key', $KEY);
        $t->start_nginx(<<"EOF", workers => 2);
    tsb_upstream %%SIM%%;
    tsb_api_key $KEY;
    tsb_cache_zone real:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log off;
        tsb_cache real;
@{[ sign_conf('real') ]}
        location /request/ { tsb_status; }
    }
EOF
        my ($csr) = $t->make_csr(cn => 'cap.svc.example', key => $spec,
                                 san => ['cap.svc.example']);
        my @ids;
        my $t0 = time;
        for (1 .. $o{real}) {
            my $id = new_id($t, $csr);
            approve($t, $id);
            my $r = $t->get("/request/$id.der");
            die "fetch: $r->{status}\n" unless $r->{status} == 200;
            push @ids, $id;
        }
        my $fill = time - $t0;
        # newest first: every HIT moves to the front, nothing is evicted
        # until the first MISS, where we stop
        my $held = 0;
        for my $id (reverse @ids) {
            my $r = $t->get("/request/$id.der");
            last unless ($r->{headers}{'x-cache-status'} // '') eq 'HIT';
            $held++;
        }
        die "capacity: the 1m zone held all $o{real} $name entries; "
            . "raise --real\n" if $held == @ids;
        my $der = $t->get("/request/$ids[-1].der")->{content};
        # the TSB's own answer for this kind, for the stand-in below
        my $up = HTTP::Tiny->new->get($t->sim_url . "/v1/request/$ids[-1]",
                                      { headers => { 'X-API-KEY' => $KEY } });
        $real{$name} = { held => $held, der => length $der,
                         per_entry => 1024 * 1024 / $held,
                         fill_s => $fill, n => scalar @ids,
                         status_json => $up->{content} };
        say sprintf 'capacity (simulator, %s): 1m zone held %d of %d '
                    . 'entries: %.0f bytes per entry, DER %d bytes '
                    . '(%.2fx)', $name, $held, scalar @ids,
                    $real{$name}{per_entry}, length $der,
                    $real{$name}{per_entry} / length $der;
        $t->stop;
    }

    # (b) scale: a static location answers GET /v1/request/{id} with the
    # simulator's own EXECUTED answer for an RSA-2048 certificate, the id
    # put in.  Zones of 8m and 32m give the bytes per entry; then a zone
    # sized by that figure for N entries must hold all N.
    my $json = $real{'RSA-2048'}{status_json};
    json_decode($json) or die "status JSON\n";
    (my $body = $json) =~ s/"id":\s*"[^"]+"/"id":"\$1"/;
    $body =~ s/\\/\\\\/g;
    $body =~ s/'/\\'/g;
    my $upstream_log;
    my $stand_in = sub {
        my (%zones) = @_;
        my $t = TsbTest->new;
        my $decl = join '', map { "    tsb_cache_zone $_:$zones{$_};\n" }
                            sort keys %zones;
        my $locs = join '', map { "        location /$_/ { tsb_status; "
                                  . "tsb_cache $_; }\n" } sort keys %zones;
        $t->start_nginx(<<"EOF", workers => 2);
    tsb_upstream http://127.0.0.1:%%PORT2%%;
    tsb_api_key $KEY;
$decl
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        access_log off;
        keepalive_requests 1000000;
$locs
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log %%TMP%%/upstream.log;
        location ~ ^/v1/request/([0-9a-f-]+)\$ {
            default_type application/json;
            return 200 '$body';
        }
    }
EOF
        $upstream_log = $t->tmp . '/upstream.log';
        return $t;
    };
    my $client = sub {
        my ($t, $mode, $path, $ids, @x) = @_;
        my $out = run_out($t, $PY, $CLIENT, $mode, '--port', $t->port,
                          '--path', $path, '--ids', $ids, @x);
        return json_decode($out) // die "client: $out\n";
    };
    my $upstream = sub { my $l = slurp($upstream_log) // '';
                         scalar(() = $l =~ /\n/g) };

    my $t = $stand_in->(z8 => '8m', z32 => '32m');
    my %zone;
    for my $z ([z8 => 8, 6000], [z32 => 32, 24000]) {
        my ($name, $mb, $fill) = @$z;
        $client->($t, 'fill', "/$name/{id}.der", "0:$fill", '-c', 1);
        my $s = $client->($t, 'scan', "/$name/{id}.der", "0:$fill");
        $zone{$name} = { mb => $mb, held => $s->{hits}, fill => $fill,
                         per_entry => $mb * 1024 * 1024 / $s->{hits} };
        say sprintf 'capacity (stand-in): %dm zone held %d of %d entries: '
                    . '%.0f bytes per entry', $mb, $s->{hits}, $fill,
                    $zone{$name}{per_entry};
    }
    $t->stop;
    my $slope = (32 - 8) * 1024 * 1024 / ($zone{z32}{held} - $zone{z8}{held});

    my $n = $o{capacity};
    my $per = $zone{z32}{per_entry};
    my $size_m = ceil($n * $per * 1.02 / (1024 * 1024));
    $t = $stand_in->(zn => "${size_m}m");
    my $u0 = $upstream->();
    my $f1 = $client->($t, 'fill', '/zn/{id}.der', "0:$n", '-c', 8);
    my $u1 = $upstream->();
    my $f2 = $client->($t, 'fill', '/zn/{id}.der', "0:$n", '-c', 8);
    my $u2 = $upstream->();
    $t->stop;
    $res{capacity} = {
        real => \%real, zone => \%zone, slope => $slope, n => $n,
        per => $per, size_m => $size_m, fill => $f1, reread => $f2,
        fill_gets => $u1 - $u0, reread_gets => $u2 - $u1,
    };
    say sprintf 'capacity: slope %.0f bytes per entry; %d entries in a %dm '
                . 'zone: fill %.1f s (%d upstream GETs, %s), read back '
                . '%.1f s (%d upstream GETs, %s)', $slope, $n, $size_m,
                $f1->{seconds}, $u1 - $u0, json_encode($f1->{cache}),
                $f2->{seconds}, $u2 - $u1, json_encode($f2->{cache});
}

# ------------------------------------------------------------------ store

# strace every thread of the workers; returns a function that stops it and
# gives the store's system calls by thread: a worker's own thread (the
# event loop) or another (nginx's thread pool)
sub strace_workers {
    my ($t, $name) = @_;
    my $log = $t->tmp . "/strace.$name";
    my %main = map { $_ => 1 } $t->worker_pids;
    my @tids;
    for my $pid (keys %main) {
        opendir my $dh, "/proc/$pid/task" or die "/proc/$pid/task: $!\n";
        push @tids, grep { /^\d+$/ } readdir $dh;
    }
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', "$log.err";
        { exec 'strace', '-qq', '-f', '-T', '-o', $log,
               '-e', 'trace=openat,fsync,rename,renameat,renameat2,unlink,'
                   . 'unlinkat',
               map { ('-p', $_) } @tids; }
        POSIX::_exit(127);
    }
    sleep 1;                                # attached
    return sub {
        kill 'INT', $pid;
        waitpid $pid, 0;
        my (%calls, %fsync_ms, %fds);
        open my $fh, '<', $log or die "$log: $!\n";
        my %unfinished;
        while (my $l = <$fh>) {
            # a call another thread interrupted comes in two lines
            if ($l =~ /^(\d+)\s+(.*) <unfinished \.\.\.>$/) {
                $unfinished{$1} = $2;
                next;
            }
            if ($l =~ /^(\d+)\s+<\.\.\. \w+ resumed>(.*)$/s) {
                $l = "$1 " . (delete $unfinished{$1} // '') . $2;
            }
            next unless $l =~ /^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)\b.*<([\d.]+)>/;
            my ($tid, $call, $args, $ret, $secs) = ($1, $2, $3, $4, $5);
            my $who = $main{$tid} ? 'loop' : 'pool';
            # .tsb: issued certificates; .accepted: sign-time records
            my $kind = $args =~ m{\.tsb(?:\.\d+\.tmp)?"} ? ''
                     : $args =~ m{\.accepted(?:\.\d+\.tmp)?"} ? '_acc'
                     : undef;
            if ($call eq 'openat') {
                my $what = $args =~ m{/store"} ? 'open_dir'
                         : !defined $kind ? next
                         : $args =~ m{\.tmp"} ? "open_tmp$kind"
                         : "open_file$kind";
                $calls{$who}{$what}++;
                $fds{"$tid:$ret"} = $what if $ret >= 0;
            } elsif ($call eq 'fsync') {
                my ($fd) = $args =~ /^(\d+)/;
                my $of = $fds{"$tid:$fd"} // 'other';
                $calls{$who}{"fsync_$of"}++;
                push @{$fsync_ms{$of}}, $secs * 1000;
            } elsif (defined $kind) {
                $calls{$who}{($call =~ /^unlink/ ? 'unlink' : 'rename')
                             . $kind}++;
            }
        }
        return { calls => \%calls, fsync_ms => \%fsync_ms };
    };
}

sub percentile {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return 0 unless @v;
    return $v[int($p / 100 * $#v + 0.5)];
}

sub bench_store {
    my $n = $o{store};
    my $t = TsbTest->new;
    $t->start_sim('--api-key', $KEY);
    $t->start_nginx(<<"EOF", workers => 2);
    tsb_upstream %%SIM%%;
    tsb_api_key $KEY;
    tsb_cache_zone small:32k;
    tsb_store %%TMP%%/store;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        access_log off;
        tsb_cache small;
@{[ sign_conf('small') ]}
        location /request/ { tsb_status; }
        location /static/ {
            alias %%TMP%%/static/;
            default_type application/x-pem-file;
        }
    }
EOF
    my $store = $t->tmp . '/store';
    mkdir $t->tmp . '/static';
    my ($csr) = $t->make_csr(cn => 'store.svc.example', key => 'ec:P-256');

    # (a) writes, watched
    my $stop = strace_workers($t, 'write');
    my @ids;
    my $t0 = time;
    for (1 .. $n) {
        my $id = new_id($t, $csr);
        approve($t, $id);
        my $r = $t->get("/request/$id.pem");
        die "fetch: $r->{status}\n" unless $r->{status} == 200;
        spew($t->tmp . "/static/$id.pem", $r->{content});
        chmod 0644, $t->tmp . "/static/$id.pem";
        push @ids, $id;
    }
    my $deadline = time + 10;
    sleep 0.1 while grep({ !-e "$store/$_.tsb" } @ids) && time < $deadline;
    my $issued = time - $t0;
    my $stored = grep { -e "$store/$_.tsb" } @ids;
    my $w = $stop->();
    die "store: $stored of $n files written\n" unless $stored == $n;
    my $bytes = 0;
    $bytes += -s "$store/$_.tsb" for @ids;

    # (b) reads: most ids are no longer in the 32k zone
    my $paths = $t->tmp . '/paths';
    spew("$paths.request", join '', map { "/request/$_.pem\n" } @ids);
    spew("$paths.static", join '', map { "/static/$_.pem\n" } @ids);
    my $g0 = $t->sim_counts->{$GET};
    my %xcs;
    for my $id (@ids[0 .. 19]) {
        my $r = $t->get("/request/$id.pem");
        die "read back: $r->{status}\n" unless $r->{status} == 200;
        $xcs{$r->{headers}{'x-cache-status'} // '(none)'}++;
    }
    my $base = $t->base_url;
    wrk($t, $base, 2, "$paths.request");         # warm-up
    my ($rounds, $sum) = wrk_rounds($t, 'store',
                                    { store => [$base, "$paths.request"],
                                      static => [$base, "$paths.static"] },
                                    qw(store static));
    my %sum = %$sum;
    my $stop2 = strace_workers($t, 'read');
    my $rw = wrk($t, $base, 2, "$paths.request");
    my $r = $stop2->();
    my $gets = $t->sim_counts->{$GET} - $g0;
    $t->stop;

    $res{store} = {
        n => $n, issued => $issued, bytes => $bytes / $n, write => $w,
        read => $r, read_n => $rw->{n}, rounds => $rounds, xcs => \%xcs,
        gets => $gets, ratio => $sum{store} / $sum{static},
        us => { map { $_ => $sum{"cpu_$_"} / $sum{"n_$_"} * 1e6 }
                qw(store static) },
    };
    say sprintf 'store: %d certificates written (%.0f bytes a file), '
                . 'strace: %s; fsync ms p50/p99/max: %s', $n,
                $bytes / $n, json_encode($w->{calls}),
                join(' ', map { sprintf '%.2f', percentile($_,
                     @{$w->{fsync_ms}{open_tmp} || []}) } 50, 99, 100);
    say sprintf 'store: reads %.2fx static, strace of %d requests: %s; '
                . 'first reads %s; upstream GETs %d', $res{store}{ratio},
                $rw->{n}, json_encode($r->{calls}), json_encode(\%xcs),
                $gets;
}

# ---------------------------------------------------------------- report
sub report {
    my @l;
    my $cpu = (slurp('/proc/cpuinfo') // '') =~ /^model name\s*:\s*(.*)$/m
              ? $1 : 'unknown CPU';
    my $ncpu = () = (slurp('/proc/cpuinfo') // '') =~ /^processor\s*:/mg;
    my $ngx = `/usr/sbin/nginx -v 2>&1`; chomp $ngx; $ngx =~ s/^nginx version: //;
    my $wrkv = (`wrk -v 2>&1` =~ /^(wrk \S+)/m)[0] // 'wrk';
    push @l, '<!-- bench-cache:begin -->',
        '## Status cache: cached certificates, waiters, zone capacity, store',
        '',
        'Measured by `make bench-cache` (bench/cache_bench.pl with',
        'bench/cache_client.py and wrk), the real nginx binary with the',
        'built module and the TSB simulator, everything on loopback on one',
        'machine (the load generator shares the CPUs with nginx).', '',
        '- date: ' . `date -u '+%Y-%m-%d %H:%M UTC'` =~ s/\n//r,
        "- machine: $ncpu CPUs, $cpu",
        "- software: $ngx, $wrkv, " . (`openssl version` =~ s/\n//r),
        "- command: `make bench-cache` (`perl bench/cache_bench.pl "
        . "--seconds $o{seconds} --rounds $o{rounds} --waiters $o{waiters} "
        . "--capacity $o{capacity} --real $o{real} --store $o{store}`)", '';

    if (my $r = $res{throughput}) {
        my ($p, $d) = @{$r}{qw(pem der)};
        push @l, '### Cached certificate GET vs a static file', '',
            "2 worker processes (`listen ... reuseport`, `access_log off`;",
            "the static location with `open_file_cache`), `$WRK",
            "-d$o{seconds}s` against an EXECUTED entry in the zone as",
            '`/request/{id}.pem` (PEM made from the DER on output) and as',
            "`/request/{id}.der`, and against the same $r->{bytes} PEM bytes",
            "as a static file in the same nginx; $o{rounds} rounds, the",
            'order turning each round, after a 2 s warm-up.  Worker CPU per',
            'request: utime + stime of the two workers from /proc over the',
            'run, divided by the requests wrk counted.  Target: cached',
            'certificate / static >= 0.9.', '',
            '| round | target | requests/s | latency avg | latency p99 | worker CPU per request |',
            '|---|---|---:|---:|---:|---:|';
        my %name = (static => 'static file', pem => 'gateway .pem',
                    der => 'gateway .der');
        for my $x (@{$r->{rounds}}) {
            push @l, sprintf '| %d | %s | %.0f | %s | %s | %.1f us |', $x->[0],
                $name{$x->[1]}, $x->[2]{rps}, $x->[2]{lat}, $x->[2]{p99},
                $x->[2]{us};
        }
        my $verdict = sub { $_[0] >= 0.9 ? 'met' : 'NOT met' };
        push @l, '',
            '| gateway / static | median of the rounds | all rounds | at equal worker CPU |',
            '|---|---:|---:|---:|',
            sprintf('| `.pem` | **%.2f** (%s) | %.2f | **%.2f** (%s) |',
                    $p->{median}, $verdict->($p->{median}), $p->{sum},
                    $p->{cpu}, $verdict->($p->{cpu})),
            sprintf('| `.der` | %.2f (%s) | %.2f | %.2f (%s) |',
                    $d->{median}, $verdict->($d->{median}), $d->{sum},
                    $d->{cpu}, $verdict->($d->{cpu})),
            '',
            sprintf('Worker CPU per request, all rounds: static %.1f us, '
                    . '.pem %.1f us, .der %.1f us.  Upstream GETs during the '
                    . 'runs: %d.', @{$r->{us}}{qw(static pem der)}, $r->{gets}),
            '',
            'The machine is shared (other builds and tests run on its two',
            'CPUs, and wrk itself takes one): requests/s move by tens of',
            'percent from round to round, worker CPU per request much less.',
            'wrk saturates first, so requests/s understate what nginx could',
            'serve; the CPU column is the one that tells the targets apart.',
            '';
        push @l, 'The `.pem` answer costs more than `.der`: the PEM is made',
            'on every request (`tsb_cert_der_to_pem()`: an OpenSSL memory',
            'BIO, base64, `OPENSSL_cleanse()` on free; a `perf record` of',
            'one `.pem` run on 2026-11-27 put about 9% of the worker in',
            'libcrypto).', ''
            if $r->{us}{pem} > 1.1 * $r->{us}{der};
    }
    if (my $w = $res{waiters}) {
        push @l, '### Many waiters on one pending id', '',
            "$w->{n} clients `GET /request/{id}.pem?wait=30` at once on one",
            'PENDING id, 2 workers, `tsb_refresh_interval 1s`.  The',
            "simulator's counter of `GET /v1/request/{id}` is read every",
            'second for five intervals, then the request is approved.',
            'Target: <= 1 upstream GET per interval.', '',
            sprintf('- upstream GETs in %.1f s (five intervals): **%d**, '
                    . '%.2f per interval (cumulative per second: %s)',
                    $w->{seconds}, $w->{gets}, $w->{per_interval},
                    join(', ', @{$w->{samples}})),
            sprintf('- after the approval: %s (HTTP status: clients); '
                    . '%d bodies are a PEM certificate, %d distinct',
                    json_encode($w->{status}), $w->{certificates},
                    $w->{bodies}),
            sprintf('- answered %.2f s (first), %.2f s (median), %.2f s '
                    . '(last) after the approval', $w->{first}, $w->{median},
                    $w->{last}),
            sprintf('- upstream GETs in all, from the first client to the '
                    . 'last answer: %d', $w->{gets_total}), '';
    }
    if (my $c = $res{capacity}) {
        my $rr = $c->{real}{'RSA-2048'};
        my $re = $c->{real}{'P-256'};
        push @l, '### Zone capacity', '',
            'Bytes per entry = zone size / entries the zone held before the',
            'first eviction (fill ids in order, then read them back newest',
            'first until the first MISS).  Real entries: signed through the',
            'gateway (they keep what the gateway accepted, for the issued',
            'certificate check), approved and issued by the simulator (two',
            'approvers), fetched as DER.  Target: <= 2x the DER size.', '',
            '| entries | zone | held | bytes per entry | DER bytes | ratio |',
            '|---|---:|---:|---:|---:|---:|';
        for my $k (['RSA-2048', $rr], ['P-256', $re]) {
            next unless $k->[1];
            push @l, sprintf '| simulator, %s leaf | 1m | %d of %d | %.0f | '
                . '%d | %.2fx |', $k->[0], $k->[1]{held}, $k->[1]{n},
                $k->[1]{per_entry}, $k->[1]{der},
                $k->[1]{per_entry} / $k->[1]{der};
        }
        for my $z (qw(z8 z32)) {
            my $x = $c->{zone}{$z};
            push @l, sprintf '| stand-in TSB, RSA-2048 leaf | %dm | %d of %d '
                . '| %.0f | %d | %.2fx |', $x->{mb}, $x->{held}, $x->{fill},
                $x->{per_entry}, $rr->{der}, $x->{per_entry} / $rr->{der};
        }
        my @ratios = ($c->{slope} / $rr->{der},
                      map { $_->{per_entry} / $_->{der} } grep { $_ } $rr, $re);
        my ($worst) = sort { $b <=> $a } @ratios;
        push @l, '', sprintf('Marginal cost (8m -> 32m): %.0f bytes per '
                . 'entry, %.2fx the DER size.  **Target <= 2x: %s** (worst '
                . 'case %.2fx).', $c->{slope}, $c->{slope} / $rr->{der},
                $worst <= 2 ? 'met' : 'NOT met', $worst), '',
            'How an entry is kept: the zone is an nginx slab pool, which',
            'hands out power-of-two slots up to 2 KiB and whole 4 KiB pages',
            'above that.  An entry is a node of at most 256 bytes (a',
            '128-byte header, the id and the first bytes of the rest) and a',
            'chain of 128-byte chunks (120 bytes of data each) for the',
            'rest: the status JSON around its approver lists (about 120',
            'bytes), what the gateway accepted (about 100 bytes), the serial,',
            'the file name and the DER.  The approver lists (the TSB names',
            'each approver by a 392-character public key) are kept once per',
            'zone, shared by every entry with the same lists.  Kept in one',
            'piece with the lists inline, as before, an RSA-2048 entry was',
            '2,126 bytes and took a 4 KiB page (4.87x in the 1m zone).',
            '',
            sprintf('%d stand-in entries: a zone of %dm (N x %.0f bytes, '
                . 'the 32m figure, + 2%%) took them in %.1f s (%d upstream '
                . 'GETs, %s) and gave them all back in %.1f s (%s, %d '
                . 'upstream GETs).', $c->{n},
                $c->{size_m}, $c->{per}, $c->{fill}{seconds},
                $c->{fill_gets}, json_encode($c->{fill}{cache}),
                $c->{reread}{seconds}, json_encode($c->{reread}{cache}),
                $c->{reread_gets}), '',
            'The stand-in TSB is a `return 200` location of the same nginx',
            "serving the simulator's own EXECUTED answer with the id put in",
            '(signing 100,000 certificates in the simulator would take',
            'longer than the whole benchmark may); its entries lack what',
            'the gateway accepted at sign time, the real ones above have it.',
            'Sizing: docs/operations-cache.md.', '';
    }
    if (my $s = $res{store}) {
        my $wc = $s->{write}{calls};
        my $rc = $s->{read}{calls};
        my $count = sub {
            my ($calls, $who, @keys) = @_;
            my $n = 0;
            $n += $calls->{$who}{$_} // 0 for @keys;
            return $n;
        };
        my $fs = $s->{write}{fsync_ms}{open_tmp} || [];
        my $fd = $s->{write}{fsync_ms}{open_dir} || [];
        push @l, '### tsb_store: disk I/O off the event loop', '',
            "$s->{n} P-256 certificates signed through the gateway, approved",
            'by the simulator and fetched once (2 workers, a 32k zone,',
            '`tsb_store`), while `strace -f -T` watched every thread of both',
            'workers; then reads of all of them in turn through the zone,',
            'which holds about 16: most are read back from the store.  The',
            'static side serves the same PEM files from a plain `alias`',
            'location (no `open_file_cache`: the store has none either).',
            'No target: this says which way the I/O goes and what it costs.',
            '',
            '| system calls on store files | event-loop thread | thread pool |',
            '|---|---:|---:|';
        my @rows = (
            ['sign: what was accepted, written to a temporary file',
             $wc, 'open_tmp_acc'],
            ['sign: its fsync()', $wc, 'fsync_open_tmp_acc'],
            ['sign: its rename() to *id*.accepted', $wc, 'rename_acc'],
            ['first fetch: *id*.tsb looked for (not there yet)', $wc,
             'open_file'],
            ['first fetch: *id*.accepted read (only if the zone lost it)',
             $wc, 'open_file_acc'],
            ['issued: certificate written to a temporary file', $wc,
             'open_tmp'],
            ['issued: its fsync()', $wc, 'fsync_open_tmp'],
            ['issued: its rename() to *id*.tsb', $wc, 'rename'],
            ['issued: *id*.accepted removed', $wc, 'unlink_acc'],
            ['fsync() of the directory after a rename or unlink', $wc,
             'fsync_open_dir'],
            ["reads: *id*.tsb during a 2 s run of $s->{read_n} requests",
             $rc, 'open_file'],
        );
        push @l, map { sprintf '| %s | %d | %d |', $_->[0],
                               $count->($_->[1], 'loop', $_->[2]),
                               $count->($_->[1], 'pool', $_->[2]) } @rows;
        push @l, '',
            sprintf('An fsync() of a store file took %.2f ms (median), '
                    . '%.2f ms (p99), %.2f ms (max) on this disk; of the '
                    . 'directory %.2f ms (median), %.2f ms (max).  Done on '
                    . "the event loop's thread, each would stall every "
                    . 'connection of that worker for as long: nginx\'s '
                    . 'thread pool is the way, not small inline writes.  '
                    . 'A store file is %.0f bytes.',
                    percentile(50, @$fs), percentile(99, @$fs),
                    percentile(100, @$fs), percentile(50, @$fd),
                    percentile(100, @$fd), $s->{bytes}), '',
            '| round | target | requests/s | latency avg | latency p99 | worker CPU per request |',
            '|---|---|---:|---:|---:|---:|';
        my %name = (store => 'gateway, from the store', static => 'static files');
        for my $x (@{$s->{rounds}}) {
            push @l, sprintf '| %d | %s | %.0f | %s | %s | %.1f us |', $x->[0],
                $name{$x->[1]}, $x->[2]{rps}, $x->[2]{lat}, $x->[2]{p99},
                $x->[2]{us};
        }
        push @l, '',
            sprintf('Reads through the store: %.2fx the static files\' '
                    . 'requests/s; worker CPU per request %.1f us against '
                    . '%.1f us (a store file is parsed, checked and put '
                    . 'back in the zone, evicting another).  The first 20 '
                    . 'reads: %s; upstream GETs during all reads: %d.',
                    $s->{ratio}, $s->{us}{store}, $s->{us}{static},
                    json_encode($s->{xcs}), $s->{gets}),
            '',
            'Most of that difference is the hand-off to the thread pool and',
            'back: a `perf record` of one worker during store reads on',
            '2026-11-27 put about 40% of its time in futex waits and',
            'wake-ups and the context switches around them, against 3% in',
            'the module itself.  A zone sized for the working set',
            '(docs/operations-cache.md) keeps reads off the store.', '';
    }
    push @l, '<!-- bench-cache:end -->';
    return join("\n", @l) . "\n";
}

sub write_doc {
    my ($section) = @_;
    my $doc = $o{doc};
    my $text = slurp($doc);
    $text = "# Benchmarks\n\nResults of `make bench`; each section is "
            . "rewritten by the target\nthat measures it.\n"
        unless defined $text;
    if ($text =~ /<!-- bench-cache:begin -->.*?<!-- bench-cache:end -->\n?/s) {
        $text =~ s/<!-- bench-cache:begin -->.*?<!-- bench-cache:end -->\n?/$section/s;
    } else {
        $text =~ s/\n*\z/\n\n/;
        $text .= $section;
    }
    spew("$doc.new", $text);
    rename "$doc.new", $doc or die "rename $doc: $!\n";
    say "bench-cache: results written to $doc";
}

bench_throughput() if $only{throughput};
bench_waiters() if $only{waiters};
bench_capacity() if $only{capacity};
bench_store() if $only{store};
my $section = report();
print "\n$section";
write_doc($section) unless $o{'no-doc'};
