#!/usr/bin/perl
# The issuance policy over HTTP: each refusal of issue 3 answered with its
# status and reason code, and not one byte of them reaching the HSM (the
# simulator's counters stay at zero); then what the policy directives
# allow really goes through; then configurations nginx must refuse.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp spew json_encode);

my $KEY = 'test-api-key-SECRET';
my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_sign_key_name CA-Key;
tsb_status_uri /request/;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example "~^web[0-9]+\\.prod\\.example\$";
    }
    location = /ed/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_ed25519 on;
    }
    location = /ip/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example 10.0.0.1;
        tsb_allow_san_types dns ip;
    }
    location = /nosan/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_san_types none;
    }
    location = /big/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_min_rsa_bits 3072;
    }
    location = /ca/sign {
        tsb_sign;
        tsb_allow_common_name "~^Issuing CA [0-9]+\$";
        tsb_allow_ca on;
        tsb_max_path_len 0;
        tsb_allow_key_usage KEY_CERT_SIGN CRL_SIGN DIGITAL_SIGNATURE;
        tsb_default_key_usage KEY_CERT_SIGN CRL_SIGN;
        tsb_allow_extended_key_usage none;
        tsb_default_extended_key_usage none;
    }
    location = /chain/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_issuer_chain %%SIMCA%%;
    }
    location /request/ { tsb_status; }
}
EOF

my $PEM = 'application/x-pem-file';
my $JSON = 'application/json';

sub refused {
    my ($name, $path, $status, $reason, $body, $ct) = @_;
    my $r = $t->request(POST => $path, body => $body,
                        content_type => $ct // $PEM);
    $t->error_is($r, $status, $reason, $name);
    return $r;
}

sub envelope {
    my ($csr, %f) = @_;
    return json_encode({ signCertificateRequest => {
        certificateSigningRequest => $csr, %f } });
}

# A CSR made with python3-cryptography: the openssl CLI will not put a NUL
# into a commonName.
sub csr_with_nul_cn {
    my $py = $t->tmp . '/nul.py';
    spew($py, <<'PY');
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP256R1())
n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                  "a.svc.example\x00.evil.example")])
csr = x509.CertificateSigningRequestBuilder().subject_name(n) \
    .sign(k, hashes.SHA256())
print(csr.public_bytes(serialization.Encoding.PEM).decode(), end="")
PY
    my ($rc, $out) = $t->run_cmd('/usr/bin/python3', $py);
    die "python: $out" if $rc;
    return $out;
}

# -------------------------------------------------- the refusals of issue 3

{
    my ($csr) = $t->make_csr(cn => 'sig.svc.example');
    my $der = $t->csr_der($csr);
    # the last bytes of the DER are the signature's
    substr($der, -8, 1) = chr(ord(substr($der, -8, 1)) ^ 0x01);
    refused('bad signature', '/sign', 400, 'csr.signature', $der,
            'application/pkcs10');
}

refused('RSA-1024', '/sign', 403, 'policy.key_size',
        ($t->make_csr(cn => 'small.svc.example', key => 'rsa:1024'))[0]);

refused('SHA-1 signature', '/sign', 403, 'policy.signature_algorithm',
        ($t->make_csr(cn => 'sha1.svc.example', md => 'sha1'))[0]);

refused('two CNs', '/sign', 400, 'csr.common_name',
        ($t->make_csr(subject => '/CN=a.svc.example/CN=b.svc.example'))[0]);

refused('NUL in CN', '/sign', 400, 'csr.common_name', csr_with_nul_cn());

refused('CN outside the names', '/sign', 403, 'policy.common_name',
        ($t->make_csr(cn => 'www.evil.example'))[0]);

refused('CN two labels under the wildcard', '/sign', 403,
        'policy.common_name', ($t->make_csr(cn => 'a.b.svc.example'))[0]);

refused('SAN outside the names (one of several)', '/sign', 403,
        'policy.san',
        ($t->make_csr(cn => 'a.svc.example',
                      san => ['a.svc.example', 'www.evil.example']))[0]);

refused('IP SAN where only DNS is allowed', '/sign', 403, 'policy.san_type',
        ($t->make_csr(cn => 'a.svc.example', san => ['IP:10.0.0.1']))[0]);

refused('basicConstraints CA:TRUE in a leaf location', '/sign', 403,
        'policy.ca',
        ($t->make_csr(cn => 'a.svc.example',
                      ext => ['basicConstraints=critical,CA:TRUE']))[0]);

refused('keyCertSign requested', '/sign', 403, 'policy.ca',
        ($t->make_csr(cn => 'a.svc.example',
                      ku => 'digitalSignature,keyCertSign'))[0]);

