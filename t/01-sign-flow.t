#!/usr/bin/perl
# Full approval flow through nginx and the simulator: sign -> 200 +
# Location -> PENDING -> approve -> EXECUTED -> certificate as PEM and DER,
# for every input format (PEM, TSB PEM label, DER, base64 DER, JSON
# envelope) and for RSA and P-256 keys.  Certificates are checked with the
# openssl CLI; what reached the simulator is checked from its request log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use TsbTest qw(slurp fixture json_encode);

my $KEY = 'test-api-key-SECRET';
my $BEARER = 'test-bearer-TOKEN';
my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
# Debug level: not even nginx's debug log may show the upstream secrets.
$t->start_nginx(<<"EOF", log_level => 'debug');
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example Approver-Intermediate-SUB;
        tsb_allow_extended_key_usage SERVER_AUTH CLIENT_AUTH CODE_SIGNING;
        tsb_status_uri /request/;
    }
    location = /bearer/sign {
        tsb_sign;
        tsb_bearer_token $BEARER;
        tsb_sign_key_name Bearer-Key;
        tsb_allow_common_name *.svc.example;
        # no tsb_status_uri: Location uses the default /tsb/request/
    }
    location = /alt/sign {
        tsb_sign;
        tsb_sign_key_name Alt-Key;
        tsb_allow_common_name *.svc.example;
        tsb_signature_algorithm SHA384_WITH_RSA SHA256_WITH_RSA;
        tsb_default_key_usage DIGITAL_SIGNATURE KEY_ENCIPHERMENT;
        tsb_default_extended_key_usage CLIENT_AUTH;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /certificate/ { tsb_certificate; }
    location = /ping { return 200 "pong\\n"; }
}
EOF

# --------------------------------------------------------------- helpers

