#!/usr/bin/perl
# A moment without free worker_connections does not kill the worker's TSB
# client (issue 11, point 1).  Idle clients that sent half a request hold
# every connection of the one worker; the one request let in then finds no
# connection for its TSB socket: that request, alone, gets a JSON 503.  Once
# the idle clients are gone, signs, status reads and front requests work
# again at once, and every answer on the way was JSON.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest;

my $KEY = 'wc-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
my $WC = 32;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
my $CONF = <<"EOF";
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    client_header_timeout 60s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; tsb_cache tsb; }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/request/*;
    }
}
EOF
$t->start_nginx($CONF, workers => 1, worker_connections => $WC);

my $n = 0;
sub csr { ($t->make_csr(cn => 'w' . ++$n . '.svc.example',
                        key => 'ec:P-256'))[0] }

# every answer of the module is JSON; an error has the error shape
sub is_json_answer {
    my ($r, $name) = @_;
    my $ok = ($r->{headers}{'content-type'} // '') =~ m{^application/json}
             && ref $r->{json} eq 'HASH'
             && ($r->{status} < 400
                 || (defined $r->{json}{error} && defined $r->{json}{reason}
                     && defined $r->{json}{detail}));
    ok($ok, "$name: JSON answer ($r->{status})") or $t->explain_response($r);
    return $ok;
}

sub ask {
    my ($method, $path, %o) = @_;
    return $t->raw_read($t->raw_send($method, $path, %o), 15);
}

# A client that sends half a request header: nginx cannot reuse (drain) its
# connection as it would an idle keep-alive one.
sub half_client {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port(1), Proto => 'tcp',
                                  Timeout => 5)
        or return undef;
    syswrite($s, "GET /request/x HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    return $s;
}

# Fill the worker: more clients than it has connections; those it could
# not take it closes at once.
sub fill {
    my @held;
    for (1 .. $WC + 16) {
        my $s = half_client() or last;
        push @held, $s;
        # one at a time: a connection nginx has not read from yet is one
        # it may close to make room (it "reuses" it), not a full worker
        sleep 0.01 * $TsbTest::TIME_FACTOR;
    }
    sleep 0.5 * $TsbTest::TIME_FACTOR;
    my ($refused, @alive) = (0);
    for my $s (@held) {
        my $buf;
        if (IO::Select->new($s)->can_read(0) && !sysread($s, $buf, 1)) {
            $refused++;
            close $s;
        } else {
            push @alive, $s;
        }
    }
    return ($refused, @alive);
}

# One connection free: the request gets in, its TSB socket does not.  The
# worker must have no TSB connection yet (one parked in curl's cache is
# reused without a new nginx connection): a run where the sign found
# more room than that starts over with a fresh nginx.
my ($refused, @alive, $r);
for my $round (1 .. 4) {
    ($refused, @alive) = fill();
    $t->log_mark;
    close(shift @alive);
    sleep 0.3 * $TsbTest::TIME_FACTOR;
    $r = ask(POST => '/sign', content_type => $PEM, body => csr());
    last if $r->{status} != 200 || $round == 4;
    diag("round $round: the sign found room ($refused refused, "
         . scalar(@alive) . ' held); again with a fresh nginx');
    close $_ for @alive;
    $t->stop_nginx;
    $t->start_nginx($CONF, workers => 1, worker_connections => $WC);
}
ok($refused > 0, "the worker is full: $refused clients refused, "
                 . scalar(@alive) . ' held');
like($t->error_log, qr/\[alert\].*worker_connections are not enough/,
     'nginx says it is out of worker_connections');

is_json_answer($r, 'sign while full');
is($r->{status}, 503, 'sign while full: 503') or $t->explain_response($r);
is($r->{json}{reason}, 'upstream.busy', '... upstream.busy');
ok($r->{headers}{'retry-after'}, '... with Retry-After');
like($t->log_since, qr/no free worker_connections, failing the transfer/,
     'the log names the transfer that had no connection');

sleep 0.2;
$r = ask(GET => '/request/0b7c3b3e-7f7d-4b4c-9a51-1f7b8b9e0c11');
is_json_answer($r, 'status read while full');
sleep 0.2;
$r = ask(GET => '/v1/request/0b7c3b3e-7f7d-4b4c-9a51-1f7b8b9e0c11');
is_json_answer($r, 'front request while full');

# Release them: everything works again, at once.
close $_ for @alive;
@alive = ();
sleep 0.2;

my $t0 = time;
$r = ask(POST => '/sign', content_type => $PEM, body => csr());
is_json_answer($r, 'sign after');
is($r->{status}, 200, 'sign after the clients left: 200')
    or $t->explain_response($r);
my $id = $r->{json}{signRequestId} // '';
like($id, $UUID, '... with an id');

$r = ask(GET => "/request/$id");
is_json_answer($r, 'status read after');
is($r->{status}, 200, 'status read after: 200')
    or $t->explain_response($r);
is($r->{json}{status}, 'PENDING', '... PENDING');

$r = ask(GET => "/v1/request/$id");
is_json_answer($r, 'front request after');
is($r->{status}, 200, 'front request after: 200')
    or $t->explain_response($r);
ok(time - $t0 < 3 * $TsbTest::TIME_FACTOR, 'all three answered at once');

unlike($t->error_log, qr/curl_multi_add_handle\(\) failed|multi handle was aborted/,
       "the worker's TSB client never died");

# the worker is still the same process and serves many more
my $ok = 0;
for (1 .. 5) {
    $ok++ if ask(POST => '/sign', content_type => $PEM,
                 body => csr())->{status} == 200;
}
is($ok, 5, 'five more signs: 200');

ok($t->stop, 'nginx exits gracefully');
my @bad = grep { /\[(emerg|crit)\]|exited on signal/ }
          split /\n/, $t->error_log;
ok(!@bad, 'no crash or critical error') or diag(join "\n", @bad);

done_testing;