refused('EKU outside the set', '/sign', 403, 'policy.extended_key_usage',
        ($t->make_csr(cn => 'a.svc.example',
                      eku => 'serverAuth,codeSigning'))[0]);

refused('Ed25519 where not allowed', '/sign', 403, 'policy.key_type',
        ($t->make_csr(cn => 'a.svc.example', key => 'ed25519'))[0]);

refused('RSA-2048 under tsb_min_rsa_bits 3072', '/big/sign', 403,
        'policy.key_size', ($t->make_csr(cn => 'a.svc.example'))[0]);

refused('URI SAN where DNS and IP are allowed', '/ip/sign', 403,
        'policy.san_type',
        ($t->make_csr(cn => 'a.svc.example',
                      san => ['URI:https://a.svc.example/']))[0]);

refused('IP SAN allowed by type, not by name', '/ip/sign', 403,
        'policy.san',
        ($t->make_csr(cn => 'a.svc.example', san => ['IP:10.0.0.2']))[0]);

refused('a DNS SAN under tsb_allow_san_types none', '/nosan/sign', 403,
        'policy.san_type',
        ($t->make_csr(cn => 'a.svc.example', san => ['a.svc.example']))[0]);

# the JSON envelope

my ($plain) = $t->make_csr(cn => 'json.svc.example');

refused('certificateAuthority true in a leaf location', '/sign', 403,
        'policy.ca', envelope($plain, certificateAuthority => JSON::PP::true),
        $JSON);
refused('another signKeyName', '/sign', 403, 'policy.sign_key_name',
        envelope($plain, signKeyName => 'Root-Key'), $JSON);
refused('commonName other than the CSR\'s', '/sign', 400,
        'request.common_name',
        envelope($plain, commonName => 'other.svc.example'), $JSON);
refused('keyUsage KEY_CERT_SIGN in JSON', '/sign', 403, 'policy.ca',
        envelope($plain, keyUsage => ['KEY_CERT_SIGN']), $JSON);
refused('an unknown keyUsage name', '/sign', 400, 'request.key_usage',
        envelope($plain, keyUsage => ['SIGN_EVERYTHING']), $JSON);
refused('a keyPassword from the client', '/sign', 403,
        'policy.key_password',
        envelope($plain, keyPassword => 'client-Secret-PW'), $JSON);
refused('signatureAlgorithm not allowed', '/sign', 403,
        'policy.signature_algorithm',
        envelope($plain, signatureAlgorithm => 'SHA1_WITH_RSA'), $JSON);

# the CA location requires CA issuance with a bounded path length

refused('CA without pathLenConstraint under tsb_max_path_len 0',
        '/ca/sign', 403, 'policy.ca',
        ($t->make_csr(cn => 'Issuing CA 1',
                      ext => ['basicConstraints=critical,CA:TRUE'],
                      ku => 'keyCertSign,cRLSign'))[0]);
refused('CA with pathlen 1 under tsb_max_path_len 0', '/ca/sign', 403,
        'policy.ca',
        ($t->make_csr(cn => 'Issuing CA 1',
                      ext => ['basicConstraints=critical,CA:TRUE,pathlen:1'],
                      ku => 'keyCertSign,cRLSign'))[0]);
refused('certificateAuthority alone under tsb_max_path_len 0', '/ca/sign',
        403, 'policy.ca',
        envelope(($t->make_csr(cn => 'Issuing CA 1'))[0],
                 certificateAuthority => JSON::PP::true), $JSON);

{
    my $c = $t->sim_counts;
    is($c->{total}, 0, 'no refused request reached the simulator')
        or diag(explain $c);
}

ok($t->error_log =~ /tsb: refused with 403 policy\.ca: /,
   'refusals are in error.log with their reason');

# ------------------------------------------------ what the policy allows

