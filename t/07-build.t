#!/usr/bin/perl
# A module built without a feature the loading nginx has (SSL, threads)
# refuses the configuration, naming what is missing and how to rebuild,
# instead of starting degraded ($tsb_ssl_client_cn always empty, tsb_store's
# file I/O on the event loop).  The module under test, built with the
# loading nginx's arguments, is accepted.  The refusal needs a module built
# with --with-compat alone: `make test-build` builds one and sets
# TSB_MODULE_COMPAT (about a minute, so not part of make test).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(spew);

my $t = TsbTest->new;
my $tmp = $t->tmp;

my (undef, $v) = $t->run_cmd($TsbTest::NGINX, '-V');
like($v, qr/--with-http_ssl_module/, 'the loading nginx has SSL');
like($v, qr/--with-threads/, 'the loading nginx has threads');

sub conf_test {
    my ($so) = @_;
    mkdir "$tmp/logs";
    spew("$tmp/nginx.conf", <<"CONF");
load_module $so;
error_log $tmp/error.log;
pid $tmp/nginx.pid;
events {}
http {
    server {
        listen 127.0.0.1:1;
        location / { return 200 "\$tsb_ssl_client_cn"; }
    }
}
CONF
    return $t->run_cmd($TsbTest::NGINX, '-t', '-p', "$tmp/",
                       '-c', "$tmp/nginx.conf");
}

my ($rc, $out) = conf_test($TsbTest::MODULE);
is($rc, 0, 'the module built for this nginx is accepted')
    or diag($out);

SKIP: {
    my $compat = $ENV{TSB_MODULE_COMPAT};
    skip 'no module without SSL and threads (make test-build)', 5
        unless $compat;
    ($rc, $out) = conf_test($compat);
    isnt($rc, 0, 'a module built with --with-compat alone is refused');
    like($out, qr/built\ without\ SSL\ \(NGX_HTTP_SSL\)\ but\ this\ nginx
                  \ has\ ngx_http_ssl_module/x, 'missing SSL named');
    like($out, qr/built\ without\ threads\ \(NGX_THREADS\)\ but\ this
                  \ nginx\ has\ thread\ pools/x, 'missing threads named');
    like($out, qr/rebuild\ the\ module\ with\ this\ nginx's\ configure
                  \ arguments:\ make\ NGINX_SRC=<nginx\ [\d.]+\ source>
                  \ NGINX_BIN=<this\ nginx>/x, 'how to rebuild');
    like($out, qr/test failed/, 'nginx -t fails');
}

done_testing;
