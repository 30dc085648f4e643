#!/usr/bin/perl
# ACME (tsb_acme) with a real client: lego registers, orders, finalizes
# and downloads a certificate over HTTPS; the simulator approves after a
# delay.  Authorizations are valid from the start (the location's policy
# is the validation), so lego answers no challenge.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp spew);
use TsbPki;

plan skip_all => 'lego is not installed' unless -x '/usr/bin/lego';

my $t = TsbTest->new;
my $tmp = $t->tmp;

my $pki = TsbPki::make($t);
$t->start_sim('--auto-approve-ms', 1500);
my $conf = <<"EOF";
tsb_cache_zone tsb:1m;
tsb_acme_zone acme:1m accounts=%%TMP%%/acme-accounts;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
tsb_retry_after 1s;
server {
    listen 127.0.0.1:%%PORT%% ssl;
    ssl_certificate $pki->{server};
    ssl_certificate_key $pki->{server_key};
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
}
EOF
$t->start_nginx($conf);

my $port = $t->port(1);
my $dir = "https://127.0.0.1:$port/acme/directory";

sub lego {
    my ($path, @args) = @_;
    local $ENV{LEGO_CA_CERTIFICATES} = $pki->{ca};
    return $t->run_cmd('lego', '--server', $dir, '--accept-tos',
                       '--email', 'ops@example.com', '--path', $path,
                       '--http', '--http.port', '127.0.0.1:' . $t->port(2),
                       @args);
}

# ------------------------------------------------------------- issuance

my ($rc, $out) = lego("$tmp/lego", '--domains', 'web.svc.example',
                      '--domains', 'api.svc.example', 'run');
is($rc, 0, 'lego run succeeds') or diag($out . $t->error_log_tail(30));

my $crt = "$tmp/lego/certificates/web.svc.example.crt";
ok(-s $crt, 'lego saved the certificate');

my $text = -s $crt ? $t->_openssl('x509', '-in', $crt, '-noout', '-text')
                   : '';
like($text, qr/Subject:.*CN\s*=\s*web\.svc\.example/, 'subject CN');
like($text, qr/DNS:web\.svc\.example/, 'SAN web');
like($text, qr/DNS:api\.svc\.example/, 'SAN api');

# the bundle is the leaf and tsb_issuer_chain
my $pem = slurp($crt) // '';
my @blocks = $pem =~ /(-----BEGIN CERTIFICATE-----)/g;
is(scalar @blocks, 2, 'leaf and issuer chain');
my ($vrc, $vout) = $t->run_cmd('openssl', 'verify', '-CAfile', $t->sim_ca,
                               $crt);
is($vrc, 0, 'the certificate verifies against the TSB CA') or diag($vout);

my @seen = $t->sim_seen('POST', '/v1/certificate/sign');
my $last = @seen ? $seen[-1]{body_json}{signCertificateRequest} : {};
is($last->{signKeyName}, 'CA-Key', 'the TSB got the location\'s key name');
is($last->{commonName}, 'web.svc.example', 'and the commonName');

# the account is on disk, keyed by its key's thumbprint
my @files = glob("$tmp/acme-accounts/*.json");
is(scalar @files, 1, 'one account file') or diag(`ls -la $tmp/acme-accounts`);

# ---------------------------------- the account outlives a restart

$t->stop_nginx;
$t->start_nginx($conf);
like($t->error_log, qr/1 accounts loaded from/, 'the account is read back');

# lego keeps its account URL: an order signed with its kid must find it
($rc, $out) = lego("$tmp/lego", '--domains', 'web.svc.example', 'run');
is($rc, 0, 'the same lego account orders again after a restart')
    or diag($out . $t->error_log_tail(20));
@files = glob("$tmp/acme-accounts/*.json");
is(scalar @files, 1, 'still one account');

# ----------------------------------------------------- policy refusal

($rc, $out) = lego("$tmp/lego", '--domains', 'www.other.example', 'run');
isnt($rc, 0, 'lego fails for a name outside the policy');
like($out, qr/rejectedIdentifier/, 'with rejectedIdentifier');
like($out, qr/does not allow "www\.other\.example"/,
     'naming the identifier') or diag($out);

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
