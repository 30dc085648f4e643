#!/usr/bin/perl
# Stale-if-error is for a TSB that fails, not for one that answers: when
# the refresh of a cached PENDING id gets a 5xx the old entry is served
# (STALE), when it gets 404 (the TSB no longer knows the id) the client is
# told so.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use TsbTest;

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF2");
tsb_cache_zone tsb:1m;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache tsb;
tsb_cache_valid PENDING 1s;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
EOF2

my ($csr) = $t->make_csr(cn => 's.svc.example');
my $s = $t->request(POST => '/sign', content_type => 'application/x-pem-file',
                    body => $csr);
is($s->{status}, 200, 'signed');
my $id = $s->{json}{signRequestId} // 'none';

my $r = $t->get("/request/$id");
is($r->{status}, 200, 'PENDING fetched');
is($r->{headers}{'x-cache-status'}, 'MISS', 'and cached');

sleep 1.3;
$t->sim_fault(route => $GET, status => 500, times => 1);
$r = $t->get("/request/$id");
is($r->{status}, 200, 'the TSB fails: the stale entry');
is($r->{headers}{'x-cache-status'}, 'STALE', 'marked STALE');

sleep 1.3;
$t->sim_fault(route => $GET, status => 404, times => 1);
$r = $t->get("/request/$id");
is($r->{status}, 404, 'the TSB no longer knows the id: 404')
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'request.unknown', 'request.unknown');

$t->no_worker_crash;
done_testing();
