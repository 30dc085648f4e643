#!/usr/bin/perl
# tsb_store: an issued certificate is written to disk once (whole files
# only), served after an eviction from the zone without asking the TSB,
# and after a restart of nginx while the simulator is down: same bytes,
# same ETag, 304 on If-None-Match, the status JSON too.  Files that are
# not store files are ignored, not trusted.

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
my $STORE = $t->tmp . '/store';
$t->start_sim('--api-key', $KEY);
my $CONF = <<"EOF";
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_connect_timeout 1s;
tsb_cache_zone tsb:1m;
tsb_cache_zone tiny:32k;
tsb_store %%TMP%%/store;
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
    location /tiny/ { tsb_status; tsb_cache tiny; }
}
EOF
$t->start_nginx($CONF, workers => 1);

my ($CSR) = $t->make_csr(cn => 'store.svc.example', key => 'ec:P-256');

sub new_id { $t->sign_id($CSR) }

sub approve { $t->sim_approve($_[0]) }

sub gets { $t->sim_counts->{$GET} // 0 }
sub stored { "$STORE/$_[0].tsb" }

sub der_parses {
    my ($der) = @_;
    my $f = $t->tmp . '/served' . int(rand(1e9)) . '.der';
    spew($f, $der);
    my ($rc, $out) = $t->run_cmd('openssl', 'x509', '-inform', 'DER',
                                 '-in', $f, '-noout', '-subject');
    return $rc == 0 ? $out : undef;
}

# -------------------------------------------- EXECUTED: fetched once, stored
my $E = new_id();
my $P = new_id();
approve($E);

my ($pem, $der, $etag);
{
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'EXECUTED certificate: 200') or $t->explain_response($r);
    $pem = $r->{content};
    $etag = $r->{headers}{etag};
    $der = $t->get("/request/$E.der")->{content};
    ok(der_parses($der), 'the DER served parses with openssl');
    is($t->get("/request/$P")->{json}{status}, 'PENDING', 'P is PENDING');

    ok($t->wait_for(sub { -s stored($E) }, 5),
       'the certificate is in the store directory');
    my $file = slurp(stored($E)) // '';
    ok(index($file, $der) >= 0, 'the stored file holds the whole DER');
    ok(!-e stored($P), 'a PENDING request is not stored');
    opendir(my $dh, $STORE) or die "$STORE: $!";
    my @tmp = grep { /tmp/ } readdir $dh;
    is("@tmp", '', 'no temporary files left in the store');
}

# ------------------------------- evicted from a tiny zone: back from disk
{
    my @ids = map { new_id() } 1 .. 30;
    approve($_) for @ids;
    my $g0 = gets();
    my $good = grep { $t->get("/tiny/$_.pem")->{status} == 200 } @ids;
    is($good, 30, '30 certificates through a 32k zone: all 200');
    is(gets() - $g0, 30, 'one upstream GET each');
    ok($t->wait_for(sub { !grep { !-s stored($_) } @ids }, 5),
       'all 30 are in the store');

    $t->log_mark;
    my $g1 = gets();
    my @again = map { $t->get("/tiny/$_.pem") } @ids[0 .. 4];
    is(scalar(grep { $_->{status} == 200
                     && $_->{content} =~ /BEGIN CERTIFICATE/ } @again), 5,
       'the oldest five again: 200 with the certificate');
    is(scalar(grep { xcs($_) eq 'MISS' } @again), 5,
       'they had been evicted from the zone (MISS)');
    is(gets() - $g1, 0, 'served from the store: no upstream GET');
    like($t->log_since, qr/served from tsb_store/,
         'error.log says they came from the store');

    # all 30 at once, again and again: the zone keeps evicting what the
    # store brings back while the next reads claim their ids
    my ($n, $ok, %bad) = (0, 0);
    for my $round (1 .. 10) {
        my @socks = map { $t->raw_send(GET => "/tiny/$_.pem") } @ids;
        for my $r (map { $t->raw_read($_) } @socks) {
            $n++;
            if ($r->{status} == 200 && $r->{content} =~ /BEGIN CERTIFICATE/) {
                $ok++;
            } else {
                $bad{"$r->{status} $r->{content}"}++;
            }
        }
    }
    is($ok, $n, "$n reads, 30 at a time, through the 32k zone: all 200 "
                . 'with the certificate')
        or diag(explain(\%bad));
    is(gets() - $g1, 0, 'still no upstream GET');
}

# --------------------------- restart, simulator down: served from the store
ok($t->stop, 'nginx and the simulator stopped');

# Not store files: garbage, and a torn (truncated) copy of a real one.
my $GARBAGE = '00000000-0000-0000-0000-000000000001';
my $TORN = '00000000-0000-0000-0000-000000000002';
spew(stored($GARBAGE), "not a store file\n");
my $whole = slurp(stored($E));
spew(stored($TORN), substr($whole, 0, length($whole) - 100));
chmod 0644, stored($GARBAGE), stored($TORN);

$t->start_nginx($CONF, workers => 1);
{
    $t->log_mark;
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'after a restart, TSB down: 200')
        or $t->explain_response($r);
    is($r->{content}, $pem, 'the same PEM bytes');
    is($r->{headers}{etag}, $etag, 'the same ETag');
    like($r->{headers}{'x-certificate-serial'} // '', qr/^[0-9A-F]+$/i,
         'X-Certificate-Serial');
    is(xcs($t->get("/request/$E.pem")), 'HIT', 'then from the zone: HIT');
    my $d = $t->get("/request/$E.der");
    is($d->{content}, $der, 'the same DER bytes');
    ok(der_parses($d->{content}), 'openssl parses the DER');
    my $n = $t->get("/request/$E.pem", headers => { 'If-None-Match' => $etag });
    is($n->{status}, 304, 'If-None-Match with the old ETag: 304');
    my $j = $t->get("/request/$E");
    is($j->{status}, 200, 'status JSON: 200');
    is($j->{json}{status}, 'EXECUTED', 'status JSON: EXECUTED');
    is($j->{json}{result}, $pem, 'status JSON: result is the PEM');
    like($t->log_since, qr/served from tsb_store/, 'logged as from the store');

    my $p = $t->get("/request/$P");
    $t->error_is($p, 502, qr/^upstream\./,
                 'a PENDING id (not stored), TSB down');

    for my $case ([$GARBAGE, 'garbage'], [$TORN, 'a torn copy']) {
        my ($id, $what) = @$case;
        $t->log_mark;
        my $g = $t->get("/request/$id.pem");
        $t->error_is($g, 502, qr/^upstream\./,
                     "$what in the store is not served");
        like($t->log_since, qr/is not a tsb_store file/,
             "$what: error.log says it was ignored");
    }
}

$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
