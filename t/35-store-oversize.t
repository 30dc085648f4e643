#!/usr/bin/perl
# An issued certificate whose entry no zone of this size can hold (the TSB
# names 180 approvers by their public keys: the approver lists alone are
# larger than the zone) is still answered: from the TSB's answer the first
# time, from tsb_store after that, never a 500 and never a second GET.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(xcs);

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';

# 180 approvers named like the TSB names them: a 392-character key each
my @approvers = map { sprintf('MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA%04d',
                              $_) . ('x' x 344) } 1 .. 180;
my $big = TsbTest->new;
$big->start_sim('--api-key', $KEY, '--approvers', join(',', @approvers));

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
my $BIG = $big->sim_url;
$t->start_nginx(<<"EOF2", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone z:64k;
tsb_store %%TMP%%/store;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache z;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
    location = /big/sign {
        tsb_sign;
        tsb_upstream $BIG;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /big/request/ { tsb_status; tsb_upstream $BIG; }
}
EOF2

my ($csr) = $t->make_csr(cn => 'big.svc.example', key => 'ec:P-256');
my $store = $t->tmp . '/store';

my $X = $t->sign_id($csr, '/big/sign');
$big->sim_approve($X);
my $gets = sub { $big->sim_counts->{$GET} // 0 };

$t->log_mark;
my $first = $t->get("/big/request/$X.pem");
is($first->{status}, 200, 'an entry larger than the zone: 200')
    or $t->explain_response($first);
like($first->{content}, qr/^-----BEGIN CERTIFICATE-----/, 'the certificate');
like($t->log_since, qr/cache zone is full/, 'error.log: the zone is full');
ok($t->wait_for(sub { -s "$store/$X.tsb" }, 5), 'it is in the store');

# entries that fit: more than one round of eviction frees, so that the
# zone cannot drop our own claim on the id while it makes room
my @fill;
for (1 .. 20) {
    my $id = $t->sign_id($csr);
    $t->sim_approve($id);
    my $r = $t->get("/request/$id.pem");
    die "fill: $r->{status}\n" unless $r->{status} == 200;
    push @fill, $id;
}
is(scalar(grep { xcs($t->get("/request/$_.pem")) eq 'HIT' } @fill), 20,
   'the zone holds 20 entries that fit');

my $g0 = $gets->();
for my $n (1 .. 3) {
    $t->log_mark;
    my $r = $t->get("/big/request/$X.pem");
    is($r->{status}, 200, "read $n: 200") or $t->explain_response($r);
    is($r->{content}, $first->{content}, "read $n: the same certificate");
    like($t->log_since, qr/request \Q$X\E served from tsb_store/,
         "read $n: from the store");
}
my $j = $t->get("/big/request/$X");
is($j->{status}, 200, 'its status JSON: 200') or $t->explain_response($j);
is(scalar @{$j->{json}{approvedBy} // []}, 180, 'with all 180 approvers');
is($gets->() - $g0, 0, 'no upstream GET for any of them');

$t->no_worker_crash;
done_testing;
