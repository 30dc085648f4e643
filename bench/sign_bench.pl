#!/usr/bin/perl
# Sign-path benchmark (make bench-sign): writes its section of
# docs/benchmarks.md between the bench-sign markers, keeping the rest.
#
#   perl bench/sign_bench.pl [--seconds S] [--rounds N] [--conns C]
#                            [--workers W] [--doc FILE] [--module SO]
#                            [--decode BIN] [--no-doc]
#
# The same JSON sign envelopes (an RSA-2048 CSR in PEM) go, in one run and
# through one nginx with the same workers, to
#   - a tsb_sign location: CSR parse and self-signature verification,
#     policy, the upstream body built again, POST through libcurl;
#   - a proxy_pass location: nginx's own proxy, with keepalive to the
#     upstream, the body passed as it is;
# both against the same fast upstream, a second nginx whose `return 200`
# answers {"signRequestId": ...}.  The two sides alternate in rounds (wrk,
# the same connections and duration); the ratio is the median of the
# rounds' ratios.  The stub logs $connection for each request, on one port
# per side, which counts the TCP connections each side opened.  Targets:
# tsb_sign >= 0.7x proxy_pass; <= 1 new upstream connection per 100
# requests.  Two more figures say where the time goes: a GET through
# tsb_pass against proxy_pass of the same GET (the upstream client alone,
# no CSR), and, with --decode (bench/csr_decode.c), what OpenSSL spends on
# decoding and verifying the CSR.
#
# CPU accounting: utime+stime of the gateway's workers (and of the stub's
# workers and of wrk) from /proc, before and after each wrk run, divided
# by the requests wrk completed: CPU microseconds per request for each
# side.  From them, a bound: the best tsb_sign/proxy_pass ratio this
# machine allows if tsb_sign cost the gateway no more than proxy_pass's
# own per-request CPU plus the least a CSR check must cost (a key made
# from the CSR's modulus and exponent, and the signature verified with
# it: "fresh key + X509_REQ_verify" from bench/csr_decode.c).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Getopt::Long;
use POSIX ();
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp spew json_encode);

Test::More->builder->no_ending(1);      # the harness loads Test::More

my %o = (seconds => 5, rounds => 5, conns => 32, workers => 1,
         doc => "$FindBin::Bin/../docs/benchmarks.md");
GetOptions(\%o, 'seconds=i', 'rounds=i', 'conns=i', 'workers=i', 'doc=s',
           'module=s', 'decode=s', 'no-doc') or die "usage\n";
$TsbTest::MODULE = $o{module} if $o{module};

my $ID = '3f2a6c1e-9b7d-4e21-a0c4-5d8e9f1a2b3c';

sub say { print @_, "\n" }

sub run_out {
    my ($t, @cmd) = @_;
    my ($rc, $out) = $t->run_cmd(@cmd);
    die "@cmd: exit $rc\n$out\n" if $rc;
    return $out;
}

# ---------------------------------------------------------- the stub TSB

my $stub = TsbTest->new;
$stub->start_nginx(<<"EOF", module => 0, workers => 1);
    log_format bench '\$server_port \$connection';
    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        keepalive_requests 1000000;
        access_log %%TMP%%/stub.log bench;
        location = /v1/certificate/sign {
            default_type application/json;
            return 200 '{"signRequestId":"$ID"}';
        }
        location = /v1/versionInfo {
            default_type application/json;
            return 200 '{"version":"bench"}';
        }
    }
EOF
my $stub_tsb = $stub->port(1);
my $stub_proxy = $stub->port(2);
my $stub_pass = $stub->port(3);

# ------------------------------------------------------------ the gateway

my $t = TsbTest->new;
# error_log at "error", as in production: per-request info lines would be
# file writes that proxy_pass does not pay
$t->start_nginx(<<"EOF", workers => $o{workers}, log_level => 'error');
    upstream bench_stub {
        server 127.0.0.1:$stub_proxy;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log off;
        keepalive_requests 1000000;

        location = /sign {
            tsb_sign;
            tsb_upstream http://127.0.0.1:$stub_tsb;
            tsb_api_key bench-api-key;
            tsb_sign_key_name CA-Key;
            tsb_allow_common_name *.svc.example;
            tsb_status_uri /request/;
        }

        location = /proxy {
            proxy_pass http://bench_stub/v1/certificate/sign;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-API-KEY bench-api-key;
        }

        # the upstream client alone: no CSR, a GET through tsb_pass
        location /v1/ {
            tsb_pass;
            tsb_pass_allow GET /v1/versionInfo;
            tsb_upstream http://127.0.0.1:$stub_pass;
            tsb_api_key bench-api-key;
        }

        location = /proxy-get {
            proxy_pass http://bench_stub/v1/versionInfo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-API-KEY bench-api-key;
        }
    }
