#!/usr/bin/perl
# The audit log (one JSON line per sign decision, parsed here with
# JSON::PP) and key passwords: a client's keyPassword is refused unless the
# location allows it, the gateway's own tsb_key_password reaches the TSB,
# and neither, nor the API key, ever shows in the audit log or error.log
# (at debug level).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(sleep);
use TsbTest qw(slurp spew json_encode);

my $KEY = 'test-api-key-SECRET';
my $INJECTED = 'Injected-Key-PW-7731';
my $CLIENT_PW = 'Client-Key-PW-4410';
my $SIGN = 'POST /v1/certificate/sign';

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $AUDIT = "$tmp/audit.log";

spew("$tmp/htpasswd", "alice:{PLAIN}pw-alice\n");

$t->start_sim('--api-key', $KEY);
# the harness checks error.log for every secret it knows of
push @{$t->{secrets}}, $INJECTED, $CLIENT_PW;

$t->start_nginx(<<"EOF", log_level => 'debug');
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_sign_key_name CA-Key;
tsb_status_uri /request/;
tsb_audit_log $AUDIT;

server {
    listen 127.0.0.1:%%PORT%%;

    location = /sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
    }
    location = /inject/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_key_password $INJECTED;
    }
    location = /clientpw/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_key_password on;
        tsb_key_password $INJECTED;
    }
    location = /user/sign {
        auth_basic "tsb";
        auth_basic_user_file $tmp/htpasswd;
        tsb_sign;
        tsb_allow_common_name \$remote_user.users.example;
    }
    location = /quiet/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_audit_log off;
    }
    location /request/ { tsb_status; }
}
EOF

my $PEM = 'application/x-pem-file';
my $JSON_CT = 'application/json';
my $json = JSON::PP->new->utf8;

# ------------------------------------------------------------- helpers

sub audit_lines {
    my @lines = split /\n/, slurp($AUDIT) // '';
    return @lines;
}

# Wait for the audit log to grow by one line; return it decoded.
my $seen = 0;
sub next_line {
    my ($name) = @_;
    my @l;
    $t->wait_for(sub { @l = audit_lines(); @l > $seen }, 5);
    if (@l <= $seen) {
        fail("$name: an audit line was written");
        return {};
    }
    my $raw = $l[$seen++];
    my $d = eval { $json->decode($raw) };
    ok(ref $d eq 'HASH', "$name: the audit line is one JSON object")
        or diag($raw);
    return $d // {};
}

sub no_new_line {
    my ($name) = @_;
    sleep 0.3;
    my @l = audit_lines();
    is(scalar @l, $seen, "$name: no audit line");
    $seen = @l;
}

sub spki_sha256 {
    my ($csr_path) = @_;
    $t->_openssl('req', '-in', $csr_path, '-noout', '-pubkey',
                 '-out', "$csr_path.pub");
    $t->_openssl('pkey', '-pubin', '-in', "$csr_path.pub",
                 '-outform', 'DER', '-out', "$csr_path.der");
    return sha256_hex(slurp("$csr_path.der"));
}

sub envelope {
    my ($csr, %f) = @_;
    return json_encode({ signCertificateRequest => {
        certificateSigningRequest => $csr, %f } });
}

