#!/usr/bin/perl
# Sign requests exactly as Securosys' own Go client (tsb-client-go,
# AsyncSignCertificate) sends them, through tsb_sign on the TSB's path and
# through tsb_pass (issue 13, points 3 to 5):
# - "requestSignature": null and "metaDataSignature": null mean not
#   signed, so the gateway may fill in its key password;
# - keyUsage joined by commas, or [""] for none, is judged like the array
#   form, and the TSB gets the array that was judged;
# - a request its client really signed reaches the TSB byte for byte, or
#   is refused with a reason: never silently altered.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(json_encode json_decode slurp root_dir);

my $KEY = 'vendor-api-key-SECRET';
my $PASSWORD = 'gateway-key-password-SECRET';
my $JSON = 'application/json';

sub fixture { slurp(root_dir() . "/t/fixtures/$_[0]") // die "$_[0]: $!" }

my $GO = fixture('tsb-client-go-sign-request.json');
my $GO_COMMA = fixture('tsb-client-go-sign-request-comma-usages.json');
my $GO_EMPTY = fixture('tsb-client-go-sign-request-empty-usage.json');

my $POLICY = <<'EOF';
        tsb_sign_key_name             CA-Key;
        tsb_allow_common_name         *.svc.example.internal;
        tsb_allow_key_usage           DIGITAL_SIGNATURE KEY_ENCIPHERMENT;
        tsb_allow_extended_key_usage  SERVER_AUTH CLIENT_AUTH;
EOF

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /v1/certificate/sign {
        tsb_sign;
        tsb_key_password $PASSWORD;
$POLICY
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location = /v1/certificate/sign {
        tsb_sign;
$POLICY
    }
    location = /rest/sign {
        tsb_sign;
        tsb_sign_status 202;
        tsb_status_uri /rest/request/;
$POLICY
    }
}
EOF

sub total { $t->sim_counts->{total} }

sub last_sent {
    my ($seen) = reverse $t->sim_seen('POST', '/v1/certificate/sign');
    return $seen;
}

sub sign {
    my ($body, %o) = @_;
    return $t->request(POST => $o{path} // '/v1/certificate/sign',
                       content_type => $JSON, body => $body,
                       port => $o{port});
}

# ------------------------------------- point 1: 200 as the TSB answers

{
    my $r = sign($GO);
    is($r->{status}, 200, 'sign answers 200, as the TSB (its clients take '
       . 'only 200 and 201)') or $t->explain_response($r);
    like($r->{json}{signRequestId} // '', qr/^[0-9a-f-]{36}$/,
         '... {"signRequestId": ...}');
    is_deeply([keys %{$r->{json} || {}}], ['signRequestId'],
              '... and nothing else, as the TSB');

    $r = sign($GO, path => '/rest/sign', port => 2);
    is($r->{status}, 202, 'tsb_sign_status 202: 202 where chosen')
        or $t->explain_response($r);
    my $id = $r->{json}{signRequestId} // 'none';
    is($r->{headers}{location}, "/rest/request/$id", '... with its Location');
}

# ------------------------------------------ point 4: null is not signed

{
    my $r = sign($GO);
    like($r->{status}, qr/^200$/,
         "tsb_sign: the Go client's request (both signatures null) is "
         . 'accepted') or $t->explain_response($r);
    my $sent = last_sent();
    my $sr = $sent ? $sent->{body_json}{signCertificateRequest} : {};
    ok(defined $sr->{keyPassword},
       '... and the gateway added its key password, as for any unsigned '
       . 'request');
    ok(index($r->{content}, $PASSWORD) < 0, '... which is not in the answer');
}

{
    # through tsb_pass: the issue's 403 "asking the client to send the very
    # password the gateway holds for it"
    my $t2 = TsbTest->new;
    $t2->start_sim('--api-key', $KEY, '--approvers', 'alice');
    $t2->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v1/ {
        tsb_pass;
        tsb_pass_allow POST /v1/certificate/sign;
        tsb_key_password $PASSWORD;
$POLICY
    }
}
EOF
    my $r = $t2->request(POST => '/v1/certificate/sign', content_type => $JSON,
                         body => $GO);
    is($r->{status}, 200,
       'tsb_pass: the Go client\'s request with tsb_key_password: 200')
        or $t2->explain_response($r);
    my ($seen) = reverse $t2->sim_seen('POST', '/v1/certificate/sign');
    ok($seen && defined $seen->{body_json}{signCertificateRequest}{keyPassword},
       '... with the gateway\'s key password added');
    $t2->stop;
}