EOF

my ($csr) = $t->make_csr(cn => 'bench.svc.example', key => 'rsa:2048');
my $body = json_encode({ signCertificateRequest => {
    certificateSigningRequest => $csr,
    commonName => 'bench.svc.example',
    keyUsage => ['DIGITAL_SIGNATURE'],
    extendedKeyUsage => ['SERVER_AUTH'] } });
my $tmp = $t->tmp;
spew("$tmp/body.json", $body);

my $decode;
if ($o{decode}) {
    spew("$tmp/csr.der", $t->csr_der($csr));
    # three runs, the least time of each: what is left of other load
    my (@names, %min);
    for (1 .. 3) {
        my ($line) = run_out($t, $o{decode}, "$tmp/csr.der", 2000)
                     =~ /^(.+)$/m;
        for (split /, /, $line) {
            my ($name, $us) = /^(.+) ([\d.]+) us$/ or next;
            push @names, $name unless exists $min{$name};
            $min{$name} = $us if !defined $min{$name} || $us < $min{$name};
        }
    }
    $decode = join ', ', map { "$_ $min{$_} us" } @names;
    say "CSR decode: $decode";
}
spew("$tmp/post.lua", <<"EOF");
local f = io.open("$tmp/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()
EOF

for my $path ('/sign', '/proxy') {
    my $r = $t->request(POST => $path, body => $body,
                        content_type => 'application/json');
    die "$path: $r->{status} $r->{content}\n" unless $r->{status} =~ /^20[02]$/;
    die "$path: $r->{content}\n" unless $r->{content} =~ /\Q$ID\E/;
}

my %SIDE = (
    '/sign' => { name => 'tsb_sign', post => 1, port => $stub_tsb },
    '/proxy' => { name => 'proxy_pass', post => 1, port => $stub_proxy },
    '/v1/versionInfo' => { name => 'tsb_pass GET', port => $stub_pass },
    '/proxy-get' => { name => 'proxy_pass GET', port => $stub_proxy },
);

# CPU time (utime + stime) of processes, in microseconds
my $TICK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub cpu_us {
    my $ticks = 0;
    for my $pid (@_) {
        my $stat = slurp("/proc/$pid/stat") // die "no process $pid\n";
        # pid (comm) state ppid ...: utime and stime are fields 14 and 15
        $stat =~ s/^.*\)\s+//s;
        my @f = split ' ', $stat;
        $ticks += $f[11] + $f[12];
    }
    return $ticks * 1e6 / $TICK;
}

# wrk's own CPU: what the waited-for children used
sub children_us {
    my (undef, undef, undef, $cu, $cs) = POSIX::times();
    return ($cu + $cs) * 1e6 / $TICK;
}

my @gw_pids = $t->worker_pids;
my @stub_pids = $stub->worker_pids;
die "no gateway worker\n" unless @gw_pids;

sub wrk {
    my ($path, $seconds) = @_;
    my $url = $t->base_url . $path;
    my $script = $SIDE{$path}{post} ? "-s '$tmp/post.lua'" : '';
    my ($g0, $s0, $w0) = (cpu_us(@gw_pids), cpu_us(@stub_pids),
                          children_us());
    my $t0 = time;
    my $out = run_out($t, 'sh', '-c', "wrk -t1 -c$o{conns} -d${seconds}s "
                      . "--latency $script '$url' 2>&1");
    my $wall = time - $t0;
    my ($g1, $s1, $w1) = (cpu_us(@gw_pids), cpu_us(@stub_pids),
                          children_us());
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my ($n) = $out =~ /(\d+) requests in/;
    my ($p50) = $out =~ /^\s+50%\s+(\S+)/m;
    my ($p99) = $out =~ /^\s+99%\s+(\S+)/m;
    die "wrk $path: non-2xx answers\n$out" if $out =~ /Non-2xx/;
    die "wrk $path: socket errors\n$out" if $out =~ /Socket errors/;
    die "wrk $path: no result\n$out" unless $rps;
    return { rps => $rps, n => $n, p50 => $p50, p99 => $p99,
             gw => $g1 - $g0, stub => $s1 - $s0, wrk => $w1 - $w0,
             wall => $wall };
}

# warm-up: every side, connections open
wrk($_, 2) for keys %SIDE;

