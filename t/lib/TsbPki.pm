package TsbPki;

# Throwaway TLS material for the upstream tests, made with the openssl CLI
# in a test's temporary directory: a CA, a server certificate for
# 127.0.0.1 and localhost, one for another name, a client certificate
# whose key is encrypted (with a password file), an unencrypted copy for
# the harness's own control calls, and an unrelated CA.
#
#   my $pki = TsbPki::make($t);
#   $t->start_sim(TsbPki::sim_args($pki));
#   TsbPki::harness_ua($t, $pki);      # /_sim calls with a client cert
#
# Also: config_test($t, $conf) runs "nginx -t" on a configuration with the
# module loaded and returns (ok, output).

use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use TsbTest qw(spew slurp);

our $PASSWORD = 'client-key-pass-SECRET';

sub _ossl {
    my ($t, @args) = @_;
    my ($rc, $out) = $t->run_cmd('openssl', @args);
    die "openssl @args: $out" if $rc;
    return $out;
}

sub _ca {
    my ($t, $dir, $name, $cn) = @_;
    _ossl($t, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
          'ec_paramgen_curve:P-256', '-nodes', '-keyout', "$dir/$name.key",
          '-out', "$dir/$name.pem", '-subj', "/CN=$cn", '-days', '2',
          '-addext', 'basicConstraints=critical,CA:TRUE',
          '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

sub _leaf {
    my ($t, $dir, $name, $cn, $ext) = @_;
    _ossl($t, 'req', '-new', '-newkey', 'ec', '-pkeyopt',
          'ec_paramgen_curve:P-256', '-nodes', '-keyout', "$dir/$name.key",
          '-out', "$dir/$name.csr", '-subj', "/CN=$cn");
    spew("$dir/$name.ext", $ext);
    _ossl($t, 'x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/ca.pem",
          '-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
          '-out', "$dir/$name.pem", '-extfile', "$dir/$name.ext");
}

sub make {
    my ($t) = @_;
    my $dir = $t->tmp . '/pki';
    make_path($dir);
    chmod 0755, $dir;

    _ca($t, $dir, 'ca', 'Test TSB TLS CA');
    _ca($t, $dir, 'other-ca', 'Some Other CA');

    _leaf($t, $dir, 'server', '127.0.0.1',
          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
          . "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    _leaf($t, $dir, 'wrongname', 'tsb.other.example',
          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
          . "subjectAltName=DNS:tsb.other.example\n");
    _leaf($t, $dir, 'client', 'gateway.example',
          "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");

    # The gateway's key is encrypted; the password file has a wrong line
    # first (nginx's ssl_password_file tries each line).
    rename "$dir/client.key", "$dir/client-plain.key";
    _ossl($t, 'pkey', '-in', "$dir/client-plain.key", '-aes256',
          '-passout', "pass:$PASSWORD", '-out', "$dir/client.key");
    spew("$dir/password", "not-this-one\n$PASSWORD\n");
    spew("$dir/wrong-password", "nope\n");
    spew("$dir/garbage.pem", "this is not a certificate\n");

    chmod 0644, glob("$dir/*");
    push @{$t->{secrets}}, $PASSWORD;

    return {
        dir          => $dir,
        ca           => "$dir/ca.pem",
        other_ca     => "$dir/other-ca.pem",
        server       => "$dir/server.pem",
        server_key   => "$dir/server.key",
        wrongname    => "$dir/wrongname.pem",
        wrongname_key => "$dir/wrongname.key",
        client       => "$dir/client.pem",
        client_key   => "$dir/client.key",
        client_plain => "$dir/client-plain.key",
        password     => "$dir/password",
        wrong_password => "$dir/wrong-password",
        garbage      => "$dir/garbage.pem",
    };
}

# Simulator arguments: HTTPS with our server certificate, client
# certificates from our CA required.
sub sim_args {
    my ($pki, %o) = @_;
    my $name = $o{wrongname} ? 'wrongname' : 'server';
    return ('--tls-cert', $pki->{$name}, '--tls-key', $pki->{"${name}_key"},
            '--tls-client-ca', $pki->{ca});
}

# The harness talks to the control API of an mTLS simulator with a client
# certificate of its own (the unencrypted copy).
sub harness_ua {
    my ($t, $pki) = @_;
    $t->{sim_ua} = HTTP::Tiny->new(
        timeout => 15, keep_alive => 1, verify_SSL => 0,
        SSL_options => { SSL_cert_file => $pki->{client},
                         SSL_key_file => $pki->{client_plain} });
}

# "nginx -t" of a configuration (inside http{}), the module loaded.
sub config_test {
    my ($t, $conf) = @_;
    my $tmp = $t->tmp;
    my $n = ++$t->{config_test_seq};
    my $dir = "$tmp/conftest$n";
    make_path("$dir/logs");
    my $so = "$dir/module.so";
    spew($so, slurp($TsbTest::MODULE) // die "no module\n");
    $conf =~ s/%%TMP%%/$tmp/g;
    # settings are merged (and files loaded) into servers and locations
    $conf .= "server { listen 127.0.0.1:1; }\n" unless $conf =~ /\bserver\s*\{/;
    spew("$dir/nginx.conf", <<"EOF");
load_module $so;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { }
http {
    client_body_temp_path $dir;
$conf
}
EOF
    my ($rc, $out) = $t->run_cmd($TsbTest::NGINX, '-t', '-p', "$dir/",
                                 '-e', "$dir/error.log",
                                 '-c', "$dir/nginx.conf");
    $out .= slurp("$dir/error.log") // '';
    return ($rc == 0, $out);
}

1;
