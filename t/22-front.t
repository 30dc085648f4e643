#!/usr/bin/perl
# nginx as the front of the TSB API (tsb_pass): a TSB client pointed at the
# gateway works unchanged (same paths, JSON and status codes) for what
# tsb_pass_allow lists, and gets 403 for everything else, including every
# path trick that could make the gateway and the TSB disagree on what was
# asked.  The sign endpoint still goes through the location's policy;
# requests their client signed go out byte for byte or not at all; the
# import helper takes PEM; a cancel expires the cached status.  The
# simulator's counters show that refused requests never reach it, and its
# request log what the gateway forwarded.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;
use TsbTest qw(json_encode json_decode);

my $KEY = 'front-api-key-SECRET';
my $JSON = 'application/json';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/request/* /v1/versionInfo;
        tsb_pass_allow DELETE /v1/request/*;
        tsb_pass_allow POST /v1/certificate/sign;
        tsb_pass_allow POST /v1/certificate/import/plain;
        tsb_pass_allow POST /v1/request/*/note;
        tsb_pass_allow GET /v1/certificate/**;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_cache tsb;
        tsb_cache_valid PENDING APPROVED 60s;
    }
    location /nothing/ {
        tsb_pass;
    }
}
EOF

sub total { $t->sim_counts->{total} }

sub envelope {
    my (%f) = @_;
    return json_encode({ signCertificateRequest => \%f });
}

# ------------------------------------------------------------- sign

my ($csr) = $t->make_csr(cn => 'front.svc.example', key => 'ec:P-256');
my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                    body => envelope(certificateSigningRequest => $csr,
                                     commonName => 'front.svc.example'));
is($r->{status}, 200, 'POST /v1/certificate/sign: 200, as the TSB answers')
    or $t->explain_response($r);
my $id = $r->{json}{signRequestId} // 'none';
like($id, qr/^[0-9a-f-]{36}$/, '... {"signRequestId"}');
ok(!$r->{headers}{location}, '... and no Location, as the TSB');
{
    my ($seen) = reverse $t->sim_seen('POST', '/v1/certificate/sign');
    my $sr = $seen ? $seen->{body_json}{signCertificateRequest} : {};
    is($sr->{signKeyName}, 'CA-Key', "... the location's signKeyName filled in");
}

{
    my $before = total();
    my ($bad) = $t->make_csr(cn => 'front.evil.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                        body => envelope(certificateSigningRequest => $bad));
    $t->error_is($r, 403, 'policy.common_name',
                 'the front is no bypass: the sign policy applies');
    is(total(), $before, '... nothing reached the TSB');
}

# -------------------------------------------------- signed requests

my $SIGNATURE = { signature => 'c2lnbmF0dXJl', digestAlgorithm => 'SHA-256',
                  publicKey => 'cHVibGljLWtleQ==' };

{
    my ($c) = $t->make_csr(cn => 'signed.svc.example', key => 'ec:P-256');
    # everything the policy would fill in is spelled out, in odd spacing
    my $body = qq({ "signCertificateRequest" : {\n  "signKeyName":"CA-Key",)
        . qq( "commonName" : "signed.svc.example", "signatureAlgorithm":)
        . qq("SHA256_WITH_RSA", "keyUsage":["DIGITAL_SIGNATURE"],)
        . qq("extendedKeyUsage":["SERVER_AUTH"], "certificateAuthority":)
        . qq(false, "certificateSigningRequest": ) . json_encode($c)
        . qq( },\n "requestSignature": ) . json_encode($SIGNATURE) . " }";
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                        body => $body);
    is($r->{status}, 200, 'a signed request the policy accepts as sent: 200')
        or $t->explain_response($r);
    my ($seen) = reverse $t->sim_seen('POST', '/v1/certificate/sign');
    is($seen && $seen->{body}, $body,
       '... reached the TSB byte for byte (its signature still verifies)');
}

{
    my ($c) = $t->make_csr(cn => 'signed2.svc.example', key => 'ec:P-256');
    my $before = total();
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
        body => json_encode({
            signCertificateRequest => {
                signKeyName => 'CA-Key', commonName => 'signed2.svc.example',
                signatureAlgorithm => 'SHA256_WITH_RSA',
                certificateAuthority => JSON::PP::false(),
                extendedKeyUsage => ['SERVER_AUTH'],
                certificateSigningRequest => $c },
            requestSignature => $SIGNATURE }));
    $t->error_is($r, 403, 'policy.signed_request',
                 'a signed request the gateway would have to change');
    like($r->{json}{detail} // '', qr/keyUsage/, '... names what: keyUsage');
    is(total(), $before, '... nothing reached the TSB');
}

{
    my ($c) = $t->make_csr(cn => 'meta.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
        body => envelope(certificateSigningRequest => $c,
                         metaData => 'e30=', metaDataSignature => 'c2ln'));
    $t->error_is($r, 403, 'policy.signed_request',
                 'metaDataSignature counts as signed too');
}

# ------------------------------------------------- status and cancel

$r = $t->get("/v1/request/$id");
is($r->{status}, 200, 'GET /v1/request/{id}: 200') or $t->explain_response($r);
is($r->{json}{status}, 'PENDING', '... the TSB status document');
is_deeply([sort keys %{$r->{json} || {}}],
          [sort qw(id status executionTime approvedBy notYetApprovedBy
                   rejectedBy result)], '... in the TSB shape');

{
    my $get = $t->sim_counts->{'GET /v1/request/{id}'};
    is($t->get("/v1/request/$id")->{headers}{'x-cache-status'}, 'HIT',
       '... served from the cache the next time');
    is($t->sim_counts->{'GET /v1/request/{id}'}, $get, '... without the TSB');

    $r = $t->request(DELETE => "/v1/request/$id");
    is($r->{status}, 200, 'DELETE /v1/request/{id}: 200')
        or $t->explain_response($r);
    is($t->sim_counts->{'DELETE /v1/request/{id}'}, 1, '... sent to the TSB');
    $r = $t->get("/v1/request/$id");
    is($r->{json}{status}, 'CANCELLED',
       '... and the cached PENDING is gone: CANCELLED');

    $r = $t->request(DELETE => "/v1/request/$id");
    is($r->{status}, 409, 'cancelling again: the TSB says 409');
    is($r->{json}{reason}, 'res.error.request.conflict',
       "... in the TSB's own error JSON");
    ok(defined $r->{json}{errorCode} && defined $r->{json}{message},
       '... errorCode and message passed through');
}

# --------------------------------------------------------- import

{
    my ($c) = $t->make_csr(cn => 'import.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
                        body => envelope(certificateSigningRequest => $c));
    my $iid = $r->{json}{signRequestId};
    $t->sim_post("/_sim/approve/$iid");
    my $st = $t->get("/v1/request/$iid");
    is($st->{json}{status}, 'EXECUTED', 'a certificate to import');
    my $pem = $st->{json}{result} // '';
    my $der = $t->{tsb_der} = do {
        (my $b = $pem) =~ s/-----[^-]+-----|\s//g;
        decode_base64($b);
    };
    my $fp = sha256_hex($der);

    my $imports = sub { scalar @{$t->sim_get('/_sim/imports')->{json}} };

    $r = $t->request(POST => '/v1/certificate/import/plain',
                     content_type => $JSON,
                     body => json_encode({ label => 'as-pem',
                                           certificate => $pem }));
    is($r->{status}, 200, 'import a PEM certificate: 200')
        or $t->explain_response($r);
    my ($seen) = reverse $t->sim_seen('POST', '/v1/certificate/import/plain');
    my $sent = $seen ? $seen->{body_json} : {};
    is($sent->{label}, 'as-pem', '... the label forwarded');
    unlike($sent->{certificate} // '', qr/-----|\s/,
           '... the certificate as base64 DER, no armor');
    is(decode_base64($sent->{certificate} // ''), $der, '... the same DER');
    my $last = $t->sim_get('/_sim/imports')->{json}[-1];
    is($last->{sha256}, $fp, '... the TSB imported that certificate');

    $r = $t->request(POST => '/v1/certificate/import/plain',
                     content_type => $JSON,
                     body => json_encode({ label => 'as-der',
                                           certificate => encode_base64($der,
                                                                        '') }));
    is($r->{status}, 200, 'import base64 DER: 200');

    my $n = $imports->();
    for my $case (
        [ 'garbage', { label => 'x', certificate => 'not a certificate' },
          400, 'request.certificate' ],
        [ 'two certificates', { label => 'x', certificate => "$pem$pem" },
          400, 'request.certificate' ],
        [ 'a CSR', { label => 'x', certificate => $c }, 400,
          'request.certificate' ],
        [ 'an unknown field', { label => 'x', certificate => $pem,
                                password => 'y' }, 400,
          'json.unknown_field' ],
        [ 'no label', { certificate => $pem }, 400, 'json.missing' ],
    ) {
        my ($name, $body, $status, $reason) = @$case;
        my $r = $t->request(POST => '/v1/certificate/import/plain',
                            content_type => $JSON, body => json_encode($body));
        $t->error_is($r, $status, $reason, "import $name");
    }
    is($imports->(), $n, '... none of them reached the TSB');
}

# ------------------------------------------------------- pass-through

{
    $r = $t->get('/v1/versionInfo', headers => {
        'Authorization' => 'Bearer client-token',
        'X-API-KEY' => 'client-key',
        'Cookie' => 'session=client-cookie',
        'X-Client-Thing' => 'client-header' });
    is($r->{status}, 404, 'a passed GET: the TSB status (404) kept');
    is($r->{json}{reason}, 'res.error.not.found',
       "... with the TSB's error JSON");
    my ($seen) = reverse $t->sim_seen('GET', '/v1/versionInfo');
    my $h = $seen ? $seen->{headers} : {};
    is($h->{'x-api-key'}, $KEY, "the TSB got the gateway's key");
    ok(!exists $h->{authorization}, "... not the client's Authorization");
    ok(!exists $h->{cookie}, '... nor its cookie');
    ok(!grep({ /client/ } values %$h), '... nor any other client header')
        or diag(explain $h);

    $t->sim_fault(route => 'OTHER', status => 500, times => 1);
    $r = $t->get('/v1/versionInfo');
    is($r->{status}, 502, 'a TSB 500 becomes 502');
    is($r->{json}{errorCode}, 500, "... with the TSB's error JSON");

    $t->sim_fault(route => 'OTHER', status => 200, malformed =>
                  JSON::PP::true(), times => 1);
    $t->error_is($t->get('/v1/versionInfo'), 502, 'upstream.response',
                 'an answer that is not JSON');

    $t->sim_fault(route => 'OTHER', status => 200,
                  body => '{ "a" : [1, 2.50, "x\u00e9"] }', times => 1);
    $r = $t->get('/v1/certificate/list?page=2');
    is($r->{status}, 200, 'a 2xx answer');
    is($r->{content}, '{"a":[1,2.50,"x' . "\xc3\xa9" . '"]}',
       '... re-emitted by yajl');
    ($seen) = reverse $t->sim_seen('GET', qr{^/v1/certificate/list});
    is($seen && $seen->{path}, '/v1/certificate/list?page=2',
       '... the query string passed');
}

{
    my $path = "/v1/request/$id/note";
    my $before = total();
    $t->error_is($t->request(POST => $path, content_type => $JSON,
                             body => '{"note": "x",}'),
                 400, 'json.syntax', 'a body that is not JSON');
    $t->error_is($t->request(POST => $path, content_type => $JSON,
                             body => '{"a":1,"a":2}'),
                 400, 'json.duplicate_key', 'a body with a duplicate key');
    $t->error_is($t->request(POST => $path, content_type => 'text/plain',
                             body => '{}'),
                 415, 'request.content_type', 'a body that is not JSON typed');
    is(total(), $before, '... none reached the TSB');

    my $body = qq({"note" : "as sent"});
    $r = $t->request(POST => $path, content_type => $JSON, body => $body);
    my ($seen) = reverse $t->sim_seen('POST', $path);
    is($seen && $seen->{body}, $body, 'a JSON body is forwarded as sent');
}

# ------------------------------------------------------- refused

my @refused = (
    [ 'GET key management', GET => '/v1/key/CA-Key' ],
    [ 'POST key management', POST => '/v1/key' ],
    [ 'approval endpoint', POST => '/v1/approval' ],
    [ 'a method not listed', PUT => "/v1/request/$id" ],
    [ 'HEAD', HEAD => "/v1/request/$id" ],
    [ 'OPTIONS', OPTIONS => "/v1/request/$id" ],
    [ 'synchronous sign', POST => '/v1/certificate/synchronous/sign' ],
    [ 'method override on GET', GET => "/v1/request/$id",
      { 'X-HTTP-Method-Override' => 'DELETE' } ],
    [ 'method override on POST', POST => '/v1/request/x/note',
      { 'X-HTTP-Method' => 'DELETE', 'Content-Type' => $JSON }, '{}' ],
    [ 'X-Method-Override', GET => "/v1/request/$id",
      { 'x-method-override' => 'PUT' } ],
    [ 'no tsb_pass_allow at all', GET => '/nothing/x' ],
);

for my $case (@refused) {
    my ($name, $method, $path, $headers, $body) = @$case;
    my $before = total();
    # raw, so that nothing on our side tidies the path
    my $r = $t->raw_read($t->raw_send($method => $path,
                                      headers => $headers // {},
                                      body => $body));
    if ($method eq 'HEAD') {
        is($r->{status}, 403, "$name: 403");
    } else {
        $t->error_is($r, 403, 'policy.front', $name);
    }
    is(total(), $before, "$name: nothing reached the TSB");
}

# paths the front cannot make into one that means the same to the TSB
my @bad_paths = (
    [ 'dot-dot', GET => '/v1/request/../key/CA-Key' ],
    [ 'dot-dot at the end', GET => '/v1/request/..' ],
    [ 'encoded dot-dot', GET => '/v1/request/%2e%2e/key/CA-Key' ],
    [ 'half-encoded dot-dot', GET => '/v1/request/.%2E/key' ],
    [ 'encoded slash', GET => '/v1/request/x%2Fkey' ],
    [ 'encoded backslash', GET => '/v1/request/x%5Ckey' ],
    [ 'double slash', GET => '/v1//request/x' ],
    [ 'double slash inside', GET => '/v1/request//x' ],
    [ 'path parameter', GET => '/v1/request/x;jsessionid=1' ],
    [ 'Tomcat ..;', GET => '/v1/request/..;/key/CA-Key' ],
    [ 'encoded percent', GET => '/v1/request/x%252Fy' ],
    [ 'encoded control character', GET => '/v1/request/x%01' ],
    [ 'trailing slash', GET => '/v1/request/' ],
);

for my $case (@bad_paths) {
    my ($name, $method, $path) = @$case;
    my $before = total();
    my $r = $t->raw_read($t->raw_send($method => $path));
    $t->error_is($r, 400, 'request.path', $name);
    is(total(), $before, "$name: nothing reached the TSB");
}

$t->no_worker_crash;
ok($t->stop, 'nginx stops gracefully');

done_testing;