my (@ratios, @pass_ratios, %sum, @rows, %cpu);
for my $round (1 .. $o{rounds}) {
    my %rps;
    # alternate which side goes first
    my @order = ('/sign', '/proxy', '/v1/versionInfo', '/proxy-get');
    @order = reverse @order unless $round % 2;
    for my $side (@order) {
        my $w = wrk($side, $o{seconds});
        $rps{$side} = $w->{rps};
        $sum{$side} += $w->{rps};
        $cpu{$side}{$_} += $w->{$_} for qw(n gw stub wrk wall);
        $w->{side} = $side;
        push @rows, [ $round, $w ];
    }
    push @ratios, $rps{'/sign'} / $rps{'/proxy'};
    push @pass_ratios, $rps{'/v1/versionInfo'} / $rps{'/proxy-get'};
    say sprintf "round %d: tsb_sign %.0f/s, proxy_pass %.0f/s, %.2fx; "
                . "tsb_pass GET %.0f/s, proxy_pass GET %.0f/s, %.2fx",
                $round, $rps{'/sign'}, $rps{'/proxy'}, $ratios[-1],
                $rps{'/v1/versionInfo'}, $rps{'/proxy-get'},
                $pass_ratios[-1];
    say sprintf "round %d: gateway CPU per request: %s", $round,
        join(', ', map { sprintf '%s %.1f us', $SIDE{$_->[1]{side}}{name},
                         $_->[1]{gw} / ($_->[1]{n} || 1) }
                   grep { $_->[0] == $round } @rows);
}

# CPU microseconds per request over all rounds, per side and process
my %per;
for my $side (keys %cpu) {
    my $c = $cpu{$side};
    $per{$side}{$_} = $c->{$_} / ($c->{n} || 1) for qw(gw stub wrk);
    $per{$side}{busy} = 100 * $c->{gw} / (($c->{wall} || 1) * 1e6);
}

