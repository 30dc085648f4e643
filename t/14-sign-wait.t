#!/usr/bin/perl
# One call for simple clients: POST /sign?wait=N holds the request until
# the certificate is issued (200 PEM), refused (409) or the time is up (the
# usual 200 with signRequestId and Location).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use TsbTest;

my $KEY = 'test-api-key-SECRET';
my $PEM = 'application/x-pem-file';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF2");
tsb_cache_zone tsb:1m;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache tsb;
tsb_refresh_interval 300ms;
tsb_wait_max 3s;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
}
EOF2

my $ca = $t->sim_ca;

# the ids of the sign requests the simulator holds
my %seen;

sub sim_ids {
    my $r = $t->sim_get('/_sim/sign-requests');
    my $d = TsbTest::json_decode($r->{content}) // [];
    my @all = ref $d eq 'HASH' ? (map { ref $_ ? $_ : () } values %$d) : @$d;
    return map { $_->{id} // () } @all;
}

# the sign request that appears next at the simulator: its counters move
# before the request is stored, so wait for the id itself
sub next_id {
    my $id;
    $t->wait_for(sub {
        ($id) = grep { !$seen{$_}++ } sim_ids();
        defined $id;
    }, 3);
    return $id;
}

# call before sending a sign whose id next_id() is to find
sub mark_seen {
    $seen{$_} = 1 for sim_ids();
}

# issued while the client waits: the certificate in the sign answer
{
    my ($csr) = $t->make_csr(cn => 'w1.svc.example');
    mark_seen();
    my $sock = $t->raw_send(POST => '/sign?wait=3', content_type => $PEM,
                            body => $csr);
    my $id = next_id();
    ok($id, 'the sign reached the TSB');
    my $t0 = time;
    $t->sim_post("/_sim/approve/$id");
    my $r = $t->raw_read($sock, 10);
    my $dt = time - $t0;
    is($r->{status}, 200, 'issued within the wait: 200')
        or $t->explain_response($r);
    like($r->{headers}{'content-type'} // '', qr{^application/x-pem-file},
         'as PEM');
    ok($t->verify_cert($r->{content}, $ca), 'a certificate that verifies');
    # the bound is the time to notice and fetch, slower under a checker
    ok($dt < 1.5 * $TsbTest::TIME_FACTOR,
       sprintf('answered %.2f s after the approval', $dt));
}

# nobody approves: the usual 200 when the time is up, capped by wait_max
{
    my ($csr) = $t->make_csr(cn => 'w2.svc.example');
    my $t0 = time;
    my $r = $t->request(POST => '/sign?wait=60', content_type => $PEM,
                        body => $csr);
    my $dt = time - $t0;
    is($r->{status}, 200, 'not issued in time: 200') or $t->explain_response($r);
    like($r->{json}{signRequestId} // '', qr/^[0-9a-f-]{36}$/,
         'with the signRequestId');
    is($r->{headers}{location}, "/request/$r->{json}{signRequestId}",
       'and the Location of its status');
    ok($dt >= 2.5 && $dt < 5, sprintf('after tsb_wait_max (%.2f s)', $dt));
}

# refused while the client waits: 409
{
    my ($csr) = $t->make_csr(cn => 'w3.svc.example');
    mark_seen();
    my $sock = $t->raw_send(POST => '/sign?wait=3', content_type => $PEM,
                            body => $csr);
    my $id = next_id();
    ok($id, 'the sign reached the TSB');
    $t->sim_post("/_sim/reject/$id");
    my $r = $t->raw_read($sock, 10);
    is($r->{status}, 409, 'rejected within the wait: 409')
        or $t->explain_response($r);
    is($r->{json}{reason}, 'request.rejected', 'request.rejected');
}

$t->no_worker_crash;
done_testing();