# POST a CSR; assert 200, signRequestId and Location.  Returns the id.
sub sign_ok {
    my ($name, $body, $ct, %o) = @_;
    my $r = $t->request(POST => $o{path} // '/sign', body => $body,
                        content_type => $ct, headers => $o{headers});
    my $id = ref $r->{json} eq 'HASH' ? $r->{json}{signRequestId} : undef;
    my $ok = is($r->{status}, 200, "$name: 200");
    $ok &&= like($id // '', $UUID, "$name: signRequestId is a UUID");
    my $prefix = $o{status_uri} // '/request/';
    $ok &&= is($r->{headers}{location}, "$prefix$id",
               "$name: Location is $prefix<id>");
    $t->explain_response($r) unless $ok;
    return $ok ? $id : undef;
}

# The last sign request the simulator received with this commonName (the
# simulator records requests, not answers; every case uses its own CN).
sub upstream_sign_for {
    my ($cn) = @_;
    my @seen = grep {
        ref $_->{body_json} eq 'HASH'
            && ($_->{body_json}{signCertificateRequest}{commonName} // '')
               eq $cn
    } $t->sim_seen(POST => '/v1/certificate/sign');
    return $seen[-1];
}

sub status_of {
    my ($id) = @_;
    return $t->get("/request/$id");
}

# Approve at the simulator, then poll the gateway until EXECUTED.
sub approve_and_wait {
    my ($name, $id) = @_;
    my $a = $t->sim_post("/_sim/approve/$id");
    ok($a->{status} =~ /^2/, "$name: simulator approved")
        or diag("$a->{status} $a->{content}");
    my $last;
    $t->wait_for(sub {
        $last = status_of($id);
        $last->{status} == 200 && ref $last->{json} eq 'HASH'
            && ($last->{json}{status} // '') eq 'EXECUTED';
    }, 5, 0.1);
    my $ok = is(ref $last->{json} eq 'HASH' ? $last->{json}{status} : undef,
                'EXECUTED', "$name: status EXECUTED after approval");
    $t->explain_response($last) unless $ok;
    return $last;
}

# Fetch a certificate; assert 200 and the content type.
sub fetch_cert {
    my ($name, $path, $ctype) = @_;
    my $r = $t->get($path);
    my $ok = is($r->{status}, 200, "$name: GET $path -> 200");
    $ok &&= is($r->{headers}{'content-type'}, $ctype,
               "$name: $path content type $ctype");
    $t->explain_response($r) unless $ok;
    return $ok ? $r->{content} : undef;
}

sub norm_pem { my ($p) = @_; $p =~ s/\r//g; $p =~ s/\s+\z/\n/; $p }

# openssl checks of an issued certificate against its CSR.
sub check_cert {
    my ($name, $pem, $csr_pem, %want) = @_;
    like($pem, qr{^-----BEGIN\ CERTIFICATE-----\n [A-Za-z0-9+/=\n]+
                  -----END\ CERTIFICATE-----\n?\z}x,
         "$name: body is one PEM certificate");
    is($t->cert_subject($pem), "CN=$want{cn}", "$name: subject CN");
    is($t->pubkey_of_cert($pem), $t->pubkey_of_csr($csr_pem),
       "$name: certificate key is the CSR's key");
    my ($ok, $out) = $t->verify_cert($pem, $t->sim_ca);
    ok($ok, "$name: openssl verify -CAfile simulator CA") or diag($out);
    my $text = $t->cert_text($pem);
    for my $k (qw(ku eku)) {
        my $label = $k eq 'ku' ? 'X509v3 Key Usage'
                               : 'X509v3 Extended Key Usage';
        my ($line) = $text =~ /\Q$label\E:[^\n]*\n\s*([^\n]*)/;
        my @got = sort split /,\s*/, $line // '';
        is_deeply(\@got, [sort @{$want{$k}}], "$name: $label")
            or diag($text);
    }
    return $text;
}

# Full flow after a 202: PENDING, approve, EXECUTED, PEM + DER checks.
sub flow {
    my ($name, $id, $csr_pem, %want) = @_;
    return fail("$name: no request id") unless $id;

    my $st = status_of($id);
    is($st->{status}, 200, "$name: status 200");
    like($st->{headers}{'content-type'} // '', qr{^application/json},
       "$name: status is JSON");
    is($st->{json}{id}, $id, "$name: status id");
    is($st->{json}{status}, 'PENDING', "$name: status PENDING")
        or $t->explain_response($st);
    for my $f (qw(approvedBy notYetApprovedBy rejectedBy)) {
        is(ref $st->{json}{$f}, 'ARRAY', "$name: status has $f array");
    }

    my $early = $t->get("/request/$id.pem");
    is($early->{status}, 202, "$name: certificate while PENDING -> 202")
        or $t->explain_response($early);
    like($early->{headers}{'retry-after'} // '', qr/^\d+$/,
         "$name: Retry-After while PENDING");

    my $done = approve_and_wait($name, $id);
    like($done->{json}{result} // '', qr/BEGIN CERTIFICATE/,
         "$name: EXECUTED status carries the certificate");
    ok(@{$done->{json}{approvedBy} || []} >= 1, "$name: approvedBy filled");

    my $pem = fetch_cert($name, "/request/$id.pem", 'application/x-pem-file');
    my $der = fetch_cert($name, "/request/$id.der", 'application/pkix-cert');
    return fail("$name: no certificate") unless defined $pem && defined $der;
    my $text = check_cert($name, $pem, $csr_pem, %want);

    unlike($der, qr/BEGIN/, "$name: .der is binary DER");
    is(norm_pem($t->der_to_pem($der)), norm_pem($pem),
       "$name: DER is the same certificate as the PEM");
    my $alt = fetch_cert($name, "/certificate/$id.pem",
                         'application/x-pem-file');
    is(norm_pem($alt // ''), norm_pem($pem),
       "$name: /certificate/ serves the same PEM");
    return $text;
}

# What reached the simulator for a sign request.
sub check_upstream {
    my ($name, $cn, $csr_pem, %want) = @_;
    my $q = upstream_sign_for($cn);
    ok($q, "$name: the simulator received the sign request")
        or return diag(explain([$t->sim_requests]));
    my $s = $q->{body_json}{signCertificateRequest};
    is($q->{headers}{'x-api-key'}, $KEY,
       "$name: upstream got the gateway's X-API-KEY");
    is($s->{signKeyName}, $want{key} // 'CA-Key',
       "$name: upstream signKeyName is the location's");
    my $alg = $want{alg} // 'SHA256_WITH_RSA';
    is($s->{signatureAlgorithm}, $alg, "$name: upstream signatureAlgorithm");
    ok(!$s->{certificateAuthority},
       "$name: upstream certificateAuthority false");
    is_deeply([sort @{$s->{keyUsage} || []}], [sort @{$want{ku}}],
              "$name: upstream keyUsage");
    is_deeply([sort @{$s->{extendedKeyUsage} || []}], [sort @{$want{eku}}],
              "$name: upstream extendedKeyUsage");
    my $up_csr = $s->{certificateSigningRequest} // '';
    like($up_csr, qr/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/,
         "$name: upstream got a PEM CSR");
    is($t->pubkey_of_csr($up_csr), $t->pubkey_of_csr($csr_pem),
       "$name: upstream CSR is the client's CSR");
    return $q;
}

my %RSA_DEFAULT = (ku => ['DIGITAL_SIGNATURE'], eku => ['SERVER_AUTH']);
my %CERT_DEFAULT = (ku => ['Digital Signature'],
                    eku => ['TLS Web Server Authentication']);

# ------------------------------------------------ RSA, PEM, default usages
{
    my $cn = 'rsa.svc.example';
    my ($csr) = $t->make_csr(cn => $cn, san => [$cn], key => 'rsa:2048');
    my $id = sign_ok('RSA PEM', $csr, 'application/x-pem-file', headers => {
        'X-API-KEY' => 'client-supplied-key',
        'Authorization' => 'Bearer client-supplied-token',
    });
    my $q = check_upstream('RSA PEM', $cn, $csr, %RSA_DEFAULT);
    if ($q) {
        isnt($q->{headers}{'x-api-key'}, 'client-supplied-key',
             "RSA PEM: the client's X-API-KEY did not reach upstream");
        ok(($q->{headers}{authorization} // '')
               !~ /client-supplied-token/,
           "RSA PEM: the client's Authorization did not reach upstream");
    }
    flow('RSA PEM', $id, $csr, cn => $cn, %CERT_DEFAULT);
}

# ------------------------------- P-256, text/plain, EKU requested in the CSR
{
    my $cn = 'ec.svc.example';
    my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256',
                             eku => 'clientAuth');
    my $id = sign_ok('P-256', $csr, 'text/plain');
    check_upstream('P-256', $cn, $csr, ku => ['DIGITAL_SIGNATURE'],
                   eku => ['CLIENT_AUTH']);
    my $text = flow('P-256', $id, $csr, cn => $cn,
                    ku => ['Digital Signature'],
                    eku => ['TLS Web Client Authentication']);
    like($text // '', qr/id-ecPublicKey/, 'P-256: certificate has an EC key');
    like($text // '', qr/prime256v1|P-256/, 'P-256: on curve P-256');
}

# ------------------------------ the TSB's own CSR: NEW CERTIFICATE REQUEST
{
    my $csr = slurp(fixture('tsb-csr-new-label.pem'));
    my $cn = 'Approver-Intermediate-SUB';
    my $id = sign_ok('TSB fixture', $csr, 'application/x-pem-file');
    check_upstream('TSB fixture', $cn, $csr, ku => ['DIGITAL_SIGNATURE'],
                   eku => ['CODE_SIGNING']);
    flow('TSB fixture', $id, $csr, cn => $cn, ku => ['Digital Signature'],
         eku => ['Code Signing']);
    my $seed = slurp(fixture('seed-certificate.pem'));
    my $pem = $t->get("/request/$id.pem")->{content};
    is($t->pubkey_of_cert($pem), $t->pubkey_of_cert($seed),
       'TSB fixture: same key as the certificate the real TSB issued');
}

# ------------------------------------------------------ the JSON envelope
{
    my $cn = 'json.svc.example';
    my ($csr) = $t->make_csr(cn => $cn);
    my $body = json_encode({ signCertificateRequest => {
        certificateSigningRequest => $csr,
        commonName => $cn,
        keyUsage => ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
        extendedKeyUsage => ['SERVER_AUTH', 'CLIENT_AUTH'],
    }});
    my $id = sign_ok('JSON envelope', $body, 'application/json');
    check_upstream('JSON envelope', $cn, $csr,
                   ku => ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
                   eku => ['SERVER_AUTH', 'CLIENT_AUTH']);
    flow('JSON envelope', $id, $csr, cn => $cn,
         ku => ['Digital Signature', 'Key Encipherment'],
         eku => ['TLS Web Server Authentication',
                 'TLS Web Client Authentication']);
}

# A client cannot pick the HSM key: either refused, or the location's key.
{
    my $cn = 'key.svc.example';
    my ($csr) = $t->make_csr(cn => $cn);
    my $r = $t->request(POST => '/sign', content_type => 'application/json',
        body => json_encode({ signCertificateRequest => {
            certificateSigningRequest => $csr, signKeyName => 'Other-Key',
        }}));
    if ($r->{status} == 200) {
        my $q = upstream_sign_for($cn);
        is($q && $q->{body_json}{signCertificateRequest}{signKeyName},
           'CA-Key', 'client signKeyName replaced by the location\'s');
    } else {
        is($r->{status}, 403, 'client signKeyName refused')
            or $t->explain_response($r);
        ok(!upstream_sign_for($cn), 'refused key choice not forwarded');
    }
}

# ------------------------------------- DER and base64 DER application/pkcs10
for my $case (['DER', 0], ['base64 DER', 1]) {
    my ($name, $b64) = @$case;
    my $cn = $b64 ? 'b64.svc.example' : 'der.svc.example';
    my ($csr) = $t->make_csr(cn => $cn);
    my $der = $t->csr_der($csr);
    my $body = $b64 ? encode_base64($der) : $der;
    my $id = sign_ok($name, $body, 'application/pkcs10');
    check_upstream($name, $cn, $csr, %RSA_DEFAULT);
    next unless $id;
    approve_and_wait($name, $id);
    my $pem = fetch_cert($name, "/certificate/$id.pem",
                         'application/x-pem-file');
    is($t->pubkey_of_cert($pem // ''), $t->pubkey_of_csr($csr),
       "$name: certificate key is the CSR's key") if defined $pem;
}

# ------------------ the location's defaults: algorithm, keyUsage, EKU
{
    my $cn = 'alt.svc.example';
    my ($csr) = $t->make_csr(cn => $cn);
    my $id = sign_ok('location defaults', $csr, 'application/x-pem-file',
                     path => '/alt/sign');
    check_upstream('location defaults', $cn, $csr, key => 'Alt-Key',
                   alg => 'SHA384_WITH_RSA',
                   ku => ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
                   eku => ['CLIENT_AUTH']);
    my $text = flow('location defaults', $id, $csr, cn => $cn,
                    ku => ['Digital Signature', 'Key Encipherment'],
                    eku => ['TLS Web Client Authentication']);
    like($text // '', qr/Signature Algorithm: sha384WithRSAEncryption/,
         'location defaults: certificate signed with SHA-384');

    # The client may pick another algorithm from the location's list.
    my $cn2 = 'alt2.svc.example';
    my ($csr2) = $t->make_csr(cn => $cn2);
    sign_ok('chosen algorithm', json_encode({ signCertificateRequest => {
                certificateSigningRequest => $csr2,
                signatureAlgorithm => 'SHA256_WITH_RSA' }}),
            'application/json', path => '/alt/sign');
    check_upstream('chosen algorithm', $cn2, $csr2, key => 'Alt-Key',
                   alg => 'SHA256_WITH_RSA',
                   ku => ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
                   eku => ['CLIENT_AUTH']);
}

# --------------------------------------------- bearer token to the upstream
{
    my $cn = 'bearer.svc.example';
    my ($csr) = $t->make_csr(cn => $cn);
    sign_ok('bearer', $csr, 'application/x-pem-file', path => '/bearer/sign',
            status_uri => '/tsb/request/',
            headers => { Authorization => 'Bearer client-supplied-token' });
    my $q = check_upstream('bearer', $cn, $csr, %RSA_DEFAULT,
                           key => 'Bearer-Key');
    is($q && $q->{headers}{authorization}, "Bearer $BEARER",
       'bearer: upstream got the gateway\'s bearer token') if $q;
}

# Every upstream call carried the key (the simulator refuses others anyway).
{
    my @all = grep { ($_->{path} // '') =~ m{^/v1/} } @{$t->sim_requests};
    ok(@all >= 8, 'the simulator saw the sign and status calls');
    my @bad = grep { ($_->{headers}{'x-api-key'} // '') ne $KEY } @all;
    ok(!@bad, 'every upstream request carried the gateway X-API-KEY')
        or diag(explain(\@bad));
}

is($t->get('/ping')->{content}, "pong\n", 'nginx still serves /ping');
$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
