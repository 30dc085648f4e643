#!/usr/bin/perl
# The status cache as a client sees it (one worker): X-Cache-Status MISS
# then HIT, freshness per TSB status (a PENDING entry is fetched again after
# its tsb_cache_valid, an EXECUTED or REJECTED one is not), 200 concurrent
# clients on an uncached id cost one upstream GET, stale-if-error with
# Warning (its bound, per location, also for UPDATING and for ?wait
# requests that share a refresh), every certificate format checked with
# OpenSSL, ETag / If-None-Match / HEAD / Vary for a format chosen by
# Accept, and eviction from a zone of the smallest size the module accepts
# (entries of 2 KiB, 4 KiB and several pages).  The simulator's counters
# prove what reached the TSB.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use IO::Select;
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use TsbTest qw(slurp spew xcs);

my $KEY = 'test-api-key-SECRET';
my $GET = 'GET /v1/request/{id}';
my $PEM_T = 'application/x-pem-file';
my $DER_T = 'application/pkix-cert';
my $CHAIN_T = 'application/pem-certificate-chain';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_cache_zone tiny:32k;
tsb_cache_zone chained:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    tsb_cache tsb;
    tsb_cache_valid PENDING APPROVED 1s;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
    }
    location /request/ { tsb_status; }
    location /certificate/ { tsb_certificate; }
    location /nostale/ { tsb_status; tsb_cache_use_stale 0; }
    location /shortstale/ { tsb_status; tsb_cache_use_stale 1s; }
    location /tiny/ { tsb_status; tsb_cache tiny; }
    location /chained/ {
        tsb_status;
        tsb_cache chained;
        tsb_issuer_chain %%SIMCA%%;
    }
    location = /pid { return 200 "\$pid"; }
}
EOF

my $pid = $t->get('/pid')->{content};

# ---------------------------------------------------------------- helpers

my ($CSR) = $t->make_csr(cn => 'cache.svc.example', key => 'ec:P-256');

sub new_id { $t->sign_id($CSR) }

sub approve { $t->sim_approve($_[0]) }

