#!/usr/bin/perl
# Every refusal: the right status, a JSON {"error","reason","detail"} body,
# a line in error.log, and nothing sent to the HSM (the simulator's counters
# stay at zero).  Then the upstream failures: unknown id, unreachable,
# timeout.  The API key never appears in the log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time);
use TsbTest qw(slurp fixture json_encode);

my $KEY = 'test-api-key-SECRET';
my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example Approver-Intermediate-SUB
                              ~^web[0-9]+\\.prod\\.example\$;
        tsb_status_uri /request/;
    }
    location = /small/sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_max_body_size 2k;
    }
    location = /slow/sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_timeout 1s;
    }
    location = /dead/sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
        tsb_connect_timeout 1s;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location = /badkey/sign {
        tsb_sign;
        tsb_api_key wrong-key-XYZZY;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
    location /certificate/ { tsb_certificate; }
}
EOF

my $PEM = 'application/x-pem-file';

# POST to a sign location; assert the error; assert it was logged.
sub refused {
    my ($name, $status, $reason, %o) = @_;
    $t->log_mark;
    my $r = $t->request($o{method} // 'POST', $o{path} // '/sign',
                        body => $o{body}, content_type => $o{ct},
                        headers => $o{headers});
    $t->error_is($r, $status, $reason, $name);
    logged($name, $r);
    return $r;
}

# The refusal left a line in error.log that says why (its reason code or
# its detail).
sub logged {
    my ($name, $r) = @_;
    my $j = ref $r->{json} eq 'HASH' ? $r->{json} : {};
    my @keys = grep { defined && length } $j->{reason}, $j->{detail};
    return fail("$name: logged (no reason in the response)") unless @keys;
    my $re = join '|', map { quotemeta } @keys;
    ok($t->wait_log(qr/$re/, 1), "$name: refusal logged in error.log")
        or diag("error.log since the request:\n" . $t->log_since);
}

# ------------------------------------------------------- request framing
refused('GET on a sign location', 405, qr/./, method => 'GET');
refused('PUT on a sign location', 405, qr/./, method => 'PUT',
        body => 'x', ct => $PEM);
refused('wrong content type', 415, 'request.content_type',
        body => '<csr/>', ct => 'application/xml');
{
    # HTTP::Tiny always adds a Content-Type: use a raw request.
    $t->log_mark;
    my $r = $t->raw_read($t->raw_send(POST => '/sign', body => 'x'));
    $t->error_is($r, 415, 'request.content_type', 'no content type');
    logged('no content type', $r);
}
refused('empty PEM body', 400, 'request.empty', body => '', ct => $PEM);
refused('empty JSON body', 400, 'request.empty', body => '',
        ct => 'application/json');

my ($good) = $t->make_csr(cn => 'ok.svc.example');
refused('body over tsb_max_body_size (Content-Length)', 413,
        'request.too_large', path => '/small/sign', ct => $PEM,
        body => $good . ('#' x 4096));
{
    # The same without a Content-Length: chunked, so the size is only
    # known while reading.
    my @chunks = ($good, ('#' x 1024) x 4);
    my $r = $t->request(POST => '/small/sign', content_type => $PEM,
                        body => sub { shift @chunks });
    $t->error_is($r, 413, 'request.too_large',
                 'body over tsb_max_body_size (chunked)');
}

# ------------------------------------------------------------ CSR parsing
refused('PEM with garbage base64', 400, qr/^csr\./, ct => $PEM,
        body => "-----BEGIN CERTIFICATE REQUEST-----\nnot!base64*\n"
              . "-----END CERTIFICATE REQUEST-----\n");
refused('text that is no PEM at all', 400, qr/^csr\./, ct => 'text/plain',
        body => "hello, please sign me\n");
refused('a certificate instead of a CSR', 400, qr/^csr\./, ct => $PEM,
        body => slurp(fixture('seed-certificate.pem')));
refused('random DER bytes', 400, qr/^csr\./, ct => 'application/pkcs10',
        body => join('', map { chr(($_ * 73 + 11) % 256) } 1 .. 300));
