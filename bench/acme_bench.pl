#!/usr/bin/perl
# ACME polling against a cached status GET (make bench-acme): one nginx
# worker, the simulator, one keep-alive client connection
# (bench/acme_client.py), interleaved rounds in the same run.  Prints the
# mean time per request and requests/s; the figures go into
# docs/benchmarks.md by hand.
#
#   perl bench/acme_bench.pl [--requests N] [--module SO]

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Getopt::Long;
use TsbTest;

Test::More->builder->no_ending(1);

my %o = (requests => 2000);
GetOptions(\%o, 'requests=i', 'module=s') or die "usage\n";
$TsbTest::MODULE = $o{module} if $o{module};

my $t = TsbTest->new;
$t->start_sim;
$t->start_nginx(<<'EOF', log_level => 'notice');
tsb_cache_zone tsb:4m;
tsb_acme_zone acme:16m;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_status_uri /request/;
server {
    listen 127.0.0.1:%%PORT%%;
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
EOF

my ($rc, $out) = $t->run_cmd('python3', "$FindBin::Bin/acme_client.py",
                             '127.0.0.1', $t->port(1), $t->tmp . '/error.log',
                             $t->sim_url, $o{requests});
die "acme_client.py failed:\n$out" if $rc;

my %sum;
for (split /\n/, $out) {
    my ($name, $n, $s) = split;
    $sum{$name}{n} += $n;
    $sum{$name}{s} += $s;
}

printf "%-18s %10s %12s\n", 'request', 'req/s', 'us/request';
for my $k (qw(status_get newNonce order_valid order_processing)) {
    next unless $sum{$k};
    printf "%-18s %10.0f %12.1f\n", $k, $sum{$k}{n} / $sum{$k}{s},
           1e6 * $sum{$k}{s} / $sum{$k}{n};
}
