#!/usr/bin/perl
# A misbehaving TSB, with figures: connection refused, reset before and in
# the middle of an answer, stalls past tsb_timeout, 5xx, 429 with
# Retry-After, 401/403, non-JSON, JSON of the wrong shape, a result that is
# not a certificate, a certificate for another key or name (the simulator's
# mismatch fault), a gigantic or endless body.  For each, on the sign and
# on the status path: the documented status and a JSON error
# {"error","reason","detail"} with an upstream.* reason, a sign is sent to
# the TSB exactly once (never repeated after it may have been acted on),
# the worker never dies and its fds and RSS come back to the baseline.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(json_encode);
use TsbFault;

my $KEY = 'test-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $SIGN = 'POST /v1/certificate/sign';
my $GET = 'GET /v1/request/{id}';
my $F = $TsbTest::TIME_FACTOR;
my $T0 = time;
my $DUPS = 0;                   # sign requests the TSB got twice

my $t = TsbTest->new;
my $f = TsbFault->new($t);
$t->start_sim('--api-key', $KEY);
my $FAKE = $f->fake_upstream;

# tsb_timeout 1s only where a stall is the point: elsewhere a busy
# machine must not turn a quick failure into a timeout.
my $common = <<'EOF';
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
        tsb_connect_timeout 2s;
EOF
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
tsb_max_response_size 256k;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
$common    }
    location /request/ { tsb_status; }
    location = /slow/sign {
        tsb_sign;
        tsb_timeout 1s;
$common    }
    location /slow/request/ { tsb_status; tsb_timeout 1s; }
    location = /csign {
        tsb_sign;
        tsb_cache tsb;
$common    }
    location /cached/ { tsb_status; tsb_cache tsb; tsb_cache_use_stale 0; }
    location = /dead/sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
$common    }
    location /dead/request/ {
        tsb_status;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
        tsb_connect_timeout 1s;
    }
    location = /fake/sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:$FAKE;
$common    }
    location = /fake/slow/sign {
        tsb_sign;
        tsb_upstream http://127.0.0.1:$FAKE;
        tsb_timeout 1s;
$common    }
    location /fake/request/ {
        tsb_status;
        tsb_upstream http://127.0.0.1:$FAKE;
    }
    location = /pid { return 200 "\$pid"; }
}
EOF

my $n_csr = 0;
my ($CSR) = $t->make_csr(cn => 'fault.svc.example', key => 'ec:P-256');

sub counts { $t->sim_counts }

