#!/usr/bin/perl
# Evidence that cannot be flushed away (issue 10, part 6).  A few hundred
# status requests for ids the TSB does not know, sent while a request
# waits for approval, must not evict what the gateway accepted for that
# request: the mismatching certificate issued next is refused
# (issued.mismatch), not served unchecked.  The ids the TSB answers 404
# leave nothing behind in the zone, so it holds as many entries as before.
# When pending requests fill the room kept for their evidence, new signs
# are refused (503) before anything reaches the TSB.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(xcs);

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';
my $SIGN = 'POST /v1/certificate/sign';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF2");
tsb_cache_zone tsb:64k;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache tsb;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
    location = /metrics { tsb_metrics; }
}
EOF2

sub metric {
    my ($name) = @_;
    my $r = $t->get('/metrics');
    return ($r->{content} // '') =~ /^\Q$name\E (\d+)$/m ? $1 : -1;
}

sub uuid {
    return sprintf '%08x-%04x-4%03x-8%03x-%012x', int rand 2**32,
        int rand 2**16, int rand 2**12, int rand 2**12, int rand 2**48;
}

my ($csr) = $t->make_csr(cn => 'victim.svc.example');
my $id = $t->sign_id($csr);
ok($id, 'signed: pending approval');

# ------------------------------------------------ a storm of unknown ids

my ($notfound, $other) = (0, 0);
for (1 .. 400) {
    my $r = $t->get('/request/' . uuid());
    if ($r->{status} == 404) { $notfound++ } else { $other++ }
}
is($notfound, 400, '400 random ids: 404 each');
is(metric('tsb_cache_evictions_total'), 0,
   'the unknown ids evicted nothing from the zone');

# ------------------------------------------------ the evidence survived

$t->sim_post("/_sim/approve/$id", { mismatch => 'key' });
$t->sim_reset;

my $r = $t->get("/request/$id.pem");
is($r->{status}, 502, 'a certificate for another key: 502')
    or $t->explain_response($r);
is(($r->{json} // {})->{reason}, 'issued.mismatch', '... issued.mismatch');
unlike($r->{content} // '', qr/BEGIN CERTIFICATE/, '... nothing served');
unlike($t->error_log, qr/no record of what was accepted for request \Q$id\E/,
       'the gateway still had the record');

# ------------------------------------------------ the zone is not fragmented

# A 64k zone holds about 40 issued certificates; after the storm it still
# holds 20 without evicting any of them.
my @ids;
for my $n (1 .. 20) {
    my ($c) = $t->make_csr(cn => "s$n.svc.example", key => 'ec:P-256');
    my $i = $t->sign_id($c);
    $t->sim_approve($i);
    push @ids, $i;
}
for my $i (@ids) {
    my $g = $t->get("/request/$i.pem");
    is($g->{status}, 200, "certificate $i served") or last;
}
$t->sim_reset;
my $hits = 0;
for my $i (@ids) {
    $hits++ if xcs($t->get("/request/$i.pem")) eq 'HIT';
}
is($hits, 20, 'all 20 answered from the zone again');
is($t->sim_counts->{$GET} // 0, 0, '... without asking the TSB');

# ------------------------------------------------ no room: refuse, keep

{
    my $u = TsbTest->new;
    $u->start_sim('--api-key', $KEY);
    $u->start_nginx(<<"EOF2");
tsb_cache_zone small:32k;
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache small;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
EOF2
    my ($c) = $u->make_csr(cn => 'p.svc.example', key => 'ec:P-256');
    my (@pending, $refused);
    for (1 .. 200) {
        my $r = $u->request(POST => '/sign', body => $c,
                            content_type => 'application/x-pem-file');
        if ($r->{status} == 200) {
            push @pending, $r->{json}{signRequestId};
            next;
        }
        $refused = $r;
        last;
    }
    ok($refused, scalar(@pending) . ' pending requests fill the room kept '
                 . 'for evidence in a 32k zone');
    is($refused && $refused->{status}, 503, 'the next sign: 503')
        or ($refused && $u->explain_response($refused));
    is($refused && ($refused->{json} // {})->{reason}, 'cache.full',
       '... cache.full');
    is($u->sim_counts->{$SIGN} // 0, scalar @pending,
       '... and it never reached the TSB');
    like($u->error_log, qr/has no room left for what is accepted/,
         '... logged');

    # every pending request still has its record: a storm changes nothing
    for (1 .. 100) { $u->get('/request/' . uuid()) }
    $u->sim_post("/_sim/approve/$pending[0]", { mismatch => 'cn' });
    my $g = $u->get("/request/$pending[0].pem");
    is(($g->{json} // {})->{reason}, 'issued.mismatch',
       'the oldest pending request still has its record');

    # requests that end give their room back
    for my $i (@pending[1 .. $#pending]) {
        $u->sim_post("/_sim/reject/$i", {});
        $u->get("/request/$i");
    }
    my $r = $u->request(POST => '/sign', body => $c,
                        content_type => 'application/x-pem-file');
    is($r->{status}, 200, 'once they are rejected, signs are taken again')
        or $u->explain_response($r);
}

# the refused certificate is logged at alert, as it should be; nothing else
my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/
                 && !/the issued certificate is not served/ }
          split /\n/, $t->error_log;
ok(!@bad, 'no other alert, no crash') or diag(join "\n", @bad);

done_testing();
