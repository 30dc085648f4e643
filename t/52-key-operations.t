#!/usr/bin/perl
# Key operations can be polled through the gateway (issue 13, point 6): a
# GET /v1/request/{id} of a request the gateway did not accept as a
# certificate request (an asynchronous sign with a signature result, a
# block or modify with a null result) is status only: passed, and cached,
# as the TSB answered, and never served as a certificate.  Certificate
# requests keep their checks, tsb_verify_issued strict included.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use HTTP::Tiny;
use Test::More;
use TsbTest qw(json_encode json_decode xcs);

my $KEY = 'keyop-api-key-SECRET';
my $JSON = 'application/json';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');

my $LOCATIONS = <<'EOF';
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET    /v1/request/*;
        tsb_pass_allow DELETE /v1/request/*;
        tsb_pass_allow POST   /v1/certificate/sign /v1/sign /v1/block
                              /v1/modify /v1/synchronousSign;
        tsb_pass_allow DELETE /v1/key/*;
        tsb_sign_key_name     CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_cache             tsb;
        tsb_cache_valid       PENDING APPROVED 1s;
    }
    location /strict/request/ {
        tsb_status;
        tsb_cache tsb;
        tsb_verify_issued strict;
    }
    location /plain/request/ {
        tsb_status;
    }
    location /other/ {
        tsb_sign;
        tsb_sign_key_name Other-CA;
        tsb_allow_common_name *.other.example;
    }
EOF

$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_issuer_chain %%SIMCA%%;
server {
    listen 127.0.0.1:%%PORT%%;
$LOCATIONS
}
EOF

# what the TSB itself answers, asked with the gateway's credentials
my $UA = HTTP::Tiny->new(timeout => 10);
sub direct_get {
    my ($path) = @_;
    my $r = $UA->get($t->sim_url . $path, { headers => { 'X-API-KEY' => $KEY } });
    return { status => $r->{status}, json => json_decode($r->{content}) };
}

sub direct_post {
    my ($path, $doc) = @_;
    my $r = $UA->post($t->sim_url . $path, {
        headers => { 'X-API-KEY' => $KEY, 'Content-Type' => $JSON },
        content => json_encode($doc) });
    return { status => $r->{status}, json => json_decode($r->{content}) };
}

# polls like a TSB client until the status is final (the cache keeps a
# PENDING for tsb_cache_valid)
sub poll {
    my ($path) = @_;
    my $r;
    for (1 .. 40) {
        $r = $t->get($path);
        last unless ($r->{json} // {})->{status}
                    && $r->{json}{status} =~ /^(PENDING|APPROVED)$/;
        select(undef, undef, undef, 0.1);
    }
    return $r;
}

my $PAYLOAD = encode_base64('the payload to sign', '');

# the bodies as tsb-client-go's AsyncSign, AsyncBlock and AsyncModify
# write them (compact; no key pair: requestSignature null)
my %OPS = (
    sign => ['/v1/sign', 'signRequestId', qq({"signRequest":{"payload":)
        . qq("$PAYLOAD","payloadType":"UNSPECIFIED","signKeyName":"Pay-Key",)
        . qq("signatureAlgorithm":"SHA256_WITH_RSA","signatureType":"DER",)
        . qq("metaData":"e30=","metaDataSignature":null},)
        . qq("requestSignature":null})],
    block => ['/v1/block', 'blockKeyRequestId', qq({"blockRequest":)
        . qq({"blockKeyName":"Pay-Key","metaData":"e30=",)
        . qq("metaDataSignature":null},"requestSignature":null})],
    modify => ['/v1/modify', 'modifyKeyRequestId', qq({"modifyRequest":)
        . qq({"modifyKeyName":"Pay-Key","metaData":"e30=",)
        . qq("metaDataSignature":null,"policy":{}},)
        . qq("requestSignature":null})],
);

for my $op (qw(sign block modify)) {
    my ($path, $field, $body) = @{$OPS{$op}};
    my $r = $t->request(POST => $path, content_type => $JSON, body => $body);
    like($r->{status}, qr/^20[01]$/, "$op: POST $path passed")
        or $t->explain_response($r);
    my $id = ($r->{json} // {})->{$field} // 'none';
    like($id, qr/^[0-9a-f-]{36}$/, "... {\"$field\"}");

    $r = $t->get("/v1/request/$id");
    is($r->{status}, 200, "$op: GET /v1/request/{id} while PENDING: 200");
    is($r->{json}{status}, 'PENDING', '... PENDING');

    $t->sim_approve($id);
    my $direct = direct_get("/v1/request/$id");
    is($direct->{json}{status}, 'EXECUTED', "$op: the TSB executed it");

    $r = poll("/v1/request/$id");
    is($r->{status}, 200, "$op: EXECUTED: 200, not 502 upstream.certificate")
        or $t->explain_response($r);
    is_deeply($r->{json}, $direct->{json},
              '... the status exactly as the TSB answers it');
    if ($op eq 'sign') {
        like($r->{json}{result} // '', qr/^[A-Za-z0-9+\/]+=*$/,
             '... result: the base64 signature');
        unlike($r->{json}{result} // '', qr/BEGIN/, '... not a certificate');
    } else {
        ok(exists $r->{json}{result} && !defined $r->{json}{result},
           '... result: null');
    }

    my $get = $t->sim_counts->{'GET /v1/request/{id}'};
    $r = $t->get("/v1/request/$id");
    is(xcs($r), 'HIT', "$op: cached");
    is_deeply($r->{json}, $direct->{json}, '... as the TSB answered');
    is($t->sim_counts->{'GET /v1/request/{id}'}, $get,
       '... without asking the TSB again');

    for my $suffix ('.pem', '.der') {
        $r = $t->get("/v1/request/$id$suffix");
        $t->error_is($r, 502, 'upstream.certificate',
                     "$op: never served as a certificate ($suffix)");
    }

    $r = $t->get("/plain/request/$id");
    is($r->{status}, 200, "$op: a tsb_status location without a cache too")
        or $t->explain_response($r);
    is_deeply($r->{json}, $direct->{json}, '... as the TSB answered');

    $r = $t->get("/strict/request/$id");
    is($r->{status}, 200, "$op: under tsb_verify_issued strict too: the "
       . 'status, it is no certificate') or $t->explain_response($r);
}

# ------------------------------- never a key operation on a certificate key
#
# A payload signed with the CA key can be a TBSCertificate: a certificate
# the policy never judged (and /v1/synchronousSign has no approval). Keys
# any location of the configuration issues certificates with are refused
# whatever the allow-list says; the TSB itself would have taken them.

{
    # a certificate key of another location counts too
    my %bad = (
        'sign with the CA key' => ['/v1/sign', $OPS{sign}[2] =~ s/Pay-Key/CA-Key/r],
        'synchronous sign with the CA key' =>
            ['/v1/synchronousSign', $OPS{sign}[2] =~ s/Pay-Key/CA-Key/r],
        'the key name in another case' =>
            ['/v1/sign', $OPS{sign}[2] =~ s/Pay-Key/ca-key/r],
        'the key name with a \\u escape' =>
            ['/v1/sign', $OPS{sign}[2] =~ s/Pay-Key/CA\\u002dKey/r],
        'the key of another location' =>
            ['/v1/sign', $OPS{sign}[2] =~ s/Pay-Key/Other-CA/r],
        'block the CA key' =>
            ['/v1/block', $OPS{block}[2] =~ s/Pay-Key/CA-Key/r],
        'modify the CA key\'s policy' =>
            ['/v1/modify', $OPS{modify}[2] =~ s/Pay-Key/CA-Key/r],
    );
    my $before = $t->sim_counts;
    for my $name (sort keys %bad) {
        my ($path, $body) = @{$bad{$name}};
        my $r = $t->request(POST => $path, content_type => $JSON,
                            body => $body);
        $t->error_is($r, 403, 'policy.key_operation', "$name: 403");
        unlike($r->{content}, qr/CA-Key|Other-CA/i,
               '... the answer does not quote the key');
    }

    my $r = $t->request(POST => '/v1/sign', content_type => $JSON,
        body => $OPS{sign}[2] =~ s/"Pay-Key"/["CA-Key"]/r);
    $t->error_is($r, 400, 'request.key_name', 'a key name in an array: 400');

    $r = $t->request(DELETE => '/v1/key/CA-Key');
    $t->error_is($r, 403, 'policy.key_operation',
                 'DELETE /v1/key/CA-Key, although the allow-list has it');
    $r = $t->request(DELETE => '/v1/key/other-ca');
    $t->error_is($r, 403, 'policy.key_operation',
                 '... the other location\'s key, in another case');

    is_deeply($t->sim_counts, $before, 'none of them reached the TSB');
    like($t->error_log, qr/policy\.key_operation/, 'refusals are logged');

    $r = $t->request(POST => '/v1/synchronousSign', content_type => $JSON,
                     body => $OPS{sign}[2]);
    is($r->{status}, 200, 'a synchronous sign with a payload key passes')
        or $t->explain_response($r);
    $r = $t->request(DELETE => '/v1/key/Pay-Key');
    isnt($r->{status}, 403, 'DELETE /v1/key/Pay-Key is passed');
}

# ---------------------------------------- certificates keep their checks

{
    # a certificate request made at the TSB directly: no record of it
    my ($csr) = $t->make_csr(cn => 'direct.svc.example', key => 'ec:P-256');
    my $r = direct_post('/v1/certificate/sign', {
        signCertificateRequest => { signKeyName => 'CA-Key',
                                    commonName => 'direct.svc.example',
                                    certificateSigningRequest => $csr } });
    my $id = $r->{json}{signRequestId} // 'none';
    $t->sim_approve($id);

    $r = $t->get("/strict/request/$id.pem");
    $t->error_is($r, 502, 'issued.unverified',
                 'tsb_verify_issued strict: a certificate with no record of '
                 . 'its request is still refused');
    $r = $t->get("/strict/request/$id");
    $t->error_is($r, 502, 'issued.unverified',
                 '... its status JSON too (it holds the certificate)');

    $r = $t->get("/plain/request/$id.pem");
    is($r->{status}, 200, 'without strict: served, its issuer checked')
        or $t->explain_response($r);
}

{
    # a certificate request the gateway accepted, whose result turns out
    # not to be a certificate: still 502, never passed as "status only"
    my ($csr) = $t->make_csr(cn => 'cert.svc.example', key => 'ec:P-256');
    my $r = $t->request(POST => '/v1/certificate/sign', content_type => $JSON,
        body => json_encode({ signCertificateRequest => {
            certificateSigningRequest => $csr } }));
    is($r->{status}, 200, 'a certificate request through the gateway')
        or $t->explain_response($r);
    my $id = $r->{json}{signRequestId} // 'none';
    $t->sim_approve($id);
    my $st = direct_get("/v1/request/$id")->{json};
    $st->{result} = encode_base64('not a certificate', '');
    $t->sim_fault(route => 'GET /v1/request/{id}', status => 200,
                  body => json_encode($st), times => 1);
    $r = $t->get("/v1/request/$id");
    $t->sim_clear_fault;
    $t->error_is($r, 502, 'upstream.certificate',
                 'its result is no certificate: 502, the record says it '
                 . 'must be one');
}

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
