#!/usr/bin/perl
# The smaller ones of issue 11 (point 6):
# - a body over client_max_body_size sent over HTTP/2 gets tsb_error's
#   JSON 413, as over HTTP/1.1, not nginx's HTML page;
# - CURLOPT_PIPEWAIT only where HTTP/2 can be negotiated: over plain http
#   a second sign does not wait behind a slow first one for the first
#   connection to the TSB;
# - the status location without a cache and the front answer JSON, also
#   when nginx itself refuses (every answer of the module is JSON).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use TsbTest qw(json_decode);

my $KEY = 'small-api-key-SECRET';
my $PEM = 'application/x-pem-file';
my $SIGN = 'POST /v1/certificate/sign';
my $F = $TsbTest::TIME_FACTOR;

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    listen 127.0.0.1:%%PORT2%% http2;
    client_max_body_size 4k;
    error_page 400 403 404 405 411 413 414 494 500 501 /_tsb/error;
    location = /_tsb/error { internal; tsb_error; }
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
    location /v1/ {
        tsb_pass;
        tsb_pass_allow GET /v1/request/*;
        tsb_pass_allow POST /v1/certificate/sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
}
EOF

my $n = 0;
sub csr { ($t->make_csr(cn => 's' . ++$n . '.svc.example',
                        key => 'ec:P-256'))[0] }

# curl over HTTP/2 without TLS (prior knowledge): status, type, body
sub h2 {
    my ($method, $path, %o) = @_;
    my $body_file = $t->tmp . '/h2body' . ++$n;
    my @cmd = ('curl', '-sS', '--http2-prior-knowledge', '-X', $method,
               '-o', $body_file, '-w', '\n@@%{http_code} %{http_version} '
               . '%{content_type}', '--max-time', 10 * $F);
    if (defined $o{body}) {
        my $in = $t->tmp . '/h2in' . $n;
        TsbTest::spew($in, $o{body});
        push @cmd, '--data-binary', "\@$in",
                   '-H', 'Content-Type: ' . ($o{type} // $PEM);
        push @cmd, '-H', 'Transfer-Encoding: chunked' if $o{chunked};
    }
    push @cmd, 'http://127.0.0.1:' . $t->port(2) . $path;
    # curl 7.88 may drop an answer that comes while it still uploads (its
    # error 92, or 16/55/56 when the machine is busy; nginx has sent the
    # answer whole): ask again when curl saw no status line
    my ($rc, $out, $code, $version, $type);
    for (1 .. 10) {
        ($rc, $out) = $t->run_cmd(@cmd);
        ($code, $version, $type) = $out =~ /\@\@(\d{3}) (\S*) ?(.*)$/m;
        last if defined $code && $code ne '000';
        diag("curl: $out");
        sleep 0.2;
    }
    my $content = TsbTest::slurp($body_file) // '';
    return { status => $code // 0, version => $version // '',
             type => $type // '', content => $content,
             json => json_decode($content) };
}

sub json_error_ok {
    my ($r, $status, $reason, $name) = @_;
    ok($r->{status} == $status && $r->{type} =~ m{^application/json}
       && ref $r->{json} eq 'HASH' && ($r->{json}{reason} // '') eq $reason
       && defined $r->{json}{detail},
       "$name: $status $reason as JSON")
        or diag("got $r->{status} HTTP/$r->{version} $r->{type}: "
                . substr($r->{content}, 0, 300));
}

# ----------------------------------------------- HTTP/2: body too large
{
    my $big = csr() . ("\n" x 8000);
    my $r = h2(POST => '/sign', body => $big);
    is($r->{version}, '2', 'the request went over HTTP/2');
    json_error_ok($r, 413, 'request.too_large', 'HTTP/2 sign over 4k');

    $r = h2(POST => '/sign', body => $big, chunked => 1);
    json_error_ok($r, 413, 'request.too_large',
                  'HTTP/2 sign over 4k, no length');

    $r = h2(POST => '/v1/certificate/sign', body => $big,
            type => 'application/json');
    json_error_ok($r, 413, 'request.too_large', 'HTTP/2 front POST over 4k');

    # a body within the limit still works over HTTP/2
    $r = h2(POST => '/sign', body => csr());
    is($r->{status}, 200, 'HTTP/2 sign within the limit: 200')
        or diag($r->{content});
}

# ------------------------------------- PIPEWAIT only where h2 is possible
{
    # a fresh worker: no connection to the TSB yet
    $t->reload;
    $t->sim_fault(route => $SIGN, delay_ms => 2000, times => 1);
    my $slow = $t->raw_send(POST => '/sign', content_type => $PEM,
                            body => csr());
    sleep 0.2;
    my $t0 = time;
    my $r = $t->raw_read($t->raw_send(POST => '/sign', content_type => $PEM,
                                      body => csr()), 10);
    my $took = time - $t0;
    is($r->{status}, 200, 'the second sign: 200')
        or $t->explain_response($r);
    ok($took < 1.0 * $F, sprintf('the second sign took %.2f s: it did not '
                                 . 'wait behind the slow first one', $took));
    is($t->raw_read($slow, 10)->{status}, 200, 'the slow first sign: 200');
}

ok($t->stop, 'nginx exits gracefully');
my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/ }
          split /\n/, $t->error_log;
ok(!@bad, 'no crash, no alert') or diag(join "\n", @bad);

done_testing;
