#!/usr/bin/perl
# Bad input from clients, with figures: garbage, truncated, mutated and
# oversized bodies, slow bodies and headers, wrong methods, huge headers,
# chunked bodies, invalid UTF-8 and NULs in every JSON string of the sign
# envelope, deeply nested JSON, path tricks on request ids.  For every case:
# the documented status and a JSON {"error","reason","detail"} (or, where
# nginx itself refuses the request before any location runs, its own
# status), nothing refused reaches the TSB, the worker never dies, and its
# fds and RSS come back to the baseline.  Prints what was tried.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(json_encode slurp);
use TsbFault;

my $KEY = 'test-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $JSON_T = 'application/json';
my $F = $TsbTest::TIME_FACTOR;
my $T0 = time;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
client_body_timeout 1s;
client_header_timeout 1s;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_status_uri /request/;
        tsb_max_body_size 16k;
        tsb_allow_key_password on;
    }
    location /request/ { tsb_status; }
    location /certificate/ { tsb_certificate; }
    location = /pid { return 200 "\$pid"; }
}
EOF

my $f = TsbFault->new($t);
srand(20261127);                # the same "random" inputs on every run

sub upstream_total { $t->sim_counts->{total} // 0 }

# Is this a JSON error of the documented shape with a status in @ok and a
# reason matching $reason?  No test output; returns a description of what
# is wrong, or '' when fine.
sub check_error {
    my ($r, $statuses, $reason) = @_;
    my %ok = map { $_ => 1 } @$statuses;
    return "status $r->{status}" unless $ok{$r->{status}};
    return "content type " . ($r->{headers}{'content-type'} // 'none')
        unless ($r->{headers}{'content-type'} // '') =~ m{^application/json};
    my $j = $r->{json};
    return 'body is not a JSON object' unless ref $j eq 'HASH';
    for my $k (qw(error reason detail)) {
        return "no \"$k\"" unless defined $j->{$k} && !ref $j->{$k}
                                  && length $j->{$k};
    }
    return "reason $j->{reason}" if $reason && $j->{reason} !~ $reason;
    return '';
}

# Runs @cases (each [name, code returning a response]) and expects each to
# be refused with a JSON error; one test for the group.  Extra statuses
# (e.g. 200 for a mutation that happens to stay valid) are counted.
sub refused_group {
    my ($group, $what, $statuses, $reason, @cases) = @_;
    my $up0 = upstream_total();
    my (@bad, %by_status);
    for my $c (@cases) {
        my ($name, $code) = @$c;
        my $r = $code->();
        $by_status{$r->{status}}++;
        my $why = check_error($r, $statuses, $reason);
        push @bad, "$name: $why" if $why;
    }
    my $up = upstream_total() - $up0;
    my $n = @cases;
    ok(!@bad, "$what: $n tried, every one a JSON error "
              . join('/', @$statuses))
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
    is($up, 0, "$what: none reached the upstream");
    $f->count($group, $what, $n, 'reached upstream' => $up);
    note("$what: " . join ', ', map { "$_ x$by_status{$_}" }
                                sort keys %by_status);
    return \%by_status;
}

# A POST written in one piece on a fresh connection (HTTP::Tiny writes
# head and body apart: Nagle and delayed ACKs would cost 40 ms a request).
sub post {
    my ($body, $ct, %o) = @_;
    return sub {
        my ($r) = $f->raw_exchange(10, $t->raw_request_text(
            POST => $o{path} // '/sign', body => $body, content_type => $ct,
            headers => $o{headers}));
        return $r;
    };
}

sub rand_bytes { join '', map { chr int rand 256 } 1 .. $_[0] }

# --------------------------------------------------------------- warm-up
my ($CSR, $CSR_KEY) = $t->make_csr(cn => 'ok.svc.example', key => 'ec:P-256');
my $DER = $t->csr_der($CSR);
my %ENV0 = (
    signKeyName => 'CA-Key',
    keyPassword => 'key-password',
    signatureAlgorithm => 'SHA256_WITH_RSA',
    commonName => 'ok.svc.example',
    certificateSigningRequest => $CSR,
    keyUsage => ['DIGITAL_SIGNATURE'],
    extendedKeyUsage => ['SERVER_AUTH'],
);
my $ENVELOPE = json_encode({ signCertificateRequest => \%ENV0 });
my $accepted = 0;
for my $c ([$CSR, $PEM], [$DER, 'application/pkcs10'],
           [encode_base64($DER), 'application/pkcs10'],
           [$ENVELOPE, $JSON_T]) {
    my $r = $t->request(POST => '/sign', body => $c->[0],
                        content_type => $c->[1]);
    is($r->{status}, 200, "control: a valid $c->[1] sign is accepted")
        or $t->explain_response($r);
    $accepted++ if $r->{status} == 200;
}
my $ID = ($t->request(POST => '/sign', body => $CSR, content_type => $PEM)
          ->{json} // {})->{signRequestId} // 'none';
$accepted++;
$t->get("/request/$ID");
$t->get("/request/nope") for 1 .. 3;
$t->request(POST => '/sign', body => 'x', content_type => $PEM) for 1 .. 3;
# five signs, one status poll, three polls of an unknown (well-formed) id
is(upstream_total(), $accepted + 1 + 3, 'controls reached the upstream');
$t->sim_reset;

my $base = $f->snapshot;
note('baseline: ' . $f->describe($base));

# -------------------------------------------------------- garbage bodies
{
    my @types = ($PEM, 'text/plain', 'application/pkcs10',
                 'application/x-pkcs10', $JSON_T);
    my @cases;
    for my $i (1 .. 300) {
        my $ct = $types[$i % @types];
        my $len = int(rand(4000)) + 1;
        push @cases, ["garbage $i ($ct, $len bytes)",
                      post(rand_bytes($len), $ct)];
    }
    # printable garbage, which gets further into the PEM/base64 parsers
    for my $i (1 .. 100) {
        my $ct = $types[$i % @types];
        my $s = join '', map { chr(32 + int rand 95) } 1 .. 1 + int rand 2000;
        $s = "-----BEGIN CERTIFICATE REQUEST-----\n$s\n"
           . "-----END CERTIFICATE REQUEST-----\n" if $i % 3 == 0;
        push @cases, ["printable garbage $i ($ct)", post($s, $ct)];
    }
    refused_group('client', 'garbage bodies', [400],
                  qr/^(csr|json|request)\./, @cases);
}

# ----------------------------------------------- truncated valid inputs
{
    my @cases;
    for my $in (['PEM', $CSR, $PEM], ['DER', $DER, 'application/pkcs10'],
                ['base64', encode_base64($DER), 'application/pkcs10'],
                ['JSON', $ENVELOPE, $JSON_T]) {
        my ($what, $body, $ct) = @$in;
        my $len = length $body;
        # every 7th cut point plus the edges, up to the last 40 bytes (a
        # PEM without its END line, a DER without its signature)
        for (my $cut = 1; $cut < $len - 40; $cut += 7) {
            push @cases, ["$what cut at $cut/$len",
                          post(substr($body, 0, $cut), $ct)];
        }
    }
    refused_group('client', 'truncated CSRs and envelopes', [400],
                  qr/^(csr|json|request)\./, @cases);
}

# ------------------------------------------------ mutated valid inputs
{
    # Flipped bytes: mostly refused; a flip that keeps the input valid
    # (a PEM header byte the parser ignores) may be accepted, once.
    my $up0 = upstream_total();
    my (@bad, %st);
    my $n = 0;
    for my $in (['PEM', $CSR, $PEM], ['DER', $DER, 'application/pkcs10'],
                ['JSON', $ENVELOPE, $JSON_T]) {
        my ($what, $body, $ct) = @$in;
        for my $i (1 .. 80) {
            my $m = $body;
            for (1 .. 1 + int rand 3) {
                my $p = int rand length $m;
                substr($m, $p, 1) = chr(ord(substr($m, $p, 1))
                                        ^ (1 << int rand 8));
            }
            my $r = post($m, $ct)->();
            $n++;
            $st{$r->{status}}++;
            next if $r->{status} == 200;
            my $why = check_error($r, [400, 403],
                                  qr/^(csr|json|request|policy)\./);
            push @bad, "$what mutation $i: $why" if $why;
        }
    }
    my $up = upstream_total() - $up0;
    ok(!@bad, "mutated CSRs/envelopes: $n tried, each a JSON 400/403 or "
              . "accepted")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
    is($up, $st{200} // 0,
       'mutated inputs: only the accepted ones reached the upstream, once');
    $f->count('client', 'mutated CSRs and envelopes (bit flips)', $n,
              accepted => $st{200} // 0, 'reached upstream' => $up);
    note('mutations: ' . join ', ', map { "$_ x$st{$_}" } sort keys %st);
}

# ------------------------------------------------------------- oversized
{
    my $big = $CSR . ('#' x (17 * 1024));
    my @chunks;
    refused_group('client', 'bodies over tsb_max_body_size', [413],
        qr/^request\.too_large$/,
        ['Content-Length 16k+1', post('x' x (16 * 1024 + 1), $PEM)],
        ['a CSR and 17k of padding', post($big, $PEM)],
        ['1 MiB JSON', post('[' x (1024 * 1024), $JSON_T)],
        ['chunked 20k', sub {
            @chunks = (('A' x 1000) x 20);
            $t->request(POST => '/sign', content_type => $PEM,
                        body => sub { shift @chunks });
        }],
    );
    # Beyond client_max_body_size (1m by default) nginx refuses the body
    # itself, before the location's handler runs: its own 413 page.
    my ($r) = $f->raw_exchange(5,
        "POST /sign HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Content-Type: $PEM\r\nContent-Length: 1000000000000\r\n\r\n");
    is($r->{status}, 413, 'Content-Length 10^12: 413 (nginx, '
                          . 'client_max_body_size)');
    $f->count('client', 'bodies over client_max_body_size (nginx)', 1);
}

# ----------------------------------------- refused by nginx before us
{
    # These never reach a location handler: nginx answers with its own
    # status (and its own HTML page).  What matters here is that none
    # reaches the TSB and nothing breaks.
    my @raw = (
        ['negative Content-Length', "Content-Length: -1\r\n", 'x'],
        ['non-numeric Content-Length', "Content-Length: 12a\r\n", 'x'],
        ['two Content-Lengths', "Content-Length: 1\r\nContent-Length: 2\r\n",
         'xx'],
        ['Content-Length and chunked',
         "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
         "1\r\nx\r\n0\r\n\r\n"],
        ['bad chunk size', "Transfer-Encoding: chunked\r\n",
         "zz\r\nxx\r\n0\r\n\r\n"],
        ['chunk size overflow', "Transfer-Encoding: chunked\r\n",
         "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n"],
        ['unknown Transfer-Encoding', "Transfer-Encoding: gzip\r\n", 'x'],
        ['header line of 9000 bytes', 'X-Big: ' . ('a' x 9000) . "\r\n",
         ''],
        ['NUL in a header', "X-Nul: a\0b\r\n", ''],
        ['header without a colon', "Just-a-name\r\n", ''],
    );
    my $up0 = upstream_total();
    my (@bad, %st);
    for my $c (@raw) {
        my ($name, $hdr, $body) = @$c;
        my ($r, $took) = $f->raw_exchange(5,
            "POST /sign HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . "Content-Type: $PEM\r\n$hdr\r\n$body");
        note(sprintf '%s: %d in %.2f s', $name, $r->{status}, $took);
        $st{$r->{status}}++;
        push @bad, "$name: $r->{status}"
            unless $r->{status} >= 400 && $r->{status} <= 501;
    }
    for my $c (['URI of 10000 bytes', '/sign?' . ('a' x 10000)],
               ['request line junk', "/sign\x01\x02"],
               ['absolute URI with a bad host', 'http://a b/sign']) {
        my ($name, $uri) = @$c;
        my ($r) = $f->raw_exchange(5, "GET $uri HTTP/1.1\r\nHost: x\r\n"
                                   . "Connection: close\r\n\r\n");
        $st{$r->{status}}++;
        push @bad, "$name: $r->{status}"
            unless $r->{status} >= 400 && $r->{status} < 500;
    }
    my $n = @raw + 3;
    ok(!@bad, "$n malformed HTTP requests: nginx refuses each (4xx, 501)")
        or diag(join "\n", @bad);
    is(upstream_total() - $up0, 0, 'malformed HTTP: none reached upstream');
    $f->count('client', 'malformed HTTP framing (nginx refuses)', $n,
              'reached upstream' => upstream_total() - $up0);
    note('malformed HTTP: ' . join ', ', map { "$_ x$st{$_}" } sort keys %st);
}

# ---------------------------------------------------------- methods
{
    my @cases;
    for my $m (qw(GET PUT DELETE PATCH OPTIONS PROPFIND FOO)) {
        push @cases, ["$m /sign", sub {
            $t->request($m => '/sign', body => $CSR, content_type => $PEM)
        }];
    }
    for my $m (qw(POST PUT DELETE PATCH)) {
        for my $p ("/request/$ID", "/request/$ID.pem",
                   "/certificate/$ID.der") {
            # DELETE {status}/{id} cancels, as on the TSB (t/38-owner.t)
            next if $m eq 'DELETE' && $p eq "/request/$ID";
            push @cases, ["$m $p", sub {
                $t->request($m => $p, body => $CSR, content_type => $PEM)
            }];
        }
    }
    my $st = refused_group('client', 'wrong methods', [405], undef, @cases);
    my $r = $t->request(GET => '/sign');
    like($r->{headers}{allow} // '', qr/\bPOST\b/, '405 on /sign: Allow POST');
    my $h = $t->request(HEAD => '/sign');
    is($h->{status}, 405, 'HEAD /sign: 405');
    my ($tr) = $f->raw_exchange(5, "TRACE /sign HTTP/1.1\r\nHost: x\r\n"
                                   . "Connection: close\r\n\r\n");
    is($tr->{status}, 405, 'TRACE: 405 (nginx)');
    $f->count('client', 'wrong methods', 2);
}

# --------------------------------------- big but acceptable headers
{
    my $up0 = upstream_total();
    my @bad;
    my %h = map { ("X-Filler-$_" => 'f' x 100) } 1 .. 200;
    my $r = $t->request(POST => '/sign', body => 'x', content_type => $PEM,
                        headers => \%h);
    my $why = check_error($r, [400], qr/^csr\./);
    push @bad, "200 headers: $why" if $why;
    my $n = 1;
    for my $ct ('application/json; charset=utf-8; x=' . ('y' x 7000),
                'application/json' . (' ' x 5000), 'application/jsonx',
                'application/json/x', '*/*', 'APPLICATION/JSON;', ';',
                'text', "application/json\t;", "application/\x80json",
                'application/json; charset=latin1',
                'application/x-pem-file, application/json') {
        # raw: HTTP::Tiny would tidy some of these up
        ($r) = $f->raw_exchange(5, "POST /sign HTTP/1.1\r\nHost: x\r\n"
            . "Connection: close\r\nContent-Type: $ct\r\n"
            . "Content-Length: 1\r\n\r\n{");
        $why = check_error($r, [400, 415], qr/^(json|csr|request)\./);
        push @bad, 'Content-Type ' . substr($ct, 0, 40) . ": $why" if $why;
        $n++;
    }
    ok(!@bad, "$n odd or big headers: JSON errors") or diag(join "\n", @bad);
    is(upstream_total() - $up0, 0, 'odd headers: none reached upstream');
    $f->count('client', 'big and odd Content-Type/headers', $n);
}

# ---------------------------------------------------------------- chunked
{
    my $up0 = upstream_total();
    my @bad;
    my $hdr = "POST /sign HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . "Content-Type: $PEM\r\nTransfer-Encoding: chunked\r\n\r\n";
    my $one = join('', map { "1\r\n$_\r\n" } split //, $CSR) . "0\r\n\r\n";
    my ($r) = $f->raw_exchange(10, $hdr . $one);
    push @bad, "1-byte chunks: $r->{status}" unless $r->{status} == 200;
    my $ext = sprintf("%x;name=value\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n",
                      length $CSR, $CSR);
    ($r) = $f->raw_exchange(10, $hdr . $ext);
    push @bad, "chunk extension and trailer: $r->{status}"
        unless $r->{status} == 200;
    ($r) = $f->raw_exchange(10, $hdr . "0\r\n\r\n");
    my $why = check_error($r, [400], qr/^request\.empty$/);
    push @bad, "chunked, empty: $why" if $why;
    ($r) = $f->raw_exchange(10, $hdr . "5\r\nhello\r\n0\r\n\r\n");
    $why = check_error($r, [400], qr/^csr\./);
    push @bad, "chunked garbage: $why" if $why;
    ok(!@bad, 'chunked bodies: 2 valid accepted, empty and garbage refused')
        or diag(join "\n", @bad);
    is(upstream_total() - $up0, 2, 'chunked: only the 2 valid ones reached '
                                   . 'the upstream');
    $f->count('client', 'chunked bodies', 4, accepted => 2,
              'reached upstream' => upstream_total() - $up0);
}

# ------------------------- invalid UTF-8 and NULs in every JSON string
{
    my @variants = (
        ['raw 0xFF', "\xff"],
        ['overlong /', "\xc0\xaf"],
        ['UTF-8 surrogate', "\xed\xa0\x80"],
        ['cut multibyte', "\xe2\x82"],
        ['raw NUL', "\0"],
        ['\\u0000', '\\u0000'],
        ['raw control 0x01', "\x01"],
        ['raw newline', "\n"],
        ['\\u0000 and a suffix', '\\u0000.evil.example'],
        ['lone \\udc00', '\\udc00'],
    );
    # yajl turns a high surrogate escape that no low one follows into "?"
    # (see the TODO below); kept apart so the rest stays a hard check.
    my @lone = (['lone \\ud800', '\\ud800'],
                ['\\udbff at the end', '\\udbff'],
                ['\\ud800 then \\u0041', '\\ud800\\u0041']);
    # Build the envelope by hand so the bytes go through as they are.
    my $enc = JSON::PP->new->canonical;
    my @fields = qw(signKeyName keyPassword signatureAlgorithm commonName
                    certificateSigningRequest keyUsage extendedKeyUsage);
    my (@cases, @lone_cases);
    for my $field (@fields) {
        for my $v (@variants, @lone) {
            my ($vname, $bytes) = @$v;
            for my $where (qw(middle end)) {
                my %e = %ENV0;
                my $val = ref $e{$field} ? $e{$field}[0] : $e{$field};
                my $mark = "\x{1}MARK\x{1}";
                my $mid = int(length($val) / 2);
                $mid = length $val if $where eq 'end';
                my $m = substr($val, 0, $mid) . $mark . substr($val, $mid);
                $e{$field} = ref $e{$field} ? [$m] : $m;
                my $body = $enc->encode({ signCertificateRequest => \%e });
                $body =~ s/\\u0001MARK\\u0001/$bytes/ or die "no mark";
                my $list = (grep { $_ == $v } @lone) ? \@lone_cases
                                                      : \@cases;
                push @$list, ["$field: $vname in the $where",
                              post($body, $JSON_T)];
            }
        }
        # ... and in the member name
        for my $v (@variants[0, 4, 5]) {
            my ($vname, $bytes) = @$v;
            my $body = $enc->encode({ signCertificateRequest => \%ENV0 });
            $body =~ s/"\Q$field\E"/"$field$bytes"/ or die "no $field";
            push @cases, ["member name $field: $vname", post($body, $JSON_T)];
        }
    }
    refused_group('client', 'invalid UTF-8/NUL in JSON strings', [400, 403],
                  qr/^(json|csr|request|policy)\./, @cases);
    refused_group('client', 'lone high surrogate escapes in JSON strings',
                  [400], qr/^json\./, @lone_cases);
}

# ---------------------------------------------------- deeply nested JSON
{
    my @cases;
    for my $depth (2, 10, 100, 1000, 5000) {
        push @cases,
            ["[ x $depth", post(('[' x $depth) . (']' x $depth), $JSON_T)],
            ["{\"a\": x $depth",
             post(('{"a":' x $depth) . '1' . ('}' x $depth), $JSON_T)],
            ["unclosed [ x $depth", post('[' x $depth, $JSON_T)];
        my %e = %ENV0;
        $e{keyUsage} = '@@';
        my $body = json_encode({ signCertificateRequest => \%e });
        my $nest = ('[' x $depth) . '"DIGITAL_SIGNATURE"' . (']' x $depth);
        $body =~ s/"\@\@"/$nest/;
        push @cases, ["keyUsage nested $depth", post($body, $JSON_T)];
        my $obj = ('{"x":' x $depth) . '1' . ('}' x $depth);
        ($body = json_encode({ signCertificateRequest => {
            %ENV0, commonName => '@@' } })) =~ s/"\@\@"/$obj/;
        push @cases, ["commonName nested $depth", post($body, $JSON_T)];
    }
    for my $c (['1000 unknown members', '{' . join(',', map { "\"k$_\":$_" }
                                                   1 .. 1000) . '}'],
               ['a duplicated envelope',
                substr($ENVELOPE, 0, -1) . ',' . substr($ENVELOPE, 1)],
               ['a number of 5000 digits', '{"signCertificateRequest":'
                                            . ('9' x 5000) . '}'],
               ['top-level string', '"hello"'], ['top-level null', 'null'],
               ['two documents', "$ENVELOPE $ENVELOPE"],
               ['a BOM first', "\xef\xbb\xbf$ENVELOPE"],
               ['trailing garbage', "$ENVELOPE x"]) {
        push @cases, [$c->[0], post($c->[1], $JSON_T)];
    }
    refused_group('client', 'deep, wide and odd JSON', [400, 413],
                  qr/^(json|csr|request)\./, @cases);
}

# ----------------------------------------------------- path tricks on ids
{
    my $u = 'aa0e2c52-98c1-4bb4-9a55-3c7bfe8a1d11';
    my @tricks = ('..', '%2e%2e', '.%2e', '..%2f', '..%2F..%2Fetc%2Fpasswd',
                  '%2e%2e%2f%2e%2e', 'abc%00', '%00', 'abc%2Fdef', '.',
                  'a' x 65, 'a' x 1000, 'a' x 4000, "$u%2F", "$u%2e",
                  "$u.pem.pem", "$u/chain/chain", "$u.pem/chain", 'chain',
                  '.pem', '', "$u%20", "%C3%A9$u", 'x/chain/chain',
                  "$u;x=1", "$u,x",
                  "$u*", "\$$u", "$u\@x", "$u~", "$u%2500", "${u}_x",
                  "$u.PEM", "$u.der.der", "$u.", "$u/", "$u//");
    my (@cases, @todo, %nginx);
    for my $pre ('/request/', '/certificate/') {
        for my $id (@tricks) {
            # the id would be taken from outside the location's prefix
            my $list = $id =~ m{(^|/)chain/chain$|^chain$} ? \@todo
                                                            : \@cases;
            push @$list, ["GET $pre$id", sub { $t->get("$pre$id") }];
        }
    }
    my $up0 = upstream_total();
    my (@bad, %st);
    for my $c (@cases) {
        my ($name, $code) = @$c;
        my $r = $code->();
        $st{$r->{status}}++;
        # nginx normalises some of these out of the location (404) or
        # refuses them itself (400, HTML); the module must say request.id
        my $why = check_error($r, [400], qr/^request\.id$/);
        if ($why && ($r->{headers}{'content-type'} // '')
                    !~ m{^application/json}
            && ($r->{status} == 400 || $r->{status} == 404)) {
            $nginx{$name} = $r->{status};
            next;
        }
        push @bad, "$name: $why" if $why;
    }
    my $up = upstream_total() - $up0;
    my $n = @cases;
    ok(!@bad, "$n path tricks: 400 request.id (or refused by nginx)")
        or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
    is($up, 0, 'path tricks: none reached the upstream');
    note('refused by nginx itself: '
         . join(', ', map { "$_ -> $nginx{$_}" } sort keys %nginx));
    $f->count('client', 'path tricks on ids', $n,
              'by nginx' => scalar keys %nginx, 'reached upstream' => $up);
    refused_group('client', '"chain" where the id should be', [400],
                  qr/^request\.id$/, @todo);

    # Ids of the right alphabet but not the TSB's: asked once each, 404.
    my @odd = ('abc', '-', '----', 'A' x 64, 'DEADBEEF', "\U$u");
    $up0 = upstream_total();
    my @bad2;
    for my $id (@odd) {
        my $r = $t->get("/request/$id");
        my $why = check_error($r, [404], qr/^request\.unknown$/);
        push @bad2, "$id: $why" if $why;
    }
    ok(!@bad2, scalar(@odd) . ' well-formed unknown ids: 404 request.unknown')
        or diag(join "\n", @bad2);
    is(upstream_total() - $up0, scalar @odd,
       'well-formed unknown ids: one upstream GET each');
    $f->count('client', 'well-formed non-UUID ids (404)', scalar @odd,
              'reached upstream' => upstream_total() - $up0);
}

# ------------------------------------- truncated and stalled connections
{
    my $up0 = upstream_total();
    my $req = $t->raw_request_text(POST => '/sign', content_type => $PEM,
                                   body => $CSR);
    my $half = substr($req, 0, length($req) - int(length($CSR) / 2));
    my @bad;

    # the client hangs up half-way through its body: 20 times
    for (1 .. 20) {
        my $s = $t->raw_connect;
        syswrite($s, $half);
        close $s;
    }
    # half a body, then silence: client_body_timeout (1s) closes it
    my ($r, $took) = $f->raw_exchange(10, $half);
    push @bad, "stalled body: got $r->{status}" unless $r->{status} == 599
                                                      || $r->{status} == 408;
    push @bad, sprintf('stalled body closed after %.2fs', $took)
        unless $took >= 0.9 && $took < 3 * $F;
    note(sprintf 'stalled body: %s after %.2f s', $r->{status}, $took);

    # half a header, then silence: client_header_timeout (1s)
    ($r, $took) = $f->raw_exchange(10, "POST /sign HTTP/1.1\r\nHost: x\r\n");
    push @bad, "stalled header: got $r->{status}" unless $r->{status} == 599
                                                        || $r->{status} == 408;
    push @bad, sprintf('stalled header closed after %.2fs', $took)
        unless $took >= 0.9 && $took < 3 * $F;
    note(sprintf 'stalled header: %s after %.2f s', $r->{status}, $took);

    # a connection that never says anything
    ($r, $took) = $f->raw_exchange(10);
    push @bad, "silent connection: got $r->{status}"
        unless $r->{status} == 599 || $r->{status} == 408;
    ok(!@bad, '22 truncated or stalled requests: closed, no answer sent')
        or diag(join "\n", @bad);
    ok($t->wait_log(qr/client (timed out|prematurely closed)/, 2),
       'the timeouts and hang-ups are logged');
    is(upstream_total() - $up0, 0,
       'truncated requests: none reached upstream');
    $f->count('client', 'truncated bodies, hang-ups, stalls', 23);
}

# ------------------------------------------------------------- slowloris
{
    # 10 clients send their header, then dribble the body 10 bytes every
    # 200 ms; an 11th dribbles its header for longer than
    # client_header_timeout.  Meanwhile
    # other clients are served at once.  nginx's client_body_timeout is the
    # time between two reads, so a dribbling body is read to its end and
    # then judged (here: garbage -> 400); client_header_timeout bounds the
    # whole header.
    my $up0 = upstream_total();
    my $body = '{"signCertificateRequest": "' . ('z' x 40) . '"}';
    my $req = $t->raw_request_text(POST => '/sign', content_type => $JSON_T,
                                   body => $body);
    my @c;
    for my $i (0 .. 10) {
        my $s = $t->raw_connect;
        $s->blocking(0);
        my $text = $i < 10 ? $req : "POST /sign HTTP/1.1\r\nHost: x\r\n"
                                     . join('', map { "X-Slow-$_: y\r\n" }
                                            1 .. 100);
        if ($i < 10) {
            my ($head, $rest) = split /\r\n\r\n/, $text, 2;
            syswrite($s, "$head\r\n\r\n");
            $text = $rest;
        }
        push @c, { s => $s, left => $text, buf => '', done => 0 };
    }
    my $sel = IO::Select->new(map { $_->{s} } @c);
    my %by = map { fileno($_->{s}) => $_ } @c;
    my $t0 = time;
    my $next = $t0;
    my ($fast_ok, $fast_n, $fast_max) = (0, 0, 0);
    while (time - $t0 < 10 * $F && grep { !$_->{done} } @c) {
        if (time >= $next) {
            for my $c (grep { !$_->{done} && length $_->{left} } @c) {
                my $piece = substr($c->{left}, 0, 10, '');
                syswrite($c->{s}, $piece);
            }
            $next += 0.2;
            # a normal client meanwhile
            my $q0 = time;
            my $r = $t->get('/pid');
            my $d = time - $q0;
            $fast_max = $d if $d > $fast_max;
            $fast_n++;
            $fast_ok++ if $r->{status} == 200;
        }
        for my $s ($sel->can_read(0.05)) {
            my $c = $by{fileno $s};
            my $n = sysread($s, $c->{buf}, 65536, length $c->{buf});
            next if !defined $n && ($!{EAGAIN} || $!{EINTR});
            if (!$n) {
                $c->{done} = time - $t0;
                $sel->remove($s);
                close $s;
            }
        }
    }
    my @slow = @c[0 .. 9];
    my $answered = grep { $_->{buf} =~ m{^HTTP/1\.1 400 }
                          && $_->{buf} =~ /"reason":"json\./ } @slow;
    is($answered, 10, '10 dribbled bodies were read to the end and refused '
                      . 'with 400 json.*')
        or diag(join "\n", map { substr($_->{buf}, 0, 200) } @slow);
    my $hdr = $c[10];
    ok($hdr->{done} && $hdr->{done} < 2 * $F && $hdr->{buf} eq '',
       sprintf('a header dribbled past client_header_timeout is cut after '
               . '%.2f s', $hdr->{done} || -1));
    is($fast_ok, $fast_n, sprintf('%d other requests meanwhile all served '
                                  . '(slowest %.0f ms)', $fast_n,
                                  $fast_max * 1000));
    is(upstream_total() - $up0, 0, 'slow clients: none reached upstream');
    $f->count('client', 'slow clients (slowloris)', 11);
}

# ----------------------------------------------- the worker afterwards
{
    my $r = $t->request(POST => '/sign', body => $CSR, content_type => $PEM);
    is($r->{status}, 200, 'a valid sign is still accepted after all that')
        or $t->explain_response($r);
}
$f->back_to_baseline($base, 'after the bad client input');

# Do it once more: a second round must not grow the worker any further.
{
    my $mid = $f->snapshot;
    for my $i (1 .. 300) {
        my $ct = $i % 2 ? $JSON_T : $PEM;
        post(rand_bytes(1 + int rand 4000), $ct)->();
        my $m = $ENVELOPE;
        substr($m, int rand length $m, 1) = chr int rand 256;
        post($m, $JSON_T)->();
        $f->raw_exchange(5, $t->raw_request_text(GET => "/request/a%2F$i"));
    }
    $f->back_to_baseline($mid, '900 more bad requests', rss_slack_kb => 256);
    $f->count('client', 'second round (garbage, mutations, bad ids)', 900);
}

my $total = $f->total('client');
$f->report(sprintf 'client-side faults: %d malformed inputs tried in '
                   . '%.1f s, 0 crashes', $total, time - $T0);
$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');
$t->no_worker_crash('after shutdown');

done_testing;