sub median {
    my @s = sort { $a <=> $b } @_;
    return $s[$#s / 2];
}

my $median = median(@ratios);
my $pass_median = median(@pass_ratios);

# new connections: the stub numbers connections, so those not seen in the
# warm-up are new; count distinct $connection values over all rounds
my $log = slurp($stub->tmp . '/stub.log') // '';
my (%first, %all);
for (split /\n/, $log) {
    my ($port, $c) = split / /;
    $all{$port}{$c}++;
}
my $conn_sign = scalar keys %{$all{$stub_tsb} || {}};
my $conn_proxy = scalar keys %{$all{$stub_proxy} || {}};
my $req_sign = 0;
$req_sign += $_ for values %{$all{$stub_tsb} || {}};
my $req_proxy = 0;
$req_proxy += $_ for values %{$all{$stub_proxy} || {}};
my $per100_sign = 100 * $conn_sign / ($req_sign || 1);
my $per100_proxy = 100 * $conn_proxy / ($req_proxy || 1);

# ----------------------------------------------------------------- bound
#
# The least CPU a tsb_sign request can cost the gateway: what a request
# through proxy_pass costs it (read the request, send it upstream, read
# the answer, respond) plus the least a CSR check costs (a key made from
# the CSR's numbers and its signature verified: "fresh key +
# X509_REQ_verify").  With one gateway worker, on one core at most:
#   tsb_sign/s <= 1e6 / (gateway_us(proxy_pass) + csr_us)
# and with the client and the stub on the same machine's CPUs:
#   tsb_sign/s <= cpus * 1e6 / (wrk_us + stub_us + gateway_us + csr_us)
# (wrk's and the stub's per-request costs those of proxy_pass).  Divided
# by proxy_pass's measured requests/s: the best ratio reachable.

my ($csr_min, $csr_gw, %bound);
my $ncpu = () = (slurp('/proc/cpuinfo') // '') =~ /^processor/mg;
if ($decode) {
    ($csr_min) = $decode =~ /fresh key \+ X509_REQ_verify ([\d.]+) us/;
    ($csr_gw) = $decode =~ /tsb_csr_parse ([\d.]+) us/;
}
if ($csr_min) {
    my $p = $per{'/proxy'};
    my $rps_proxy = $sum{'/proxy'} / $o{rounds};
    for my $k (['min', $csr_min], ['gw', $csr_gw]) {
        my ($name, $c) = @$k;
        next unless $c;
        my $one = 1e6 / ($p->{gw} + $c);
        my $all = ($ncpu || 1) * 1e6 / ($p->{wrk} + $p->{stub} + $p->{gw}
                                        + $c);
        my $best = $one < $all ? $one : $all;
        $bound{$name} = { one => $one, all => $all, rps => $best,
                          ratio => $best / $rps_proxy };
    }
    say sprintf "bound: CSR check %.1f us: at most %.0f/s (one core: %.0f,"
                . " %d CPUs: %.0f), %.2fx proxy_pass", $csr_min,
                $bound{min}{rps}, $bound{min}{one}, $ncpu, $bound{min}{all},
                $bound{min}{ratio};
}

# ----------------------------------------------------------------- report

my $cpus = () = (slurp('/proc/cpuinfo') // '') =~ /^processor/mg;
my ($model) = (slurp('/proc/cpuinfo') // '') =~ /^model name\s*:\s*(.+)$/m;
my @load = (split ' ', slurp('/proc/loadavg') // '')[0 .. 2];
my ($curl) = run_out($t, 'curl', '--version') =~ /libcurl\/(\S+)/;
my ($ngx) = run_out($t, $TsbTest::NGINX, '-v') =~ /nginx\/(\S+)/;

my @l;
push @l, '<!-- bench-sign:begin -->',
    '## Sign path: tsb_sign against nginx proxy_pass', '',
    'The same JSON sign envelope (an RSA-2048 CSR in PEM, 1.2 kB) POSTed by',
    'wrk to two locations of one nginx: `tsb_sign` (CSR parse and',
    'self-signature verification, policy, the upstream body built again,',
    'POST through libcurl\'s multi interface on nginx events) and',
    '`proxy_pass` with upstream keepalive (the body passed as it is).',
    'Both reach the same fast upstream: a second nginx whose `return 200`',
    'answers `{"signRequestId": ...}`.  The sides alternate in rounds;',
    'the ratio is the median of the rounds\' ratios.  The stub logs',
    '`$connection` for every request on one port per side: the number of',
    'distinct connections is the number of TCP connections a side opened',
    '(warm-up included).  Targets: tsb_sign >= 0.7x proxy_pass; <= 1 new',
    'upstream connection per 100 requests.  A GET through `tsb_pass`',
    'against `proxy_pass` of the same GET shows the upstream client alone,',
    'without a CSR.', '',
    '- date: ' . do { my @g = gmtime; sprintf '%04d-%02d-%02d %02d:%02d UTC',
        $g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1] },
    "- machine: $cpus CPUs, " . ($model // 'unknown')
        . "; load average before the run: @load",
    "- nginx $ngx, libcurl $curl; gateway and stub one worker each"
        . ($o{workers} == 1 ? '' : " (gateway: $o{workers})")
        . ", wrk -t1 -c$o{conns}",
    "- command: `make bench-sign` ($o{rounds} rounds of $o{seconds} s a "
        . 'side, bench/sign_bench.pl)', '',
    '| round | side | requests/s | p50 | p99 | gateway CPU/request |',
    '|---:|---|---:|---:|---:|---:|';
for my $row (@rows) {
    my ($round, $w) = @$row;
    push @l, sprintf '| %d | %s | %.0f | %s | %s | %.1f us |', $round,
        $SIDE{$w->{side}}{name}, $w->{rps}, $w->{p50} // '-',
        $w->{p99} // '-', $w->{gw} / ($w->{n} || 1);
}
push @l, '',
    '| | tsb_sign | proxy_pass |',
    '|---|---:|---:|',
    sprintf('| requests/s (all rounds) | %.0f | %.0f |',
            $sum{'/sign'} / $o{rounds}, $sum{'/proxy'} / $o{rounds}),
    sprintf('| upstream requests | %d | %d |', $req_sign, $req_proxy),
    sprintf('| upstream TCP connections | %d | %d |', $conn_sign,
            $conn_proxy),
    sprintf('| connections per 100 requests | %.3f | %.3f |', $per100_sign,
            $per100_proxy),
    sprintf('| GET through tsb_pass / proxy_pass, requests/s | %.0f | %.0f |',
            $sum{'/v1/versionInfo'} / $o{rounds},
            $sum{'/proxy-get'} / $o{rounds}),
    '',
    sprintf('Ratio tsb_sign/proxy_pass (median of %d rounds): **%.2fx**; '
            . 'target >= 0.7x: %s.', $o{rounds}, $median,
            $median >= 0.7 ? 'met' : 'NOT met'),
    sprintf('The upstream client alone (a GET through tsb_pass, no CSR, '
            . 'against proxy_pass of the same GET): **%.2fx**.',
            $pass_median),
    sprintf('New upstream connections: %d for %d sign requests (%.3f per '
            . '100); target <= 1 per 100: %s.', $conn_sign, $req_sign,
            $per100_sign, $per100_sign <= 1 ? 'met' : 'NOT met'),
    '',
    'CPU time per request, all rounds: utime+stime from /proc before and',
    'after each wrk run, divided by the requests wrk completed.  "busy"',
    'is the gateway worker\'s CPU time over the wall time of the runs.',
    '',
    '| CPU per request | tsb_sign | proxy_pass | tsb_pass GET '
        . '| proxy_pass GET |',
    '|---|---:|---:|---:|---:|';
my @cols = ('/sign', '/proxy', '/v1/versionInfo', '/proxy-get');
push @l,
    sprintf('| gateway worker | %s |', join ' | ',
            map { sprintf '%.1f us', $per{$_}{gw} } @cols),
    sprintf('| gateway worker busy | %s |', join ' | ',
            map { sprintf '%.0f%%', $per{$_}{busy} } @cols),
    sprintf('| stub worker | %s |', join ' | ',
            map { sprintf '%.1f us', $per{$_}{stub} } @cols),
    sprintf('| wrk | %s |', join ' | ',
            map { sprintf '%.1f us', $per{$_}{wrk} } @cols),
    '',
    sprintf('The gateway spends %.1f us more per request on tsb_sign than '
            . 'on proxy_pass,', $per{'/sign'}{gw} - $per{'/proxy'}{gw}),
    sprintf('and %.1f us more on a GET through tsb_pass than through '
            . 'proxy_pass.', $per{'/v1/versionInfo'}{gw}
            - $per{'/proxy-get'}{gw}),
    '';
if ($decode) {
    push @l, 'The CSR, measured on the same machine (bench/csr_decode.c, '
        . '2000 calls each,',
        'the least of three runs, the benchmark\'s own CSR):', '',
        "    $decode", '',
        'With OpenSSL 3.0, `d2i_X509_REQ()` builds a provider decoder '
        . 'context for the',
        'public key on every call; the gateway does not take that path: '
        . '`tsb_csr_parse()`',
        '(decode, self-signature check, the facts the policy reads) is the '
        . 'last figure.',
        '`X509_REQ_verify` with one key is cheaper than with a fresh key '
        . 'because OpenSSL',
        'keeps the key\'s Montgomery context between calls; every CSR '
        . 'brings a new key,',
        'so "fresh key + X509_REQ_verify" is the least a CSR check costs.',
        '';
}
if (%bound) {
    my $b = $bound{min};
    push @l, 'The bound: if a tsb_sign request cost the gateway only what a '
        . 'proxy_pass',
        sprintf('request costs it (%.1f us) plus that least CSR check '
                . '(%.1f us), one gateway',
                $per{'/proxy'}{gw}, $csr_min),
        sprintf('worker could serve at most %.0f requests/s (one core); '
                . 'with wrk and the stub', $b->{one}),
        sprintf('at their proxy_pass costs (%.1f us and %.1f us) on the '
                . 'same %d CPUs, at most',
                $per{'/proxy'}{wrk}, $per{'/proxy'}{stub}, $ncpu),
        sprintf('%.0f/s.  The lower of the two against proxy_pass\'s '
                . '%.0f/s: a ratio of', $b->{all}, $sum{'/proxy'} / $o{rounds}),
        sprintf('at most **%.2fx**.', $b->{ratio})
            . ($bound{gw}
               ? sprintf('  With the gateway\'s whole CSR intake '
                         . '(tsb_csr_parse, %.1f us)', $csr_gw)
               : ''),
        ($bound{gw}
            ? sprintf('in place of the least check: **%.2fx**.  '
                      . 'Measured: %.2fx.', $bound{gw}{ratio}, $median)
            : sprintf('Measured: %.2fx.', $median)),
        '';
}
push @l, '<!-- bench-sign:end -->';
my $section = join("\n", @l) . "\n";
print "\n$section";

unless ($o{'no-doc'}) {
    my $doc = $o{doc};
    my $text = slurp($doc);
    $text = "# Benchmarks\n\nResults of `make bench`; each section is "
            . "rewritten by the target that measures it.\n"
        unless defined $text;
    if ($text =~ /<!-- bench-sign:begin -->.*?<!-- bench-sign:end -->\n?/s) {
        $text =~ s/<!-- bench-sign:begin -->.*?<!-- bench-sign:end -->\n?/$section/s;
    } else {
        $text =~ s/\n*\z/\n\n/;
        $text .= $section;
    }
    spew("$doc.new", $text);
    rename "$doc.new", $doc or die "rename $doc: $!\n";
    say "bench-sign: results written to $doc";
}

$t->stop;
$stub->stop;

# the verdict is in the report; a loaded machine must not fail "make bench"
exit 0;
