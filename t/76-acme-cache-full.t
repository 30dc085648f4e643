#!/usr/bin/perl
# ACME finalize keeps room in the cache for what it accepted, as tsb_sign
# does: when pending sign requests fill the room of a small tsb_cache
# zone, finalize answers 503 serverInternal before anything reaches the
# TSB, and the order stays ready to be finalized again.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url);
use TsbTest qw(slurp);

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $SIGN = "$FindBin::Bin/lib/acme_sign.py";
my $SIGN_PATH = 'POST /v1/certificate/sign';

$t->start_sim;
$t->start_nginx(<<"EOF");
tsb_cache_zone small:32k;
tsb_acme_zone acme:1m;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache small;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
    }
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
}
EOF

my $port = $t->port(1);
my $base = "http://127.0.0.1:$port/acme/";
my $ua = HTTP::Tiny->new(timeout => 30);

sub post {
    my ($url, $key, %o) = @_;
    my $n = $ua->request('HEAD', $base . 'new-nonce')->{headers}{'replay-nonce'};
    my @args = ($SIGN, $key, $url, "--nonce=$n");
    push @args, "--kid=$o{kid}" if $o{kid};
    push @args, "--payload=$o{payload}" if defined $o{payload};
    my ($rc, $jws) = $t->run_cmd('python3', @args);
    die "acme_sign.py: $jws" if $rc;
    my $r = $ua->post($url, { content => $jws, headers => {
        'Content-Type' => 'application/jose+json' } });
    $r->{json} = TsbTest::json_decode($r->{content}) // {};
    return $r;
}

$t->_openssl('genpkey', '-algorithm', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-out', "$tmp/k.pem");
my $key = "$tmp/k.pem";

my $r = post($base . 'new-account', $key, payload => '{}');
is($r->{status}, 201, 'account');
my $kid = $r->{headers}{location};
$r = post($base . 'new-order', $key, kid => $kid,
          payload => '{"identifiers":[{"type":"dns","value":"a.svc.example"}]}');
is($r->{json}{status}, 'ready', 'order ready');
my $order = $r->{headers}{location};
my $finalize = $r->{json}{finalize};

# pending sign requests fill the room kept for what is accepted
my ($c) = $t->make_csr(cn => 'p.svc.example', key => 'ec:P-256');
my $full;
for (1 .. 200) {
    my $s = $t->request(POST => '/sign', body => $c,
                        content_type => 'application/x-pem-file');
    if ($s->{status} != 200) {
        $full = $s;
        last;
    }
}
is(($full // {})->{json}{reason}, 'cache.full', 'the zone is full');

$t->_openssl('req', '-new', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-nodes', '-keyout', "$tmp/a.key",
             '-subj', '/CN=a.svc.example', '-addext',
             'subjectAltName=DNS:a.svc.example', '-outform', 'DER',
             '-out', "$tmp/a.der");
my $csr = encode_base64url(slurp("$tmp/a.der"));

my $before = $t->sim_counts->{$SIGN_PATH} // 0;
$r = post($finalize, $key, kid => $kid, payload => qq({"csr":"$csr"}));
is($r->{status}, 503, 'finalize: 503');
is($r->{json}{type}, 'urn:ietf:params:acme:error:serverInternal',
   'serverInternal');
like($r->{json}{detail} // '', qr/no room left/, 'says why');
is($t->sim_counts->{$SIGN_PATH} // 0, $before, 'nothing reached the TSB');

$r = post($order, $key, kid => $kid, payload => '');
is($r->{json}{status}, 'ready', 'the order is still ready');

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
