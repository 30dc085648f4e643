#!/usr/bin/perl
# tsb_acme_challenge http-01: authorizations start pending; answering the
# challenge makes the gateway fetch
# http://<identifier>:<tsb_acme_http01_port>/.well-known/acme-challenge/<token>
# through its libcurl client and compare it with the key authorization.
# lego, serving the challenge itself on a loopback port, gets a
# certificate; a wrong answer, or nothing listening, ends the order
# invalid with incorrectResponse or connection; the policy still judges
# the identifiers first, and wildcards are refused.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url);
use TsbTest qw(slurp spew);
use TsbPki;

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $SIGN = "$FindBin::Bin/lib/acme_sign.py";

my $pki = TsbPki::make($t);
$t->start_sim('--auto-approve-ms', 1000);
$t->start_nginx(<<"EOF");
tsb_cache_zone tsb:1m;
tsb_acme_zone acme:1m;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
tsb_retry_after 1s;
tsb_audit_log $tmp/audit.log;
server {
    listen 127.0.0.1:%%PORT%% ssl;
    ssl_certificate $pki->{server};
    ssl_certificate_key $pki->{server_key};
    location /acme/ {
        tsb_acme acme;
        tsb_acme_challenge http-01;
        tsb_acme_http01_port %%PORT2%%;
        tsb_allow_common_name localhost;
    }
    location /wrong/ {
        tsb_acme acme;
        tsb_acme_challenge http-01;
        tsb_acme_http01_port %%PORT3%%;
        tsb_allow_common_name localhost;
        tsb_allow_common_name "~^\\*\\.svc\\.example\$";
    }
    location /down/ {
        tsb_acme acme;
        tsb_acme_challenge http-01;
        tsb_acme_http01_port %%PORT4%%;
        tsb_allow_common_name localhost;
        tsb_allow_common_name "~^\\*\\.svc\\.example\$";
    }
    location = /metrics { tsb_metrics; }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    location /.well-known/acme-challenge/ {
        return 200 "not-the-key-authorization\\n";
    }
}
EOF

my $port = $t->port(1);
my $ua = HTTP::Tiny->new(verify_SSL => 1, timeout => 30,
                         SSL_options => { SSL_ca_file => $pki->{ca} });

# ----------------------------------------------------------------- lego

