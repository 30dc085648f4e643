#!/usr/bin/perl
# With tsb_acme_zone accounts=, orders are kept on disk too ("<id>.order"
# beside the accounts) and read back at start: after a restart an order
# is where it was (ready, or processing until the approvers decide), is
# not finalized twice, is in its account's list, and becomes valid with
# its certificate (what was accepted is in tsb_store); expired order
# files are removed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url);
use TsbTest qw(slurp spew);

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $SIGN = "$FindBin::Bin/lib/acme_sign.py";

$t->start_sim;
my $conf = <<"EOF";
tsb_cache_zone tsb:1m;
tsb_acme_zone acme:1m accounts=%%TMP%%/acme;
tsb_store %%TMP%%/store;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
}
EOF
$t->start_nginx($conf);

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

sub csr {
    my ($name) = @_;
    $t->_openssl('req', '-new', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:P-256', '-nodes', '-keyout',
                 "$tmp/$name.key", '-subj', "/CN=$name", '-addext',
                 "subjectAltName=DNS:$name", '-outform', 'DER',
                 '-out', "$tmp/$name.der");
    return encode_base64url(slurp("$tmp/$name.der"));
}

$t->_openssl('genpkey', '-algorithm', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-out', "$tmp/k.pem");
my $key = "$tmp/k.pem";

my $r = post($base . 'new-account', $key, payload => '{}');
is($r->{status}, 201, 'account');
my $kid = $r->{headers}{location};
my $orders = $r->{json}{orders};

$r = post($base . 'new-order', $key, kid => $kid,
          payload => '{"identifiers":[{"type":"dns","value":"a.svc.example"}]}');
my $order_a = $r->{headers}{location};
is($r->{json}{status}, 'ready', 'order a: ready');
sleep 1;    # the list is read back in the order the orders expire
$r = post($base . 'new-order', $key, kid => $kid,
          payload => '{"identifiers":[{"type":"dns","value":"c.svc.example"}]}');
my $order_c = $r->{headers}{location};
is($r->{json}{status}, 'ready', 'order c: ready');
sleep 1;

$r = post($base . 'new-order', $key, kid => $kid,
          payload => '{"identifiers":[{"type":"dns","value":"b.svc.example"}]}');
my $order_b = $r->{headers}{location};
my $finalize_b = $r->{json}{finalize};
$r = post($finalize_b, $key, kid => $kid,
          payload => '{"csr":"' . csr('b.svc.example') . '"}');
is($r->{json}{status}, 'processing', 'order b: processing');
my ($id) = $t->error_log =~ /sign request (\S+) submitted/;
ok($id, 'b went to the TSB');

# the record is written in a thread: wait for it
my ($oid_b) = $order_b =~ m{/order/([^/]+)$};
ok($t->wait_for(sub {
       (slurp("$tmp/acme/$oid_b.order") // '') =~ /"processing"/ }, 5),
   'order b is on disk, processing');

# an expired order file goes at the next start
spew("$tmp/acme/old.order", '{"account":"x","status":"ready","expires":1000,'
     . '"identifiers":[{"type":"dns","value":"old.svc.example"}]}');

# ------------------------------------------------------------- restart

$t->stop_nginx;
$t->start_nginx($conf);
like($t->error_log, qr/3 orders loaded from/, 'three orders read back');
ok(!-e "$tmp/acme/old.order", 'the expired one removed');

$r = post($order_a, $key, kid => $kid, payload => '');
is($r->{status}, 200, 'order a after the restart');
is($r->{json}{status}, 'ready', '... still ready');

$r = post($order_b, $key, kid => $kid, payload => '');
is($r->{json}{status}, 'processing', 'order b: still processing');

$r = post($finalize_b, $key, kid => $kid,
          payload => '{"csr":"' . csr('b.svc.example') . '"}');
is($r->{json}{type}, 'urn:ietf:params:acme:error:orderNotReady',
   'order b is not finalized twice');

$r = post($orders, $key, kid => $kid, payload => '');
is_deeply($r->{json}{orders}, [$order_b, $order_c, $order_a],
          'the account\'s list, newest first');

$t->sim_approve($id);
my $deadline = time + 20;
do {
    sleep 1;
    $r = post($order_b, $key, kid => $kid, payload => '');
} while (($r->{json}{status} // '') eq 'processing' && time < $deadline);
is($r->{json}{status}, 'valid', 'order b: valid after approval')
    or diag($r->{content});

$r = post($r->{json}{certificate} // $order_b, $key, kid => $kid,
          payload => '');
is($r->{status}, 200, 'its certificate');
like($r->{content} // '', qr/BEGIN CERTIFICATE/, 'a PEM chain');

# and the last state is on disk for the next start
ok($t->wait_for(sub {
       (slurp("$tmp/acme/$oid_b.order") // '') =~ /"valid"/ }, 5),
   'order b is valid on disk');

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
