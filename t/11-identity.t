#!/usr/bin/perl
# Names bound to the client's identity: a TLS client certificate (through
# $tsb_ssl_client_cn) and HTTP basic auth ($remote_user) expand the
# location's name patterns per request.  alice may have alice.svc.example,
# never bob.svc.example; an identity that is missing, unverified or not a
# plain name (CN "*") opens nothing.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use MIME::Base64 qw(encode_base64);
use Test::More;
use TsbTest qw(slurp spew json_encode);

my $KEY = 'test-api-key-SECRET';
my $t = TsbTest->new;
my $tmp = $t->tmp;

# ------------------------------------------------------------ the PKI

sub ossl { $t->_openssl(@_) }

sub ec_key {
    my ($name) = @_;
    ossl('genpkey', '-algorithm', 'EC', '-pkeyopt',
         'ec_paramgen_curve:P-256', '-out', "$tmp/$name.key");
    return "$tmp/$name.key";
}

# a CA, and client certificates it issues
ec_key('ca');
ossl('req', '-x509', '-key', "$tmp/ca.key", '-out', "$tmp/ca.pem",
     '-subj', '/CN=Test Client CA', '-days', '1');

ec_key('server');
ossl('req', '-x509', '-key', "$tmp/server.key", '-out', "$tmp/server.pem",
     '-subj', '/CN=localhost', '-days', '1');

sub client_cert {
    my ($name, $subj, $self_signed) = @_;
    ec_key($name);
    if ($self_signed) {
        ossl('req', '-x509', '-key', "$tmp/$name.key",
             '-out', "$tmp/$name.pem", '-subj', $subj, '-days', '1');
    } else {
        ossl('req', '-new', '-key', "$tmp/$name.key",
             '-out', "$tmp/$name.csr", '-subj', $subj);
        ossl('x509', '-req', '-in', "$tmp/$name.csr", '-CA', "$tmp/ca.pem",
             '-CAkey', "$tmp/ca.key", '-CAcreateserial', '-days', '1',
             '-out', "$tmp/$name.pem");
    }
    return { SSL_cert_file => "$tmp/$name.pem",
             SSL_key_file => "$tmp/$name.key" };
}

my %client = (
    alice   => client_cert('alice', '/CN=alice'),
    bob     => client_cert('bob', '/CN=bob'),
    # RFC 2253 prints this as "O=x\,CN=bob,CN=eve": a regex that picks
    # ",CN=" out of $ssl_client_s_dn finds bob
    eve     => client_cert('eve', '/CN=eve/O=x,CN=bob'),
    star    => client_cert('star', '/CN=*'),
    two     => client_cert('two', '/CN=alice/CN=bob'),
    forged  => client_cert('forged', '/CN=alice', 1),
);

# basic auth users; "*" and "a..b" are names but no plain names
spew("$tmp/htpasswd", join '', map { "$_:{PLAIN}pw-$_\n" }
     'alice', 'bob', '*', 'a..b');

# ------------------------------------------------------------ nginx

$t->start_sim('--api-key', $KEY);
$t->start_nginx(<<"EOF");
tsb_upstream %%SIM%%;
tsb_api_key $KEY;
tsb_sign_key_name CA-Key;
tsb_status_uri /request/;

server {
    listen 127.0.0.1:%%PORT%%;

    location = /user/sign {
        auth_basic "tsb";
        auth_basic_user_file $tmp/htpasswd;
        tsb_sign;
        tsb_allow_common_name \$remote_user.users.example;
        tsb_allow_common_name *.\$remote_user.users.example;
    }

    location ~ ^/team/(?<team>[a-z]+)/sign\$ {
        tsb_sign;
        tsb_allow_common_name *.\${team}.teams.example;
    }
}

server {
    listen 127.0.0.1:%%PORT2%% ssl;
    ssl_certificate $tmp/server.pem;
    ssl_certificate_key $tmp/server.key;
    ssl_client_certificate $tmp/ca.pem;
    ssl_verify_client on;
    tsb_audit_log $tmp/audit.log;

    location = /sign {
        tsb_sign;
        tsb_allow_common_name \$tsb_ssl_client_cn.svc.example;
        tsb_allow_common_name shared.svc.example;
    }
}

server {
    listen 127.0.0.1:%%PORT3%% ssl;
    ssl_certificate $tmp/server.pem;
    ssl_certificate_key $tmp/server.key;
    ssl_client_certificate $tmp/ca.pem;
    ssl_verify_client optional_no_ca;

    location = /sign {
        tsb_sign;
        tsb_allow_common_name \${tsb_ssl_client_cn}.svc.example;
    }
}
EOF

my $PEM = 'application/x-pem-file';

sub tls_request {
    my ($port, $who, $body) = @_;
    my $ua = HTTP::Tiny->new(timeout => 15, verify_SSL => 0,
        SSL_options => { SSL_verify_mode => 0,
                         ($who ? %{$client{$who}} : ()) });
    my $res = $ua->request(POST => 'https://127.0.0.1:' . $t->port($port)
                                   . '/sign',
                           { content => $body,
                             headers => { 'Content-Type' => $PEM } });
    return TsbTest::_wrap($res);
}

sub csr { ($t->make_csr(@_))[0] }

sub tls_ok {
    my ($name, $port, $who, $cn, %o) = @_;
    my $r = tls_request($port, $who, csr(cn => $cn, %o));
    is($r->{status}, 200, "$name: 200") or $t->explain_response($r);
}