# Is it a JSON error of the documented shape?  '' when fine.
sub check_error {
    my ($r, $statuses, $reason) = @_;
    my %ok = map { $_ => 1 } @$statuses;
    return "status $r->{status}" unless $ok{$r->{status}};
    return 'content type ' . ($r->{headers}{'content-type'} // 'none')
        unless ($r->{headers}{'content-type'} // '') =~ m{^application/json};
    my $j = $r->{json};
    return 'body is not a JSON object' unless ref $j eq 'HASH';
    for my $k (qw(error reason detail)) {
        return "no \"$k\"" unless defined $j->{$k} && length $j->{$k};
    }
    return "reason $j->{reason}" if $reason && $j->{reason} !~ $reason;
    return "the API key is in the answer" if index($r->{content}, $KEY) >= 0;
    return '';
}

sub sign_via {
    my ($path) = @_;
    return $t->request(POST => $path, body => $CSR, content_type => $PEM);
}

# One sign with a fault queued at the simulator: the answer, and how many
# sign requests the simulator got for it.
sub sign_fault {
    my ($fault, $path) = @_;
    $t->sim_fault(route => $SIGN, times => 1, %$fault);
    my $c0 = counts()->{$SIGN} // 0;
    my $t0 = time;
    my $r = sign_via($path // '/sign');
    my $took = time - $t0;
    $t->sim_clear_fault;
    return ($r, (counts()->{$SIGN} // 0) - $c0, $took);
}

# Runs a group of cases; each returns ($response, $upstream_signs, $took)
# and is expected to be a JSON error with one of @$statuses.
sub group {
    my ($side, $what, $statuses, $reason, $want_signs, @cases) = @_;
    my (@bad, %st);
    my $maxt = 0;
    for my $c (@cases) {
        my ($name, $code) = @$c;
        my ($r, $signs, $took) = $code->();
        $st{$r->{status}}++;
        $maxt = $took if ($took // 0) > $maxt;
        my $why = check_error($r, $statuses, $reason);
        $why ||= "the TSB got $signs sign requests, not $want_signs"
            if defined $want_signs && defined $signs
               && $signs != $want_signs;
        push @bad, "$name: $why" if $why;
    }
    my $n = @cases;
    ok(!@bad, "$what: $n cases, each a JSON error " . join('/', @$statuses)
              . (defined $want_signs
                 ? ", each sign sent to the TSB exactly $want_signs time(s)"
                 : ''))
        or diag(join "\n", @bad);
    note(sprintf '%s: %s (slowest %.2f s)', $what,
         join(', ', map { "$_ x$st{$_}" } sort keys %st), $maxt);
    $f->count($side, $what, $n, map { ("answered $_" => $st{$_}) } keys %st);
    return \%st;
}

# ------------------------------------------------------------ warm-up
my $ID;
{
    my $r = sign_via('/sign');
    is($r->{status}, 200, 'control: sign accepted')
        or $t->explain_response($r);
    $ID = $r->{json}{signRequestId} // 'none';
    is($t->get("/request/$ID")->{status}, 200, 'control: status 200');
    $t->sim_fault(route => $SIGN, status => 500, times => 1);
    sign_via('/sign');
    $t->sim_clear_fault;
    sign_via('/dead/sign');
    $f->fake_mode({ raw => "HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n" });
    sign_via('/fake/sign');
}
my $base = $f->snapshot;
note('baseline: ' . $f->describe($base));

# ---------------------------------------------------- the sign path
my $G = 'POST sign';
group($G, 'sign: TSB unreachable', [502], qr/^upstream\.unreachable$/,
      undef,
      map { my $i = $_; ["connection refused $i", sub {
          my $t0 = time;
          my $r = sign_via('/dead/sign');
          return ($r, undef, time - $t0);
      }] } 1 .. 5);

{
    # libcurl resends a request whose reused keep-alive connection died
    # before any answer: for a sign POST that the TSB may have acted on,
    # that would be a second sign request (two approval workflows).
    my $up0 = counts()->{$SIGN} // 0;
    my @r = map { [sign_fault({ reset => JSON::PP::true })] } 1 .. 3;
    my $fresh = counts()->{$SIGN} // 0;
    $DUPS += $fresh - $up0 - @r;
    note('RST before the answer: answers '
         . join(', ', map { $_->[0]{status} } @r) . '; sign requests at '
         . 'the TSB per client request: ' . join(', ', map { $_->[1] } @r));
    $f->count($G, 'sign: RST before the answer', scalar @r,
              'sign requests at the TSB' => $fresh - $up0);
    is($fresh - $up0, 3, 'sign: RST before the answer: each sign sent '
                         . 'to the TSB exactly once');
    ok(!grep({ check_error($_->[0], [502, 504], qr/^upstream\./) } @r),
       'sign: RST before the answer: a JSON 502 (504 on a busy machine), '
       . 'not a silent second try');
}

group($G, 'sign: answer cut short', [502],
      qr/^upstream\./, 1,
      ['answer 64 bytes short, then closed',
       sub { sign_fault({ truncate => JSON::PP::true }) }],
      ['500 cut short', sub { sign_fault({ truncate => JSON::PP::true,
                                           status => 500 }) }]);

{
    my $st = group($G, 'sign: TSB stalls past tsb_timeout (1s)', [504],
                   qr/^upstream\.timeout$/, 1,
                   map { my $d = $_; ["stall $d ms", sub {
                       sign_fault({ delay_ms => $d }, '/slow/sign') }] }
                   1500, 2500);
}

group($G, 'sign: TSB answers 5xx', [502], qr/^upstream\.status$/, 1,
      map { my $s = $_; ["status $s", sub { sign_fault({ status => $s }) }],
                        ["status $s, HTML body", sub {
                            sign_fault({ status => $s,
                                         body => "<html>$s</html>" }) }] }
      500, 502, 503, 504, 599);

group($G, 'sign: TSB refuses the gateway (401/403)', [502],
      qr/^upstream\.auth$/, 1,
      map { my $s = $_; ["status $s", sub { sign_fault({ status => $s }) }] }
      401, 403);

group($G, 'sign: TSB answers 429', [429, 502, 503], qr/^upstream\./, 1,
      ['429 from the simulator', sub { sign_fault({ status => 429 }) }]);

group($G, 'sign: not JSON, or JSON of the wrong shape', [502],
      qr/^upstream\.response$/, 1,
      map { my $b = $_; ["200 $b->[0]", sub {
          sign_fault({ status => 200, body => $b->[1] }) }] }
      ['malformed', '{"signRequestId": '], ['empty', ''],
      ['HTML', '<html><body>hello</body></html>'], ['a number', '42'],
      ['an array', '[]'], ['an empty object', '{}'],
      ['null id', '{"signRequestId": null}'],
      ['numeric id', '{"signRequestId": 42}'],
      ['empty id', '{"signRequestId": ""}'],
      ['id with ../', '{"signRequestId": "../../etc/passwd"}'],
      ['id with a CRLF', '{"signRequestId": "a\r\nSet-Cookie: x=1"}'],
      ['id with a NUL', '{"signRequestId": "abc\u0000def"}'],
      ['id of 1000 characters', '{"signRequestId": "' . ('a' x 1000) . '"}'],
      ['id an object', '{"signRequestId": {"id": "x"}}'],
      ['two ids', '{"signRequestId": "a", "signRequestId": "b"}'],
      ['deep nesting', '{"signRequestId": ' . ('[' x 5000) . (']' x 5000)
                       . '}'],
      ['trailing garbage', '{"signRequestId": "abc"} x']);

group($G, 'sign: gigantic answer', [502], qr/^upstream\.too_large$/, 1,
      ['300 KiB JSON', sub { sign_fault({ status => 200, body =>
          '{"signRequestId": "' . ('a' x (300 * 1024)) . '"}' }) }],
      ['400 KiB of spaces', sub { sign_fault({ status => 200,
                                               body => ' ' x (400 << 10) }) }],
      ['400 KiB error body', sub {
          sign_fault({ status => 500, body => 'e' x (400 << 10) }) }],
      ['endless chunked body', sub { fake_sign({ endless => 1 }) }]);

# --------------------------------- what only a fake upstream can send
sub fake_sign {
    my ($mode, $path) = @_;
    $f->fake_mode($mode);
    my $n0 = $f->fake_requests;
    my $t0 = time;
    my $r = sign_via($path // '/fake/sign');
    my $took = time - $t0;
    # the fake logs a request when it has read it
    $t->wait_for(sub { $f->fake_requests > $n0 }, 1);
    return ($r, $f->fake_requests - $n0, $took);
}

sub http {
    my ($status, $headers, $body) = @_;
    return "HTTP/1.1 $status\r\n$headers"
         . 'Content-Length: ' . length($body) . "\r\nConnection: close"
         . "\r\n\r\n$body";
}

my $OKBODY = '{"signRequestId": "d1b4e2c0-5f7a-4a51-9d5e-0b5c6e7f8a9b"}';
group($G, 'sign: broken HTTP from the TSB', [502], qr/^upstream\./, 1,
      ['half an answer, then RST', sub {
          fake_sign({ raw => "HTTP/1.1 200 OK\r\nContent-Type: "
                             . "application/json\r\nContent-Length: 500"
                             . "\r\n\r\n{\"signRequestId\": \"d1b4",
                      rst => 1 }) }],
      ['headers only, then RST', sub {
          fake_sign({ raw => "HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n",
                      rst => 1 }) }],
      ['no status line', sub { fake_sign({ raw => "HELLO\r\n\r\n" }) }],
      ['garbage bytes', sub {
          fake_sign({ raw => join '', map { chr(($_ * 37) % 256) } 1 .. 999 })
      }],
      ['closed without a byte', sub { fake_sign({ raw => '' }) }],
      ['negative Content-Length', sub {
          fake_sign({ raw => "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"
                             . $OKBODY }) }],
      ['a header of 200 KiB', sub {
          fake_sign({ raw => "HTTP/1.1 200 OK\r\nX-Big: " . ('h' x 204800)
                             . "\r\nContent-Length: " . length($OKBODY)
                             . "\r\n\r\n$OKBODY" }) }],
      ['HTTP/0.9-style body', sub { fake_sign({ raw => $OKBODY }) }],
      ['200, an id with invalid UTF-8', sub {
          fake_sign({ raw => http('200 OK', "Content-Type: application/json"
                                            . "\r\n",
                                  "{\"signRequestId\": \"ab\xff\xfecd\"}") })
      }]);

group($G, 'sign: the TSB stalls or dribbles', [504], qr/^upstream\.timeout$/,
      1,
      ['accepts, never answers', sub {
          fake_sign({ stall => 3 }, '/fake/slow/sign') }],
      ['headers, then one byte per 100 ms', sub {
          fake_sign({ head => "HTTP/1.1 200 OK\r\nContent-Length: 100000"
                              . "\r\n\r\n", drip => 100 },
                    '/fake/slow/sign') }],
      ['half a status line', sub {
          fake_sign({ head => 'HTTP/1.1 2', drip => 300 }, '/fake/slow/sign')
      }]);

{
    # 429 and 503 with Retry-After: the client should learn when to retry.
    my @c;
    for my $s ('429 Too Many Requests', '503 Service Unavailable') {
        push @c, ["$s, Retry-After: 7", sub {
            fake_sign({ raw => http($s, "Retry-After: 7\r\nContent-Type: "
                                        . "application/json\r\n",
                                    '{"errorCode": 429, "reason": '
                                    . '"res.error.busy", "message": '
                                    . '"slow down"}') }) }];
    }
    my (%ra, @resp);
    for my $c (@c) {
        my ($r) = $c->[1]->();
        push @resp, $r;
        $ra{$c->[0]} = $r->{headers}{'retry-after'} // 'none';
    }
    my @bad = map { check_error($resp[$_], [429, 502, 503], qr/^upstream\./)
                    ? $c[$_][0] : () } 0 .. $#c;
    ok(!@bad, 'sign: 429/503 with Retry-After: JSON errors 429/502/503')
        or diag(join "\n", map { $t->explain_response($_) } @resp);
    $f->count($G, 'sign: 429/503 with Retry-After', scalar @c);
    note('Retry-After passed to the client: '
         . join(', ', map { "$_ -> $ra{$_}" } sort keys %ra));
    ok(!grep({ $ra{$_} ne '7' } keys %ra),
       'sign: the client gets the TSB\'s Retry-After with a 429/503');
}

# -------------------------------------------------- the status path
my $S = 'GET status';
sub get_fault {
    my ($fault, $path) = @_;
    $t->sim_fault(route => $GET, times => 3, %$fault);
    my $t0 = time;
    my $r = $t->get($path // "/request/$ID");
    my $took = time - $t0;
    $t->sim_clear_fault;
    return ($r, undef, $took);
}

group($S, 'status: TSB unreachable', [502], qr/^upstream\.unreachable$/,
      undef, ['connection refused', sub {
          ($t->get("/dead/request/$ID"), undef, 0) }],
      ['connection refused, .pem', sub {
          ($t->get("/dead/request/$ID.pem"), undef, 0) }]);

group($S, 'status: reset, cut short, stalled, 5xx', [502, 504],
      qr/^upstream\./, undef,
      ['RST', sub { get_fault({ reset => JSON::PP::true }) }],
      ['RST, .pem', sub { get_fault({ reset => JSON::PP::true },
                                    "/request/$ID.pem") }],
      ['cut short', sub { get_fault({ truncate => JSON::PP::true }) }],
      ['stall 1.5 s', sub { get_fault({ delay_ms => 1500 },
                                      "/slow/request/$ID") }],
      (map { my $s = $_; ["status $s", sub { get_fault({ status => $s }) }] }
       500, 502, 503, 504),
      ['401', sub { get_fault({ status => 401 }) }]);

{
    my ($r) = get_fault({ delay_ms => 1500 }, "/slow/request/$ID.pem");
    is($r->{status}, 504, 'status: a stall past tsb_timeout is 504');
    is($r->{json}{reason}, 'upstream.timeout', 'status: upstream.timeout');
}

my $id_json = json_encode($ID);
my %good = (id => $ID, status => 'PENDING', executionTime => undef,
            approvedBy => [], notYetApprovedBy => ['a'], rejectedBy => [],
            result => undef);
sub shape {
    my (%o) = @_;
    return json_encode({ %good, %o });
}
my ($CERT_CSR) = $t->make_csr(cn => 'other.svc.example', key => 'ec:P-256');
group($S, 'status: not JSON, or JSON of the wrong shape', [502],
      qr/^upstream\.(response|certificate)$/, undef,
      map { my $b = $_; ["200 $b->[0]", sub {
          get_fault({ status => 200, body => $b->[1] }, $b->[2]) }] }
      ['malformed', '{"id": '], ['empty', ''], ['HTML', '<html></html>'],
      ['an array', '[]'], ['an empty object', '{}'],
      ['another request\'s id',
       shape(id => 'ffffffff-5f7a-4a51-9d5e-0b5c6e7f8a9b')],
      ['an unknown status', shape(status => 'BOGUS')],
      ['status a number', shape(status => 3)],
      ['approvedBy a string', shape(approvedBy => 'alice')],
      ['EXECUTED, result a greeting', shape(status => 'EXECUTED',
                                            result => 'hello'),
       "/request/$ID.pem"],
      ['EXECUTED, result a number', shape(status => 'EXECUTED', result => 7),
       "/request/$ID.pem"],
      ['EXECUTED, result a CSR', shape(status => 'EXECUTED',
                                       result => $CERT_CSR),
       "/request/$ID.pem"],
      ['EXECUTED, result a broken PEM', shape(status => 'EXECUTED',
          result => "-----BEGIN CERTIFICATE-----\nAAAA\n"
                    . "-----END CERTIFICATE-----\n"), "/request/$ID.pem"],
      ['EXECUTED, result null', shape(status => 'EXECUTED', result => undef),
       "/request/$ID.der"],
      ['deep nesting', '{"id": ' . ('[' x 5000) . (']' x 5000) . '}']);
group($S, 'status: invalid UTF-8 from the TSB', [502],
      qr/^upstream\.response$/, undef, ['200, a status with 0xFF', sub {
          $f->fake_mode({ raw => http('200 OK', "Content-Type: application/"
                                      . "json\r\n", "{\"id\": $id_json, "
                                      . "\"status\": \"PEND\xffING\"}") });
          ($t->get("/fake/request/$ID"), undef, 0);
      }]);

group($S, 'status: gigantic answer', [502], qr/^upstream\.too_large$/,
      undef, ['400 KiB', sub { get_fault({ status => 200,
                                           body => ' ' x (400 << 10) }) }],
      ['endless chunked', sub {
          $f->fake_mode({ endless => 1 });
          my $t0 = time;
          ($t->get("/fake/request/$ID"), undef, time - $t0);
      }]);

# ------------------------------------- a certificate for another key
{
    my @res;
    for my $m (qw(key cn)) {
        my $cn = "mismatch-$m.svc.example";
        my ($csr) = $t->make_csr(cn => $cn, key => 'ec:P-256');
        $t->sim_fault(route => $SIGN, mismatch => $m, times => 1);
        my $r = $t->request(POST => '/csign', body => $csr,
                            content_type => $PEM);
        $t->sim_clear_fault;
        is($r->{status}, 200, "mismatch $m: sign accepted")
            or $t->explain_response($r);
        my $id = $r->{json}{signRequestId} // 'none';
        my $a = $t->sim_post("/_sim/approve/$id");
        is($a->{status}, 200, "mismatch $m: approved at the TSB");
        push @res, ["the TSB signed another $m", sub {
            my $t0 = time;
            ($t->get("/cached/$id.pem"), undef, time - $t0) }],
            ["the TSB signed another $m, status JSON", sub {
            ($t->get("/cached/$id"), undef, 0) }];
    }
    group($S, 'certificate for another key or name', [502],
          qr/^(upstream\.certificate|issued\.mismatch)$/, undef, @res);
}

# ------------------------------------------------------- afterwards
{
    my $r = sign_via('/sign');
    is($r->{status}, 200, 'after all that a sign is accepted again')
        or $t->explain_response($r);
    is($t->get('/request/' . ($r->{json}{signRequestId} // 'none'))
         ->{status}, 200, 'and its status answered');
}
$f->back_to_baseline($base, 'after the upstream faults');

{
    # A second round of the cheap faults must not grow the worker.
    my $mid = $f->snapshot;
    my $n = 0;
    my $R = 30;
    my @p = (POST => '/sign', content_type => $PEM, body => $CSR);
    for my $fault ({ truncate => JSON::PP::true },
                   { status => 200, body => '{"signRequestId": 42}' },
                   { status => 503 }, { malformed => JSON::PP::true }) {
        $t->sim_fault(route => $SIGN, times => $R, %$fault);
        $f->raw_exchange(5, $t->raw_request_text(@p)) for 1 .. $R;
        $n += $R;
    }
    $t->sim_fault(route => $GET, times => $R, status => 200,
                  body => shape(status => 'EXECUTED', result => 'hello'));
    $f->raw_exchange(5, $t->raw_request_text(GET => "/request/$ID.pem"))
        for 1 .. $R;
    $f->fake_mode({ raw => "HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n",
                    rst => 1 });
    $f->raw_exchange(5, $t->raw_request_text(POST => '/fake/sign',
                                             content_type => $PEM,
                                             body => $CSR)) for 1 .. $R;
    $f->raw_exchange(5, $t->raw_request_text(POST => '/dead/sign',
                                             content_type => $PEM,
                                             body => $CSR)) for 1 .. $R;
    $n += 3 * $R;
    $t->sim_clear_fault;
    $f->back_to_baseline($mid, "$n more upstream faults", rss_slack_kb => 256);
    $f->count('round 2', 'the cheap faults again', $n);
}

my $total = $f->total;
$f->report(sprintf 'upstream faults: %d injected in %.1f s, 0 crashes, '
                   . '%d sign(s) sent to the TSB twice', $total, time - $T0,
                   $DUPS);
# The TSB's certificate for another key is an [alert] (an operator must
# look at the TSB); anything else at alert level or above is not expected.
sub no_crash {
    my ($name) = @_;
    my $log = $t->error_log;
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/
                     && !/\[alert\].*issued\.mismatch/ } split /\n/, $log;
    ok(!@bad, "no crash, no unexpected alert in error.log ($name)")
        or diag(join "\n", @bad[0 .. ($#bad < 20 ? $#bad : 20)]);
    ok(index($log, $KEY) < 0, "the API key is not in error.log ($name)");
}
no_crash('running');
ok($t->stop, 'nginx exits gracefully');
no_crash('after shutdown');

done_testing;
