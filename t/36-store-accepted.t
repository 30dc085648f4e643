#!/usr/bin/perl
# tsb_store keeps what the gateway accepted for each sign request until the
# request ends, so that a certificate issued after a restart of nginx (or
# after the zone lost the entry) is still checked against it: a mismatch
# is refused as before, a match is served, and the record goes when the
# request ends.  tsb_verify_issued strict refuses what could not be
# checked: a certificate whose record is lost or was never made.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use HTTP::Tiny;
use TsbTest qw(slurp spew json_encode);

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';

my $t = TsbTest->new;
my $STORE = $t->tmp . '/store';
$t->start_sim('--api-key', $KEY);
my $CONF = <<"EOF2";
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_store %%TMP%%/store;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
    location /strict/ { tsb_status; tsb_verify_issued strict; }
}
EOF2
$t->start_nginx($CONF);

sub accepted { "$STORE/$_[0].accepted" }
sub stored { "$STORE/$_[0].tsb" }

sub sign {
    my ($cn, %fault) = @_;
    $t->sim_fault(route => $SIGN, times => 1, %fault) if %fault;
    my ($csr) = $t->make_csr(cn => $cn, san => [$cn], key => 'ec:P-256');
    return $t->sign_id($csr);
}

# signed before the restart: one the TSB will issue for another key, one
# for another name, one it issues as asked, one it rejects, one whose record
# someone overwrote
my $KEYX = sign('key.svc.example', mismatch => 'key');
my $CNX = sign('cn.svc.example', mismatch => 'cn');
my $GOOD = sign('good.svc.example');
my $REJ = sign('rejected.svc.example');
my $BAD = sign('garbage.svc.example');

ok($t->wait_for(sub { !grep { !-s accepted($_) }
                      $KEYX, $CNX, $GOOD, $REJ, $BAD }, 5),
   'what was accepted for each sign request is on disk');
is(scalar(grep { ((stat accepted($_))[2] & 0777) == 0600 }
          $KEYX, $CNX, $GOOD, $REJ, $BAD), 5,
   'readable by the worker user alone (0600)');
unlike(join('', map { slurp(accepted($_)) // '' } $GOOD, $REJ), qr/\Q$KEY\E/,
       'no credential in them');

# a restart: the zone, and the records in it, are gone
ok($t->stop_nginx, 'nginx stopped');
spew(accepted($BAD), "not a record\n");
chmod 0644, accepted($BAD);
$t->start_nginx($CONF);

$t->sim_approve($_) for $KEYX, $CNX, $GOOD, $BAD;
$t->sim_post("/_sim/reject/$REJ");

for my $case ([$KEYX, 'another key'], [$CNX, 'another name']) {
    my ($id, $what) = @$case;
    $t->log_mark;
    my $r = $t->get("/request/$id.pem");
    $t->error_is($r, 502, 'issued.mismatch',
                 "issued for $what after a restart: not served");
    like($t->log_since, qr/\[alert\].*\Q$id\E.*issued\.mismatch/,
         "$what: logged at alert");
    ok(!-e stored($id), "$what: not in the store");
}

{
    $t->log_mark;
    my $r = $t->get("/request/$GOOD.pem");
    is($r->{status}, 200, 'issued as asked, after a restart: 200')
        or $t->explain_response($r);
    like($r->{content}, qr/^-----BEGIN CERTIFICATE-----/, 'the certificate');
    unlike($t->log_since, qr/no record of what was accepted/,
           'checked against the record from the store');
    ok($t->wait_for(sub { -s stored($GOOD) && !-e accepted($GOOD) }, 5),
       'stored; its record is gone (the .tsb file keeps it)');
}

{
    my $r = $t->get("/request/$REJ.pem");
    $t->error_is($r, 409, 'request.rejected', 'rejected');
    ok($t->wait_for(sub { !-e accepted($REJ) }, 5),
       'a rejected request: its record is gone');
}

{
    $t->log_mark;
    my $r = $t->get("/request/$BAD.pem");
    is($r->{status}, 200, 'a record that is not one: ignored, served')
        or $t->explain_response($r);
    like($t->log_since, qr/is not a tsb_store file, ignored/,
         'error.log says the record was ignored');
    like($t->log_since, qr/no record of what was accepted for request \Q$BAD\E/,
         'and that the certificate went unchecked');
}

# tsb_verify_issued strict: only what was checked against a record
{
    my $r = $t->get("/strict/$GOOD.pem");
    is($r->{status}, 200, 'strict: checked against its record: 200')
        or $t->explain_response($r);
    $t->log_mark;
    $t->error_is($t->get("/strict/$BAD.pem"), 502, 'issued.unverified',
                 'strict: its record was lost');
    like($t->log_since, qr/\[warn\].*\Q$BAD\E.*tsb_verify_issued strict/,
         'strict: the refusal is logged');
    $t->error_is($t->get("/strict/$BAD"), 502, 'issued.unverified',
                 'strict: nor in the status JSON');

    # signed at the TSB directly, not through the gateway: no record ever
    my ($csr) = $t->make_csr(cn => 'direct.svc.example', key => 'ec:P-256');
    my $up = HTTP::Tiny->new->post($t->sim_url . '/v1/certificate/sign', {
        headers => { 'X-API-KEY' => $KEY,
                     'Content-Type' => 'application/json' },
        content => json_encode({ signCertificateRequest => {
            signKeyName => 'CA-Key', commonName => 'direct.svc.example',
            certificateSigningRequest => $csr } }) });
    my $id = (TsbTest::json_decode($up->{content}) // {})->{signRequestId};
    ok($id, 'a request signed at the TSB directly') or diag($up->{content});
    $t->sim_approve($id);
    $t->error_is($t->get("/strict/$id.der"), 502, 'issued.unverified',
                 'strict: a request the gateway never saw');
    is($t->get("/request/$id.der")->{status}, 200,
       'the default (on): served, with the warning');
}

# without a restart the zone has the record: the same checks, no disk read
{
    my $id = sign('again.svc.example', mismatch => 'key');
    $t->sim_approve($id);
    $t->error_is($t->get("/request/$id.pem"), 502, 'issued.mismatch',
                 'no restart: a mismatch refused from the zone record');
    # written in the background: give a loaded machine its time
    ok($t->wait_for(sub { -s accepted($id) }),
       'and its record stays on disk, as evidence');
}

sub tmp_files {
    opendir(my $dh, $STORE) or die "$STORE: $!";
    return join ' ', grep { /tmp/ } readdir $dh;
}
$t->wait_for(sub { tmp_files() eq '' });
is(tmp_files(), '', 'no temporary files left');

# the mismatches are alerts; nothing else may be
my @bad = grep { !/issued\.mismatch/ }
          grep { /\[(alert|emerg|crit)\]|exited on signal/ }
          split /\n/, $t->error_log;
is("@bad", '', 'no worker crash, no alert but the mismatches');

done_testing;
