#!/usr/bin/perl
# ACME (tsb_acme) with certbot over HTTPS: issuance after the approvers
# approve (the test approves in the simulator after a delay), external
# account binding required and used, a name outside the policy refused
# with a readable error, a TSB rejection ending the order invalid; and the
# protocol edges a client sees (nonces, problem documents).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url);
use POSIX qw(WNOHANG);
use TsbTest qw(slurp spew);
use TsbPki;

plan skip_all => 'certbot is not installed' unless -x '/usr/bin/certbot';

my $t = TsbTest->new;
my $tmp = $t->tmp;

my $pki = TsbPki::make($t);
my $HMAC = encode_base64url('0123456789abcdef0123456789abcdef');
spew("$tmp/eab.keys", "# kid secret identity\n"
                      . "team-web $HMAC web\n"
                      . "team-api " . encode_base64url('x' x 32) . " api\n");

$t->start_sim;
$t->start_nginx(<<"EOF");
tsb_cache_zone tsb:1m;
tsb_acme_zone acme:1m accounts=%%TMP%%/acme-accounts;
tsb_upstream %%SIM%%;
tsb_sign_key_name CA-Key;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
tsb_retry_after 1s;
tsb_audit_log %%TMP%%/audit.log;
server {
    listen 127.0.0.1:%%PORT%% ssl;
    ssl_certificate $pki->{server};
    ssl_certificate_key $pki->{server_key};
    location /acme/ {
        tsb_acme acme;
        tsb_allow_common_name *.svc.example;
    }
    location /eab/ {
        tsb_acme acme;
        tsb_acme_eab_keys $tmp/eab.keys;
        tsb_acme_eab_required on;
        tsb_allow_common_name \$tsb_acme_account.teams.example;
    }
}
EOF

my $port = $t->port(1);
my $n = 0;

# certbot in the background; returns its pid and output file
sub certbot_bg {
    my ($prefix, @args) = @_;
    my $d = "$tmp/certbot" . ++$n;
    my $out = "$d.out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $ENV{REQUESTS_CA_BUNDLE} = $pki->{ca};
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        exec('certbot', 'certonly', '--non-interactive', '--agree-tos',
             '-m', 'ops@example.com',
             '--server', "https://127.0.0.1:$port/$prefix/directory",
             '--config-dir', "$d/config", '--work-dir', "$d/work",
             '--logs-dir', "$d/logs", '--standalone',
             '--http-01-address', '127.0.0.1',
             '--http-01-port', $t->port(2), @args) or exit 127;
    }
    return { pid => $pid, out => $out, dir => $d };
}

sub certbot_wait {
    my ($c, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $w = waitpid($c->{pid}, WNOHANG);
        if ($w == $c->{pid}) {
            $c->{rc} = $? >> 8;
            return $c;
        }
        select undef, undef, undef, 0.1;
    }
    kill 'TERM', $c->{pid};
    waitpid($c->{pid}, 0);
    $c->{rc} = -1;
    return $c;
}