sub tls_refused {
    my ($name, $port, $who, $cn, $reason, %o) = @_;
    my $r = tls_request($port, $who, csr(cn => $cn, %o));
    $t->error_is($r, 403, $reason, $name);
}

# ---------------------------------------------- TLS client certificates

tls_ok('alice asks for alice.svc.example', 2, 'alice', 'alice.svc.example');
{
    my @lines = split /\n/, slurp("$tmp/audit.log") // '';
    my $a = @lines ? TsbTest::json_decode($lines[0]) : undef;
    is($a && $a->{ssl_client_s_dn}, 'CN=alice',
       'the audit line names the TLS client');
    is($a && $a->{ssl_client_verify}, 'SUCCESS',
       'the audit line says the client certificate was verified');
}
tls_ok('alice, in another case', 2, 'alice', 'ALICE.svc.example');
tls_refused('alice asks for bob.svc.example', 2, 'alice',
            'bob.svc.example', 'policy.common_name');
tls_refused('alice hides bob in a SAN', 2, 'alice', 'alice.svc.example',
            'policy.san', san => ['alice.svc.example', 'bob.svc.example']);
tls_ok('bob asks for bob.svc.example', 2, 'bob', 'bob.svc.example');
tls_ok('a literal pattern next to the identity', 2, 'bob',
       'shared.svc.example');
tls_ok('eve asks for eve.svc.example', 2, 'eve', 'eve.svc.example');
tls_refused('eve, whose O holds ",CN=bob", asks for bob.svc.example', 2,
            'eve', 'bob.svc.example', 'policy.common_name');
tls_refused('CN "*" does not become a wildcard', 2, 'star',
            'anything.svc.example', 'policy.common_name');
tls_refused('CN "*" asks for the literal *.svc.example', 2, 'star',
            '*.svc.example', 'policy.common_name');
tls_refused('a certificate with two CNs is no identity', 2, 'two',
            'alice.svc.example', 'policy.common_name');
{
    # ".svc.example" is no host name either, so it is refused before any
    # pattern is tried (issue 10)
    my $r = tls_request(3, undef, csr(cn => '.svc.example'));
    $t->error_is($r, 400, 'csr.common_name',
                 'an empty identity does not leave ".svc.example"');
}

{
    my $r = tls_request(2, undef, csr(cn => 'alice.svc.example'));
    is($r->{status}, 400, 'no client certificate: nginx itself says 400');
}

# optional_no_ca lets an unverified certificate through: it is no identity
tls_ok('optional_no_ca, verified alice', 3, 'alice', 'alice.svc.example');
tls_refused('optional_no_ca, self-signed "alice"', 3, 'forged',
            'alice.svc.example', 'policy.common_name');
tls_refused('optional_no_ca, no certificate at all', 3, undef,
            'alice.svc.example', 'policy.common_name');

ok($t->error_log
   =~ /tsb: name pattern "\$\{?tsb_ssl_client_cn\}?\.svc\.example" not used: /,
   'a pattern without an identity is logged as not used');

# ------------------------------------------------------------ basic auth

sub user_request {
    my ($user, $cn, %o) = @_;
    my %h;
    $h{Authorization} = 'Basic ' . encode_base64("$user:pw-$user", '')
        if defined $user;
    return $t->request(POST => '/user/sign', body => csr(cn => $cn, %o),
                       content_type => $PEM, headers => \%h);
}

{
    my $r = user_request('alice', 'alice.users.example');
    is($r->{status}, 200, 'remote_user alice: alice.users.example')
        or $t->explain_response($r);

    $r = user_request('alice', 'www.alice.users.example');
    is($r->{status}, 200, 'remote_user alice: *.alice.users.example')
        or $t->explain_response($r);

    $r = user_request('alice', 'bob.users.example');
    $t->error_is($r, 403, 'policy.common_name',
                 'remote_user alice: bob.users.example');

    $r = user_request('alice', 'x.bob.users.example');
    $t->error_is($r, 403, 'policy.common_name',
                 'remote_user alice: x.bob.users.example');

    $r = user_request('bob', 'bob.users.example');
    is($r->{status}, 200, 'remote_user bob: bob.users.example')
        or $t->explain_response($r);

    $r = user_request('*', 'x.users.example');
    $t->error_is($r, 403, 'policy.common_name',
                 'remote_user "*" is no wildcard');

    # and "a..b.users.example" is no host name (issue 10): 400 before
    # any pattern is tried
    $r = user_request('a..b', 'a..b.users.example');
    $t->error_is($r, 400, qr/^csr\.common_name$/,
                 'remote_user "a..b" is no plain name');

    $r = user_request(undef, 'alice.users.example');
    is($r->{status}, 401, 'no credentials: auth_basic answers 401');
}

# ------------------------------------------- a named capture of the location

{
    my $r = $t->request(POST => '/team/web/sign', content_type => $PEM,
                        body => csr(cn => 'api.web.teams.example'));
    is($r->{status}, 200, 'team web: api.web.teams.example')
        or $t->explain_response($r);

    $r = $t->request(POST => '/team/web/sign', content_type => $PEM,
                     body => csr(cn => 'api.db.teams.example'));
    $t->error_is($r, 403, 'policy.common_name',
                 'team web: api.db.teams.example');
}

is($t->sim_counts->{'POST /v1/certificate/sign'}, 10,
   'only the accepted requests reached the simulator');

$t->no_worker_crash('identity');

done_testing();
