#!/usr/bin/perl
#
# issue 10, part 1: the front decides on the bytes the TSB sees.  Every
# decision of tsb_pass (the allow-list, the sign endpoint through the
# policy, the endpoints never passed) is made on one normalised path, and
# that path is what goes to the TSB.  The simulator routes as Spring on
# Tomcat does (it decodes "%73ign", drops ";x", ignores a trailing "/"), so
# a path judged one way and read another would show here.  Rules that
# could pass a certificate-issuing endpoint other than through the policy
# are refused when nginx starts.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use TsbTest qw(json_encode json_decode);

my $KEY = 'front-path-api-key-SECRET';
my $JSON = 'application/json';

# ------------------------------------------------- configuration time

sub bad_rule {
    my ($rule, $msg) = @_;
    my $b = TsbTest->new;
    my $died = !eval {
        $b->start_nginx(<<"EOF");
server {
    listen 127.0.0.1:%%PORT%%;
    location /v1/ {
        tsb_pass;
        tsb_upstream http://127.0.0.1:%%PORT2%%;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_pass_allow $rule;
    }
}
EOF
        1;
    };
    my $why = $@ // '';
    ok($died && $why =~ /\[emerg\].*cannot be allowed/ && $why =~ $msg,
       "refused at start: tsb_pass_allow $rule")
        or diag($why || 'nginx started');
    $b->stop;
}

# the rule of the issue: it let "synchronous/%73ign" through
bad_rule('POST /v1/certificate/**',
         qr{/v1/certificate/synchronous/sign.*approval workflow});
bad_rule('POST /v1/certificate/*', qr{/v1/certificate/selfsign});
bad_rule('POST /v1/certificate/synchronous/*',
         qr{/v1/certificate/synchronous/sign});
bad_rule('POST /v1/certificate/*/selfsign',
         qr{/v1/certificate/synchronous/selfsign});
bad_rule('POST /v1/certificate/selfsign', qr{self-signing});
bad_rule('PUT /v1/certificate/**', qr{/v1/certificate/});
bad_rule('POST /v1/certificate/Sign', qr{case or a suffix});
bad_rule('POST /v1/certificate/sign.json', qr{case or a suffix});