sub output { slurp($_[0]{out}) // '' }

# What the certbot user reads: its output, and the log file it points to.
# Debian 12's certbot 2.1 on Python 3.11 prints "AttributeError: can't set
# attribute" instead of an ACME error's detail (a josepy/contextlib clash
# fixed in certbot 2.2), while its log has the server's problem document.
sub told {
    my ($c) = @_;
    return output($c) . (slurp("$c->{dir}/logs/letsencrypt.log") // '');
}

# the id of the count-th sign request the gateway submitted, once it is
sub wait_sign_request {
    my ($count) = @_;
    my $deadline = time + 60;
    while (time < $deadline) {
        my @ids = $t->error_log =~ /processing: sign request (\S+) submitted/g;
        return $ids[$count - 1] if @ids >= $count;
        select undef, undef, undef, 0.1;
    }
    return undef;
}

# ------------------------------------------- protocol edges, no client

my $ua = HTTP::Tiny->new(verify_SSL => 1, SSL_options => {
    SSL_ca_file => $pki->{ca} });
my $base = "https://127.0.0.1:$port/acme/";

my $r = $ua->get($base . 'directory');
is($r->{status}, 200, 'directory');
my $d = TsbTest::json_decode($r->{content}) // {};
is($d->{newNonce}, $base . 'new-nonce', 'newNonce URL');
ok(exists $d->{meta} && !$d->{meta}{externalAccountRequired},
   'no EAB needed at /acme/');

$r = $ua->request('HEAD', $base . 'new-nonce');
is($r->{status}, 200, 'HEAD newNonce: 200');
like($r->{headers}{'replay-nonce'} // '', qr/^[A-Za-z0-9_-]{22}$/,
     'a Replay-Nonce');
is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
like($r->{headers}{link} // '', qr/<\Q${base}\Edirectory>;rel="index"/,
     'Link to the directory');

$r = $ua->get($base . 'new-nonce');
is($r->{status}, 204, 'GET newNonce: 204');
my $nonce = $r->{headers}{'replay-nonce'};

$r = $ua->get("https://127.0.0.1:$port/eab/directory");
$d = TsbTest::json_decode($r->{content}) // {};
ok($d->{meta}{externalAccountRequired}, 'EAB announced at /eab/');

# a JWS with a spent or unknown nonce: badNonce and a fresh one
sub fake_jws {
    my ($nonce, $url) = @_;
    my $prot = encode_base64url(TsbTest::json_encode({
        alg => 'ES256', kid => "${base}acct/x", nonce => $nonce,
        url => $url }));
    return TsbTest::json_encode({ protected => $prot, payload => '',
                                  signature => encode_base64url('s' x 64) });
}

$r = $ua->post($base . 'new-order', {
    headers => { 'Content-Type' => 'application/jose+json' },
    content => fake_jws('not-a-nonce', $base . 'new-order') });
is($r->{status}, 400, 'unknown nonce: 400');
is($r->{headers}{'content-type'}, 'application/problem+json',
   'problem+json');
$d = TsbTest::json_decode($r->{content}) // {};
is($d->{type}, 'urn:ietf:params:acme:error:badNonce', 'badNonce');
like($r->{headers}{'replay-nonce'} // '', qr/^[A-Za-z0-9_-]{22}$/,
     'with a fresh Replay-Nonce');

# a good nonce, a bad signature: the nonce is spent, the account unknown
$r = $ua->post($base . 'new-order', {
    headers => { 'Content-Type' => 'application/jose+json' },
    content => fake_jws($nonce, $base . 'new-order') });
$d = TsbTest::json_decode($r->{content}) // {};
is($d->{type}, 'urn:ietf:params:acme:error:accountDoesNotExist',
   'a kid of no account') or diag($r->{content});
$r = $ua->post($base . 'new-order', {
    headers => { 'Content-Type' => 'application/jose+json' },
    content => fake_jws($nonce, $base . 'new-order') });
$d = TsbTest::json_decode($r->{content}) // {};
is($d->{type}, 'urn:ietf:params:acme:error:badNonce',
   'a nonce is used once');

$r = $ua->post($base . 'new-order', {
    headers => { 'Content-Type' => 'application/json' }, content => '{}' });
is($r->{status}, 415, 'not application/jose+json: 415');

$r = $ua->post($base . 'new-order', {
    headers => { 'Content-Type' => 'application/jose+json' },
    content => '{"protected": 1' });
$d = TsbTest::json_decode($r->{content}) // {};
is($d->{type}, 'urn:ietf:params:acme:error:malformed', 'bad JSON: malformed');
ok(length($d->{detail} // ''), 'with a detail');

$r = $ua->get($base . 'order/xyz');
is($r->{status}, 405, 'GET of an order: 405 (POST-as-GET only)');

# ------------------------------------ certbot with EAB, approved later

my $c = certbot_bg('eab', '-d', 'web.teams.example',
                   '--eab-kid', 'team-web', '--eab-hmac-key', $HMAC);
my $id = wait_sign_request(1);
ok($id, 'the TSB got a sign request') or diag(output($c));
sleep 2;                                   # the approvers take their time
$t->sim_approve($id) if $id;
certbot_wait($c, 90);
is($c->{rc}, 0, 'certbot succeeds after approval') or diag(output($c));

my $live = "$c->{dir}/config/live/web.teams.example";
ok(-s "$live/fullchain.pem", 'certbot saved the chain');
my $text = -s "$live/cert.pem"
           ? $t->_openssl('x509', '-in', "$live/cert.pem", '-noout', '-text')
           : '';
like($text, qr/DNS:web\.teams\.example/, 'the issued name');
my ($vrc, $vout) = $t->run_cmd('openssl', 'verify', '-CAfile', $t->sim_ca,
                               "$live/cert.pem");
is($vrc, 0, 'it verifies against the TSB CA') or diag($vout);

my $audit = slurp("$tmp/audit.log") // '';
like($audit, qr/"reason":"acme\.new_account".*bound to web/,
     'account creation audited with its binding');
like($audit, qr/"sign_request_id":"\Q$id\E"/, 'finalize audited')
    if $id;

# ------------------------------- EAB: another team's names, no binding

$c = certbot_wait(certbot_bg('eab', '-d', 'api.teams.example',
                             '--eab-kid', 'team-web', '--eab-hmac-key',
                             $HMAC), 60);
isnt($c->{rc}, 0, 'an account bound to "web" cannot order api.*');
like(told($c), qr/does not allow \\?"api\.teams\.example/,
     'readable: the policy does not allow it') or diag(output($c));

$c = certbot_wait(certbot_bg('eab', '-d', 'web.teams.example',
                             '--register-unsafely-without-email'), 60);
isnt($c->{rc}, 0, 'no EAB where it is required');
like(output($c), qr/external account binding|externalAccountRequired/i,
     'readable: external account binding needed') or diag(output($c));

$c = certbot_wait(certbot_bg('eab', '-d', 'web.teams.example',
                             '--eab-kid', 'team-web', '--eab-hmac-key',
                             encode_base64url('wrong' x 8)), 60);
isnt($c->{rc}, 0, 'a wrong HMAC key');
like(output($c), qr/does not verify/, 'readable: the binding does not '
     . 'verify') or diag(output($c));

# ------------------------------------------------- policy refusal

$c = certbot_wait(certbot_bg('acme', '-d', 'www.other.example'), 60);
isnt($c->{rc}, 0, 'certbot fails outside the policy');
like(told($c), qr/does not allow \\?"www\.other\.example/,
     'the certbot user reads why') or diag(output($c));

# --------------------------------------------- a TSB rejection

my $before = () = $t->error_log =~ /processing: sign request/g;
$c = certbot_bg('acme', '-d', 'db.svc.example');
$id = wait_sign_request($before + 1);
ok($id, 'the rejected one reached the TSB');
$t->sim_post("/_sim/reject/$id") if $id;
certbot_wait($c, 90);
isnt($c->{rc}, 0, 'certbot fails when the approvers reject');
like(told($c), qr/"status":"invalid".*the approvers REJECTED sign request/,
     'and says the approvers rejected it')
    or diag(output($c));
like($t->error_log, qr/order \S+ is invalid \(sign request \Q$id\E REJECTED\)/,
     'the order ended invalid') if $id;

ok($t->no_worker_crash, 'no worker crashed');

done_testing();
