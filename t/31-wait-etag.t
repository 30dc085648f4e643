#!/usr/bin/perl
# Live approvals: the status document carries a strong ETag, and a ?wait=
# long poll that sends it back in If-None-Match is answered as soon as the
# document changes (an approval of a 2-of-2 quorum), not only at the end,
# in both workers, within one tsb_refresh_interval of the approval and with
# one upstream GET per interval for all of them.  A poll whose tag is stale
# is answered at once; one whose tag still matches when its time is up gets
# 304 Not Modified; a plain conditional GET gets 304 as well.  Without
# If-None-Match ?wait= keeps waiting for the end (t/31-wait.t).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest;

my $KEY = 'etag-test-key-SECRET';
my $INTERVAL = 1;                   # the default tsb_refresh_interval
my $WORKERS = 2;
my $SLACK = 0.6;                    # a busy test machine
my $TAG = qr/^"[0-9a-f]{16}-json"$/;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice,bob');
# reuseport: the kernel spreads the clients' connections over both workers
$t->start_nginx(<<"EOF", workers => $WORKERS);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    add_header X-Worker \$pid always;
    tsb_cache tsb;
    tsb_wait_max 30s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
}
EOF

is(scalar($t->worker_pids), $WORKERS, "$WORKERS workers");

my ($CSR) = $t->make_csr(cn => 'live.svc.example', key => 'ec:P-256');

sub approve {
    my ($id, $who) = @_;
    my $r = $t->sim_post("/_sim/approve/$id", { approver => $who });
    die "approve $id: $r->{status} $r->{content}\n" unless $r->{status} == 200;
}

sub gets_for {
    my ($id) = @_;
    return scalar grep { $_->{method} eq 'GET'
                         && $_->{path} eq "/v1/request/$id" }
                  @{$t->sim_requests};
}