sub accepted {
    my ($name, $path, $body, $ct) = @_;
    my $r = $t->request(POST => $path, body => $body,
                        content_type => $ct // $PEM);
    my $ok = is($r->{status}, 200, "$name: 200");
    $t->explain_response($r) unless $ok;
    return ref $r->{json} eq 'HASH' ? $r->{json}{signRequestId} : undef;
}

sub upstream_for {
    my ($cn) = @_;
    my @seen = grep {
        ref $_->{body_json} eq 'HASH'
            && ($_->{body_json}{signCertificateRequest}{commonName} // '')
               eq $cn
    } $t->sim_seen(POST => '/v1/certificate/sign');
    return @seen ? $seen[-1]{body_json}{signCertificateRequest} : undef;
}

accepted('regex pattern', '/sign',
         ($t->make_csr(cn => 'web12.prod.example'))[0]);
accepted('Ed25519 with tsb_allow_ed25519 on', '/ed/sign',
         ($t->make_csr(cn => 'ed.svc.example', key => 'ed25519'))[0]);
accepted('IP SAN with tsb_allow_san_types dns ip', '/ip/sign',
         ($t->make_csr(cn => 'ip.svc.example',
                       san => ['ip.svc.example', 'IP:10.0.0.1']))[0]);
accepted('no SAN under tsb_allow_san_types none', '/nosan/sign',
         ($t->make_csr(cn => 'nosan.svc.example'))[0]);
accepted('RSA-3072 under tsb_min_rsa_bits 3072', '/big/sign',
         ($t->make_csr(cn => 'big.svc.example', key => 'rsa:3072'))[0]);
accepted('a location with the simulator\'s CA as tsb_issuer_chain',
         '/chain/sign', ($t->make_csr(cn => 'chain.svc.example'))[0]);

{
    my $id = accepted('CA with pathlen 0', '/ca/sign',
        ($t->make_csr(cn => 'Issuing CA 2',
                      ext => ['basicConstraints=critical,CA:TRUE,pathlen:0'],
                      ku => 'keyCertSign,cRLSign'))[0]);
    my $up = upstream_for('Issuing CA 2');
    ok($up && $up->{certificateAuthority},
       'CA request forwarded with certificateAuthority true');
    is_deeply([sort @{$up->{keyUsage} || []}], ['CRL_SIGN', 'KEY_CERT_SIGN'],
              'CA request forwarded with the CSR\'s keyUsage');
}

is($t->sim_counts->{'POST /v1/certificate/sign'}, 7,
   'the accepted requests, and only they, reached the simulator');

$t->no_worker_crash('policy');

# ------------------------------------------ configurations nginx refuses

sub bad_config {
    my ($name, $directives, $msg) = @_;
    my $b = TsbTest->new;
    my $died = !eval {
        $b->start_nginx(<<"EOF");
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
        tsb_sign_key_name CA-Key;
        $directives
    }
}
EOF
        1;
    };
    my $why = $@ // '';
    ok($died && $why =~ $msg, "refused configuration: $name")
        or diag($why);
    $b->stop;
}

bad_config('a wildcard that is not the leftmost label',
           'tsb_allow_common_name a.*.example;',
           qr/invalid name pattern "a\.\*\.example"/);
bad_config('a regex that does not compile',
           'tsb_allow_common_name "~^(web";',
           qr/invalid name pattern/);
bad_config('a variable followed by a wildcard',
           'tsb_allow_common_name "$remote_user*.example";',
           qr/invalid name pattern/);
bad_config('an unknown variable',
           'tsb_allow_common_name $no_such_variable.example;',
           qr/unknown "no_such_variable" variable/);
bad_config('a numbered capture', 'tsb_allow_common_name $1.example;',
           qr/named one/);
bad_config('an unknown SAN type', 'tsb_allow_san_types dns dirname;',
           qr/invalid subjectAltName type "dirname"/);
bad_config('tsb_min_rsa_bits below 2048', 'tsb_min_rsa_bits 1024;',
           qr/must be between 2048 and 16384/);
bad_config('a path length that is no number', 'tsb_max_path_len -1;',
           qr/tsb_max_path_len/);
bad_config('a missing issuer chain',
           'tsb_issuer_chain %%TMP%%/no-such-chain.pem;',
           qr/tsb_issuer_chain: cannot open/);
$t->_openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-nodes', '-keyout',
             $t->tmp . '/leaf.key', '-out', $t->tmp . '/leaf.pem',
             '-subj', '/CN=not a CA', '-days', '1',
             '-addext', 'basicConstraints=critical,CA:FALSE');
$t->_openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-nodes', '-keyout',
             $t->tmp . '/ec-ca.key', '-out', $t->tmp . '/ec-ca.pem',
             '-subj', '/CN=EC Issuing CA', '-days', '1');
bad_config('the default SHA256_WITH_RSA under an EC issuer',
           'tsb_issuer_chain ' . $t->tmp . '/ec-ca.pem;',
           qr/"SHA256_WITH_RSA" does not fit .*set tsb_signature_algorithm/);
bad_config('an RSA algorithm among ECDSA ones under an EC issuer',
           'tsb_issuer_chain ' . $t->tmp . '/ec-ca.pem; '
           . 'tsb_signature_algorithm SHA256_WITH_ECDSA SHA256_WITH_RSA;',
           qr/"SHA256_WITH_RSA" does not fit/);
bad_config('an issuer chain with a leaf certificate',
           'tsb_issuer_chain ' . $t->tmp . '/leaf.pem;',
           qr/is not a CA certificate/);

done_testing();
