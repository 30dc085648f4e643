#!/usr/bin/perl
# nginx's own refusals as JSON: with `error_page ... @tsb_error` and
# `location \@tsb_error { tsb_error; }`, what nginx refuses before the
# module runs (a body over client_max_body_size, a request line, header or
# chunked body it cannot parse, a URI or header too long, a path no
# location serves) is answered {"error", "reason", "detail"} with nginx's
# status, logged, and never reaches the TSB.  A server without the
# error_page answers nginx's HTML page for the same request: the directive
# is what makes the difference.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest;

my $KEY = 'test-api-key-SECRET';
my $SIGN = 'POST /v1/certificate/sign';

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF", workers => 1);
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    client_max_body_size 4k;
    large_client_header_buffers 2 1k;
    error_page 400 403 404 405 411 413 414 494 500 501 /_tsb/error;
    location = /_tsb/error { internal; tsb_error; }
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
    location /request/ { tsb_status; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    client_max_body_size 4k;
    location = /sign {
        tsb_sign;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
}
EOF

sub raw {
    my ($text, $port) = @_;
    my $s = $t->raw_connect($port);
    print {$s} $text;
    return $t->raw_read($s);
}

sub signs { $t->sim_counts->{$SIGN} // 0 }

my ($csr) = $t->make_csr(cn => 'big.svc.example', key => 'ec:P-256');
my $big = $csr . ("\n" x 8000);

$t->log_mark;

# a body over client_max_body_size: refused before the handler runs
my $r = $t->request(POST => '/sign', body => $big,
                    content_type => 'application/x-pem-file');
$t->error_is($r, 413, 'request.too_large', 'body over client_max_body_size');
is($r->{json}{error}, 'payload_too_large', '413: error name');
like($t->log_since, qr/refused with 413 request\.too_large/,
     '413: logged');

# the same without the error_page: nginx's HTML
my $html = $t->request(POST => '/sign', body => $big, port => 2,
                       content_type => 'application/x-pem-file');
is($html->{status}, 413, 'without error_page: 413 too');
like($html->{headers}{'content-type'} // '', qr{^text/html},
     'without error_page: nginx\'s HTML page');

# %00 in the path: nginx's URI parser
$t->error_is(raw("GET /request/abc%00def HTTP/1.1\r\nHost: x\r\n"
                 . "Connection: close\r\n\r\n"),
             400, 'request.malformed', '%00 in the path');

# a request line that is not HTTP
$t->error_is(raw("GARBAGE\r\n\r\n"), 400, 'request.malformed',
             'a request line that is not HTTP');

# a chunked body with a chunk size that is not hex
$t->error_is(raw("POST /sign HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 . "Content-Type: application/x-pem-file\r\n"
                 . "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
             400, 'request.malformed', 'a chunked body with a bad chunk');

# both framings at once
$t->error_is(raw("POST /sign HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 . "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 . "3\r\nabc\r\n0\r\n\r\n"),
             400, 'request.malformed', 'Content-Length and chunked');

# a URI longer than large_client_header_buffers
$t->error_is(raw('GET /request/' . ('a' x 2000) . " HTTP/1.1\r\n"
                 . "Host: x\r\nConnection: close\r\n\r\n"),
             414, 'request.uri_too_long', 'a 2 kB URI');

# a header longer than large_client_header_buffers (nginx's 494)
$r = raw("GET /request/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
         . 'X-Long: ' . ('b' x 2000) . "\r\n\r\n");
$t->error_is($r, 400, 'request.malformed', 'a 2 kB header (494)');

# a path no location serves
$t->error_is($t->get('/nowhere'), 404, 'request.not_found',
             'a path no location serves');

is(signs(), 0, 'none of it reached the TSB');

# a refusal of the module's own is still the module's
$r = $t->request(POST => '/sign', body => 'not a CSR',
                 content_type => 'application/x-pem-file');
$t->error_is($r, 400, qr/^csr\./, 'the module\'s own refusal');

$t->no_worker_crash;
ok($t->stop, 'nginx exits gracefully');

done_testing;