refused('base64 of random bytes', 400, qr/^csr\./,
        ct => 'application/pkcs10',
        body => encode_base64(join '', map { chr(($_ * 31) % 256) } 1 .. 200));
{
    # Truncated DER of a real CSR.
    my $der = $t->csr_der($good);
    refused('truncated DER CSR', 400, qr/^csr\./, ct => 'application/pkcs10',
            body => substr($der, 0, length($der) - 40));

    # Flip one bit in the signature (the last bytes of the DER).
    my $bad = $der;
    substr($bad, -5, 1) = chr(ord(substr($bad, -5, 1)) ^ 0x01);
    refused('tampered CSR signature (DER)', 400, 'csr.signature',
            ct => 'application/pkcs10', body => $bad);
    my $pem = "-----BEGIN CERTIFICATE REQUEST-----\n"
            . encode_base64($bad) . "-----END CERTIFICATE REQUEST-----\n";
    refused('tampered CSR signature (PEM)', 400, 'csr.signature',
            ct => $PEM, body => $pem);
}

# ------------------------------------------------------------------ JSON
refused('JSON cut short', 400, 'json.syntax', ct => 'application/json',
        body => '{"signCertificateRequest": {');
{
    my $doc = slurp(fixture('tsb-sign-request-as-documented.txt'));
    my $r = refused('the vendor documentation\'s example', 400,
                    'json.syntax', ct => 'application/json', body => $doc);
    like($r->{json}{detail} // '', qr/\bline 8\b/,
         'documented example: detail points at line 8')
        or diag("detail: " . ($r->{json}{detail} // 'none'));

    # The same with a real CSR in it: still the missing comma.
    (my $csr_json = json_encode($good)) =~ s/^"|"$//g;
    (my $doc2 = $doc) =~ s/replace-me_with_csr_value/$csr_json/;
    my $r2 = refused('documented example with a real CSR', 400,
                     'json.syntax', ct => 'application/json', body => $doc2);
    like($r2->{json}{detail} // '', qr/\bline 8\b/,
         'documented example with a CSR: detail points at line 8')
        or diag("detail: " . ($r2->{json}{detail} // 'none'));
}
refused('JSON without signCertificateRequest', 400, qr/^(json|request|csr)\./,
        ct => 'application/json', body => '{"something": {}}');
refused('JSON envelope without a CSR', 400, qr/^(json|request|csr)\./,
        ct => 'application/json',
        body => '{"signCertificateRequest": {"commonName": "a.svc.example"}}');
refused('JSON envelope with a broken CSR', 400, qr/^csr\./,
        ct => 'application/json',
        body => json_encode({ signCertificateRequest => {
            certificateSigningRequest => "-----BEGIN CERTIFICATE REQUEST-----\n"
                . "AAAA\n-----END CERTIFICATE REQUEST-----\n" }}));

# ---------------------------------------------------------------- policy
for my $cn ('evil.example', 'a.b.svc.example', 'svc.example',
            'webx.prod.example', 'web1.prod.example.evil') {
    my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256');
    refused("CN $cn not allowed", 403, 'policy.common_name',
            ct => $PEM, body => $csr);
}
{
    my ($csr) = $t->make_csr(cn => 'ca.svc.example', key => 'ec:P-256');
    refused('certificateAuthority true', 403, 'policy.ca',
            ct => 'application/json',
            body => json_encode({ signCertificateRequest => {
                certificateSigningRequest => $csr,
                certificateAuthority => JSON::PP::true }}));
    # KEY_CERT_SIGN is both outside the allowed set and a CA request.
    refused('keyUsage KEY_CERT_SIGN in the envelope', 403,
            qr/^policy\.(key_usage|ca)$/, ct => 'application/json',
            body => json_encode({ signCertificateRequest => {
                certificateSigningRequest => $csr,
                keyUsage => ['DIGITAL_SIGNATURE', 'KEY_CERT_SIGN'] }}));
    refused('keyUsage DATA_ENCIPHERMENT in the envelope', 403,
            'policy.key_usage', ct => 'application/json',
            body => json_encode({ signCertificateRequest => {
                certificateSigningRequest => $csr,
                keyUsage => ['DIGITAL_SIGNATURE', 'DATA_ENCIPHERMENT'] }}));
    my ($ku) = $t->make_csr(cn => 'ku.svc.example', key => 'ec:P-256',
                            ku => 'digitalSignature,keyCertSign');
    refused('keyCertSign requested in the CSR', 403,
            qr/^policy\.(key_usage|ca)$/, ct => $PEM, body => $ku);
    my ($ka) = $t->make_csr(cn => 'ka.svc.example', key => 'ec:P-256',
                            ku => 'digitalSignature,keyAgreement');
    refused('keyAgreement requested in the CSR', 403, 'policy.key_usage',
            ct => $PEM, body => $ka);
    refused('signatureAlgorithm not in the location\'s list', 403,
            'policy.signature_algorithm', ct => 'application/json',
            body => json_encode({ signCertificateRequest => {
                certificateSigningRequest => $csr,
                signatureAlgorithm => 'SHA512_WITH_RSA' }}));
    my ($weak) = $t->make_csr(cn => 'weak.svc.example', key => 'rsa:1024');
    refused('RSA-1024 key', 403, qr/^policy\.key_/, ct => $PEM,
            body => $weak);
    my ($san) = $t->make_csr(cn => 'san.svc.example', key => 'ec:P-256',
                             san => ['san.svc.example', 'evil.example']);
    refused('SAN outside the allowed names', 403, qr/^policy\.san/,
            ct => $PEM, body => $san);
    my ($eku) = $t->make_csr(cn => 'eku.svc.example', key => 'ec:P-256',
                             eku => 'codeSigning');
    refused('codeSigning not allowed here', 403, qr/^policy\./,
            ct => $PEM, body => $eku);
}

# -------------------------------------------------- nothing reached the HSM
{
    my $c = $t->sim_counts;
    is($c->{total}, 0, 'no refused sign request reached the simulator')
        or diag(explain($c), "requests the simulator saw:\n",
                map { "  $_->{method} $_->{path}\n" } @{$t->sim_requests});
}

# --------------------------------------------------------------- bad ids
for my $id ('abc$', 'abc%24', 'a%2Fb', 'a;b', 'a%20b') {
    for my $path ("/request/$id", "/request/$id.pem", "/certificate/$id.der") {
        $t->log_mark;
        my $r = $t->get($path);
        $t->error_is($r, 400, 'request.id', "GET $path");
        logged("GET $path", $r) if $r->{status} == 400;
    }
}
{
    # nginx itself refuses this one before any location runs.
    my $r = $t->get('/request/..%2F..');
    is($r->{status}, 400, 'GET /request/..%2F.. -> 400');
}
{
    my $c = $t->sim_counts;
    is($c->{total}, 0, 'no request with a bad id reached the simulator')
        or diag("requests the simulator saw:\n",
                map { "  $_->{method} $_->{path}\n" } @{$t->sim_requests});
}

# ------------------------------------------------- accepted policy variants
for my $cn ('x.svc.example', 'web12.prod.example',
            'Approver-Intermediate-SUB') {
    my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256');
    my $r = $t->request(POST => '/sign', content_type => $PEM, body => $csr);
    is($r->{status}, 200, "CN $cn allowed") or $t->explain_response($r);
}
is($t->sim_counts->{'POST /v1/certificate/sign'}, 3,
   'accepted requests reached the simulator');

# ---------------------------------------------------- upstream trouble
{
    my $id = '0b7e2c52-98c1-4bb4-9a55-3c7bfe8a1d11';
    for my $path ("/request/$id", "/request/$id.pem",
                  "/certificate/$id.der") {
        my $r = $t->get($path);
        is($r->{status}, 404, "GET $path for an unknown id -> 404")
            or $t->explain_response($r);
        ok(ref $r->{json} eq 'HASH' && defined $r->{json}{error},
           "GET $path: JSON error body");
    }
}
{
    $t->log_mark;
    my $t0 = time;
    my ($csr) = $t->make_csr(cn => 'dead.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/dead/sign', content_type => $PEM,
                        body => $csr);
    $t->error_is($r, 502, 'upstream.unreachable', 'upstream port closed');
    ok(time - $t0 < 3, 'unreachable upstream answered without delay');
    logged('upstream port closed', $r);
}
{
    $t->sim_fault(route => 'POST /v1/certificate/sign', delay_ms => 3000,
                  times => 1);
    $t->log_mark;
    my ($csr) = $t->make_csr(cn => 'slow.svc.example', key => 'ec:P-256');
    my $t0 = time;
    my $r = $t->request(POST => '/slow/sign', content_type => $PEM,
                        body => $csr);
    my $took = time - $t0;
    $t->error_is($r, 504, 'upstream.timeout', 'upstream slower than 1s');
    ok($took >= 0.9 && $took < 2.5, 'timed out after about tsb_timeout')
        or diag(sprintf 'took %.2fs', $took);
    logged('upstream slower than 1s', $r);
    $t->sim_clear_fault;
}
{
    # The same location answers again once the upstream is quick.
    my ($csr) = $t->make_csr(cn => 'fast.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/slow/sign', content_type => $PEM,
                        body => $csr);
    is($r->{status}, 200, 'after a timeout the next sign works')
        or $t->explain_response($r);
}

# ------------------------------------ requests that end without a certificate
sub new_request {
    my ($cn) = @_;
    my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256');
    my $r = $t->request(POST => '/sign', content_type => $PEM, body => $csr);
    is($r->{status}, 200, "sign $cn") or $t->explain_response($r);
    return $r->{json}{signRequestId} // 'none';
}

sub wait_status {
    my ($id, $want) = @_;
    my $st;
    $t->wait_for(sub {
        $st = $t->get("/request/$id");
        ($st->{json}{status} // '') eq $want;
    }, 5, 0.1);
    is($st->{json}{status}, $want, "status of $id is $want")
        or $t->explain_response($st);
}

for my $how (qw(reject fail expire cancel)) {
    my $id = new_request("$how.svc.example");
    my $end = { reject => 'REJECTED', fail => 'FAILED', expire => 'EXPIRED',
                cancel => 'CANCELLED' }->{$how};
    if ($how eq 'cancel') {
        # An operator cancels at the TSB itself.
        my $d = HTTP::Tiny->new->request(DELETE =>
            $t->sim_url . "/v1/request/$id",
            { headers => { 'X-API-KEY' => $KEY } });
        is($d->{status}, 200, 'cancelled at the TSB');
    } else {
        my $a = $t->sim_post("/_sim/$how/$id");
        is($a->{status}, 200, "simulator: $how") or diag($a->{content});
    }
    wait_status($id, $end);
    for my $path ("/request/$id.pem", "/certificate/$id.der") {
        $t->error_is($t->get($path), 409, 'request.' . lc $end,
                     "$end: GET $path");
    }
}
{
    # Approved, but not executed yet: come back later.
    my $id = new_request('approved.svc.example');
    $t->sim_post("/_sim/approve/$id", { execute => JSON::PP::false });
    wait_status($id, 'APPROVED');
    my $r = $t->get("/certificate/$id.pem");
    is($r->{status}, 202, 'APPROVED: certificate -> 202')
        or $t->explain_response($r);
    like($r->{headers}{'retry-after'} // '', qr/^\d+$/,
         'APPROVED: Retry-After');
}

# ------------------------------------------------- a misbehaving upstream
for my $case (
    [ 'upstream answers 500', { status => 500 }, 'upstream.status' ],
    [ 'upstream answers 503', { status => 503 }, 'upstream.status' ],
    [ 'upstream answers malformed JSON', { malformed => JSON::PP::true },
      'upstream.response' ],
    [ 'upstream answers a wrong id type',
      { status => 200, body => '{"signRequestId": 42}' },
      'upstream.response' ],
    [ 'upstream answers an empty body', { status => 200, body => '' },
      'upstream.response' ],
    [ 'upstream truncates its answer', { truncate => JSON::PP::true },
      qr/^upstream\./ ],
    [ 'upstream resets the connection', { reset => JSON::PP::true },
      qr/^upstream\./ ],
) {
    my ($name, $fault, $reason) = @$case;
    $t->sim_fault(route => 'POST /v1/certificate/sign', times => 1, %$fault);
    my ($csr) = $t->make_csr(cn => 'fault.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/sign', content_type => $PEM, body => $csr);
    $t->error_is($r, 502, $reason, $name);
    $t->sim_clear_fault;
}
{
    my $id = new_request('poll.svc.example');
    $t->sim_fault(route => 'GET /v1/request/{id}', times => 1,
                  malformed => JSON::PP::true);
    $t->error_is($t->get("/request/$id"), 502, 'upstream.response',
                 'status poll: upstream answers malformed JSON');
    $t->sim_clear_fault;
    my $r = $t->get("/request/$id");
    is($r->{status}, 200, 'status poll works again afterwards')
        or $t->explain_response($r);
}
{
    my ($csr) = $t->make_csr(cn => 'key.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/badkey/sign', content_type => $PEM,
                        body => $csr);
    $t->error_is($r, 502, 'upstream.auth', 'the TSB refuses the gateway key');
    unlike($r->{content}, qr/XYZZY/, 'the key is not in the answer');
}

unlike($t->error_log, qr/\Q$KEY\E/, 'the API key is not in error.log');
$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
