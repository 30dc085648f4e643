#!/usr/bin/perl
# The drop-in (issue 13): conf/tsb-front.conf in front of the simulator,
# and a differential test.  The same requests, in the exact shapes
# Securosys' Go client (tsb-client-go) sends them (t/fixtures/tsb-client-go-*
# byte for byte, its headers), go once to the TSB (the simulator) directly
# and once through the gateway; wherever the gateway's policy accepts the
# request, the status codes and the JSON shapes (keys and their JSON types)
# agree.  Where the gateway deliberately differs (a policy refusal) the
# answer is still in the TSB's error shape.  docs/upstream.md has the same
# table in prose.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use B ();
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;
use TsbTest qw(json_encode slurp root_dir);

my $KEY = 'dropin-api-key-SECRET';          # the TSB's key: the gateway's
my $CLIENT_KEY = 'client-own-key';          # what a client may still send

sub fixture { slurp(root_dir() . "/t/fixtures/$_[0]") // die "$_[0]: $!" }

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');

# conf/tsb-front.conf as shipped, pointed at the simulator
my $conf = slurp(root_dir() . '/conf/tsb-front.conf')
    // die "conf/tsb-front.conf: $!";
for my $s (
    [qr/^tsb_upstream\s+\S+;$/m, 'tsb_upstream %%SIM%%;'],
    [qr/^tsb_api_key_file\s+\S+;$/m, "tsb_api_key $KEY;"],
    [qr/^tsb_ssl_trusted_certificate\s+\S+;\n/m, ''],
    [qr/^(\s+)listen 8080;/m, '${1}listen 127.0.0.1:%%PORT%%;'],
    # the key operations the shipped file leaves commented out
    [qr/^(\s+)# (tsb_pass_allow POST \/v1\/sign [^\n]*;)$/m, '$1$2'],
) {
    my ($re, $to) = @$s;
    my $n = 0;
    $n++ while $conf =~ /$re/g;
    die "conf/tsb-front.conf: $re matches $n times\n" unless $n == 1;
    $conf =~ s/$re/"qq{$to}"/ee;
}
$t->start_nginx($conf);

my $UA = HTTP::Tiny->new(timeout => 15, agent => 'Go-http-client/1.1');

# A request as the Go client's doRequest() sends it: Content-Type and its
# X-API-KEY.  To the TSB with the TSB's key; to the gateway with its own
# (ignored: the gateway sends its own credentials).
sub call {
    my ($to, $method, $path, $body) = @_;
    my $base = $to eq 'tsb' ? $t->sim_url : $t->base_url;
    my $r = $UA->request($method, $base . $path, {
        headers => { 'Content-Type' => 'application/json',
                     'X-API-KEY' => $to eq 'tsb' ? $KEY : $CLIENT_KEY },
        defined $body ? (content => $body) : () });
    my $json = eval { JSON::PP->new->utf8->allow_nonref->decode(
                          $r->{content}) };
    return { status => $r->{status}, content => $r->{content},
             json => $json, shape => shape($json),
             headers => $r->{headers} };
}

# the JSON type of every value, taken right after decoding
sub shape {
    my ($v) = @_;
    return 'null' unless defined $v;
    return 'boolean' if JSON::PP::is_bool($v);
    return { map { $_ => shape($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return [ @$v ? shape($v->[0]) : () ] if ref $v eq 'ARRAY';
    my $f = B::svref_2object(\$v)->FLAGS;
    return ($f & (B::SVp_IOK | B::SVp_NOK)) && !($f & B::SVp_POK)
           ? 'number' : 'string';
}

# Status and shape agree.  A success must have exactly the TSB's keys; an
# error must have all the TSB's keys with the TSB's types (the gateway's
# error and detail may stand beside them).
sub same {
    my ($name, $tsb, $gw) = @_;
    my $ok = is($gw->{status}, $tsb->{status}, "$name: status $tsb->{status} "
                . 'both ways');
    if ($tsb->{status} < 300) {
        $ok &= is_deeply($gw->{shape}, $tsb->{shape}, "$name: same JSON shape");
    } else {
        my %want = %{ ref $tsb->{shape} eq 'HASH' ? $tsb->{shape} : {} };
        my %have = %{ ref $gw->{shape} eq 'HASH' ? $gw->{shape} : {} };
        ok(%want && exists $want{errorCode}, "$name: the TSB's error shape")
            or diag($tsb->{content});
        $ok &= is_deeply({ map { $_ => $have{$_} } keys %want }, \%want,
                         "$name: the gateway's error has the TSB's keys and "
                         . 'types');
    }
    unless ($ok) {
        diag("TSB:     $tsb->{status} $tsb->{content}");
        diag("gateway: $gw->{status} $gw->{content}");
    }
    return $ok;
}

sub both { my @a = @_; return (call('tsb', @a), call('gateway', @a)) }

# polls as the Go client's WaitForRequest does, until the status is final
sub poll {
    my ($to, $id) = @_;
    my $r;
    for (1 .. 60) {
        $r = call($to, GET => "/v1/request/$id");
        last unless $r->{status} == 200
                    && ($r->{json}{status} // '') =~ /^(PENDING|APPROVED)$/;
        select(undef, undef, undef, 0.1);
    }
    return $r;
}

# ----------------------------------------------- sign, poll, certificate

my %ids;
for my $f (qw(tsb-client-go-sign-request.json
              tsb-client-go-sign-request-comma-usages.json
              tsb-client-go-sign-request-empty-usage.json))
{
    my $body = fixture($f);
    my ($tsb, $gw) = both(POST => '/v1/certificate/sign', $body);
    same("sign, $f", $tsb, $gw);
    like($gw->{json}{signRequestId} // '', qr/^[0-9a-f-]{36}$/,
         '... a signRequestId');
    $ids{$f} = [$tsb->{json}{signRequestId} // 'none',
                $gw->{json}{signRequestId} // 'none'];
}

{
    my ($tid, $gid) = @{$ids{'tsb-client-go-sign-request-comma-usages.json'}};
    my $tsb = call('tsb', GET => "/v1/request/$tid");
    my $gw = call('gateway', GET => "/v1/request/$gid");
    same('GET /v1/request/{id}, PENDING', $tsb, $gw);
    is($gw->{json}{status}, 'PENDING', '... PENDING');

    $t->sim_approve($_) for $tid, $gid;
    $tsb = poll('tsb', $tid);
    $gw = poll('gateway', $gid);
    same('GET /v1/request/{id}, EXECUTED', $tsb, $gw);
    is($gw->{json}{status}, 'EXECUTED', '... EXECUTED');
    like($gw->{json}{result} // '', qr/^-----BEGIN CERTIFICATE-----\n/,
         '... result: the PEM certificate, as the TSB gives it');

    # the certificate the Go client reads is what the policy accepted
    my $pem = $t->_tmpfile($gw->{json}{result} // '');
    my (undef, $text) = $t->run_cmd('openssl', 'x509', '-in', $pem, '-noout', '-text');
    like($text, qr/Digital Signature, Key Encipherment/,
         '... with both usages the client joined by a comma');
}

# --------------------------------------------------------------- cancel

{
    my ($tid, $gid) = @{$ids{'tsb-client-go-sign-request.json'}};
    my $tsb = call('tsb', DELETE => "/v1/request/$tid");
    my $gw = call('gateway', DELETE => "/v1/request/$gid");
    same('DELETE /v1/request/{id} (RemoveRequest)', $tsb, $gw);
    is($gw->{content}, '{}', '... {}');

    $gw = poll('gateway', $gid);
    is($gw->{json}{status}, 'CANCELLED', '... and the status is CANCELLED');

    $tsb = call('tsb', DELETE => "/v1/request/$tid");
    $gw = call('gateway', DELETE => "/v1/request/$gid");
    same('DELETE again: the request is closed', $tsb, $gw);
}

# ---------------------------------------------------- ids that are not

{
    my $unknown = '11111111-2222-3333-4444-555555555555';
    same('GET an unknown id', both(GET => "/v1/request/$unknown"));
    same('DELETE an unknown id', both(DELETE => "/v1/request/$unknown"));
    same('GET a malformed id', both(GET => '/v1/request/not$an-id'));
}

# --------------------------------------------------------------- import

{
    # the Go client's import body has a trailing comma: not JSON
    my $body = fixture('tsb-client-go-import-request.txt');
    same('import as the Go client writes it (invalid JSON)',
         both(POST => '/v1/certificate/import/plain', $body));

    (my $fixed = $body) =~ s/,(\s*\})\s*$/$1/;
    my $doc = JSON::PP->new->decode($fixed);
    ok($doc, 'the same body without the trailing comma is JSON');
    same('import a certificate',
         both(POST => '/v1/certificate/import/plain', $fixed));
}

# ------------------------------------------------------- key operations

{
    my $payload = encode_base64('to be signed', '');
    my $body = qq({"signRequest":{"payload":"$payload","payloadType":)
        . qq("UNSPECIFIED","signKeyName":"Pay-Key","signatureAlgorithm":)
        . qq("SHA256_WITH_RSA","signatureType":"DER","metaData":"e30=",)
        . qq("metaDataSignature":null},"requestSignature":null});
    my ($tsb, $gw) = both(POST => '/v1/sign', $body);
    same('AsyncSign: POST /v1/sign', $tsb, $gw);
    my ($tid, $gid) = map { $_->{json}{signRequestId} // 'none' } $tsb, $gw;
    $t->sim_approve($_) for $tid, $gid;
    $tsb = poll('tsb', $tid);
    $gw = poll('gateway', $gid);
    same('GET /v1/request/{id} of an EXECUTED key operation', $tsb, $gw);
    like($gw->{json}{result} // '', qr/^[A-Za-z0-9+\/]+=*$/,
         '... result: the signature, passed as the TSB answered');
}

# -------------------------------------- where the gateway differs, on purpose

{
    my $doc = JSON::PP->new->decode(fixture('tsb-client-go-sign-request.json'));
    $doc->{signCertificateRequest}{keyUsage} = ['KEY_CERT_SIGN'];
    my $body = JSON::PP->new->canonical->encode($doc);
    my ($tsb, $gw) = both(POST => '/v1/certificate/sign', $body);
    is($tsb->{status}, 200, 'a usage the policy refuses: the TSB takes it');
    is($gw->{status}, 403, '... the gateway refuses it');
    ok($gw->{shape}{errorCode} && $gw->{shape}{errorCode} eq 'number'
       && $gw->{json}{reason} =~ /^policy\./ && defined $gw->{json}{message},
       '... in the TSB\'s error shape, with the policy\'s reason')
        or diag($gw->{content});

    my $payload = encode_base64('a TBSCertificate, say', '');
    my $sign = qq({"signRequest":{"payload":"$payload","payloadType":)
        . qq("UNSPECIFIED","signKeyName":"CA-Key","signatureAlgorithm":)
        . qq("SHA256_WITH_RSA","signatureType":"DER"},)
        . qq("requestSignature":null});
    ($tsb, $gw) = both(POST => '/v1/sign', $sign);
    like($tsb->{status}, qr/^20[01]$/,
         'a payload signed with the certificate key: the TSB takes it');
    is($gw->{status}, 403, '... the gateway refuses it');
    is($gw->{json}{reason}, 'policy.key_operation', '... policy.key_operation');
    is($gw->{shape}{errorCode}, 'number', '... with a numeric errorCode');

    ($tsb, $gw) = both(GET => '/v1/key/CA-Key');
    is($gw->{status}, 403, 'an endpoint the allow-list does not name: 403');
    is($gw->{json}{reason}, 'policy.front', '... policy.front');
    is($gw->{shape}{errorCode}, 'number', '... with a numeric errorCode');
}

{
    # nothing the client sent as credentials reached the TSB
    my @leaked = grep { ($_->{headers}{'x-api-key'} // '') eq $CLIENT_KEY }
                 @{$t->sim_requests};
    is(scalar @leaked, 0, "the client's X-API-KEY never reached the TSB");
}

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
