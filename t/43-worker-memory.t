#!/usr/bin/perl
# Three uses of freed memory (issue 11, points 2 to 4).  Each part drives
# the path that used to read freed memory and asserts what a user sees;
# under make test-asan (SANITIZE_TESTS=t/43-worker-memory.t) the old code
# also fails the sanitizer's report.
#
# 2. tsb_store's completion logged through the connection's log, freed
#    when a Connection: close client had its answer and left, if the write
#    failed (here: a store directory the workers cannot write).
# 3. X-Certificate-Serial pointed into the watch's snapshot, freed right
#    after delivery: with limit_rate the log phase runs later, and a log
#    format with $sent_http_x_certificate_serial read it.
# 4. The metrics zone was found through a pointer set at zone init: a
#    reload that fails later (a listen on a busy port) freed it, and the
#    worker the master respawned used it on its first request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp spew);

my $KEY = 'mem-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

my $t = TsbTest->new;
my $STORE = $t->tmp . '/store';
$t->start_sim('--api-key', $KEY);

my $CONF = <<"EOF";
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_store %%TMP%%/store;
log_format serial '\$request_uri serial=\$sent_http_x_certificate_serial';
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /certificate/ {
        tsb_certificate;
        limit_rate_after 0;
        limit_rate 1k;
        access_log %%TMP%%/serial.log serial;
    }
    location = /metrics { tsb_metrics; }
    #EXTRA#
}
EOF
$t->start_nginx($CONF, workers => 1);

my $n = 0;
sub csr { ($t->make_csr(cn => 'm' . ++$n . '.svc.example',
                        key => 'ec:P-256'))[0] }

# ------------------------------------------- 2. the store's completion log
{
    # the workers (nobody) can no longer write it; root still can
    ok(-d $STORE, 'tsb_store made its directory');
    chmod 0555, $STORE;

    $t->log_mark;
    my @ids;
    for (1 .. 3) {
        # raw_send: Connection: close, the connection goes with the answer
        my $r = $t->raw_read($t->raw_send(POST => '/sign',
                                          content_type => $PEM,
                                          body => csr()));
        is($r->{status}, 200, "sign $_ with an unwritable store: 200")
            or $t->explain_response($r);
        push @ids, $r->{json}{signRequestId} // '';
    }
    ok($t->wait_log(qr/storing "[^"]*\.accepted" failed/, 5),
       'the failed write is logged after the clients left');
    my ($line) = $t->log_since =~ /^(.*storing "[^"]*\.accepted" failed.*)$/m;
    unlike($line // '', qr/client: |request: /,
           'logged without the request that is gone');
    is($t->get('/metrics')->{status}, 200, 'the worker still serves');

    chmod 0755, $STORE;
}

# ------------------------------------ 3. X-Certificate-Serial after delivery
{
    my $id = $t->sign_id(csr());
    $t->sim_approve($id);

    my $t0 = time;
    my $r = $t->get("/certificate/$id", timeout => 30);
    is($r->{status}, 200, 'certificate: 200') or $t->explain_response($r);
    my $serial = $r->{headers}{'x-certificate-serial'} // '';
    like($serial, qr/^[0-9A-Fa-f:]+$/, "X-Certificate-Serial $serial");
    ok(time - $t0 > 0.3, 'limit_rate held the answer back');

    my $log = '';
    $t->wait_for(sub { $log = slurp($t->tmp . '/serial.log') // '';
                       $log =~ /\Q$id\E/ }, 5);
    my ($logged) = $log =~ m{/certificate/\Q$id\E serial=(\S*)};
    is($logged, $serial,
       'the access log has the serial that was sent');
}

# --------------------------------- 4. metrics after a reload that failed
{
    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                     LocalPort => $t->port(2),
                                     Listen => 5, ReuseAddr => 1)
        or die "listen: $!";

    my ($before) = $t->worker_pids;
    my $conf = slurp($t->tmp . '/nginx.conf');
    (my $bad = $conf) =~ s/#EXTRA#/listen 127.0.0.1:%%BUSY%%;/;
    my $port2 = $t->port(2);
    $bad =~ s/%%BUSY%%/$port2/;
    spew($t->tmp . '/nginx.conf', $bad);

    $t->log_mark;
    kill 'HUP', $t->nginx_pid;
    ok($t->wait_log(qr/bind\(\) to 127\.0\.0\.1:$port2 failed/, 15),
       'the reload fails on the busy port');
    # the master gives up after its retries and keeps the old cycle
    sleep 3;
    spew($t->tmp . '/nginx.conf', $conf);
    close $busy;

    is_deeply([$t->worker_pids], [$before], 'the old worker still runs');

    # a worker the master respawns
    kill 'TERM', $before;
    my @after;
    $t->wait_for(sub { @after = grep { $_ != $before } $t->worker_pids;
                       @after }, 10);
    ok(@after == 1, "the master respawned the worker ($after[0])");
    sleep 0.2;

    $t->{ua} = $t->_ua;
    my $r = $t->get('/metrics');
    is($r->{status}, 200, 'tsb_metrics of the respawned worker: 200')
        or $t->explain_response($r);
    like($r->{content}, qr/^tsb_requests_total\{/m, '... with the counters');
    my $id = $t->sign_id(csr());
    like($id, $UUID, 'and it signs');
    $r = $t->get("/request/$id");
    is($r->{status}, 200, 'a status request: 200')
        or $t->explain_response($r);
}

ok($t->stop, 'nginx exits gracefully');
my @bad = grep { /\[(alert|crit)\]|exited on signal/ }
          split /\n/, $t->error_log;
ok(!@bad, 'no crash, no alert') or diag(join "\n", @bad);

done_testing;
