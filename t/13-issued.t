#!/usr/bin/perl
# Post-issuance verification end to end: what the sign location accepted
# is kept with the request (tsb_cache), and a certificate the TSB issued
# with another key, another CN, or under another issuer is never served:
# 502 issued.mismatch, and the mismatch is logged at alert.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp);

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';
my $t = TsbTest->new;
my $tmp = $t->tmp;

# a CA that issued nothing here
$t->_openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes',
             '-keyout', "$tmp/other-ca.key", '-out', "$tmp/other-ca.pem",
             '-subj', '/CN=Other CA', '-days', '1');

$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF");
tsb_cache_zone tsb:1m;
tsb_cache_zone other:1m;
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
    }
    location /request/ { tsb_status; }
    location /other/ {
        tsb_status;
        tsb_cache other;
        tsb_issuer_chain $tmp/other-ca.pem;
    }
}
EOF

my $PEM = 'application/x-pem-file';

sub sign {
    my ($cn) = @_;
    my ($csr) = $t->make_csr(cn => $cn, san => [$cn]);
    my $r = $t->request(POST => '/sign', body => $csr, content_type => $PEM);
    is($r->{status}, 200, "$cn: 200") or $t->explain_response($r);
    return ($r->{json} // {})->{signRequestId}, $csr;
}

sub mismatch_is {
    my ($r, $name) = @_;
    my $j = ref $r->{json} eq 'HASH' ? $r->{json} : {};
    is($r->{status}, 502, "$name: 502");
    is($j->{reason}, 'issued.mismatch', "$name: issued.mismatch");
}

sub approve {
    my ($id) = @_;
    my $a = $t->sim_post("/_sim/approve/$id");
    ok($a->{status} =~ /^2/, "approved $id") or diag($a->{content});
}

# ----------------------------------------------------------- the good one

{
    my ($id, $csr) = sign('good.svc.example');
    approve($id);
    my $r = $t->get("/request/$id.pem");
    is($r->{status}, 200, 'a matching certificate is served')
        or $t->explain_response($r);
    is($t->pubkey_of_cert($r->{content}), $t->pubkey_of_csr($csr),
       'with the CSR\'s key');
}

# -------------------------------------------------------- the wrong ones

for my $m (qw(key cn)) {
    $t->sim_fault(route => $SIGN, mismatch => $m, times => 1);
    my ($id) = sign("mismatch-$m.svc.example");
    approve($id);

    {
        my $r = $t->get("/request/$id.pem");
        mismatch_is($r, "TSB issued another $m: not served");
        like(($r->{json} // {})->{detail} // '',
             $m eq 'key' ? qr/public key/ : qr/commonName/,
             "another $m: the detail names it");
        $r = $t->get("/request/$id.der");
        mismatch_is($r, "TSB issued another $m: not served as DER either");
    }
}

{
    my ($id) = sign('issuer.svc.example');
    approve($id);

    {
        my $r = $t->get("/other/$id.pem");
        mismatch_is($r, 'issued by a CA outside tsb_issuer_chain');
        like(($r->{json} // {})->{detail} // '', qr/issuer/,
             'another issuer: the detail names it');
        ok($t->error_log =~ /\[alert\].*issued\.mismatch/,
           'a mismatch is logged at alert');
    }
}

done_testing();