sub upstream_for {
    my ($cn) = @_;
    my @s = grep {
        ref $_->{body_json} eq 'HASH'
            && ($_->{body_json}{signCertificateRequest}{commonName} // '')
               eq $cn
    } $t->sim_seen(POST => '/v1/certificate/sign');
    return @s ? $s[-1]{body_json}{signCertificateRequest} : undef;
}

my @FIELDS = qw(time client ssl_client_s_dn ssl_client_verify remote_user
                location decision status reason detail common_name sans
                key_usage extended_key_usage ca path_len key_type key_bits
                key_curve spki_sha256 sign_key_name signature_algorithm
                sign_request_id);

sub has_all_fields {
    my ($name, $a) = @_;
    my @missing = grep { !exists $a->{$_} } @FIELDS;
    ok(!@missing, "$name: every field present")
        or diag("missing: @missing");
}

# ------------------------------------------------------ accepted, refused

{
    my ($csr, undef, $path) = $t->make_csr(cn => 'a.svc.example',
        san => ['a.svc.example', 'b.svc.example']);
    my $r = $t->request(POST => '/sign', body => $csr, content_type => $PEM);
    is($r->{status}, 200, 'accepted: 200') or $t->explain_response($r);
    my $id = $r->{json}{signRequestId};

    my $a = next_line('accepted');
    has_all_fields('accepted', $a);
    like($a->{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/,
         'accepted: ISO 8601 time');
    is($a->{client}, '127.0.0.1', 'accepted: client address');
    is($a->{location}, '/sign', 'accepted: location');
    is($a->{decision}, 'accepted', 'accepted: decision');
    is($a->{status}, 200, 'accepted: status 200');
    is($a->{reason}, undef, 'accepted: no reason');
    is($a->{sign_request_id}, $id, 'accepted: the signRequestId');
    is($a->{common_name}, 'a.svc.example', 'accepted: commonName');
    is_deeply($a->{sans}, ['DNS:a.svc.example', 'DNS:b.svc.example'],
              'accepted: SANs');
    is_deeply($a->{key_usage}, ['DIGITAL_SIGNATURE'],
              'accepted: keyUsage as forwarded (the default)');
    is_deeply($a->{extended_key_usage}, ['SERVER_AUTH'],
              'accepted: extendedKeyUsage as forwarded');
    ok(JSON::PP::is_bool($a->{ca}) && !$a->{ca}, 'accepted: ca false');
    is($a->{path_len}, undef, 'accepted: no path length');
    is($a->{key_type}, 'RSA', 'accepted: key type');
    is($a->{key_bits}, 2048, 'accepted: key size');
    is($a->{key_curve}, undef, 'accepted: no curve');
    is($a->{spki_sha256}, spki_sha256($path),
       'accepted: SHA-256 of the CSR public key, as openssl computes it');
    is($a->{sign_key_name}, 'CA-Key', 'accepted: signKeyName');
    is($a->{signature_algorithm}, 'SHA256_WITH_RSA',
       'accepted: signatureAlgorithm');
    is($a->{remote_user}, undef, 'accepted: no remote user');
    is($a->{ssl_client_s_dn}, undef, 'accepted: no TLS client');
}

{
    my ($csr, undef, $path) = $t->make_csr(cn => 'evil.example',
        key => 'ec:P-256', eku => 'serverAuth,codeSigning');
    my $r = $t->request(POST => '/sign', body => $csr, content_type => $PEM);
    $t->error_is($r, 403, 'policy.common_name', 'refused');

    my $a = next_line('refused');
    has_all_fields('refused', $a);
    is($a->{decision}, 'refused', 'refused: decision');
    is($a->{status}, 403, 'refused: status 403');
    is($a->{reason}, 'policy.common_name', 'refused: reason');
    like($a->{detail}, qr/evil\.example/, 'refused: detail');
    is($a->{common_name}, 'evil.example', 'refused: commonName');
    is_deeply($a->{sans}, [], 'refused: no SANs');
    is_deeply($a->{extended_key_usage}, ['SERVER_AUTH', 'CODE_SIGNING'],
              'refused: the EKU the CSR asked for');
    is($a->{key_type}, 'EC', 'refused: key type');
    is($a->{key_curve}, 'P-256', 'refused: curve');
    is($a->{key_bits}, 256, 'refused: key size');
    is($a->{spki_sha256}, spki_sha256($path), 'refused: public key hash');
    is($a->{sign_request_id}, undef, 'refused: no signRequestId');
}

{
    my ($csr) = $t->make_csr(cn => 'ca.svc.example',
        ext => ['basicConstraints=critical,CA:TRUE,pathlen:2']);
    $t->request(POST => '/sign', body => $csr, content_type => $PEM);
    my $a = next_line('refused CA');
    is($a->{reason}, 'policy.ca', 'refused CA: reason');
    ok($a->{ca}, 'refused CA: ca true');
    is($a->{path_len}, 2, 'refused CA: path length');
}

{
    my $r = $t->request(POST => '/sign', body => '<csr/>',
                        content_type => 'application/xml');
    my $a = next_line('refused before parsing');
    is($a->{status}, 415, 'refused before parsing: 415');
    is($a->{reason}, 'request.content_type', 'refused before parsing: reason');
    ok(!defined $a->{common_name} && !defined $a->{spki_sha256}
       && !defined $a->{key_type},
       'refused before parsing: nothing about a CSR');
}

{
    my $r = $t->request(POST => '/sign', content_type => $PEM,
                        body => "-----BEGIN CERTIFICATE REQUEST-----\n"
                              . "AAAA\n-----END CERTIFICATE REQUEST-----\n");
    my $a = next_line('unparsable CSR');
    like($a->{reason} // '', qr/^csr\./, 'unparsable CSR: csr.* reason');
}

{
    my $r = $t->request(POST => '/user/sign',
        body => ($t->make_csr(cn => 'alice.users.example'))[0],
        content_type => $PEM,
        headers => { Authorization => 'Basic '
                                      . encode_base64('alice:pw-alice', '') });
    is($r->{status}, 200, 'basic auth: 200') or $t->explain_response($r);
    my $a = next_line('basic auth');
    is($a->{remote_user}, 'alice', 'basic auth: remote_user');
    is($a->{location}, '/user/sign', 'basic auth: location');
}

{
    my $r = $t->request(POST => '/quiet/sign',
        body => ($t->make_csr(cn => 'quiet.svc.example'))[0],
        content_type => $PEM);
    is($r->{status}, 200, 'tsb_audit_log off: 200');
    no_new_line('tsb_audit_log off');
}

# ----------------------------------------------- accepted, TSB trouble

{
    $t->sim_fault(route => $SIGN, status => 500, times => 1);
    my $r = $t->request(POST => '/sign',
        body => ($t->make_csr(cn => 'fail.svc.example'))[0],
        content_type => $PEM);
    is($r->{status}, 502, 'TSB failure: 502');
    my $a = next_line('TSB failure');
    is($a->{decision}, 'accepted', 'TSB failure: decision accepted');
    is($a->{status}, 502, 'TSB failure: status 502');
    is($a->{reason}, 'upstream.status', 'TSB failure: reason');
    is($a->{sign_request_id}, undef, 'TSB failure: no signRequestId');
    is($a->{common_name}, 'fail.svc.example', 'TSB failure: commonName');
}

{
    $t->sim_fault(route => $SIGN, delay_ms => 1500, times => 1);
    my $s = $t->raw_send(POST => '/sign', content_type => $PEM,
        body => ($t->make_csr(cn => 'gone.svc.example'))[0]);
    # the request is with the TSB once the simulator has seen it
    $t->wait_for(sub { upstream_for('gone.svc.example') }, 5);
    close $s;
    my $a = next_line('client gone');
    is($a->{decision}, 'accepted', 'client gone: decision accepted');
    is($a->{status}, 499, 'client gone: status 499');
    is($a->{reason}, 'client.closed', 'client gone: reason');
    is($a->{common_name}, 'gone.svc.example', 'client gone: commonName');
    sleep 1.5;
    no_new_line('client gone: nothing more when the TSB answers late');
}

# --------------------------------------------------------- key passwords

my ($pwcsr) = $t->make_csr(cn => 'pw.svc.example');

{
    my $r = $t->request(POST => '/sign', content_type => $JSON_CT,
                        body => envelope($pwcsr, keyPassword => $CLIENT_PW));
    $t->error_is($r, 403, 'policy.key_password',
                 'client keyPassword where not allowed');
    my $a = next_line('client keyPassword refused');
    is($a->{reason}, 'policy.key_password',
       'client keyPassword refused: audited');

    $r = $t->request(POST => '/sign', content_type => $JSON_CT,
        body => envelope($pwcsr, keyPassword => [split //, $CLIENT_PW]));
    $t->error_is($r, 403, 'policy.key_password',
                 'client keyPassword as characters where not allowed');
    next_line('client keyPassword as characters refused');

    $r = $t->request(POST => '/inject/sign', content_type => $JSON_CT,
                     body => envelope($pwcsr, keyPassword => $CLIENT_PW));
    $t->error_is($r, 403, 'policy.key_password',
                 'client keyPassword next to tsb_key_password');
    next_line('client keyPassword next to tsb_key_password');

    $r = $t->request(POST => '/sign', content_type => $JSON_CT,
                     body => envelope($pwcsr, keyPassword => undef));
    is($r->{status}, 200, 'keyPassword null is no password: 200');
    next_line('keyPassword null');
}

{
    my ($csr) = $t->make_csr(cn => 'inject.svc.example');
    my $r = $t->request(POST => '/inject/sign', body => $csr,
                        content_type => $PEM);
    is($r->{status}, 200, 'tsb_key_password: 200') or $t->explain_response($r);
    my $up = upstream_for('inject.svc.example');
    is($up && $up->{keyPassword}, $INJECTED,
       'tsb_key_password: the TSB got the gateway\'s keyPassword');
    next_line('tsb_key_password');
}

{
    my ($csr) = $t->make_csr(cn => 'client-pw.svc.example');
    my $r = $t->request(POST => '/clientpw/sign', content_type => $JSON_CT,
                        body => envelope($csr, keyPassword => $CLIENT_PW));
    is($r->{status}, 200, 'tsb_allow_key_password on: 200')
        or $t->explain_response($r);
    my $up = upstream_for('client-pw.svc.example');
    is($up && $up->{keyPassword}, $CLIENT_PW,
       'tsb_allow_key_password on: the client\'s keyPassword is forwarded');
    next_line('tsb_allow_key_password on');

    ($csr) = $t->make_csr(cn => 'chars-pw.svc.example');
    $r = $t->request(POST => '/clientpw/sign', content_type => $JSON_CT,
        body => envelope($csr, keyPassword => [split //, $CLIENT_PW]));
    is($r->{status}, 200, 'keyPassword as characters: 200');
    $up = upstream_for('chars-pw.svc.example');
    is($up && $up->{keyPassword}, $CLIENT_PW,
       'keyPassword as characters: forwarded joined');
    next_line('keyPassword as characters');

    ($csr) = $t->make_csr(cn => 'no-pw.svc.example');
    $r = $t->request(POST => '/clientpw/sign', body => $csr,
                     content_type => $PEM);
    is($r->{status}, 200, 'no client keyPassword: 200');
    $up = upstream_for('no-pw.svc.example');
    is($up && $up->{keyPassword}, $INJECTED,
       'no client keyPassword: the gateway\'s is injected');
    next_line('no client keyPassword');
}

{
    my ($csr) = $t->make_csr(cn => 'nopw.svc.example');
    $t->request(POST => '/sign', body => $csr, content_type => $PEM);
    my $up = upstream_for('nopw.svc.example');
    ok($up && !exists $up->{keyPassword},
       'no tsb_key_password: no keyPassword forwarded');
    next_line('no tsb_key_password');
}

# -------------------------------------------------------- USR1 reopens

{
    rename $AUDIT, "$AUDIT.1" or die "rename: $!";
    kill 'USR1', $t->nginx_pid;
    $t->wait_for(sub { -e $AUDIT }, 5);
    ok(-e $AUDIT, 'USR1: the audit log is opened anew');
    $seen = 0;
    $t->request(POST => '/sign', content_type => $PEM,
                body => ($t->make_csr(cn => 'reopen.svc.example'))[0]);
    my $a = next_line('after USR1');
    is($a->{common_name}, 'reopen.svc.example',
       'USR1: the next decision goes to the new file');
}

# ------------------------------------------------------------ no secrets

{
    my $all = (slurp("$AUDIT.1") // '') . (slurp($AUDIT) // '');
    my $err = $t->error_log;
    for my $s ([api_key => $KEY], [injected => $INJECTED],
               [client => $CLIENT_PW]) {
        ok(index($all, $s->[1]) < 0, "no $s->[0] secret in the audit log");
        ok(index($err, $s->[1]) < 0,
           "no $s->[0] secret in error.log (debug level)");
    }
    # the characters of a password sent as an array, one by one, in JSON
    my $chars = join ',', map { "\"$_\"" } split //, $CLIENT_PW;
    ok(index($all . $err, $chars) < 0,
       'no password characters in the logs');
}

$t->no_worker_crash('audit');

done_testing();
