#!/usr/bin/perl
# `make demo` is what a newcomer runs first: start it (conf/demo.sh) on
# free ports, then run the copy-paste commands it prints, exactly as
# printed, and check that they end in a certificate `openssl verify`
# accepts and in a policy refusal for a name outside the policy.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use TsbTest;

my $root = $TsbTest::ROOT;
my $dir = tempdir('tsb-demo-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $work = "$dir/work";
mkdir $work or die "mkdir $work: $!";

local $ENV{DEMO_DIR} = "$dir/demo";
local $ENV{DEMO_PORT} = TsbTest::free_port();
local $ENV{DEMO_SIM_PORT} = TsbTest::free_port();
local $ENV{NGINX_BIN} = $TsbTest::NGINX;
local $ENV{MODULE_SO} = $TsbTest::MODULE;
# under make test-asan / test-valgrind, the checker's wrapper too
local $ENV{NGINX_WRAPPER} = join ' ', @TsbTest::NGINX_WRAPPER;

# the demo loads build/ngx_http_tsb_module.so, as make demo does
my $out = `sh $root/conf/demo.sh start 2>&1`;
my $started = $? == 0;

# (by then the local %ENV above is undone: name the directory again)
END {
    system("DEMO_DIR='$dir/demo' sh $root/conf/demo.sh stop >/dev/null 2>&1")
        if $dir;
}

ok($started, 'the demo starts') or diag($out);
like($out, qr/gateway\s+http:\/\/127\.0\.0\.1:$ENV{DEMO_PORT}/,
     'it says where the gateway listens');

# The commands: the indented lines between "copy and paste" and "Stop it",
# comments left out, continuation lines kept.
my ($block) = $out =~ /copy and paste\):\n(.*?)\nStop it/s;
ok(defined $block, 'it prints copy-paste commands');
my $script = join "\n", grep { /^  \S/ && !/^  #/ || /^      \S/ }
                        split /\n/, ($block // '');

TsbTest::spew("$work/run.sh", "set -e\ncd $work\n$script\n");
my $run = `bash $work/run.sh 2>/dev/null`;

like($run, qr/^web\.pem: OK$/m,
     'openssl verify accepts the certificate the demo issues');
like($run, qr/subject=CN = web\.svc\.example\.internal/,
     'the certificate is for the name the CSR asked for');
like($run, qr/"reason":"policy\.common_name"/,
     'a name outside the policy is refused');

my $log = TsbTest::slurp("$dir/demo/error.log") // '';
unlike($log, qr/demo-api-key-not-for-clients/,
       'the API key never appears in the error log');
unlike($log, qr/exited on signal|\[alert\]|\[emerg\]/,
       'no worker crashed');

done_testing();
