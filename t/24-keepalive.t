#!/usr/bin/perl
# Kept-alive TSB connections that the TSB closes while they wait in the
# worker's libcurl cache (the simulator drops idle ones after 300 ms here,
# as a TSB behind a load balancer does).  The gateway keeps such a
# connection registered with nginx's event loop while it waits: the close
# must not make the worker spin, and the next request must go out once, on
# a new connection, and succeed.  Plain HTTP and mutual TLS.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX qw(sysconf _SC_CLK_TCK);
use Test::More;
use Time::HiRes qw(sleep);
use TsbTest qw(slurp);
use TsbPki;

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';
my $TICK = sysconf(_SC_CLK_TCK) || 100;

# a worker's CPU time so far, in seconds
sub cpu_of {
    my ($pid) = @_;
    my $stat = slurp("/proc/$pid/stat") // return 0;
    $stat =~ s/^.*\)\s+//;                  # pid and (comm)
    my @f = split ' ', $stat;
    return ($f[11] + $f[12]) / $TICK;       # utime, stime
}

for my $tls (0, 1) {
    my $what = $tls ? 'mTLS' : 'plain HTTP';
    my $t = TsbTest->new;
    my $pki = $tls ? TsbPki::make($t) : undef;
    $t->start_sim('--api-key', $KEY, '--idle-timeout-ms', 300,
                  $tls ? TsbPki::sim_args($pki) : ());
    TsbPki::harness_ua($t, $pki) if $tls;
    my $mtls = !$tls ? '' : <<"EOF";
tsb_ssl_trusted_certificate $pki->{ca};
tsb_ssl_certificate $pki->{client};
tsb_ssl_certificate_key $pki->{client_key};
tsb_ssl_password_file $pki->{password};
EOF
    $t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
$mtls
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
EOF

    my ($csr) = $t->make_csr(cn => 'keepalive.svc.example',
                             key => 'ec:P-256');
    my ($worker) = $t->worker_pids;
    my $signs0 = $t->sim_counts->{$SIGN} // 0;
    my $conns0 = $t->sim_get('/_sim/connections')->{json}{accepted} // 0;

    my ($ok, $idle_cpu) = (0, 0);
    for my $round (1 .. 4) {
        my $r = $t->request(POST => '/sign', body => $csr,
                            content_type => 'application/x-pem-file');
        my $id = ($r->{json} // {})->{signRequestId} // 'none';
        my $st = $t->get("/request/$id");
        if ($r->{status} == 200 && $st->{status} == 200) {
            $ok++;
        } else {
            $t->explain_response($r->{status} == 200 ? $st : $r);
        }

        # the TSB closes the connection while it waits in the cache
        my $cpu = cpu_of($worker);
        sleep 0.8;
        $idle_cpu += cpu_of($worker) - $cpu;
    }

    is($ok, 4, "$what: after every close, the next sign and status: "
               . '200 and 200');
    is(($t->sim_counts->{$SIGN} // 0) - $signs0, 4,
       "$what: each sign reached the TSB once");
    my $conns = ($t->sim_get('/_sim/connections')->{json}{accepted} // 0)
                - $conns0;
    cmp_ok($conns, '>=', 4, "$what: a new connection after each close "
                            . "($conns)");
    cmp_ok($idle_cpu, '<', 0.3 * $TsbTest::TIME_FACTOR,
           "$what: the worker idles while the TSB closes its connections "
           . "(${idle_cpu}s of CPU in 3.2 s)");
    unlike($t->error_log, qr/\[(error|crit|alert)\]/,
           "$what: nothing in error.log at error or above");

    $t->no_worker_crash;
    ok($t->stop, "$what: nginx exits gracefully");
}

done_testing;
