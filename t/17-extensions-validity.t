#!/usr/bin/perl
# Issue 10, parts 4 and 5: requested extensions are an allow-list, the
# lifetime has a ceiling, and RSA keys and EC curves have limits.  Every
# refusal is a JSON 4xx with its reason and no call to the TSB; what is
# allowed goes through and is issued (checked with openssl).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp json_encode);

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
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_audit_log $tmp/audit.log;
    }
    location = /ext/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_extension certificatePolicies;
        tsb_allow_extension 1.2.3.4.5 tlsfeature;
    }
    location = /short/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_max_validity 30d;
        tsb_allow_ec_curves P-256 P-384;
    }
    location = /e3/sign {
        tsb_sign;
        tsb_allow_common_name *.svc.example;
        tsb_allow_rsa_exponents 65537 3;
    }
    location /request/ { tsb_status; }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow POST /v1/certificate/sign;
        tsb_allow_common_name *.svc.example;
    }
}
EOF

my $PEM = 'application/x-pem-file';
my $JSON = 'application/json';

sub envelope {
    my ($csr, %f) = @_;
    return json_encode({ signCertificateRequest => {
        certificateSigningRequest => $csr, %f } });
}

sub sign_count { $t->sim_counts->{$SIGN} // 0 }

# a refusal: JSON with its reason, and the TSB never called
sub refused {
    my ($name, $path, $status, $reason, $body, $ct) = @_;
    my $before = sign_count();
    my $r = $t->request(POST => $path, body => $body,
                        content_type => $ct // $PEM);
    $t->error_is($r, $status, $reason, $name);
    is(sign_count(), $before, "$name: the TSB saw nothing");
    return $r;
}

sub accepted {
    my ($name, $path, $body, $ct) = @_;
    my $r = $t->request(POST => $path, body => $body,
                        content_type => $ct // $PEM);
    is($r->{status}, 200, "$name: 200") or $t->explain_response($r);
    return ($r->{json} // {})->{signRequestId};
}

# the certificate of an accepted request, once the simulator issued it
sub issued {
    my ($id, %approve) = @_;
    my $a = $t->sim_post("/_sim/approve/$id",
                         %approve ? (json_encode(\%approve)) : ());
    ok($a->{status} =~ /^2/, "approved $id") or diag($a->{content});
    return $t->get("/request/$id.pem");
}

sub csr_ext {
    my ($cn, @ext) = @_;
    my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256', san => [$cn],
                             ext => \@ext);
    return $csr;
}

# ------------------------------------------------ requested extensions

refused('nameConstraints', '/sign', 403, 'policy.extension',
        csr_ext('nc.svc.example', 'nameConstraints=permitted;DNS:.example'));
refused('nameConstraints where other extensions are allowed', '/ext/sign',
        403, 'policy.extension',
        csr_ext('nc.svc.example', 'nameConstraints=permitted;DNS:.example'));
refused('OCSP no-check', '/sign', 403, 'policy.extension',
        csr_ext('nocheck.svc.example', 'noCheck=ignored'));
refused('certificatePolicies', '/sign', 403, 'policy.extension',
        csr_ext('cp.svc.example', 'certificatePolicies=1.2.3.4'));
refused('an unknown critical extension', '/sign', 403, 'policy.extension',
        csr_ext('crit.svc.example', '1.2.3.4.6=critical,DER:05:00'));
refused('an unknown critical extension, even when listed', '/ext/sign',
        403, 'policy.extension',
        csr_ext('crit.svc.example', '1.2.3.4.5=critical,DER:05:00'));
refused('an unknown extension', '/sign', 403, 'policy.extension',
        csr_ext('unknown.svc.example', '1.2.3.4.5=DER:05:00'));
refused('an extension in the JSON envelope too', '/sign', 403,
        'policy.extension',
        envelope(csr_ext('json.svc.example', 'noCheck=ignored')), $JSON);

{
    my $r = refused('detail', '/sign', 403, 'policy.extension',
                    csr_ext('nc.svc.example',
                            'nameConstraints=permitted;DNS:.example'));
    like(($r->{json} // {})->{detail} // '', qr/2\.5\.29\.30/,
         'the detail names the OID');
}

accepted('certificatePolicies where allowed', '/ext/sign',
         csr_ext('cp.svc.example', 'certificatePolicies=1.2.3.4'));
accepted('an unknown non-critical extension where listed', '/ext/sign',
         csr_ext('listed.svc.example', '1.2.3.4.5=DER:05:00'));

# the TSB's own CSR: SKI, critical KU and EKU; only its usages are refused
{
    my $tsb = slurp("$FindBin::Bin/fixtures/tsb-csr-new-label.pem");
    my $r = $t->request(POST => '/sign', body => $tsb, content_type => $PEM);
    isnt(($r->{json} // {})->{reason} // '', 'policy.extension',
         'a TSB CSR (subjectKeyIdentifier) is not refused for its SKI');
}

{
    my $id = accepted('subjectKeyIdentifier is always allowed', '/sign',
                      csr_ext('ski.svc.example', 'subjectKeyIdentifier=hash'));
    my $r = issued($id);
    is($r->{status}, 200, 'SKI: the certificate is served')
        or $t->explain_response($r);
}

# ------------------------------------------------------------ validity

refused('validity above the default 397 days', '/sign', 403,
        'policy.validity',
        envelope(csr_ext('long.svc.example'), validity => 398), $JSON);
refused('validity 36500 days', '/sign', 403, 'policy.validity',
        envelope(csr_ext('long.svc.example'), validity => 36500), $JSON);
refused('validity above tsb_max_validity 30d', '/short/sign', 403,
        'policy.validity',
        envelope(csr_ext('long.svc.example'), validity => 31), $JSON);

{
    my $id = accepted('validity 30 of 30 days', '/short/sign',
                      envelope(csr_ext('month.svc.example'), validity => 30),
                      $JSON);
    my $r = issued($id);
    is($r->{status}, 200, '30 days: served') or $t->explain_response($r);
    my $text = $t->cert_text($r->{content});
    my ($nb) = $text =~ /Not Before\s*:\s*(.+?)\s*\n/;
    my ($na) = $text =~ /Not After\s*:\s*(.+?)\s*\n/;
    ok(defined $nb && defined $na, 'openssl shows notBefore and notAfter');
    my $days = (`date -u -d '$na' +%s` - `date -u -d '$nb' +%s`) / 86400;
    ok($days > 29.9 && $days < 30.1, "issued for 30 days ($days)");

    my $seen = (grep {
        ref $_->{body_json} eq 'HASH'
            && ($_->{body_json}{signCertificateRequest}{commonName} // '')
               eq 'month.svc.example'
    } $t->sim_seen(POST => '/v1/certificate/sign'))[-1];
    is($seen->{body_json}{signCertificateRequest}{validity}, 30,
       'the validity is forwarded as judged');
}

# the audit line carries the requested validity
{
    accepted('audited validity', '/sign',
             envelope(csr_ext('audit.svc.example'), validity => 90), $JSON);
    my @lines = grep { length } split /\n/, slurp("$tmp/audit.log") // '';
    my $a = TsbTest::json_decode($lines[-1] // '{}') // {};
    is($a->{validity}, 90, 'audit: validity 90');
    refused('audited refusal', '/sign', 403, 'policy.validity',
            envelope(csr_ext('audit.svc.example'), validity => 400), $JSON);
    @lines = grep { length } split /\n/, slurp("$tmp/audit.log") // '';
    $a = TsbTest::json_decode($lines[-1] // '{}') // {};
    is($a->{reason}, 'policy.validity', 'audit: the refusal');
    is($a->{validity}, 400, 'audit: with the validity asked for');
}

# the front of the TSB API takes the same policy
refused('tsb_pass: an extension', '/v1/certificate/sign', 403,
        'policy.extension',
        envelope(csr_ext('front.svc.example', 'noCheck=ignored')), $JSON);
refused('tsb_pass: a validity', '/v1/certificate/sign', 403,
        'policy.validity',
        envelope(csr_ext('front.svc.example'), validity => 3650), $JSON);

# ---------------------------------------------------------------- keys

{
    my ($csr) = $t->make_csr(cn => 'p521.svc.example', key => 'ec:P-521');
    accepted('P-521 by default', '/sign', $csr);
    refused('P-521 where not allowed', '/short/sign', 403,
            'policy.key_type', $csr);
    ($csr) = $t->make_csr(cn => 'p384.svc.example', key => 'ec:P-384');
    accepted('P-384 where allowed', '/short/sign', $csr);
}

{
    my $key = "$tmp/e3.key";
    $t->_openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt',
                 'rsa_keygen_bits:2048', '-pkeyopt', 'rsa_keygen_pubexp:3',
                 '-out', $key);
    $t->_openssl('req', '-new', '-key', $key, '-subj', '/CN=e3.svc.example',
                 '-out', "$tmp/e3.csr");
    my $csr = slurp("$tmp/e3.csr");
    refused('RSA exponent 3', '/sign', 403, 'policy.key_type', $csr);
    accepted('RSA exponent 3 where listed', '/e3/sign', $csr);
}

refused('RSA-16384', '/sign', 403, 'policy.key_size',
        slurp("$FindBin::Bin/fixtures/rsa16384-csr.pem"));

# --------------------------------- what the TSB issued, checked again

sub mismatch_is {
    my ($r, $name, $re) = @_;
    $t->error_is($r, 502, 'issued.mismatch', $name);
    like(($r->{json} // {})->{detail} // '', $re, "$name: the detail");
}

for my $m (['name_constraints', qr/nameConstraints|2\.5\.29\.30/],
           ['ocsp_nocheck', qr/OCSP No Check|1\.3\.6\.1\.5\.5\.7\.48\.1\.5/])
{
    my ($what, $re) = @$m;
    (my $host = $what) =~ tr/_/-/;      # a host name has no '_'
    my $id = accepted("$what: accepted", '/sign',
                      csr_ext("$host.svc.example"));
    my $r = issued($id, mismatch => $what);
    mismatch_is($r, "TSB added $what: not served", $re);
    my $pem = ($t->sim_get("/_sim/sign-requests")->{json} // []);
    my ($st) = grep { ($_->{id} // '') eq $id } @$pem;
    like($t->cert_text($st->{result} // ''),
         $what eq 'name_constraints' ? qr/Name Constraints/
                                     : qr/OCSP No Check/,
         "$what: openssl sees it in what the TSB issued");
    $r = $t->get("/request/$id.der");
    is($r->{status}, 502, "$what: not as DER either");
}

{
    my $id = accepted('validity 20', '/sign',
                      envelope(csr_ext('longer.svc.example'), validity => 20),
                      $JSON);
    my $r = issued($id, mismatch => 'validity');
    mismatch_is($r, 'TSB issued 30 days longer than requested',
                qr/20 days were accepted/);
}

{
    # no validity asked for: the TSB's default (365 days in the simulator)
    # must fit tsb_max_validity (30d here)
    my $id = accepted('no validity under a 30d maximum', '/short/sign',
                      csr_ext('default.svc.example'));
    my $r = issued($id);
    mismatch_is($r, 'the TSB default beyond tsb_max_validity',
                qr/tsb_max_validity/);
}

{
    # the allowed extension, and the CA's own: served
    my $id = accepted('allowed extension, issued', '/ext/sign',
                      csr_ext('cp2.svc.example', '1.2.3.4.5=DER:05:00'));
    my $r = issued($id);
    is($r->{status}, 200, 'SKI and AKI of the CA are no mismatch')
        or $t->explain_response($r);
    like($t->cert_text($r->{content}), qr/Authority Key Identifier/,
         'openssl: the CA added its AKI');
}

# -------------------------------------------- configurations refused

sub bad_config {
    my ($name, $directives, $msg) = @_;
    my $b = TsbTest->new;
    my $died = !eval {
        $b->start_nginx(<<"CONF");
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
        tsb_sign_key_name CA-Key;
        $directives
    }
}
CONF
        1;
    };
    my $why = $@ // '';
    ok($died && $why =~ $msg, "refused configuration: $name")
        or diag($why);
    $b->stop;
}

bad_config('subjectAltName as an extra extension',
           'tsb_allow_extension subjectAltName;', qr/subjectAltName is/);
bad_config('an unknown extension name',
           'tsb_allow_extension no-such-extension;',
           qr/invalid extension "no-such-extension"/);
bad_config('a validity under a day', 'tsb_max_validity 12h;',
           qr/1d to 36500d/);
bad_config('an unknown curve', 'tsb_allow_ec_curves P-192;',
           qr/invalid curve "P-192"/);
bad_config('an even exponent', 'tsb_allow_rsa_exponents 4;',
           qr/invalid RSA public exponent "4"/);
bad_config('a maximum beyond 16384', 'tsb_max_rsa_bits 32768;',
           qr/must be between 2048 and 16384/);
bad_config('a maximum below the minimum',
           "tsb_min_rsa_bits 4096;\n        tsb_max_rsa_bits 3072;",
           qr/below tsb_min_rsa_bits/);

# the mismatches are logged at alert, by design; nothing else may be
{
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/
                     && !/the issued certificate is not served: issued\.mismatch/ }
              split /\n/, $t->error_log;
    ok(!@bad, 'no other alert and no worker crash') or diag(join "\n", @bad);
    is(scalar(() = $t->error_log =~ /\[alert\].*issued\.mismatch/g), 4,
       'each of the four mismatches logged at alert');
}

done_testing();
