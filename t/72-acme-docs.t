#!/usr/bin/perl
# The configuration of docs/acme.md, as printed there (paths and the TSB's
# address moved into the test's directory), with lego and the EAB key of
# the example: a certificate for the account's own name after the
# approvers approve, and a clear refusal outside its names.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(slurp spew);
use TsbPki;
use POSIX ();

plan skip_all => 'lego is not installed' unless -x '/usr/bin/lego';

my $t = TsbTest->new;
my $tmp = $t->tmp;
my $KEY = 'docs-api-key-SECRET';

my $doc = slurp(TsbTest::root_dir() . '/docs/acme.md') // die "no acme.md\n";
my ($conf) = $doc =~ /^## Configuration\n.*?```nginx\n(.*?)```/ms;
my ($keys) = $doc =~ /`\/etc\/nginx\/acme-eab\.keys`.*?```\n(.*?)```/ms;
ok($conf && $keys, 'docs/acme.md has the configuration and the key file')
    or BAIL_OUT('cannot read docs/acme.md');
my ($kid, $hmac) = $keys =~ /^(\S+)\s+(\S+)\s+billing$/m;

my $pki = TsbPki::make($t);
$t->start_sim('--api-key', $KEY);
spew("$tmp/tsb-api-key", "$KEY\n");
spew("$tmp/acme-eab.keys", $keys);

# where the example points at files, hosts and ports of its own
$conf =~ s{https://tsb\.example\.internal:8080}{%%SIM%%};
$conf =~ s{/etc/nginx/tsb-api-key}{$tmp/tsb-api-key};
$conf =~ s{/etc/nginx/service-ca-chain\.pem}{%%SIMCA%%};
$conf =~ s{/etc/nginx/acme-eab\.keys}{$tmp/acme-eab.keys};
$conf =~ s{/etc/nginx/ca\.example\.internal\.pem}{$pki->{server}};
$conf =~ s{/etc/nginx/ca\.example\.internal\.key}{$pki->{server_key}};
$conf =~ s{/var/lib/nginx/acme}{$tmp/acme};
$conf =~ s{/var/log/nginx/tsb-audit\.log}{$tmp/audit.log};
$conf =~ s{listen 443 ssl;}{listen 127.0.0.1:%%PORT%% ssl;};
unlike($conf, qr{/etc/|/var/|:443}, 'every path of the example replaced');

$t->start_nginx($conf);
my $port = $t->port(1);

sub lego {
    my (@args) = @_;
    local $ENV{LEGO_CA_CERTIFICATES} = $pki->{ca};
    return $t->run_cmd('lego', '--server',
                       "https://127.0.0.1:$port/acme/directory",
                       '--eab', '--kid', $kid, '--hmac', $hmac,
                       '--accept-tos', '--email', 'ops@example.internal',
                       '--path', "$tmp/lego", '--http', '--http.port',
                       '127.0.0.1:' . $t->port(2), @args);
}

# the test approves once the request is there, after a while
my $pid = fork // die;
if ($pid == 0) {
    my $deadline = time + 30;
    while (time < $deadline) {
        my ($id) = $t->error_log =~ /sign request (\S+) submitted/;
        if ($id) {
            sleep 2;
            $t->sim_approve($id);
            POSIX::_exit(0);
        }
        select undef, undef, undef, 0.1;
    }
    POSIX::_exit(1);
}

my ($rc, $out) = lego('--domains', 'billing.svc.example.internal', 'run');
waitpid($pid, 0);
is($?, 0, 'the approver approved');
is($rc, 0, 'lego gets its certificate') or diag($out);
my $crt = "$tmp/lego/certificates/billing.svc.example.internal.crt";
my $text = -s $crt ? $t->_openssl('x509', '-in', $crt, '-noout', '-text')
                   : '';
like($text, qr/DNS:billing\.svc\.example\.internal/, 'for its name');

($rc, $out) = lego('--domains', 'payroll.svc.example.internal', 'run');
isnt($rc, 0, 'another team\'s name is refused');
like($out,
     qr/rejectedIdentifier.*does not allow "payroll\.svc\.example\.internal"/s,
     'clearly') or diag($out);

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
