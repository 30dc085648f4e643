#!/usr/bin/perl
# Issue 10, parts 2 and 3 over HTTP: a name judged by a literal or wildcard
# pattern must be a host name (no space, '/', '@', '_', look-alike
# letters, misplaced hyphens or trailing dot), and the subject beyond the
# commonName is refused unless tsb_allow_subject_attribute allows it; an
# issued certificate whose subject differs from the accepted one is not
# served.  Every refusal is a JSON 4xx and reaches no TSB.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
binmode(Test::More->builder->$_, ":utf8")
    for qw(output failure_output todo_output);
use TsbTest qw(slurp spew json_encode);

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';
my $t = TsbTest->new;
my $tmp = $t->tmp;

$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF");
tsb_cache_zone tsb:1m;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_sign_key_name CA-Key;
tsb_status_uri /request/;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
tsb_audit_log $tmp/audit.log;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example api.example;
    }
    location = /regex/sign {
        tsb_sign;
        tsb_allow_common_name "~^Example Issuing CA [0-9]+\$";
        tsb_allow_san_types none;
    }
    location = /org/sign {
        set \$unit ops;
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_subject_attribute O "Example Corp";
        tsb_allow_subject_attribute C CH;
        tsb_allow_subject_attribute OU "~^team-[a-z]+\$" \$unit;
    }
    location /request/ { tsb_status; }
}
EOF

my $PEM = 'application/x-pem-file';

# A CSR from python3-cryptography: the openssl CLI will not make most of
# these.  rdns is a list of RDNs, each a list of [type, value]; dns the
# DNS subjectAltNames.
sub py_csr {
    my (%o) = @_;
    my $spec = json_encode({ rdns => $o{rdns}, dns => $o{dns} || [] });
    my $py = "$tmp/csr.py";
    spew($py, <<'PY') unless -e $py;
import json, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
spec = json.loads(sys.argv[1])
oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME,
        "serialNumber": NameOID.SERIAL_NUMBER,
        "emailAddress": NameOID.EMAIL_ADDRESS}
rdns = [x509.RelativeDistinguishedName(
            [x509.NameAttribute(oids[a], v, _validate=False) for a, v in r])
        for r in spec["rdns"]]
k = ec.generate_private_key(ec.SECP256R1())
b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(rdns))
if spec["dns"]:
    b = b.add_extension(x509.SubjectAlternativeName(
        [x509.DNSName(d) for d in spec["dns"]]), critical=False)
print(b.sign(k, hashes.SHA256()).public_bytes(
    serialization.Encoding.PEM).decode(), end="")
PY
    my ($rc, $out) = $t->run_cmd('/usr/bin/python3', $py, $spec);
    die "python: $out" if $rc;
    return $out;
}

sub cn_csr {
    my ($cn, @dns) = @_;
    return py_csr(rdns => [[['CN', $cn]]], dns => \@dns);
}

sub refused {
    my ($name, $path, $status, $reason, $csr) = @_;
    my $r = $t->request(POST => $path, body => $csr, content_type => $PEM);
    $t->error_is($r, $status, $reason, $name);
    return $r;
}