# ------------------------------------- point 5: usages as the client sends

{
    my $r = sign($GO_COMMA);
    like($r->{status}, qr/^200$/,
         'keyUsage ["DIGITAL_SIGNATURE,KEY_ENCIPHERMENT"]: accepted')
        or $t->explain_response($r);
    my $sr = last_sent()->{body_json}{signCertificateRequest};
    is_deeply($sr->{keyUsage}, ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
              '... the TSB gets the two usages that were judged');

    $r = sign($GO_EMPTY);
    like($r->{status}, qr/^200$/, 'keyUsage [""]: accepted (none)')
        or $t->explain_response($r);
    $sr = last_sent()->{body_json}{signCertificateRequest};
    is_deeply($sr->{keyUsage}, [], '... forwarded as [], what was judged');

    # judged exactly like the array form: a usage the location does not
    # allow is refused whichever way it is written
    for my $ku (['DIGITAL_SIGNATURE,KEY_CERT_SIGN'],
                ['DIGITAL_SIGNATURE', 'KEY_CERT_SIGN'])
    {
        my $doc = json_decode($GO_COMMA);
        $doc->{signCertificateRequest}{keyUsage} = $ku;
        my $before = total();
        my $r = sign(json_encode($doc));
        $t->error_is($r, 403, qr/^policy\.(key_usage|ca)$/,
                     'KEY_CERT_SIGN in ' . json_encode($ku) . ' is refused');
        is(total(), $before, '... before the TSB');
    }

    my $doc = json_decode($GO_COMMA);
    $doc->{signCertificateRequest}{keyUsage} = ['DIGITAL_SIGNATURE,'];
    $t->error_is(sign(json_encode($doc)), 400, 'request.key_usage',
                 'a trailing comma is not a usage');
}

# ------------------------------- point 3: a signed request, tsb_sign

my $SIGNATURE = { signature => 'c2lnbmF0dXJl', digestAlgorithm => 'SHA-256',
                  publicKey => 'cHVibGljLWtleQ==' };

sub signed_body {
    my ($doc) = json_decode($GO);
    my $sr = $doc->{signCertificateRequest};
    # compact, in the client's own key order, with its signature
    my $inner = $GO;
    $inner =~ s/,\s*"requestSignature"\s*:\s*null\s*\}\s*$//
        or die "fixture layout changed";
    return $inner . ',"requestSignature":' . json_encode($SIGNATURE) . '}';
}

{
    my $body = signed_body();
    ok(json_decode($body), 'the signed variant of the fixture is JSON');

    # where the gateway would have to add its key password: refused
    my $before = total();
    my $r = sign($body);
    $t->error_is($r, 403, 'policy.signed_request',
                 'tsb_sign: a signed request the gateway would have to add '
                 . 'its key password to');
    like($r->{json}{detail} // '', qr/keyPassword.*unsigned/,
         '... the reason says why and what to do');
    is(total(), $before, '... nothing reached the TSB');

    # where the policy judges it unchanged: byte for byte
    $r = sign($body, port => 2);
    like($r->{status}, qr/^200$/,
         'tsb_sign: a signed request the policy takes as sent is accepted')
        or $t->explain_response($r);
    my $sent = last_sent();
    is($sent && $sent->{body}, $body,
       '... and reaches the TSB byte for byte, requestSignature and all');

    # where the policy would fill in a default: refused, not altered
    my $doc = json_decode($body);
    delete $doc->{signCertificateRequest}{keyUsage};
    $before = total();
    $r = sign(json_encode($doc), port => 2);
    $t->error_is($r, 403, 'policy.signed_request',
                 'tsb_sign: a signed request missing a field the gateway '
                 . 'would fill in');
    like($r->{json}{detail} // '', qr/keyUsage/, '... names the field');
    is(total(), $before, '... nothing reached the TSB');
}

ok($t->no_worker_crash, 'no worker crashed');
unlike($t->error_log, qr/\Q$PASSWORD\E/, 'the key password is never logged');

done_testing();