sub gets { $t->sim_counts->{$GET} // 0 }

sub openssl_in {
    my ($data, $der, @args) = @_;
    my $f = $t->tmp . '/in' . int(rand(1e9)) . ($der ? '.der' : '.pem');
    spew($f, $data);
    return $t->run_cmd('openssl', 'x509', '-in', $f,
                       ($der ? ('-inform', 'DER') : ()), @args);
}

sub http_date {
    my ($s) = @_;
    my %m; @m{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = 0 .. 11;
    $s =~ /(\d+) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT/ or return undef;
    return timegm($6, $5, $4, $1, $m{$2}, $3);
}

sub openssl_date {
    my ($s) = @_;       # notAfter=Nov 27 03:00:34 2027 GMT
    my %m; @m{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = 0 .. 11;
    $s =~ /(\w{3})\s+(\d+) (\d\d):(\d\d):(\d\d) (\d{4}) GMT/ or return undef;
    return timegm($5, $4, $3, $2, $m{$1}, $6);
}

# Parse a raw Connection: close response.
sub parse_http {
    my ($buf) = @_;
    return { status => 599, headers => {}, content => $buf }
        unless $buf =~ /\r\n\r\n/;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($sl, @lines) = split /\r\n/, $head;
    my ($status) = $sl =~ m{^HTTP/\S+\s+(\d+)};
    my %h;
    for (@lines) { my ($k, $v) = /^([^:]+):\s*(.*)$/ or next; $h{lc $k} = $v }
    return { status => $status // 599, headers => \%h, content => $body };
}

# $n clients at once: every request is sent before any answer is read.
sub swarm {
    my ($n, $path, $timeout) = @_;
    my $req = $t->raw_request_text(GET => $path);
    my @s;
    for (1 .. $n) {
        my $s = $t->raw_connect;
        syswrite($s, $req) == length $req or die "short write\n";
        $s->blocking(0);
        push @s, $s;
    }
    my $sel = IO::Select->new(@s);
    my %idx = map { fileno($s[$_]) => $_ } 0 .. $#s;
    my @buf = ('') x $n;
    my @res;
    my $deadline = time + ($timeout // 10);
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read($deadline - time)) {
            my $i = $idx{fileno $s};
            my $got = sysread($s, $buf[$i], 65536, length $buf[$i]);
            next if !defined $got && ($!{EAGAIN} || $!{EINTR});
            next if $got;
            $sel->remove($s);
            close $s;
            $res[$i] = parse_http($buf[$i]);
        }
    }
    $res[$_] //= { status => 599, headers => {}, content => '' } for 0 .. $n - 1;
    return @res;
}

# ------------------------------------------------- MISS, HIT, PENDING TTL
my $P = new_id();
my $R = new_id();
my $E = new_id();
my $C = new_id();
my $S = new_id();
my $X = new_id();
my $Y = new_id();
my $Z = new_id();
approve($E);

{
    my $g0 = gets();
    my $r1 = $t->get("/request/$P");
    is($r1->{status}, 200, 'PENDING status: 200');
    is($r1->{json}{status}, 'PENDING', 'PENDING status: JSON says PENDING');
    is(xcs($r1), 'MISS', 'first GET: X-Cache-Status MISS');
    my $r2 = $t->get("/request/$P");
    is(xcs($r2), 'HIT', 'second GET: X-Cache-Status HIT');
    is($r2->{content}, $r1->{content}, 'the HIT has the same body');
    my $r3 = $t->get("/request/$P.pem");
    is($r3->{status}, 202, 'certificate of a PENDING id: 202 from cache');
    is(xcs($r3), 'HIT', 'certificate of a PENDING id: HIT');
    like($r3->{headers}{'retry-after'} // '', qr/^\d+$/,
         'certificate of a PENDING id: Retry-After');
    is(gets() - $g0, 1, 'one upstream GET for MISS + HIT + HIT');

    # R is PENDING in the cache, then rejected at the TSB.
    is(xcs($t->get("/request/$R")), 'MISS', 'R fetched while PENDING');
    my $rj = $t->sim_post("/_sim/reject/$R");
    is($rj->{status}, 200, 'simulator rejected R');
    is($t->get("/request/$R.pem")->{status}, 202,
       'R still PENDING from the cache within tsb_cache_valid');

    sleep 1.15;                     # PENDING APPROVED 1s
    $g0 = gets();
    my $r4 = $t->get("/request/$P");
    is(xcs($r4), 'MISS', 'after tsb_cache_valid PENDING 1s: MISS');
    is(gets() - $g0, 1, 'after tsb_cache_valid: refetched (GET count +1)');
    is(xcs($t->get("/request/$P")), 'HIT', 'and then HIT again');

    my $r5 = $t->get("/request/$R.pem");
    $t->error_is($r5, 409, 'request.rejected', 'REJECTED certificate');
    is(xcs($r5), 'MISS', 'REJECTED: the refresh was a MISS');
    my $r6 = $t->get("/request/$R");
    is($r6->{status}, 200, 'REJECTED status JSON: 200');
    is($r6->{json}{status}, 'REJECTED', 'REJECTED status JSON');
    is(xcs($r6), 'HIT', 'REJECTED status JSON: HIT');
}

# --------------------------------- 200 concurrent clients, one upstream GET
{
    # The answer takes 600 ms: every client arrives while it is in flight.
    $t->sim_fault(route => $GET, delay_ms => 600, times => 5);
    my $g0 = gets();
    my $t0 = time;
    my @res = swarm(200, "/request/$C", 10);
    my $took = time - $t0;
    $t->sim_clear_fault;
    my $g = gets() - $g0;
    my @ok = grep { $_->{status} == 200
                    && $_->{content} =~ /"status":"PENDING"/ } @res;
    is(scalar @ok, 200, '200 concurrent clients on an uncached id: all 200 '
                        . 'PENDING') or diag(explain([map { $_->{status} } @res]));
    cmp_ok($g, '<=', 1, "one worker: at most one upstream GET ($g)");
    diag(sprintf '200 concurrent clients: %d upstream GET(s), %.2f s', $g,
         $took);
    my %xcs;
    $xcs{xcs($_)}++ for @res;
    diag('X-Cache-Status: ' . join(', ', map { "$_=$xcs{$_}" } sort keys %xcs));
}

# ------------------------------------ EXECUTED: every format, never refetched
my ($pem, $der, $etag, $der_etag, $filename);
{
    my $r = $t->get("/request/$E.pem");
    is($r->{status}, 200, 'EXECUTED .pem: 200') or $t->explain_response($r);
    $pem = $r->{content};
    $etag = $r->{headers}{etag};
    my $g0 = gets();

    is($r->{headers}{'content-type'}, $PEM_T, '.pem content type');
    like($pem, qr/\A-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+\/=\n]+-----END CERTIFICATE-----\n?\z/,
         '.pem is one PEM certificate');
    my ($ok, $out) = $t->verify_cert($pem);
    ok($ok, '.pem verifies against the simulator CA') or diag($out);
    like($etag // '', qr/^"[^"]+"$/, 'ETag is a strong quoted tag');
    ok($r->{headers}{'last-modified'}
       && http_date($r->{headers}{'last-modified'}),
       'Last-Modified is an HTTP date');
    like($r->{headers}{'cache-control'} // '', qr/max-age=\d+/,
         'Cache-Control with max-age');

    # serial and notAfter as openssl sees them
    my ($rc, $ser) = openssl_in($pem, 0, '-noout', '-serial');
    $ser =~ s/^serial=//; $ser =~ s/\s+$//;
    ok(!$rc && length $ser, "openssl -serial: $ser");
    is(lc($r->{headers}{'x-certificate-serial'} // ''), lc $ser,
       'X-Certificate-Serial equals openssl x509 -serial');
    (my $rc2, my $end) = openssl_in($pem, 0, '-noout', '-enddate');
    my $na = openssl_date($end);
    ok(defined $na, "openssl -enddate: $end");
    is(http_date($r->{headers}{'x-certificate-not-after'} // ''), $na,
       'X-Certificate-Not-After equals the certificate\'s notAfter');

    (undef, my $subj) = openssl_in($pem, 0, '-noout', '-subject');
    my ($cn) = $subj =~ /CN\s*=\s*([^,\/\n]+)/;
    is($cn, 'cache.svc.example', 'certificate CN');
    is($r->{headers}{'content-disposition'},
       qq{attachment; filename="cache.svc.example.pem"},
       'Content-Disposition: attachment with a file name from the CN');

    # DER and its spellings
    for my $case ([".der", {}], [".crt", {}], [".cer", {}],
                  ["?format=der", {}],
                  ["", { Accept => $DER_T }]) {
        my ($suffix, $h) = @$case;
        my $name = $suffix || "Accept: $DER_T";
        my $d = $t->get("/request/$E$suffix", headers => $h);
        is($d->{status}, 200, "$name: 200");
        is($d->{headers}{'content-type'}, $DER_T, "$name: $DER_T");
        unlike($d->{content}, qr/BEGIN/, "$name: binary");
        my ($rc3, $back) = openssl_in($d->{content}, 1, '-outform', 'PEM');
        ok(!$rc3, "$name: openssl parses the DER") or diag($back);
        is($back, $pem, "$name: same certificate as the PEM");
        like($d->{headers}{etag} // '', qr/^"[^"]+"$/, "$name: an ETag");
        $der_etag //= $d->{headers}{etag};
        is($d->{headers}{etag}, $der_etag, "$name: the DER's one ETag");
        like($d->{headers}{'content-disposition'} // '',
             qr/^attachment; filename="cache\.svc\.example\.(der|crt|cer)"$/,
             "$name: Content-Disposition");
        $der //= $d->{content};
    }

    # PEM spellings
    for my $case (["/request/$E?format=pem", {}],
                  ["/request/$E", { Accept => $PEM_T }],
                  ["/certificate/$E", {}],
                  ["/certificate/$E.pem", {}]) {
        my ($path, $h) = @$case;
        my $name = $path . (%$h ? " Accept: $h->{Accept}" : '');
        my $p = $t->get($path, headers => $h);
        is($p->{status}, 200, "$name: 200");
        is($p->{headers}{'content-type'}, $PEM_T, "$name: $PEM_T");
        is($p->{content}, $pem, "$name: same PEM");
    }

    # chain: the leaf first, every block a certificate
    for my $path ("/request/$E/chain", "/request/$E?format=chain",
                  "/certificate/$E/chain") {
        my $c = $t->get($path);
        is($c->{status}, 200, "$path: 200");
        is($c->{headers}{'content-type'}, $CHAIN_T, "$path: $CHAIN_T");
        my @blocks = $c->{content}
            =~ /(-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n)/sg;
        ok(@blocks >= 1, "$path: PEM blocks");
        is($blocks[0], $pem, "$path: the leaf comes first");
        my @bad = grep { (openssl_in($_, 0, '-noout'))[0] } @blocks;
        ok(!@bad, "$path: every block parses with openssl");
    }
    # with tsb_issuer_chain: the leaf, then the issuer
    my $ch = $t->get("/chained/$E/chain");
    is($ch->{status}, 200, 'tsb_issuer_chain: /chain 200')
        or $t->explain_response($ch);
    my @cb = $ch->{content}
        =~ /(-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n)/sg;
    is(scalar @cb, 2, 'tsb_issuer_chain: two certificates');
    is($cb[0], $pem, 'tsb_issuer_chain: the leaf first');
    (my $ca = TsbTest::slurp($t->sim_ca)) =~ s/\r//g;
    is($cb[1] // '', $ca, 'tsb_issuer_chain: then the simulator CA');
    my $chainf = $t->tmp . '/chain.pem';
    spew($chainf, $ch->{content});
    my ($vrc, $vout) = $t->run_cmd('openssl', 'verify', '-CAfile',
                                   $t->sim_ca, '-untrusted', $chainf, $chainf);
    ok(!$vrc && $vout =~ /: OK/, 'tsb_issuer_chain: openssl verify') or
        diag($vout);

    my $cj = $t->get("/request/$E/chain", headers => { Accept => $CHAIN_T });
    is($cj->{headers}{'content-type'}, $CHAIN_T, 'Accept chain type: chain');

    # One URL, a representation chosen by Accept: caches must be told
    # (Vary), and the two representations must not share a strong ETag
    # (a 304 for the DER would confirm a cached PEM).
    my %neg = map { $_ => $t->get("/request/$E", headers => { Accept => $_ }) }
              $PEM_T, $DER_T, 'application/json';
    for my $type (sort keys %neg) {
        like($neg{$type}{headers}{vary} // '', qr/\bAccept\b/i,
             "/request/{id} with Accept: $type: Vary: Accept");
    }
    isnt($neg{$DER_T}{headers}{etag} // '', $neg{$PEM_T}{headers}{etag} // '',
         'PEM and DER of one URL have different ETags');
    my $cond = $t->get("/request/$E", headers => {
        Accept => $DER_T,
        'If-None-Match' => $neg{$PEM_T}{headers}{etag} // '"x"' });
    isnt($cond->{status}, 304,
         'the PEM\'s ETag does not validate the DER of the same URL');

    # status JSON: the certificate as PEM in "result"
    my $j = $t->get("/request/$E");
    is($j->{json}{status}, 'EXECUTED', 'status JSON: EXECUTED');
    is($j->{json}{result}, $pem, 'status JSON: result is the same PEM');
    is(xcs($j), 'HIT', 'status JSON: HIT');

    # 304 and HEAD
    for my $inm ($etag, "W/$etag", qq{"nope", $etag}, '*') {
        my $n = $t->get("/request/$E.pem",
                        headers => { 'If-None-Match' => $inm });
        is($n->{status}, 304, "If-None-Match: $inm -> 304");
        is($n->{content}, '', "If-None-Match: $inm -> no body");
        is($n->{headers}{etag}, $etag, "If-None-Match: $inm -> ETag");
    }
    my $n304 = $t->get("/request/$E.der",
                       headers => { 'If-None-Match' => $der_etag });
    is($n304->{status}, 304, 'DER with its If-None-Match: 304');
    is($n304->{content}, '', 'DER with its If-None-Match: no body');
    my $nm = $t->get("/request/$E.pem",
                     headers => { 'If-None-Match' => '"other"' });
    is($nm->{status}, 200, 'If-None-Match with another tag: 200');
    is($nm->{content}, $pem, 'If-None-Match with another tag: the body');

    for my $fmt (['.pem', $PEM_T, length $pem, $etag],
                 ['.der', $DER_T, length $der, $der_etag]) {
        my ($sfx, $ct, $len, $tag) = @$fmt;
        my $h = $t->request(HEAD => "/request/$E$sfx");
        is($h->{status}, 200, "HEAD $sfx: 200");
        is($h->{content}, '', "HEAD $sfx: no body");
        is($h->{headers}{'content-type'}, $ct, "HEAD $sfx: content type");
        is($h->{headers}{'content-length'}, $len,
           "HEAD $sfx: Content-Length of the GET body");
        is($h->{headers}{etag}, $tag, "HEAD $sfx: the GET's ETag");
    }

    # (the /chained/ location has a zone of its own: one GET fills it)
    is(gets() - $g0, 1, 'no upstream GET for any of the EXECUTED answers '
                        . 'but the one that fills the /chained/ zone');
}

# ----------------------------------------------------------- stale-if-error
{
    is(xcs($t->get("/request/$S")), 'MISS', 'S cached while PENDING');
    is(xcs($t->get("/request/$_")), 'MISS', 'cached while PENDING')
        for $X, $Y, $Z;
    $t->sim_fault(route => $GET, status => 500, times => 100);
    sleep 1.15;

    # R became REJECTED more than PENDING's 1s ago: valid for 1h, it is
    # answered from the cache (a refresh now would meet the 500s).
    my $g0 = gets();
    my $rr = $t->get("/request/$R.pem");
    $t->error_is($rr, 409, 'request.rejected', 'REJECTED, later');
    is(xcs($rr), 'HIT', 'REJECTED, later: HIT');
    is(gets() - $g0, 0, 'REJECTED, later: no upstream GET');

    $t->log_mark;
    my $r = $t->get("/request/$S");
    is($r->{status}, 200, 'TSB answers 500: the stale entry, not 502')
        or $t->explain_response($r);
    is($r->{json}{status}, 'PENDING', 'stale: the last known status');
    is(xcs($r), 'STALE', 'stale: X-Cache-Status STALE');
    like($r->{headers}{warning} // '', qr/^110 .*Stale/i,
         'stale: Warning 110');
    my $rc = $t->get("/request/$S.pem");
    is($rc->{status}, 202, 'stale certificate request: 202 (still PENDING)');
    is(xcs($rc), 'STALE', 'stale certificate request: STALE');

    my $n = $t->get("/nostale/$S");
    $t->error_is($n, 502, qr/^upstream\./, 'tsb_cache_use_stale 0');
    isnt(xcs($n), 'STALE', 'tsb_cache_use_stale 0: not STALE');

    my $s1 = $t->get("/shortstale/$S");
    $t->error_is($s1, 502, qr/^upstream\./,
                 'tsb_cache_use_stale 1s, entry older than that');

    $t->sim_clear_fault;
    $t->sim_fault(route => $GET, reset => JSON::PP::true, times => 100);
    my $rs = $t->get("/request/$S");
    is($rs->{status}, 200, 'TSB resets the connection: the stale entry');
    is(xcs($rs), 'STALE', 'connection reset: STALE');
    $t->sim_clear_fault;

    # Two locations with different tsb_cache_use_stale wait (?wait=) for
    # one id at the same time while the TSB fails slowly: each must get
    # its own location's answer, whichever came first.
    $t->sim_fault(route => $GET, delay_ms => 400, status => 500, times => 6);
    for my $case ([$X, '/request/', '/nostale/'],
                  [$Y, '/nostale/', '/request/']) {
        my ($id, $first, $second) = @$case;
        my $s1 = $t->raw_send(GET => "$first$id?wait=3");
        sleep 0.1;
        my $s2 = $t->raw_send(GET => "$second$id?wait=3");
        my %r = ($first => $t->raw_read($s1), $second => $t->raw_read($s2));
        my $name = "?wait: $first then $second at once";
        is($r{'/request/'}{status}, 200, "$name: /request/ gets 200")
            or $t->explain_response($r{'/request/'});
        is(xcs($r{'/request/'}), 'STALE', "$name: /request/ gets STALE");
        is($r{'/nostale/'}{status}, 502,
           "$name: /nostale/ (tsb_cache_use_stale 0) gets 502")
            or $t->explain_response($r{'/nostale/'});
    }

    # While one request refreshes Z (slowly, and in vain), another location
    # whose tsb_cache_use_stale bound the entry has outlived must not be
    # handed the out-of-date entry as UPDATING.
    for my $loc ('/nostale/', '/shortstale/') {
        my $s1 = $t->raw_send(GET => "/request/$Z");
        sleep 0.1;
        my $r2 = $t->get("$loc$Z");
        my $r1 = $t->raw_read($s1);
        is(xcs($r1), 'STALE', "refresh of Z fails: /request/ gets STALE");
        isnt(xcs($r2), 'UPDATING',
             "$loc during that refresh: not the out-of-date entry as UPDATING");
        is($r2->{status}, 502, "$loc during that refresh: 502")
            or $t->explain_response($r2);
    }
    $t->sim_clear_fault;

    my $ok = $t->get("/request/$S");
    is(xcs($ok), 'MISS', 'TSB back: a fresh answer (MISS)');
    ok(!exists $ok->{headers}{warning}, 'TSB back: no Warning');
}

# --------------------------------------- a tiny zone: eviction, no crash
{
    my @ids = map { new_id() } 1 .. 100;
    approve($_) for @ids;
    $t->log_mark;
    my $g0 = gets();
    my ($good, $bad) = (0, 0);
    for my $id (@ids) {
        my $r = $t->get("/tiny/$id.pem");
        if ($r->{status} == 200 && $r->{content} =~ /BEGIN CERTIFICATE/) {
            $good++;
        } elsif (!$bad++) {
            $t->explain_response($r);
        }
    }
    is($good, 100, '32k zone: 100 EXECUTED certificates all answered 200');
    is(gets() - $g0, 100, 'one upstream GET each');

    my $g1 = gets();
    my $last = $t->get("/tiny/$ids[-1].pem");
    is(xcs($last), 'HIT', 'the most recent entry is still cached');
    is(gets() - $g1, 0, 'and costs no upstream GET');

    $g1 = gets();
    my @again = map { $t->get("/tiny/$_.pem") } @ids[0 .. 9];
    is(scalar(grep { $_->{status} == 200 } @again), 10,
       'the oldest ten again: 200');
    is(scalar(grep { xcs($_) eq 'MISS' } @again), 10,
       'the oldest ten were evicted (MISS)');
    is(gets() - $g1, 10, 'evicted entries are fetched again');

    # Entries of two sizes (RSA-2048 and P-256 certificates: eleven and
    # nine 128-byte chunks), so evicting one entry does not always make
    # room for the next.
    my ($rsa) = $t->make_csr(cn => 'big.svc.example', key => 'rsa:2048');
    my @big = map {
        my $r = $t->raw_read($t->raw_send(POST => '/sign', body => $rsa,
                                          content_type => $PEM_T));
        $r->{json}{signRequestId} // 'none';
    } 1 .. 30;
    approve($_) for @big;
    my ($mixed, $mixed_bad) = (0, 0);
    for my $i (0 .. $#big) {
        for my $path ("/tiny/$big[$i].pem", "/tiny/$ids[$i + 50].pem") {
            my $r = $t->get($path);
            if ($r->{status} == 200 && $r->{content} =~ /BEGIN CERTIFICATE/) {
                $mixed++;
            } elsif (!$mixed_bad++) {
                $t->explain_response($r);
            }
        }
    }
    is($mixed, 60, 'entries of 2 KiB and 4 KiB mixed in a 32k zone: all 200');

    # The largest certificate the policy lets through (100 names, long
    # labels): an entry of several pages in a zone of eight.
    my @names = map { sprintf('%s%02d.svc.example', 'n' x 58, $_) } 1 .. 99;
    my ($huge) = $t->make_csr(cn => 'huge.svc.example', key => 'ec:P-256',
                              san => ['huge.svc.example', @names]);
    my @hids = map {
        my $r = $t->raw_read($t->raw_send(POST => '/sign', body => $huge,
                                          content_type => $PEM_T));
        $t->explain_response($r) unless $r->{status} == 200;
        $r->{json}{signRequestId} // 'none';
    } 1 .. 3;
    approve($_) for grep { $_ ne 'none' } @hids;
    for my $hid (@hids) {
        my $r = $t->get("/tiny/$hid.der");
        is($r->{status}, 200, 'a 100-name certificate through the 32k zone: '
                              . '200') or $t->explain_response($r);
        my $again = $t->get("/tiny/$hid.der");
        is($again->{content}, $r->{content}, 'asked again: the same DER');
    }
    my $after = $t->get("/tiny/$ids[-1].pem");
    is($after->{status}, 200, 'small entries still fine after the big ones');

    my @full = $t->log_since =~ /cache zone is full/g;
    cmp_ok(scalar @full, '<=', 1,
           'error.log says "cache zone is full" at most once');
    like($t->log_since, qr/tsb_cache_zone "tiny"|tiny/, 'the zone is named')
        if @full;
    is($t->get('/pid')->{content}, $pid, 'the same worker throughout');
}

# ----------------- one zone, one issuer chain: nginx refuses anything else
{
    my $ca = $t->sim_ca;

    # starts nginx with a server-level directive; undef or why it failed
    my $start = sub {
        my ($server_level) = @_;
        my $b = TsbTest->new;
        my $ok = eval {
            $b->start_nginx(<<"EOF");
tsb_upstream http://127.0.0.1:%%PORT2%%;
tsb_cache_zone shared:1m;
tsb_cache shared;
server {
    listen 127.0.0.1:%%PORT%%;
    $server_level
    location /a/ { tsb_status; }
    location /b/ { tsb_certificate; tsb_issuer_chain $ca; }
}
EOF
            1;
        };
        my $why = $ok ? undef : ($@ || 'failed');
        $b->stop;
        return $why;
    };

    my $why = $start->('') // '';
    like($why, qr/locations "\/a\/" and "\/b\/" share tsb_cache zone "shared" with different tsb_issuer_chain/,
         'two locations of one zone with different issuer chains: refused');
    is($start->("tsb_issuer_chain $ca;"), undef,
       'the same chain (one inherited, one the same file): accepted');
}

# ------------- approver lists: kept once per zone, answered as the TSB's
{
    my $ua = HTTP::Tiny->new(timeout => 10);
    my $tsb = sub {
        my ($id) = @_;
        my $r = $ua->get($t->sim_url . "/v1/request/$id",
                         { headers => { 'X-API-KEY' => $KEY } });
        return TsbTest::json_decode($r->{content}) // {};
    };
    my @ids = map { new_id() } 1 .. 40;
    my $first = $tsb->($ids[0])->{notYetApprovedBy}[0];
    ok(defined $first && length $first > 300,
       'the simulator names approvers by their public keys');

    # five states: nobody approved, one of two, rejected by one, executed,
    # approved by one and rejected by the other
    for my $i (0 .. $#ids) {
        my $id = $ids[$i];
        if ($i % 5 == 1) {
            $t->sim_post("/_sim/approve/$id", { approver => $first });
        } elsif ($i % 5 == 2) {
            $t->sim_post("/_sim/reject/$id", { approver => $first });
        } elsif ($i % 5 == 3) {
            approve($id);
        } elsif ($i % 5 == 4) {
            $t->sim_post("/_sim/approve/$id", { approver => $first });
            $t->sim_post("/_sim/reject/$id", {});
        }
    }

    # twice over the ids, through a zone that holds about twenty of them:
    # every entry is evicted once, and the lists it shares with the others
    # must outlive it as long as another entry uses them
    my ($hits, $same, $states) = (0, 0, {});
    for my $pass (1, 2) {
        for my $id (@ids) {
            my $miss = $t->get("/tiny/$id");
            my $hit = $t->get("/tiny/$id");
            next unless $hit->{status} == 200 && xcs($hit) eq 'HIT';
            $hits++;
            my $want = $tsb->($id);
            my $got = $hit->{json} // {};
            my $ok = 1;
            for my $k (qw(id status executionTime)) {
                $ok = 0 unless ($got->{$k} // '') eq ($want->{$k} // '');
            }
            for my $k (qw(approvedBy notYetApprovedBy rejectedBy)) {
                $ok = 0 unless join(',', @{ $got->{$k} // ['?'] })
                               eq join(',', @{ $want->{$k} // [] });
            }
            # the certificate, kept as DER, comes back as the same PEM
            my ($g, $w) = map { (my $x = $_ // '') =~ s/\s+//g; $x }
                          $got->{result}, $want->{result};
            $ok = 0 unless $g eq $w;
            if ($ok) {
                $same++;
                $states->{ join '/', $got->{status},
                           map { scalar @{ $got->{$_} } }
                           qw(approvedBy notYetApprovedBy rejectedBy) }++;
            } else {
                diag("$id: got $hit->{content}");
            }
        }
    }
    is($hits, 80, 'every id, asked twice in a row, is a HIT the second time');
    is($same, $hits, 'every HIT has the TSB\'s status and approver lists');
    is(scalar keys %$states, 5, 'in five approval states: '
       . join(' ', sort keys %$states));
}

$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
