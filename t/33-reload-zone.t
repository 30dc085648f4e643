#!/usr/bin/perl
# A reload (HUP) keeps the cache zone when its name and size stay the same:
# a cached certificate is a HIT in the new workers without a new upstream
# GET, also when other parts of the configuration changed.  A ?wait= client
# held by an old worker is answered at once with what that worker knows
# (202 and Retry-After: it asks again, of a new worker).  A reload that changes
# the zone's size starts with an empty zone (MISS, one new GET).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp spew xcs);

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    tsb_cache_valid PENDING APPROVED 60s;
    tsb_refresh_interval 300ms;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /wait/ { tsb_status; tsb_cache_valid PENDING 1s; }
    location = /pid { return 200 "\$pid"; }
}
EOF
my $CONF_FILE = $t->tmp . '/nginx.conf';

my ($CSR) = $t->make_csr(cn => 'reload.svc.example', key => 'ec:P-256');

sub new_id { $t->sign_id($CSR) }

sub approve { $t->sim_approve($_[0]) }

sub gets { $t->sim_counts->{$GET} // 0 }
sub edit_conf {
    my ($code) = @_;
    my $c = slurp($CONF_FILE);
    local $_ = $c;
    $code->();
    die "configuration unchanged\n" if $_ eq $c;
    spew($CONF_FILE, $_);
}

my $E = new_id();
my $P = new_id();
approve($E);

my $pem;
{
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'EXECUTED: 200');
    is(xcs($r), 'MISS', 'first fetch: MISS');
    $pem = $r->{content};
    is(xcs($t->get("/request/$E.pem")), 'HIT', 'then HIT');
    is(xcs($t->get("/request/$P")), 'MISS', 'PENDING P: MISS');
}

# ---------------------------- reload, same zone, other changes: still HIT
{
    my $old = $t->get('/pid')->{content};
    edit_conf(sub { s{(location = /pid)}{location = /extra { return 204; }\n    $1} });
    my $g0 = gets();
    my @new = $t->reload;
    my $pid = $t->get('/pid')->{content};
    isnt($pid, $old, "a new worker after the reload ($old -> $pid)");
    is($t->get('/extra')->{status}, 204, 'the new configuration is live');
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'after reload: 200');
    is(xcs($r), 'HIT', 'after reload (same zone size): HIT');
    is($r->{content}, $pem, 'after reload: the same certificate');
    is(xcs($t->get("/request/$P")), 'HIT', 'after reload: PENDING P still HIT');
    is(gets() - $g0, 0, 'no upstream GET after the reload');
}

# ---------------------- a ?wait= client in an old worker across a reload
{
    my $W = new_id();
    my $old = $t->get('/pid')->{content};
    # a reload takes longer under a checker (TSB_TIME_FACTOR): the wait
    # and the bound grow with it, so that the wait is still running then
    my $F = $TsbTest::TIME_FACTOR;
    my $s = $t->raw_send(GET => "/wait/$W.pem?wait=" . 5 * $F);
    sleep 0.3;
    my $t0 = time;
    $t->reload;
    my $r = $t->raw_read($s, 8);
    is($r->{status}, 202,
       'waiter held by an old worker across a reload: 202 at once')
        or $t->explain_response($r);
    ok($r->{headers}{'retry-after'}, 'with Retry-After');
    cmp_ok(time - $t0, '<', 1.5 * $F,
           'soon after the reload, not at the end of the wait');
    ok($t->wait_for(sub { !kill 0, $old }, 5), 'the old worker exits then');
    approve($W);
    $r = $t->get("/wait/$W.pem?wait=5");
    is($r->{status}, 200, 'asked again, a new worker has the certificate')
        or $t->explain_response($r);
    like($r->{content}, qr/BEGIN CERTIFICATE/, 'with the certificate');
}

# ------------------------------------- reload with another zone size: MISS
{
    edit_conf(sub { s/tsb_cache_zone tsb:1m;/tsb_cache_zone tsb:2m;/ });
    my $g0 = gets();
    $t->reload;
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'zone size changed: 200');
    is(xcs($r), 'MISS', 'zone size changed: the zone is new (MISS)');
    is($r->{content}, $pem, 'the same certificate from the TSB');
    is(gets() - $g0, 1, 'one new upstream GET');
    is(xcs($t->get("/request/$E.pem")), 'HIT', 'and cached again');
}

$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
