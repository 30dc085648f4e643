#!/usr/bin/perl
# tsb_acme request by request (JWS signed by t/lib/acme_sign.py): accounts
# with EdDSA, RSA and EC keys, who may see what, the url rule, orders,
# authorizations and challenges, finalize (badCSR, once only, processing
# with Retry-After, valid after approval, the chain), keyChange,
# deactivation, revokeCert, an account's orders list (paginated), the
# ACME counters of tsb_metrics and the audit lines of accounts, orders and
# finalize decisions.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url decode_base64);
use TsbTest qw(slurp spew);
use TsbPki;

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $SIGN = "$FindBin::Bin/lib/acme_sign.py";

my $pki = TsbPki::make($t);
$t->start_sim;
$t->start_nginx(<<"EOF");
tsb_cache_zone tsb:1m;
tsb_acme_zone acme:1m;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
tsb_retry_after 3s;
tsb_audit_log $tmp/audit.log;
server {
    listen 127.0.0.1:%%PORT%% ssl;
    ssl_certificate $pki->{server};
    ssl_certificate_key $pki->{server_key};
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
    location = /metrics { tsb_metrics; }
}
EOF

my $port = $t->port(1);
my $base = "https://127.0.0.1:$port/acme/";
my $ua = HTTP::Tiny->new(verify_SSL => 1,
                         SSL_options => { SSL_ca_file => $pki->{ca} });

sub key {
    my ($name, @how) = @_;
    $t->_openssl('genpkey', @how, '-out', "$tmp/$name.pem");
    return "$tmp/$name.pem";
}

sub nonce {
    my $r = $ua->request('HEAD', $base . 'new-nonce');
    return $r->{headers}{'replay-nonce'};
}

