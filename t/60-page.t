#!/usr/bin/perl
# The self-service page (page/) in a real browser: Debian's headless
# Chromium driven by t/page/browser.py against nginx with the module and
# the simulator.  The policy is shown, a refused name shows its reason next
# to the field, a key and CSR made in the browser are submitted, the
# approvals appear without a reload, the certificate and the key are
# downloaded and checked here with OpenSSL, a request is cancelled.
# Screenshots of each state: build/page-shots/ (kept as test artefacts).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path remove_tree);
use Test::More;
use TsbTest;

my $ROOT = TsbTest::root_dir();
my $PY = '/usr/bin/python3';

plan skip_all => 'chromium, chromedriver or python3-selenium missing'
    unless -x '/usr/bin/chromium' && -x '/usr/bin/chromedriver'
        && system("$PY -c 'import selenium' 2>/dev/null") == 0;

my $t = TsbTest->new;
$t->start_sim('--api-key', 'page-test-key', '--approvers', 'alice,bob');
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key page-test-key;
tsb_cache_zone tsb:1m;
tsb_cache tsb;
tsb_issuer_chain %%SIMCA%%;
server {
    listen 127.0.0.1:%%PORT%%;

    # the page as conf/page.conf shows it, with its 20 s long polls: the
    # approvals must show long before a poll's time is up
    location /ui/ {
        alias $ROOT/page/;
        types {
            text/html               html;
            text/css                css;
            application/javascript  js;
        }
    }
    location = /tsb/sign {
        tsb_sign;
        tsb_sign_describe on;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_allow_key_usage DIGITAL_SIGNATURE KEY_ENCIPHERMENT;
        tsb_allow_extended_key_usage SERVER_AUTH CLIENT_AUTH;
        tsb_status_uri /tsb/request/;
    }
    location /tsb/request/ {
        tsb_status;
    }
}
EOF

# the policy as the page reads it
{
    my $r = $t->get('/tsb/sign', headers => { Accept => 'application/json' });
    is($r->{status}, 200, 'GET on the sign location: 200');
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         'the policy is JSON');
    is($r->{json}{names}[0]{pattern}, '*.svc.example',
       'policy: the name pattern');
    is($r->{json}{signKeyName}, 'CA-Key', 'policy: the signing key');
    is_deeply($r->{json}{keyUsage}{allowed},
              ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
              'policy: the key usages');
    is($t->sim_counts->{total} // 0, 0, 'describing reaches no TSB');
}

my $out = "$ROOT/build/page-shots";
remove_tree($out);
make_path($out);

my $url = $t->base_url . '/ui/';
my $json = `$PY $ROOT/t/page/browser.py --url '$url' --sim '${\ $t->sim_url}' --out '$out' --refused www.evil.example --name web1.svc.example --first alice --second bob --timeout ${\ (30 * $TsbTest::TIME_FACTOR)}`;
is($?, 0, 'the browser driver ran');
my $seen = TsbTest::json_decode($json) // {};
diag("browser: $seen->{timeout}\n$seen->{page_text}") if $seen->{timeout};
ok(!$seen->{timeout}, 'every step of the page happened in time');

like($seen->{policy} // '', qr/\*\.svc\.example/,
     'the page shows the allowed names');
is_deeply($seen->{ku_boxes}, ['DIGITAL_SIGNATURE', 'KEY_ENCIPHERMENT'],
          'the page offers the allowed key usages only');

like($seen->{refused_error} // '', qr/^policy\.\S+: /,
     'a refused name shows its reason code next to the name field');
is($seen->{refused_invalid}, 'true', 'and the field is marked invalid');

like($seen->{id} // '', qr/^[0-9a-f-]{36}$/, 'the request got an id');
like($seen->{url_after_submit} // '', qr/#request=\Q$seen->{id}\E$/,
     'the id is in the URL');
is_deeply([sort @{$seen->{pending_before} // []}], ['alice', 'bob'],
          'both approvers are shown as missing');
is_deeply($seen->{approved_partial}, ['alice'],
          'an approval shows without a reload');
is_deeply($seen->{pending_partial}, ['bob'], 'bob still missing');
# tsb_refresh_interval 1s (the default), the page's polls 20 s
cmp_ok($seen->{partial_seconds} // 99, '<', 3,
       "shown $seen->{partial_seconds} s after the approval, long before "
       . 'the 20 s long poll is up');
is($seen->{after_reload_id}, $seen->{id}, 'a reload keeps the request');

is_deeply($seen->{approved_partial2}, ['alice'],
          'second request: the first approval shows without a reload');
is_deeply($seen->{pending_partial2}, ['bob'], 'bob still missing');
cmp_ok($seen->{partial2_seconds} // 99, '<', 3,
       "shown $seen->{partial2_seconds} s after the approval");
cmp_ok($seen->{issued_seconds} // 99, '<', 5,
       "the final approval: issued and shown $seen->{issued_seconds} s "
       . 'after it');
is($seen->{state}, 'EXECUTED', 'the second request was issued');
like($seen->{cert_info} // '', qr/CN=web1\.svc\.example/,
     'the page shows the subject');
like($seen->{cert_info} // '', qr/([0-9A-F]{2}:){31}[0-9A-F]{2}/,
     'and the SHA-256 fingerprint');
like($seen->{curl} // '', qr{curl .*/tsb/sign\?wait=},
     'a curl line for next time');
ok($seen->{key_link_shown}, 'the browser-made key is offered');

# the gateway names the certificate files (Content-Disposition), the page
# names the key after the request id
my $id2 = $seen->{id2} // 'none';
my $dl = "$out/downloads";
my ($cert) = grep { !/\.key\.pem$/ } glob("$dl/*.pem");
my ($der) = glob("$dl/*.der");
my $key = "$dl/$id2.key.pem";
$cert //= ''; $der //= '';
ok(-s $cert && -s $key && -s $der, 'PEM, DER and key downloaded')
    or diag("downloads: @{$seen->{downloads} // []}");

SKIP: {
    skip 'no downloads', 5 unless -s $cert && -s $key;
    like(TsbTest::slurp($key), qr/^-----BEGIN PRIVATE KEY-----/,
         'the key is PKCS#8 PEM');
    my $subject = `openssl x509 -in '$cert' -noout -subject -nameopt RFC2253`;
    like($subject, qr/CN=web1\.svc\.example/, 'openssl: the subject');
    my $cpub = `openssl x509 -in '$cert' -noout -pubkey`;
    my $kpub = `openssl pkey -in '$key' -pubout`;
    ok($cpub =~ /BEGIN PUBLIC KEY/ && $cpub eq $kpub,
       'openssl: the certificate is for the key the page made');
    my $v = `openssl verify -CAfile '${\ $t->sim_ca}' '$cert' 2>&1`;
    like($v, qr/: OK$/m, 'openssl: signed by the CA');
    my $der = `openssl x509 -inform DER -in '$der' -noout -pubkey`;
    is($der, $cpub, 'the DER download is the same certificate');
}

is($seen->{cancel_state}, 'CANCELLED', 'a request is cancelled from its page')
    or diag("cancel: $seen->{cancel_error}");
is_deeply($seen->{console} // [], [], 'no errors in the browser console');

ok(-s "$out/$_.png", "screenshot $_") for qw(01-policy 02-refused
    03-pending 04-partially-approved 05-issued 06-cancelled);

$t->no_worker_crash;

done_testing();