# The attack of the issue, end to end: with that rule a one-letter
# encoding of "sign" reached the synchronous sign endpoint and the TSB
# issued a 100-year CA certificate for any name.  Now the rule does not
# load; were it loaded, the request would still have to reach nothing.
{
    my $a = TsbTest->new;
    $a->start_sim('--api-key', $KEY);
    my $started = eval {
        $a->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v1/ {
        tsb_pass;
        tsb_pass_allow POST /v1/certificate/**;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
    }
}
EOF
        1;
    };
    ok(!$started, 'the rule of the attack does not load');
    if ($started) {
        my ($c) = $a->make_csr(cn => 'anything.evil.example',
                               key => 'ec:P-256');
        my $body = json_encode({ signCertificateRequest => {
            certificateSigningRequest => $c, signKeyName => 'CA-Key',
            certificateAuthority => JSON::PP::true(), validity => 36500 } });
        my $r = $a->raw_read($a->raw_send(
            POST => '/v1/certificate/synchronous/%73ign',
            content_type => $JSON, body => $body));
        is($a->sim_counts->{'POST /v1/certificate/synchronous/sign'} // 0, 0,
           '... and synchronous/%73ign does not reach the synchronous sign')
            or diag("the TSB answered $r->{status}: a certificate issued");
    }
    $a->stop;
}

# ----------------------------------------------------------- requests

my $t = TsbTest->new;
$t->start_sim('--api-key', $KEY, '--approvers', 'alice');
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_cache_zone tsb:1m;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v1/ {
        tsb_pass;
        tsb_pass_allow POST /v1/certificate/sign /v1/certificate/request;
        tsb_pass_allow GET /v1/request/* /v1/certificate/*;
        tsb_pass_allow DELETE /v1/request/*;
        tsb_sign_key_name CA-Key;
        tsb_allow_common_name *.svc.example;
        tsb_cache tsb;
        tsb_cache_valid PENDING APPROVED 60s;
    }
}
EOF

sub total { $t->sim_counts->{total} }
sub count { $t->sim_counts->{$_[0]} // 0 }

sub envelope {
    my ($csr) = @_;
    return json_encode({ signCertificateRequest =>
                         { certificateSigningRequest => $csr } });
}

# raw, so that nothing on our side tidies the path
sub raw {
    my ($method, $path, %o) = @_;
    return $t->raw_read($t->raw_send($method => $path, %o));
}

my ($good) = $t->make_csr(cn => 'enc.svc.example', key => 'ec:P-256');
my ($evil) = $t->make_csr(cn => 'ca.evil.example', key => 'ec:P-256');

# an encoded letter of "sign" is the sign endpoint: through the policy

{
    my $before = total();
    $t->error_is(raw(POST => '/v1/certificate/%73ign', content_type => $JSON,
                     body => envelope($evil)),
                 403, 'policy.common_name',
                 'POST /v1/certificate/%73ign is judged by the policy');
    is(total(), $before, '... and the refused request never reached the TSB');
}

my $id;
{
    my $before = count('POST /v1/certificate/sign');
    my $r = raw(POST => '/v1/certificate/%73%69%67%6E', content_type => $JSON,
                body => envelope($good));
    is($r->{status}, 200, 'an accepted request through an encoded path: 200')
        or $t->explain_response($r);
    $id = $r->{json}{signRequestId} // 'none';
    is(count('POST /v1/certificate/sign'), $before + 1,
       '... one sign request at the TSB');
    my ($seen) = reverse $t->sim_seen('POST', qr{sign});
    is($seen && $seen->{path}, '/v1/certificate/sign',
       '... sent to the path that was judged, not the encoded one');
    is($seen && $seen->{body_json}{signCertificateRequest}{signKeyName},
       'CA-Key', "... with the policy's signKeyName filled in");
}

# synchronous sign and self-sign, however spelled, are never passed

for my $path ('/v1/certificate/synchronous/sign',
              '/v1/certificate/synchronous/%73ign',
              '/v1/certificate/%73ynchronous/sign',
              '/v1/certificate/synchronous/Sign',
              '/v1/certificate/synchronous/sign.json',
              '/v1/certificate/selfsign',
              '/v1/certificate/s%65lfsign',
              '/v1/certificate/synchronous/selfsign') {
    my $before = total();
    $t->error_is(raw(POST => $path, content_type => $JSON,
                     body => envelope($good)),
                 403, 'policy.front', "POST $path");
    is(total(), $before, '... nothing reached the TSB');
}

# spellings of "sign" that Spring on Tomcat routes to it and a byte
# comparison does not: refused, never forwarded unjudged

for my $case (
    [ '/v1/certificate/sign;x', 400, 'request.path' ],
    [ '/v1/certificate/sign;jsessionid=1', 400, 'request.path' ],
    [ '/v1/certificate/sign/', 400, 'request.path' ],
    [ '/v1/certificate/%73ign/', 400, 'request.path' ],
    [ '/v1/certificate//sign', 400, 'request.path' ],
    [ '/v1/certificate/./sign', 400, 'request.path' ],
    [ '/v1/certificate/x/%2e%2e/sign', 400, 'request.path' ],
    [ '/v1/certificate/x/..;/sign', 400, 'request.path' ],
    [ '/v1/certificate%2Fsign', 400, 'request.path' ],
    [ '/v1/certificate%5Csign', 400, 'request.path' ],
    [ '/v1/certificate/%2573ign', 400, 'request.path' ],
    [ '/v1/certificate/sign%20', 400, 'request.path' ],
    [ '/v1/certificate/sign%09', 400, 'request.path' ],
    [ '/v1/certificate/%C5%BFign', 400, 'request.path' ],
    [ '/v1/certificate/sign?_method=PUT', 400, 'request.path' ],
    [ '/v1/certificate/sign?a=1&%5Fmethod=PUT', 400, 'request.path' ],
    [ '/v1/certificate/Sign', 403, 'policy.front' ],
    [ '/v1/certificate/SIGN', 403, 'policy.front' ],
    [ '/v1/certificate/sign.json', 403, 'policy.front' ],
    [ '/v1/Certificate/sign', 403, 'policy.front' ],
) {
    my ($path, $status, $reason) = @$case;
    my $before = total();
    $t->error_is(raw(POST => $path, content_type => $JSON,
                     body => envelope($evil)),
                 $status, $reason, "POST $path");
    is(total(), $before, '... nothing reached the TSB');
}

# what goes out is what was judged, for passed requests too

{
    raw(GET => '/v1/certificate/%41%2Dlabel');
    my ($seen) = reverse $t->sim_seen('GET', qr{^/v1/certificate/});
    is($seen && $seen->{path}, '/v1/certificate/A-label',
       'a passed GET goes out normalised, with nothing left to decode');

    raw(POST => '/v1/certificate/%72equest', content_type => $JSON,
        body => '{"signKeyName": "k"}');
    ($seen) = reverse $t->sim_seen('POST', qr{^/v1/certificate/});
    is($seen && $seen->{path}, '/v1/certificate/request',
       '... and a passed POST (a CSR, not a certificate)');
}

# the status and cancel endpoints take the normalised id

{
    (my $enc = $id) =~ s/^(.)/sprintf('%%%02X', ord $1)/e;
    my $r = raw(GET => "/v1/request/$enc");
    is($r->{status}, 200, 'GET /v1/request/{id} with an encoded letter: 200')
        or $t->explain_response($r);
    is($r->{json}{id}, $id, '... the status of that id');
    is($r->{json}{status}, 'PENDING', '... PENDING');
    my ($seen) = reverse $t->sim_seen('GET', qr{^/v1/request/});
    is($seen && $seen->{path}, "/v1/request/$id", '... asked for that id');

    $r = raw(DELETE => "/v1/request/$enc");
    is($r->{status}, 200, 'DELETE with an encoded letter: 200')
        or $t->explain_response($r);
    $r = raw(GET => "/v1/request/$id");
    is($r->{json}{status}, 'CANCELLED',
       '... and the cached PENDING of that id is gone');
}

$t->no_worker_crash;
ok($t->stop, 'nginx stops gracefully');

done_testing;