# POST a JWS: signed with $key, by "jwk" or by kid => $kid
sub post {
    my ($url, $key, %o) = @_;
    my @args = ($SIGN, $key, $url, '--nonce=' . ($o{nonce} // nonce()));
    push @args, "--kid=$o{kid}" if $o{kid};
    push @args, "--payload=$o{payload}" if defined $o{payload};
    my ($rc, $jws) = $t->run_cmd('python3', @args);
    die "acme_sign.py: $jws" if $rc;
    my $r = $ua->post($url, { content => $jws, headers => {
        'Content-Type' => 'application/jose+json' } });
    $r->{json} = TsbTest::json_decode($r->{content});
    return $r;
}

sub problem_is {
    my ($r, $status, $type, $name) = @_;
    is($r->{status}, $status, "$name: $status");
    is($r->{headers}{'content-type'}, 'application/problem+json',
       "$name: problem+json");
    is(($r->{json} // {})->{type}, "urn:ietf:params:acme:error:$type",
       "$name: $type") or diag($r->{content});
    ok(length(($r->{json} // {})->{detail} // ''), "$name: a detail");
}

my $ed = key('ed', '-algorithm', 'ed25519');
my $rsa = key('rsa', '-algorithm', 'rsa', '-pkeyopt', 'rsa_keygen_bits:2048');
my $ec = key('ec', '-algorithm', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-384');
my $ec2 = key('ec2', '-algorithm', 'ec', '-pkeyopt',
              'ec_paramgen_curve:P-256');

# ------------------------------------------------------------ accounts

my $r = post($base . 'new-account', $ed, payload => '{"onlyReturnExisting":'
             . 'true}');
problem_is($r, 400, 'accountDoesNotExist', 'onlyReturnExisting, no account');

$r = post($base . 'new-account', $ed,
          payload => '{"contact":["mailto:a@example.com"],'
                     . '"termsOfServiceAgreed":true}');
is($r->{status}, 201, 'EdDSA account created');
my $acct_ed = $r->{headers}{location} // '';
like($acct_ed, qr{^\Q${base}\Eacct/[A-Za-z0-9_-]{43}$}, 'Location acct/<thumb>');
is(($r->{json} // {})->{status}, 'valid', 'status valid');
like($r->{headers}{'replay-nonce'} // '', qr/^[A-Za-z0-9_-]{22}$/,
     'Replay-Nonce on an answer');

$r = post($base . 'new-account', $ed, payload => '{}');
is($r->{status}, 200, 'the same key again: 200');
is($r->{headers}{location}, $acct_ed, 'the same account');

$r = post($base . 'new-account', $rsa, payload => '{}');
is($r->{status}, 201, 'RSA account created');
my $acct_rsa = $r->{headers}{location};

$r = post($acct_ed, $ed, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'POST-as-GET of the account');
is_deeply(($r->{json} // {})->{contact}, ['mailto:a@example.com'],
          'its contact');

$r = post($acct_rsa, $ed, kid => $acct_ed, payload => '');
problem_is($r, 403, 'unauthorized', 'another account');

$r = post($acct_ed, $rsa, kid => $acct_ed, payload => '');
problem_is($r, 403, 'unauthorized', 'signed with another key');

# a nonce the server never gave
$r = post($base . 'new-order', $ed, kid => $acct_ed,
          nonce => 'AAAAAAAAAAAAAAAAAAAAAA', payload => '{}');
problem_is($r, 400, 'badNonce', 'an unknown nonce');
like($r->{headers}{'replay-nonce'} // '', qr/^[A-Za-z0-9_-]{22}$/,
     'badNonce comes with a fresh Replay-Nonce');

$r = post($acct_ed, $ed, kid => $acct_ed, payload => '');
my $orders_ed = ($r->{json} // {})->{orders} // '';
like($orders_ed, qr{^\Q${base}\Eorders/}, 'the account names its orders list');
$r = post($orders_ed, $ed, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'orders list of an account without orders');
is_deeply(($r->{json} // {})->{orders}, [], 'is empty');

$r = post($base . 'new-order', $ed, kid => $acct_ed,
          payload => '{"identifiers":[]}');
problem_is($r, 400, 'malformed', 'no identifiers');

# the JWS url must be where it was sent
{
    my ($rc, $jws) = $t->run_cmd('python3', $SIGN, $ed, $base . 'new-order',
                                 '--nonce=' . nonce(), "--kid=$acct_ed",
                                 '--payload={}');
    my $x = $ua->post($base . 'new-account', { content => $jws,
        headers => { 'Content-Type' => 'application/jose+json' } });
    $x->{json} = TsbTest::json_decode($x->{content});
    problem_is($x, 401, 'unauthorized', 'url of another resource');
}

# -------------------------------------------------------------- orders

$r = post($base . 'new-order', $ed, kid => $acct_ed,
          payload => '{"identifiers":[{"type":"dns","value":"x.other.example"}]}');
problem_is($r, 403, 'rejectedIdentifier', 'a name outside the policy');
like(($r->{json} // {})->{detail}, qr/"x\.other\.example"/, 'named');

$r = post($base . 'new-order', $ed, kid => $acct_ed,
          payload => '{"identifiers":[{"type":"dns","value":"a.svc.example"}]}');
is($r->{status}, 201, 'order created');
my $order_url = $r->{headers}{location} // '';
my $o = $r->{json} // {};
is($o->{status}, 'ready', 'ready at once: authorised by policy');
my $authz = ($o->{authorizations} // [])->[0] // '';
my $finalize = $o->{finalize} // '';

$r = post($authz, $ed, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'authorization');
my $a = $r->{json} // {};
is($a->{status}, 'valid', 'authorization valid');
is($a->{challenges}[0]{status}, 'valid', 'its challenge valid');
my $chall = $a->{challenges}[0]{url} // '';

$r = post($chall, $ed, kid => $acct_ed, payload => '{}');
is($r->{status}, 200, 'answering the challenge is harmless');
my $link = $r->{headers}{link} // '';
like(ref $link ? join(',', @$link) : $link, qr/rel="up"/, 'Link up to the authorization');

$r = post($order_url, $rsa, kid => $acct_rsa, payload => '');
problem_is($r, 403, 'unauthorized', 'the order of another account');

$r = post($orders_ed, $ed, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'orders list');
is_deeply(($r->{json} // {})->{orders}, [$order_url],
          'lists the order, not the one refused');
$r = post($orders_ed, $rsa, kid => $acct_rsa, payload => '');
problem_is($r, 403, 'unauthorized', 'the orders list of another account');

# ------------------------------------------------------------ finalize

sub csr_b64url {
    my ($name, @san) = @_;
    my @ext = @san ? ('-addext', 'subjectAltName=' . join(',', map { "DNS:$_" } @san)) : ();
    $t->_openssl('req', '-new', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:P-256', '-nodes', '-keyout',
                 "$tmp/$name.key", '-subj', "/CN=$san[0]", @ext,
                 '-outform', 'DER', '-out', "$tmp/$name.der");
    return encode_base64url(slurp("$tmp/$name.der"));
}

$r = post($finalize, $ed, kid => $acct_ed,
          payload => '{"csr":"' . csr_b64url('c1', 'a.svc.example',
                                              'b.svc.example') . '"}');
problem_is($r, 400, 'badCSR', 'a CSR with a name the order lacks');

$r = post($finalize, $ed, kid => $acct_ed,
          payload => '{"csr":"' . csr_b64url('c2', 'a.svc.example') . '"}');
is($r->{status}, 200, 'finalize accepted');
is(($r->{json} // {})->{status}, 'processing', 'processing');
is($r->{headers}{'retry-after'}, 3, 'Retry-After: tsb_retry_after');
is($r->{headers}{location}, $order_url, 'Location: the order');

$r = post($finalize, $ed, kid => $acct_ed,
          payload => '{"csr":"' . csr_b64url('c3', 'a.svc.example') . '"}');
problem_is($r, 403, 'orderNotReady', 'finalize twice');

my ($id) = $t->error_log =~ /sign request (\S+) submitted/;
ok($id, 'submitted to the TSB');

$r = post($order_url, $ed, kid => $acct_ed, payload => '');
is(($r->{json} // {})->{status}, 'processing', 'still processing');

$t->sim_approve($id);
my $deadline = time + 20;
do {
    sleep 1;
    $r = post($order_url, $ed, kid => $acct_ed, payload => '');
} while (($r->{json} // {})->{status} eq 'processing' && time < $deadline);
is(($r->{json} // {})->{status}, 'valid', 'valid after approval');
my $cert = ($r->{json} // {})->{certificate} // '';

$r = post($cert, $ed, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'certificate');
is($r->{headers}{'content-type'}, 'application/pem-certificate-chain',
   'as a PEM chain');
my @certs = $r->{content} =~ /BEGIN CERTIFICATE/g;
is(scalar @certs, 2, 'the leaf and tsb_issuer_chain');
spew("$tmp/got.pem", $r->{content});
my $pub1 = $t->_openssl('x509', '-in', "$tmp/got.pem", '-noout', '-pubkey');
my $pub2 = $t->_openssl('pkey', '-in', "$tmp/c2.key", '-pubout');
is($pub1, $pub2, 'for the finalized CSR\'s key');

$r = post($base . 'revoke-cert', $ed, kid => $acct_ed,
          payload => '{"certificate":"x"}');
problem_is($r, 403, 'unauthorized', 'revokeCert');
like(($r->{json} // {})->{detail}, qr/cannot revoke/, 'says why');

# ---------------------------------------------- an order the TSB rejects

$r = post($base . 'new-order', $ed, kid => $acct_ed,
          payload => '{"identifiers":[{"type":"dns","value":"b.svc.example"}]}');
is($r->{status}, 201, 'a second order');
my $order2 = $r->{headers}{location} // '';
$r = post(($r->{json} // {})->{finalize} // '', $ed, kid => $acct_ed,
          payload => '{"csr":"' . csr_b64url('c4', 'b.svc.example') . '"}');
is(($r->{json} // {})->{status}, 'processing', 'the second processing');

$r = post($orders_ed, $ed, kid => $acct_ed, payload => '');
is_deeply(($r->{json} // {})->{orders}, [$order2, $order_url],
          'orders list: newest first');

my @ids = $t->error_log =~ /sign request (\S+) submitted/g;
my $id2 = $ids[-1] // 'none';
isnt($id2, $id, 'a second sign request');
$t->sim_post("/_sim/reject/$id2");
$deadline = time + 20;
do {
    sleep 1;
    $r = post($order2, $ed, kid => $acct_ed, payload => '');
} while (($r->{json} // {})->{status} eq 'processing' && time < $deadline);
is(($r->{json} // {})->{status}, 'invalid', 'invalid after a rejection');
like((($r->{json} // {})->{error} // {})->{detail} // '', qr/REJECTED/,
     'its error says so');
$r = post($order2, $ed, kid => $acct_ed, payload => '');
is(($r->{json} // {})->{status}, 'invalid', 'polled again: still invalid');

$r = post($orders_ed, $ed, kid => $acct_ed, payload => '');
is_deeply(($r->{json} // {})->{orders}, [$order_url],
          'orders list: not the invalid one');

# ----------------------------------------------------------- keyChange

{
    my (undef, $old_jwk) = $t->run_cmd('python3', $SIGN, $ed, '--jwk-only');
    chomp $old_jwk;
    my ($rc, $inner) = $t->run_cmd('python3', $SIGN, $ec2,
        $base . 'key-change',
        '--payload={"account":"' . $acct_ed . '","oldKey":' . $old_jwk . '}');
    chomp $inner;
    $r = post($base . 'key-change', $ed, kid => $acct_ed, payload => $inner);
    is($r->{status}, 200, 'keyChange') or diag($r->{content});
}

$r = post($acct_ed, $ed, kid => $acct_ed, payload => '');
problem_is($r, 403, 'unauthorized', 'the old key no longer signs');
$r = post($acct_ed, $ec2, kid => $acct_ed, payload => '');
is($r->{status}, 200, 'the new key does');
$r = post($base . 'new-account', $ec2, payload => '{"onlyReturnExisting":true}');
is($r->{headers}{location}, $acct_ed, 'and finds the account');

# ------------------------------------------------------- deactivation

$r = post($acct_rsa, $rsa, kid => $acct_rsa,
          payload => '{"status":"deactivated"}');
is(($r->{json} // {})->{status}, 'deactivated', 'deactivated');
$r = post($base . 'new-order', $rsa, kid => $acct_rsa,
          payload => '{"identifiers":[{"type":"dns","value":"a.svc.example"}]}');
problem_is($r, 401, 'unauthorized', 'a deactivated account');

# an ES384 account orders too, many times: the list comes in pages
$r = post($base . 'new-account', $ec, payload => '{}');
is($r->{status}, 201, 'ES384 account');
my $acct_ec = $r->{headers}{location};
my $orders_ec = ($r->{json} // {})->{orders} // '';
my @made;
for my $i (1 .. 23) {
    $r = post($base . 'new-order', $ec, kid => $acct_ec,
              payload => '{"identifiers":[{"type":"dns","value":"p' . $i
                         . '.svc.example"}]}');
    push @made, $r->{headers}{location} // '';
}
is(scalar(grep { length } @made), 23, '23 orders made');
$r = post($orders_ec, $ec, kid => $acct_ec, payload => '');
is_deeply(($r->{json} // {})->{orders}, [reverse @made[3 .. 22]],
          'the first page: the newest 20');
my $next = $r->{headers}{link} // '';
($next) = grep { /rel="next"/ } (ref $next ? @$next : ($next));
my ($next_url) = ($next // '') =~ /<([^>]+)>;rel="next"/;
ok($next_url, 'Link rel="next"') or diag(explain($r->{headers}));
$r = post($next_url // $orders_ec, $ec, kid => $acct_ec, payload => '');
is($r->{status}, 200, 'the next page');
is_deeply(($r->{json} // {})->{orders}, [reverse @made[0 .. 2]],
          'the next page: the 3 oldest');
ok(!grep({ /rel="next"/ } map { ref $_ ? @$_ : $_ } $r->{headers}{link} // ''),
   'and no next after it');

# ------------------------------------------------------------ metrics

my $m = $t->get('/metrics', port => 1);
$m = $ua->get("https://127.0.0.1:$port/metrics");
like($m->{content}, qr/tsb_refusals_total\{reason="acme\.badCSR"\} 1/,
     'refusals counted by ACME type');
like($m->{content}, qr/tsb_refusals_total\{reason="acme\.rejectedIdentifier"\} 1/,
     'rejectedIdentifier counted');
my %acme = $m->{content} =~ /^(tsb_acme_\S+) (\d+)$/mg;
is_deeply(\%acme, {
    'tsb_acme_accounts_created_total' => 3,
    'tsb_acme_orders_created_total' => 25,
    'tsb_acme_finalize_total{result="accepted"}' => 2,
    'tsb_acme_finalize_total{result="refused"}' => 1,
    'tsb_acme_orders_done_total{status="valid"}' => 1,
    'tsb_acme_orders_done_total{status="invalid"}' => 1,
    'tsb_acme_certificates_served_total' => 1,
    'tsb_acme_bad_nonces_total' => 1,
}, 'the ACME counters: accounts, orders, finalize decisions, outcomes, '
   . 'certificates, bad nonces') or diag($m->{content});
like($m->{content}, qr/^# TYPE tsb_acme_finalize_total counter$/m,
     'typed for Prometheus');

# ---------------------------------------------------------- audit lines

my @audit = map { TsbTest::json_decode($_) // {} }
            split /\n/, slurp("$tmp/audit.log") // '';
sub audited {
    my ($reason, $decision) = @_;
    return grep { ($_->{reason} // '') eq $reason
                  && $_->{decision} eq $decision } @audit;
}
is(scalar(audited('acme.new_account', 'accepted')), 3,
   'audit: every account created');
is(scalar(audited('acme.new_order', 'accepted')), 25,
   'audit: every order created');
is(scalar(audited('acme.rejectedIdentifier', 'refused')), 1,
   'audit: the order refused');
is(scalar(audited('acme.badCSR', 'refused')), 1,
   'audit: the finalize refused');
is(scalar(grep { !defined $_->{reason} && $_->{decision} eq 'accepted'
                 && ($_->{sign_request_id} // '') =~ /^\Q$id\E|\Q$id2\E$/ }
          @audit), 2, 'audit: the finalizes accepted, with their sign requests');
my ($valid) = audited('acme.order_valid', 'accepted');
is(($valid // {})->{sign_request_id}, $id, 'audit: the order made valid');
my ($invalid) = audited('acme.order_invalid', 'refused');
is(($invalid // {})->{sign_request_id}, $id2,
   'audit: the order made invalid');
like(($invalid // {})->{detail} // '', qr/REJECTED/, 'and why');

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