sub accepted {
    my ($name, $path, $csr) = @_;
    my $r = $t->request(POST => $path, body => $csr, content_type => $PEM);
    is($r->{status}, 200, "$name: 200") or $t->explain_response($r);
    return ($r->{json} // {})->{signRequestId};
}

# ------------------------------------------- part 2: names, not host names

$t->sim_reset;

for my $cn ('a b.svc.example', 'x/y.svc.example', 'x@y.svc.example',
            '_x.svc.example', '-a.svc.example', 'a-.svc.example',
            "\x{430}pi.svc.example",            # Cyrillic а
            "\x{ff41}pi.svc.example",           # full-width ａ
            'xn--pi-6kc.svc.example',           # "аpi": mixed scripts
            'xn--zz.svc.example',               # not Punycode
            'ab--c.svc.example')
{
    my $r = refused("CN \"$cn\" under *.svc.example", '/sign', 400,
                    'csr.common_name', cn_csr($cn));
    like(($r->{json} // {})->{detail} // '', qr/not a host name: \w/,
         "CN \"$cn\": the detail says why");
    note(($r->{json} // {})->{detail} // '');
}

refused('CN with a trailing dot', '/sign', 400, 'csr.common_name',
        cn_csr('a.svc.example.'));
refused('CN exact name with a trailing dot', '/sign', 400,
        'csr.common_name', cn_csr('api.example.'));

for my $san ('_a.svc.example', 'a b.svc.example', '-a.svc.example',
             'a.svc.example.', 'a*.svc.example', 'a.svc.example/x')
{
    refused("DNS SAN \"$san\"", '/sign', 400, 'csr.san',
            cn_csr('a.svc.example', 'a.svc.example', $san));
}

{
    my $c = $t->sim_counts;
    is($c->{total}, 0, 'no refused name reached the TSB') or diag(explain $c);
}

# what is still accepted, and forwarded exactly as judged

{
    accepted('an A-label under the wildcard', '/sign',
             cn_csr('xn--bcher-kva.svc.example',
                    'xn--bcher-kva.svc.example'));
    accepted('upper case under the wildcard', '/sign',
             cn_csr('WEB.SVC.Example', 'WEB.SVC.Example'));
    my @seen = $t->sim_seen('POST', '/v1/certificate/sign');
    is($seen[-1]{body_json}{signCertificateRequest}{commonName},
       'WEB.SVC.Example', 'the commonName is forwarded as judged');

    accepted('a CN that is no host name, allowed by a regex', '/regex/sign',
             cn_csr('Example Issuing CA 3'));
    refused('a regex does not match a trailing dot either', '/regex/sign',
            400, 'csr.common_name', cn_csr('Example Issuing CA 3.'));
}

# ------------------------------------ part 3: the rest of the subject

$t->sim_reset;

my %refuse = (
    'O=system:masters' => [[['CN', 'a.svc.example']],
                           [['O', 'system:masters']]],
    'OU' => [[['OU', 'x']], [['CN', 'a.svc.example']]],
    'emailAddress' => [[['CN', 'a.svc.example']],
                       [['emailAddress', 'a@svc.example']]],
    'serialNumber' => [[['serialNumber', '1']], [['CN', 'a.svc.example']]],
    'a multi-valued RDN CN+O' => [[['CN', 'a.svc.example'],
                                   ['O', 'system:masters']]],
);

for my $k (sort keys %refuse) {
    my $r = refused("default: $k", '/sign', 403, 'policy.subject',
                    py_csr(rdns => $refuse{$k}));
    note(($r->{json} // {})->{detail} // '');
}

refused('default: two CNs', '/sign', 400, 'csr.common_name',
        py_csr(rdns => [[['CN', 'a.svc.example']],
                        [['CN', 'b.svc.example']]]));
refused('default: two CNs in one RDN', '/sign', 400, 'csr.common_name',
        py_csr(rdns => [[['CN', 'a.svc.example'], ['CN', 'b.svc.example']]]));

my %org_refuse = (
    'another O' => [[['C', 'CH']], [['O', 'Other Corp']],
                    [['CN', 'a.svc.example']]],
    'the O in another case' => [[['O', 'example corp']],
                                [['CN', 'a.svc.example']]],
    'O=system:masters besides the allowed O' =>
        [[['O', 'Example Corp']], [['O', 'system:masters']],
         [['CN', 'a.svc.example']]],
    'an OU neither the regex nor the variable allows' =>
        [[['OU', 'dev']], [['CN', 'a.svc.example']]],
    'an OU the regex leaves out' =>
        [[['OU', 'team-Web1']], [['CN', 'a.svc.example']]],
    'an attribute type not allowed' =>
        [[['O', 'Example Corp']], [['serialNumber', '7']],
         [['CN', 'a.svc.example']]],
);

for my $k (sort keys %org_refuse) {
    refused("allowed O and C: $k", '/org/sign', 403, 'policy.subject',
            py_csr(rdns => $org_refuse{$k}));
}

{
    my $c = $t->sim_counts;
    is($c->{total}, 0, 'no refused subject reached the TSB')
        or diag(explain $c);
}

sub approve {
    my ($id) = @_;
    my $a = $t->sim_post("/_sim/approve/$id");
    ok($a->{status} =~ /^2/, "approved $id") or diag($a->{content});
}

{
    my $id = accepted('allowed O and C', '/org/sign',
                      py_csr(rdns => [[['C', 'CH']], [['O', 'Example Corp']],
                                      [['CN', 'a.svc.example']]],
                             dns => ['a.svc.example']));
    accepted('an OU from the regex', '/org/sign',
             py_csr(rdns => [[['OU', 'team-web']],
                             [['CN', 'b.svc.example']]]));
    accepted('an OU from the variable', '/org/sign',
             py_csr(rdns => [[['OU', 'ops']], [['CN', 'c.svc.example']]]));

    my @lines = grep { length } split /\n/, slurp("$tmp/audit.log") // '';
    my ($line) = grep { ($_->{sign_request_id} // '') eq $id }
                 map { TsbTest::json_decode($_) } @lines;
    is_deeply($line && $line->{subject}, ['C=CH', 'O=Example Corp'],
              'the audit line lists the accepted subject');
    my ($refused) = grep { ($_->{reason} // '') eq 'policy.subject' }
                    map { TsbTest::json_decode($_) } @lines;
    is_deeply($refused && $refused->{subject}, ['O=system:masters'],
              'and a refused one');

    approve($id);
    my $r = $t->get("/request/$id.pem");
    is($r->{status}, 200, 'the certificate with the accepted subject is '
                          . 'served') or $t->explain_response($r);
    is($t->cert_subject($r->{content}), 'CN=a.svc.example,O=Example Corp,C=CH',
       'its subject, read by openssl, is the accepted one');
}

# a TSB that adds O=system:masters: the certificate is not served

for my $case (['/sign', [[['CN', 'm1.svc.example']]]],
              ['/org/sign', [[['O', 'Example Corp']],
                             [['CN', 'm2.svc.example']]]])
{
    my ($path, $rdns) = @$case;
    $t->sim_fault(route => $SIGN, mismatch => 'subject', times => 1);
    my $id = accepted("$path: accepted", $path, py_csr(rdns => $rdns));
    approve($id);
    my $r = $t->get("/request/$id.pem");
    $t->error_is($r, 502, 'issued.mismatch',
                 "$path: a subject with O=system:masters added");
    like(($r->{json} // {})->{detail} // '', qr/system:masters/,
         "$path: the detail names the attribute");
    $r = $t->get("/request/$id.der");
    is($r->{status}, 502, "$path: not served as DER either");
}

{
    my $log = $t->error_log;
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/
                     && !/issued\.mismatch/ } split /\n/, $log;
    ok(!@bad, 'no worker crash; the only alerts are the mismatches')
        or diag(join "\n", @bad);
    like($log, qr/\[alert\].*issued\.mismatch.*system:masters/,
         'the subject mismatch is logged at alert');
    ok(index($log, $KEY) < 0, 'no upstream secret in error.log');
}

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

bad_config('an exact name pattern that is no host name',
           'tsb_allow_common_name "John Doe";',
           qr/invalid name pattern "John Doe": an exact .* must be a host name/);
bad_config('an exact name pattern with "_"',
           'tsb_allow_common_name a_b.svc.example;',
           qr/must be a host name/);
bad_config('an unknown subject attribute type',
           'tsb_allow_subject_attribute Organisation x;',
           qr/unknown subject attribute type "Organisation"/);
bad_config('commonName as a subject attribute',
           'tsb_allow_subject_attribute CN a.svc.example;',
           qr/use tsb_allow_common_name/);
bad_config('a subject attribute without a value',
           'tsb_allow_subject_attribute O;',
           qr/invalid number of arguments/);
bad_config('a subject value regex that does not compile',
           'tsb_allow_subject_attribute O "~^(Example";',
           qr/invalid subject attribute value/);
bad_config('an empty subject value',
           'tsb_allow_subject_attribute O "";',
           qr/takes no empty values/);

done_testing();