SKIP: {
    skip 'lego is not installed', 9 unless -x '/usr/bin/lego';

    my $dir = "https://127.0.0.1:$port/acme/directory";
    my $lego = sub {
        local $ENV{LEGO_CA_CERTIFICATES} = $pki->{ca};
        return $t->run_cmd('lego', '--server', $dir, '--accept-tos',
                           '--email', 'ops@example.com', '--path',
                           "$tmp/lego", '--http', '--http.port',
                           '127.0.0.1:' . $t->port(2), @_);
    };

    my ($rc, $out) = $lego->('--domains', 'localhost', 'run');
    is($rc, 0, 'lego answers the http-01 challenge and gets a certificate')
        or diag($out . $t->error_log_tail(30));
    my $crt = "$tmp/lego/certificates/localhost.crt";
    ok(-s $crt, 'lego saved the certificate');
    my $text = -s $crt ? $t->_openssl('x509', '-in', $crt, '-noout', '-text')
                       : '';
    like($text, qr/DNS:localhost/, 'for the validated name');

    my $p2 = $t->port(2);
    my $log = $t->error_log;
    like($log, qr{http-01 validation at http://localhost:$p2/\.well-known/acme-challenge/[A-Za-z0-9_-]{22}-0},
         'the gateway fetched the challenge from lego');
    like($log, qr/authorization \S+ valid: .* answered the key authorization/,
         'and found the key authorization');
    like(slurp("$tmp/audit.log") // '',
         qr/"decision":"accepted".*"reason":"acme\.http01_valid"/,
         'audited');

    # the policy judges first: nothing is fetched for a name outside it
    my $before = () = $t->error_log =~ /http-01 validation at/g;
    ($rc, $out) = $lego->('--domains', 'www.other.example', 'run');
    isnt($rc, 0, 'a name outside the policy fails');
    like($out, qr/rejectedIdentifier/, 'with rejectedIdentifier');
    my $after = () = $t->error_log =~ /http-01 validation at/g;
    is($after, $before, 'and no validation was tried');
}

# ------------------------------------------------------ by hand, failing

sub nonce {
    my ($base) = @_;
    my $r = $ua->request('HEAD', $base . 'new-nonce');
    return $r->{headers}{'replay-nonce'};
}

sub post {
    my ($base, $url, $key, %o) = @_;
    my @args = ($SIGN, $key, $url, '--nonce=' . nonce($base));
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

for my $case (['wrong', 'incorrectResponse',
               qr/not the key authorization/],
              ['down', 'connection', qr/could not be fetched/]) {
    my ($where, $type, $why) = @$case;
    my $base = "https://127.0.0.1:$port/$where/";

    my $r = post($base, $base . 'new-account', $key, payload => '{}');
    ok($r->{status} == 201 || $r->{status} == 200, "$where: account");
    my $kid = $r->{headers}{location};

    $r = post($base, $base . 'new-order', $key, kid => $kid,
              payload => '{"identifiers":[{"type":"dns","value":"*.svc.example"}]}');
    is($r->{status}, 403, "$where: a wildcard is refused");
    is($r->{json}{type}, 'urn:ietf:params:acme:error:rejectedIdentifier',
       "$where: rejectedIdentifier");
    like($r->{json}{detail} // '', qr/wildcard.*http-01/,
         "$where: the policy allows it, http-01 cannot prove it");

    $r = post($base, $base . 'new-order', $key, kid => $kid,
              payload => '{"identifiers":[{"type":"dns","value":"localhost"}]}');
    is($r->{status}, 201, "$where: order");
    my $order = $r->{headers}{location};
    is($r->{json}{status}, 'pending', "$where: the order is pending");
    my $authz = $r->{json}{authorizations}[0];
    my $finalize = $r->{json}{finalize};

    $r = post($base, $finalize, $key, kid => $kid,
              payload => '{"csr":"' . encode_base64url('x') . '"}');
    is($r->{json}{type}, 'urn:ietf:params:acme:error:orderNotReady',
       "$where: finalize before the challenge: orderNotReady");

    $r = post($base, $authz, $key, kid => $kid, payload => '');
    is($r->{json}{status}, 'pending', "$where: the authorization is pending");
    my $ch = $r->{json}{challenges}[0] // {};
    is($ch->{type}, 'http-01', "$where: an http-01 challenge");
    is($ch->{status}, 'pending', "$where: pending");
    like($ch->{token} // '', qr/^[A-Za-z0-9_-]{22}-0$/,
         "$where: a token of 128 random bits");

    # fetching the challenge (POST-as-GET) does not start a validation
    $r = post($base, $ch->{url}, $key, kid => $kid, payload => '');
    is($r->{json}{status}, 'pending', "$where: POST-as-GET: still pending");

    $r = post($base, $ch->{url}, $key, kid => $kid, payload => '{}');
    is($r->{status}, 200, "$where: the challenge answered");
    is($r->{json}{status}, 'invalid', "$where: invalid");
    is(($r->{json}{error} // {})->{type},
       "urn:ietf:params:acme:error:$type", "$where: $type");
    like(($r->{json}{error} // {})->{detail} // '', $why,
         "$where: the detail says why");
    like(($r->{json}{error} // {})->{detail} // '',
         qr{http://localhost:\d+/\.well-known/acme-challenge/\Q$ch->{token}\E},
         "$where: and names the URL");

    $r = post($base, $authz, $key, kid => $kid, payload => '');
    is($r->{json}{status}, 'invalid', "$where: the authorization is invalid");
    $r = post($base, $order, $key, kid => $kid, payload => '');
    is($r->{json}{status}, 'invalid', "$where: the order is invalid");
    is(($r->{json}{error} // {})->{type},
       "urn:ietf:params:acme:error:$type", "$where: with the problem");

    # answering again changes nothing
    $r = post($base, $ch->{url}, $key, kid => $kid, payload => '{}');
    is($r->{json}{status}, 'invalid', "$where: answered again: invalid");
}

like(slurp("$tmp/audit.log") // '',
     qr/"decision":"refused".*"reason":"acme\.http01_invalid"/,
     'a failed validation is audited');

# http-01 fetches are not TSB calls
my $m = $ua->get("https://127.0.0.1:$port/metrics")->{content} // '';
my ($errors) = $m =~ /tsb_upstream_requests_total\{result="error"\} (\d+)/;
is($errors, 0, 'the failed fetch is not counted as a TSB error');
like($m, qr/tsb_refusals_total\{reason="acme\.connection"\} 1/,
     'but as a refusal of its type');

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
