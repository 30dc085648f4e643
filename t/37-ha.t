#!/usr/bin/perl
# Several gateways in front of one TSB (docs/operations-ha.md): two nginx
# instances on loopback, each with its own zone, sharing one tsb_store
# directory.  A request signed through A is followed through B: status,
# ?wait=, the certificate under tsb_verify_issued strict (checked against
# what A accepted, read from the shared store), and cancel (through B's
# tsb_pass location).  A certificate that does not match what was accepted
# is refused by both.  Both fetching and storing the same certificates at
# once leave one whole, correct file each and no temporary files.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(slurp spew);

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';
my $GET = 'GET /v1/request/{id}';

my $A = TsbTest->new;
my $B = TsbTest->new;
my $STORE = $A->tmp . '/store';
$A->start_sim('--api-key', $KEY);
my $SIM = $A->sim_url;

sub conf {
    return <<"EOF";
tsb_upstream $SIM;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_store $STORE;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; tsb_verify_issued strict; }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/request/*;
        tsb_pass_allow DELETE /v1/request/*;
    }
}
EOF
}

$A->start_nginx(conf(), workers => 2);
$B->start_nginx(conf(), workers => 2);
isnt($A->port(1), $B->port(1), 'two gateways on two ports');

sub accepted { "$STORE/$_[0].accepted" }
sub stored { "$STORE/$_[0].tsb" }
sub gets { $A->sim_counts->{$GET} // 0 }

sub tmp_files {
    opendir(my $dh, $STORE) or die "$STORE: $!";
    return grep { /\.tmp$/ } readdir $dh;
}

sub sign_a {
    my ($cn, %fault) = @_;
    $A->sim_fault(route => $SIGN, times => 1, %fault) if %fault;
    my ($csr) = $A->make_csr(cn => $cn, san => [$cn], key => 'ec:P-256');
    my $id = $A->sign_id($csr);
    ok($A->wait_for(sub { -s accepted($id) }, 5),
       "$cn: signed through A, its record is in the shared store");
    return $id;
}

sub subject_of {
    my ($t, $pem) = @_;
    my $f = $t->tmp . '/cert' . int(rand(1e9)) . '.pem';
    spew($f, $pem);
    my ($rc, $out) = $t->run_cmd('openssl', 'x509', '-in', $f, '-noout',
                                 '-subject', '-ext', 'subjectAltName');
    return $rc == 0 ? $out : '';
}

# ------------------------- signed through A, followed and fetched via B
{
    my $id = sign_a('one.svc.example');
    my $r = $B->get("/request/$id");
    is($r->{status}, 200, 'B: status of a request A accepted')
        or $B->explain_response($r);
    is($r->{json}{status}, 'PENDING', 'B: PENDING');

    # ?wait= through B, approved while it waits
    my $s = $B->raw_send(GET => "/request/$id.pem?wait=5");
    sleep 0.5;
    my $t0 = time;
    $A->sim_approve($id);
    $r = $B->raw_read($s);
    is($r->{status}, 200, 'B: ?wait= answers once approved')
        or $B->explain_response($r);
    like($r->{content}, qr/^-----BEGIN CERTIFICATE-----/, 'B: the PEM');
    like(subject_of($B, $r->{content}), qr/one\.svc\.example/,
         'B: the certificate for the name A accepted (openssl)');
    unlike($B->error_log, qr/no record of what was accepted/,
           'B: checked against the record A wrote (strict lets it through)');
    ok($A->wait_for(sub { -s stored($id) && !-e accepted($id) }, 5),
       'stored once in the shared store, the record folded into it');

    my $pem = $r->{content};
    my $g = gets();
    $r = $A->get("/request/$id.pem");
    is($r->{status}, 200, 'A: the same certificate');
    is($r->{content}, $pem, 'A: byte for byte');
    is(gets() - $g, 0, 'A: from the shared store, no GET to the TSB');
}

# ------------------------------------------------- cancel through B
{
    my $id = sign_a('cancel.svc.example');
    is($A->get("/request/$id")->{json}{status}, 'PENDING',
       'A: PENDING (and in its zone)');
    my $r = $B->request(DELETE => "/v1/request/$id");
    is($r->{status}, 200, 'B: cancelled through its tsb_pass location')
        or $B->explain_response($r);
    is($A->sim_counts->{'DELETE /v1/request/{id}'}, 1, 'the TSB got one DELETE');
    is($B->get("/request/$id")->{json}{status}, 'CANCELLED',
       'B: CANCELLED');
    ok($A->wait_for(sub {
           ($A->get("/request/$id")->{json}{status} // '') eq 'CANCELLED' },
           5, 0.25),
       'A: CANCELLED once its cached PENDING is due (2 s)');
    ok($A->wait_for(sub { !-e accepted($id) }, 5),
       'the record of a cancelled request is gone');
}

# ---------------------------------- a mismatching certificate: refused by both
{
    my $id = sign_a('mismatch.svc.example', mismatch => 'key');
    $A->sim_approve($id);
    $B->error_is($B->get("/request/$id.pem"), 502, 'issued.mismatch',
                 'B: another key than A accepted: refused');
    like($B->error_log, qr/\[alert\].*\Q$id\E.*issued\.mismatch/,
         'B: logged at alert');
    $A->error_is($A->get("/request/$id.pem"), 502, 'issued.mismatch',
                 'A: refused too');
    $B->error_is($B->get("/request/$id.der"), 502, 'issued.mismatch',
                 'B: nor as DER');
    ok(!-e stored($id), 'not in the shared store');
    ok(-s accepted($id), 'its record stays, as evidence');
}

# ----------------------- both fetch and store the same certificates at once
{
    my @ids = map { sign_a("both$_.svc.example") } 1 .. 12;
    $A->sim_approve($_) for @ids;
    $A->log_mark;
    $B->log_mark;
    my @socks;
    for my $id (@ids) {
        push @socks, [$id, A => $A->raw_send(GET => "/request/$id.der")];
        push @socks, [$id, B => $B->raw_send(GET => "/request/$id.der")];
    }
    my (%der, $ok);
    for (@socks) {
        my ($id, $who, $s) = @$_;
        my $r = ($who eq 'A' ? $A : $B)->raw_read($s);
        $ok++ if $r->{status} == 200;
        push @{$der{$id}}, $r->{content};
    }
    is($ok, 2 * @ids, 'A and B at once: every certificate served (strict)');
    is(scalar(grep { $der{$_}[0] eq $der{$_}[1] } @ids), scalar @ids,
       'A and B serve the same bytes');
    ok($A->wait_for(sub { !grep { !-s stored($_) || -e accepted($_) } @ids },
                    5), 'one file each in the store, records folded in');
    is(scalar(grep { index(slurp(stored($_)) // '', $der{$_}[0]) >= 0 }
              @ids), scalar @ids, 'each file holds the whole certificate');
    # the other gateway's write of the same file may still be under way
    $A->wait_for(sub { !tmp_files() }, 5);
    is(join(' ', tmp_files()), '', 'no temporary files left');
    my $logs = $A->log_since . $B->log_since;
    unlike($logs, qr/tsb: (?:storing|reading|stored).*failed
                     |\[(?:crit|alert|emerg)\]/x,
           'no store error in either log');

    # a restart of both: served from the shared store, nothing asked
    $A->stop_nginx;
    $B->stop_nginx;
    $A->start_nginx(conf(), workers => 1);
    $B->start_nginx(conf(), workers => 1);
    my $g = gets();
    my $same = grep {
        my $id = $_;
        $A->get("/request/$id.der")->{content} eq $der{$id}[0]
            && $B->get("/request/$id.der")->{content} eq $der{$id}[0]
    } @ids;
    is($same, scalar @ids, 'after a restart of both: the same bytes');
    is(gets() - $g, 0, 'from the store file: no GET to the TSB');
}

# --------------- two hosts: the same pid, another host name, at once
# Each gateway in a PID and a UTS namespace of its own: both workers have
# pid 2, as on two hosts, and the host names differ.  Temporary names made
# of the pid alone collide here (a rename fails, a file may mix both
# writes); with the host name in them they do not.
SKIP: {
    my ($rc) = $A->run_cmd('unshare', '--pid', '--fork', '--uts', 'true');
    skip 'PID and UTS namespaces need root (unshare)', 6 if $rc;

    my @hosts;
    my @checker = @TsbTest::NGINX_WRAPPER;
    for my $h (qw(gw-c gw-d)) {
        my $t = TsbTest->new;
        # the checker's wrapper of make test-asan/test-valgrind goes inside
        # the namespace (the ASan module cannot load without its runtime);
        # its logs are named by pid, which is the same in both namespaces:
        # the host name goes in front of it
        my @inner = map {
            s{((?:log_path=|--log-file=)\S*/(?:asan|ubsan|vg))(?=[:.]|$)}
             {$1.$h}gr
        } @checker;
        local @TsbTest::NGINX_WRAPPER = ('unshare', '--pid', '--fork',
            '--uts', '--kill-child', 'sh', '-c', "hostname $h && exec \"\$@\"",
            'sh', @inner);
        $t->start_nginx(conf(), workers => 1);
        push @hosts, $t;
    }
    my ($C, $D) = @hosts;
    my @ids = map { sign_a("host$_.svc.example") } 1 .. 20;
    $A->sim_approve($_) for @ids;
    $C->log_mark;
    $D->log_mark;
    my @socks = map { [$C->raw_send(GET => "/request/$_.der"),
                       $D->raw_send(GET => "/request/$_.der")] } @ids;
    my %der;
    my $ok = 0;
    for my $i (0 .. $#ids) {
        my $rc = $C->raw_read($socks[$i][0]);
        my $rd = $D->raw_read($socks[$i][1]);
        $ok += ($rc->{status} == 200) + ($rd->{status} == 200);
        $der{$ids[$i]} = $rc->{content} if $rc->{content} eq $rd->{content};
    }
    is($ok, 2 * @ids, 'two hosts at once: every certificate served');
    is(scalar(keys %der), scalar @ids, 'the same bytes from both');
    ok($C->wait_for(sub { !grep { !-s stored($_) || -e accepted($_) } @ids },
                    5), 'one file each in the store');
    is(scalar(grep { index(slurp(stored($_)) // '', $der{$_} // "\0") >= 0 }
              @ids), scalar @ids, 'each file holds the whole certificate');
    # the other gateway's write of the same file may still be under way
    $A->wait_for(sub { !tmp_files() }, 5);
    is(join(' ', tmp_files()), '', 'no temporary files left');
    unlike($C->log_since . $D->log_since,
           qr/tsb: (?:storing|reading|stored).*failed/,
           'no store error on either host')
        or diag(join "\n", grep { /tsb: / } split /\n/,
                     $C->log_since . $D->log_since);
    $_->stop_nginx for $C, $D;
}

unlike($A->error_log . $B->error_log, qr/exited on signal/,
       'no worker crashed');

done_testing;
