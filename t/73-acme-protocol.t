#!/usr/bin/perl
# tsb_acme request by request (JWS signed by t/lib/acme_sign.py): accounts
# with EdDSA, RSA and EC keys, who may see what, the url rule, orders,
# authorizations and challenges, finalize (badCSR, once only, processing
# with Retry-After, valid after approval, the chain), keyChange,
# deactivation, revokeCert, and the metrics of refusals.

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

# an ES384 account orders too
$r = post($base . 'new-account', $ec, payload => '{}');
is($r->{status}, 201, 'ES384 account');

# ------------------------------------------------------------ metrics

my $m = $t->get('/metrics', port => 1);
$m = $ua->get("https://127.0.0.1:$port/metrics");
like($m->{content}, qr/tsb_refusals_total\{reason="acme\.badCSR"\} 1/,
     'refusals counted by ACME type');
like($m->{content}, qr/tsb_refusals_total\{reason="acme\.rejectedIdentifier"\} 1/,
     'rejectedIdentifier counted');

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