sub parse_http {
    my ($buf) = @_;
    return { status => 599, headers => {}, content => $buf }
        unless $buf =~ /\r\n\r\n/;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($sl, @lines) = split /\r\n/, $head;
    my ($status) = $sl =~ m{^HTTP/\S+\s+(\d+)};
    my %h;
    for (@lines) { my ($k, $v) = /^([^:]+):\s*(.*)$/ or next; $h{lc $k} = $v }
    my $r = { status => $status // 599, headers => \%h, content => $body };
    $r->{json} = TsbTest::json_decode($body)
        if ($h{'content-type'} // '') =~ /json/;
    return $r;
}

# The clients' requests ([name, path, headers, seconds after the start,
# 0 if not given]), the actions at their times; every answer with the time
# it completed.  Returns ($t0, {name => response}, {action => time}).
sub run_clients {
    my (%o) = @_;
    my $t0 = time;
    my (%sock, %name, %buf, %res, %at);
    my $sel = IO::Select->new;
    my @actions = @{$o{actions} || []};
    for my $c (@{$o{clients}}) {
        my ($name, $path, $h, $when) = @$c;
        my $send = sub {
            my $s = $t->raw_send(GET => $path, headers => $h || {});
            $sock{$name} = $s;
            $name{fileno $s} = $name;
            $buf{$name} = '';
            $sel->add($s);
        };
        if ($when) { push @actions, [$when, "send $name", $send] }
        else { $send->() }
    }
    @actions = sort { $a->[0] <=> $b->[0] } @actions;
    my $deadline = $t0 + ($o{timeout} // 10);
    while (($sel->count || @actions) && time < $deadline) {
        while (@actions && time >= $t0 + $actions[0][0]) {
            my $a = shift @actions;
            $at{$a->[1]} = time;
            $a->[2]->();
        }
        my $wait = $deadline - time;
        $wait = $t0 + $actions[0][0] - time
            if @actions && $t0 + $actions[0][0] - time < $wait;
        $wait = 0 if $wait < 0;
        if (!$sel->count) { sleep $wait; next }
        for my $s ($sel->can_read($wait)) {
            my $name = $name{fileno $s};
            my $got = sysread($s, $buf{$name}, 65536, length $buf{$name});
            next if !defined $got && ($!{EAGAIN} || $!{EINTR});
            next if $got;
            $sel->remove($s);
            close $s;
            $res{$name} = parse_http($buf{$name});
            $res{$name}{t_done} = time;
        }
    }
    for my $name (keys %sock) {
        next if $res{$name};
        close $sock{$name};
        $res{$name} = { status => 599, headers => {}, content => '',
                        t_done => time };
    }
    return ($t0, \%res, \%at);
}

sub show {
    my ($name, $r) = @_;
    diag("$name: $r->{status}\n"
         . join('', map { "$_: $r->{headers}{$_}\n" } sort keys %{$r->{headers}})
         . substr($r->{content}, 0, 300));
}

sub workers_of { my %w; $w{$_->{headers}{'x-worker'} // '?'}++ for @_; %w }

sub names { join ',', @{$_[0] || []} }

my $id = $t->sign_id($CSR);

# ------------------------------------------- the tag, and a conditional GET
my $r0 = $t->get("/request/$id");
is($r0->{status}, 200, 'the status document: 200');
is($r0->{json}{status}, 'PENDING', 'PENDING');
is_deeply([sort @{$r0->{json}{notYetApprovedBy} || []}], [qw(alice bob)],
          'alice and bob have yet to approve');
my $tag0 = $r0->{headers}{etag} // '';
like($tag0, $TAG, "a strong ETag: $tag0");

my $again = $t->get("/request/$id");
is($again->{headers}{etag}, $tag0, 'the same document: the same ETag');

my $nm = $t->get("/request/$id", headers => { 'If-None-Match' => $tag0 });
is($nm->{status}, 304, 'a conditional GET with it: 304 Not Modified');
is($nm->{headers}{etag}, $tag0, 'the 304 names the tag');
is($nm->{content}, '', 'and has no body');
$nm = $t->get("/request/$id", headers => { 'If-None-Match' => "W/$tag0" });
is($nm->{status}, 304, 'its weak twin too (If-None-Match compares weakly)');
$nm = $t->get("/request/$id",
              headers => { 'If-None-Match' => '"0000000000000000-json"' });
is($nm->{status}, 200, 'another tag: 200 with the document');

# --------------- the first approval wakes long polls in both workers at once
# One client first, the others half an interval later: the worker that did
# not hold the first starts watching the id then, out of step with the
# other unless the watches are timed from the refreshes.
my @clients = map { ["w$_", "/request/$id?wait=20",
                     { 'If-None-Match' => $tag0 }, $_ == 1 ? 0 : 0.5] }
              1 .. 16;
# a plain long poll (no If-None-Match) still waits for the end
push @clients, ['plain', "/request/$id?wait=3"];
my $g0 = gets_for($id);
my ($t0, $res, $at) = run_clients(
    clients => \@clients,
    actions => [[1.5, 'alice', sub { approve($id, 'alice') }]],
    timeout => 8);
my $elapsed = time - $t0;
my @w = map { $res->{"w$_"} } 1 .. 16;
my @ok = grep { $_->{status} == 200
                && ($_->{json}{status} // '') eq 'PENDING'
                && names($_->{json}{approvedBy}) eq 'alice'
                && names($_->{json}{notYetApprovedBy}) eq 'bob' } @w;
is(scalar @ok, 16, '16 long polls with If-None-Match: 200, alice approved, '
                   . 'bob missing') or show(w1 => $w[0]);
my ($first) = sort { $a <=> $b } map { $_->{t_done} } @w;
cmp_ok($first, '>=', $at->{alice}, 'none before the approval');
my ($last) = sort { $b <=> $a } map { $_->{t_done} - $at->{alice} } @w;
cmp_ok($last, '<=', $INTERVAL + $SLACK,
       sprintf('the last one %.2f s after the approval (interval %d s, '
               . 'wait=20)', $last, $INTERVAL));
my $spread = $last - ($first - $at->{alice});
cmp_ok($spread, '<', 0.3,
       sprintf('%.2f s between the first answer and the last: both workers '
               . 'took the same refresh', $spread))
    or diag(join ' ', map { sprintf '%s:%.2f', $_->{headers}{'x-worker'},
                                    $_->{t_done} - $t0 }
                      sort { $a->{t_done} <=> $b->{t_done} } @w);
my %by = workers_of(@w);
is(scalar(keys %by), $WORKERS, 'both workers held some of them')
    or diag(explain(\%by));
my %tags = map { ($_->{headers}{etag} // '') => 1 } @w;
is(scalar(keys %tags), 1, 'all got the same ETag');
my ($tag1) = keys %tags;
like($tag1, $TAG, 'a strong ETag');
isnt($tag1, $tag0, 'a new one');
my $g = gets_for($id) - $g0;
my $bound = int($elapsed / $INTERVAL) + 2;
cmp_ok($g, '<=', $bound,
       sprintf('%d upstream GETs in %.1f s from both workers: one per '
               . 'interval (+2)', $g, $elapsed));

my $p = $res->{plain};
is($p->{status}, 200, 'without If-None-Match: 200 at the end of the wait')
    or show(plain => $p);
cmp_ok($p->{t_done} - $t0, '>=', 2.9,
       sprintf('not woken by the approval (%.2f s, wait=3)',
               $p->{t_done} - $t0));
is(names($p->{json}{approvedBy}), 'alice', 'with the document as it is then');

# ----------------------------- a stale tag is answered at once, everywhere
my ($s0, $stale) = run_clients(
    clients => [ map { ["s$_", "/request/$id?wait=20",
                        { 'If-None-Match' => $tag0 }] } 1 .. 8 ],
    timeout => 5);
my @s = values %$stale;
is(scalar(grep { $_->{status} == 200
                 && ($_->{headers}{etag} // '') eq $tag1 } @s), 8,
   'a long poll with the old tag: 200 and the new one') or show(s => $s[0]);
my ($slow) = sort { $b <=> $a } map { $_->{t_done} - $s0 } @s;
cmp_ok($slow, '<', 0.5, sprintf('at once (%.2f s for the slowest)', $slow));
%by = workers_of(@s);
is(scalar(keys %by), $WORKERS, 'from both workers') or diag(explain(\%by));

# ---------------------------------- the time is up, nothing changed: 304
my ($n0, $same) = run_clients(
    clients => [ map { ["n$_", "/request/$id?wait=2",
                        { 'If-None-Match' => $tag1 }] } 1 .. 4 ],
    timeout => 6);
my @n = values %$same;
is(scalar(grep { $_->{status} == 304 } @n), 4,
   '?wait=2 with the current tag and no change: 304 Not Modified')
    or show(n => $n[0]);
is(scalar(grep { ($_->{headers}{etag} // '') eq $tag1 } @n), 4,
   'naming the tag');
is(scalar(grep { $_->{content} eq '' } @n), 4, 'no body');
my ($early) = sort { $a <=> $b } map { $_->{t_done} - $n0 } @n;
cmp_ok($early, '>=', 1.9, sprintf('after the wait (%.2f s)', $early));

# ------------------------------------------- the second approval: issued
my ($e0, $end, $eat) = run_clients(
    clients => [ map { ["e$_", "/request/$id?wait=20",
                        { 'If-None-Match' => $tag1 }] } 1 .. 8 ],
    actions => [[1.2, 'bob', sub { approve($id, 'bob') }]],
    timeout => 8);
my @e = values %$end;
is(scalar(grep { $_->{status} == 200
                 && ($_->{json}{status} // '') eq 'EXECUTED'
                 && ($_->{json}{result} // '')
                    =~ /^-----BEGIN CERTIFICATE-----/ } @e), 8,
   'the final approval: 200, EXECUTED with the certificate')
    or show(e => $e[0]);
my ($elast) = sort { $b <=> $a } map { $_->{t_done} - $eat->{bob} } @e;
cmp_ok($elast, '<=', $INTERVAL + $SLACK, sprintf('%.2f s after it', $elast));
my %etags = map { ($_->{headers}{etag} // '') => 1 } @e;
my ($tag2) = keys %etags;
ok(keys %etags == 1 && $tag2 ne $tag1 && $tag2 =~ $TAG,
   "one more new ETag: $tag2");

# issued: a long poll with the final tag gets 304 at once
my $w0 = time;
my $f = $t->get("/request/$id?wait=20", headers => { 'If-None-Match' => $tag2 });
is($f->{status}, 304, 'issued, ?wait=20 with its tag: 304');
cmp_ok(time - $w0, '<', 0.5, 'at once: it will not change any more');

# the certificate downloads keep their own validators
my $pem = $t->get("/request/$id.pem");
like($pem->{headers}{etag} // '', qr/^"[0-9a-f]{16}-pem"$/,
     'the PEM download keeps its own ETag');
my $pnm = $t->get("/request/$id.pem",
                  headers => { 'If-None-Match' => $pem->{headers}{etag} });
is($pnm->{status}, 304, 'and its 304');
my $cross = $t->get("/request/$id.pem", headers => { 'If-None-Match' => $tag2 });
is($cross->{status}, 200, "the document's tag is not the PEM's");

$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
