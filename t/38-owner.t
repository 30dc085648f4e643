#!/usr/bin/perl
# Whose request is it (issue 10, part 7) and cancel through the status
# location (issue 13, point 2).  tsb_owner records who created a request
# (here $remote_user, from auth_basic) as a hash with what was accepted, in
# the zone and in tsb_store's .accepted file; tsb_owner_check restricts
# cancel (the default) or every read too (all) to that identity.  DELETE on
# a tsb_status location cancels as the TSB does: 200 {}.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256);
use MIME::Base64 qw(encode_base64);
use TsbTest qw(slurp spew json_encode);

my $KEY = 'owner-api-key-SECRET';
my $DEL = 'DELETE /v1/request/{id}';
my $JSON = 'application/json';

my $t = TsbTest->new;
my $tmp = $t->tmp;

# two users of the same front, alice and bob
my $htpasswd = '';
for my $u (qw(alice bob)) {
    my $h = `openssl passwd -apr1 pw-$u`;
    chomp $h;
    $htpasswd .= "$u:$h\n";
}
spew("$tmp/htpasswd", $htpasswd);
mkdir "$tmp/store";

$t->start_sim('--api-key', $KEY, '--approvers', 'alice');
my $CONF = <<"EOF2";
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_store %%TMP%%/store;
server {
    listen 127.0.0.1:%%PORT%%;
    auth_basic pki;
    auth_basic_user_file %%TMP%%/htpasswd;
    tsb_cache tsb;
    tsb_owner \$remote_user;
    tsb_sign_key_name CA-Key;
    tsb_allow_common_name *.svc.example;

    # the TSB's own paths (conf/tsb-front.conf)
    location = /v1/certificate/sign { tsb_sign; }
    location /v1/request/ { tsb_status; }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/versionInfo;
    }

    location /private/ { tsb_status; tsb_owner_check all; }
    location /cert/ { tsb_certificate; tsb_owner_check all; }
    location /anyone/ { tsb_status; tsb_owner_check off; }
    location /nocache/ { tsb_status; tsb_cache off; }

    location = /sign-by-header {
        tsb_sign;
        tsb_owner \$http_x_owner;
    }
}
server {
    # a front of the whole TSB API
    listen 127.0.0.1:%%PORT2%%;
    auth_basic pki;
    auth_basic_user_file %%TMP%%/htpasswd;
    tsb_cache tsb;
    tsb_owner \$remote_user;
    location /v1/ {
        tsb_pass;
        tsb_pass_allow DELETE /v1/request/*;
        tsb_pass_allow GET /v1/request/*;
    }
}
EOF2
$t->start_nginx($CONF);

sub as {
    my ($user) = @_;
    return { Authorization => 'Basic ' . encode_base64("$user:pw-$user", '') };
}

sub sign_as {
    my ($user, $cn, $path) = @_;
    my ($csr) = $t->make_csr(cn => $cn);
    my $r = $t->request(POST => $path // '/v1/certificate/sign', body => $csr,
                        content_type => 'application/x-pem-file',
                        headers => as($user));
    return $r->{json}{signRequestId} if ($r->{status} // 0) =~ /^20[02]$/;
    $t->explain_response($r);
    return 'none';
}

sub dels { $t->sim_counts->{$DEL} // 0 }

# ------------------------------------------------ cancel: only the owner

my $A = sign_as('alice', 'a.svc.example');
my $d0 = dels();

my $r = $t->request(DELETE => "/v1/request/$A", headers => as('bob'));
is($r->{status}, 403, "bob cancels alice's request: 403")
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'owner.mismatch', '... owner.mismatch');
is(dels(), $d0, '... nothing reached the TSB');
like($t->error_log, qr/DELETE of request \Q$A\E refused: owner.mismatch/,
     '... logged');

# What the TSB answers a DELETE, for comparison.
# An id the gateway never saw: signed at the TSB directly.
my $X;
{
    my $http = HTTP::Tiny->new;
    my $s = $http->request(POST => $t->sim_url . '/v1/certificate/sign', {
        headers => { 'X-API-KEY' => $KEY, 'Content-Type' => $JSON },
        content => json_encode({ signCertificateRequest => {
            signKeyName => 'CA-Key', commonName => 'x.svc.example',
            certificateSigningRequest => ($t->make_csr(cn => 'x.svc.example'))[0],
            signatureAlgorithm => 'SHA256_WITH_RSA',
            keyUsage => ['DIGITAL_SIGNATURE'] } }) });
    $X = TsbTest::json_decode($s->{content})->{signRequestId} // 'none';
}

$r = $t->request(DELETE => "/v1/request/$A", headers => as('alice'));
is($r->{status}, 200, 'alice cancels her request through /v1/request/: 200')
    or $t->explain_response($r);
is($r->{content}, '{}', '... {} as the TSB answers');
is(dels(), $d0 + 1, '... forwarded to the TSB once');
my $seen = ($t->sim_seen(DELETE => "/v1/request/$A"))[-1] // {};
is(($seen->{headers} // {})->{'x-api-key'}, $KEY,
   "... with the gateway's credentials");
is(($t->sim_seen(DELETE => "/v1/request/$A"))[-1]{headers}{authorization},
   undef, "... and not the client's");

$r = $t->get("/v1/request/$A", headers => as('alice'));
is(($r->{json} // {})->{status}, 'CANCELLED',
   '... the cached entry is gone: CANCELLED');

# ------------------------------------------------ ids the gateway did not create

$d0 = dels();
$r = $t->request(DELETE => "/v1/request/$X", headers => as('alice'));
is($r->{status}, 403, 'an id signed at the TSB directly: 403')
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'owner.unknown', '... owner.unknown');
is(dels(), $d0, '... nothing reached the TSB');

$r = $t->request(DELETE => '/nocache/' . $X, headers => as('alice'));
is(($r->{json} // {})->{reason}, 'owner.unknown',
   'a status location without tsb_cache keeps no record: owner.unknown');

$r = $t->request(DELETE => "/anyone/$X", headers => as('bob'));
is($r->{status}, 200, 'tsb_owner_check off: anyone cancels anything')
    or $t->explain_response($r);
is(dels(), $d0 + 1, '... forwarded');

# ------------------------------------------------ the same through tsb_pass

my $B = sign_as('alice', 'b.svc.example');
$t->sim_approve($B);
$d0 = dels();
$r = $t->request(DELETE => "/v1/request/$B", headers => as('bob'),
                 port => 2);
is($r->{status}, 403, 'tsb_pass: bob cancels alice\'s request: 403')
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'owner.mismatch', '... owner.mismatch');
$r = $t->request(DELETE => "/v1/request/$B/", headers => as('bob'),
                 port => 2);
isnt($r->{status}, 200, '... a trailing slash does not get around it');
$r = $t->request(DELETE => "/v1/request/$X", headers => as('alice'),
                 port => 2);
is(($r->{json} // {})->{reason}, 'owner.unknown',
   'tsb_pass: an id the gateway did not create: owner.unknown');
is(dels(), $d0, '... nothing reached the TSB');
$r = $t->request(DELETE => "/v1/request/$B", headers => as('alice'),
                 port => 2);
is($r->{status}, 409, 'tsb_pass: alice may: forwarded (the TSB: 409, '
                      . 'already issued)') or $t->explain_response($r);
is(dels(), $d0 + 1, '... once');

# ------------------------------------------------ reads: tsb_owner_check all

$r = $t->get("/private/$B", headers => as('bob'));
is($r->{status}, 403, "all: bob cannot read alice's status")
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'owner.mismatch', '... owner.mismatch');
$r = $t->get("/private/$B", headers => as('alice'));
is($r->{status}, 200, '... alice can');

$r = $t->get("/cert/$B.pem", headers => as('bob'));
is($r->{status}, 403, "all: nor alice's certificate");
$r = $t->get("/cert/$B.pem", headers => as('alice'));
is($r->{status}, 200, '... alice gets it');
like($r->{content}, qr/BEGIN CERTIFICATE/, '... a certificate');
$r = $t->get("/private/$X", headers => as('alice'));
is(($r->{json} // {})->{reason}, 'owner.unknown',
   'all: an id the gateway did not create is nobody\'s to read');
$r = $t->get("/v1/request/$B", headers => as('bob'));
is($r->{status}, 200, 'cancel (the default): reads stay open');

# ------------------------------------------------ an empty identity

$r = $t->request(POST => '/sign-by-header', headers => as('alice'),
                 body => ($t->make_csr(cn => 'e.svc.example'))[0],
                 content_type => 'application/x-pem-file');
is($r->{status}, 403, 'tsb_owner names an empty identity: 403');
is(($r->{json} // {})->{reason}, 'owner.missing', '... owner.missing');

# ------------------------------------------------ on disk, and after a restart

my $C = sign_as('alice', 'c.svc.example');
ok($t->wait_for(sub { -s "$tmp/store/$C.accepted" }),
   'the .accepted record is written');
my $rec = slurp("$tmp/store/$C.accepted") // '';
my $hash = sha256("ngx_tsb_module owner v1\0alice");
ok(index($rec, "TO$hash") >= 0, '... with the hash of alice');
unlike($rec, qr/alice/, '... and not the name');

$t->stop_nginx;
$t->start_nginx($CONF);
$d0 = dels();
$r = $t->request(DELETE => "/v1/request/$C", headers => as('bob'));
is(($r->{json} // {})->{reason}, 'owner.mismatch',
   'after a restart, the owner comes back from tsb_store')
    or $t->explain_response($r);
$r = $t->request(DELETE => "/v1/request/$C", headers => as('alice'));
is($r->{status}, 200, '... and alice cancels') or $t->explain_response($r);
is(dels(), $d0 + 1, '... once');

# ------------------------------------------------ methods

$r = $t->request(DELETE => "/v1/request/$C.pem", headers => as('alice'));
is($r->{status}, 405, 'DELETE of a certificate (.pem): 405');
$r = $t->request(DELETE => "/cert/$C", headers => as('alice'));
is($r->{status}, 405, 'DELETE on a tsb_certificate location: 405');

$t->no_worker_crash;
done_testing();
