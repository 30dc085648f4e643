package TsbTest;

# Integration test harness for ngx_http_tsb_module.
#
# Starts the real nginx binary with the built module and the TSB simulator
# (sim/tsb_sim.py) on free loopback ports inside a private temporary
# directory, talks HTTP to both, and wraps the openssl CLI for certificate
# checks.  Every process it starts runs in its own process group and is
# killed again from DESTROY / END, even when a test dies half-way.
#
#   my $t = TsbTest->new;
#   $t->start_sim('--approvers', 'alice');
#   $t->start_nginx(<<'EOF');
#   tsb_upstream %%SIM%%;
#   server { listen 127.0.0.1:%%PORT%%; location = /sign { tsb_sign; } }
#   EOF
#   my $r = $t->request(POST => '/sign', body => $csr,
#                       content_type => 'application/x-pem-file');
#   is $r->{status}, 200;
#
# Placeholders in the configuration: %%SIM%% (simulator base URL),
# %%SIMCA%% (simulator CA file), %%TMP%% (temporary directory), %%PORT%%
# (nginx's port) and %%PORTn%% for n >= 2 (more free ports, allocated on
# first use; a port that no server listens on is a handy "closed" port).
#
# nginx loads a copy of build/ngx_http_tsb_module.so made in the temporary
# directory at start, so a concurrent rebuild cannot crash a running test.
#
# Environment: TSB_MODULE overrides the module path, TSB_NGINX the nginx
# binary, TSB_KEEP=1 keeps the temporary directory for inspection.
# TSB_NGINX_WRAPPER is put in front of the nginx command line (split on
# blanks), e.g. "valgrind --log-file=/tmp/vg/%p.log" or "env LD_PRELOAD=..."
# (make test-valgrind, make test-asan); TSB_TIME_FACTOR (default 1) scales
# the harness's own waits and timeouts for such slow runs: every wait is an
# upper bound, so scaling it never changes what a test asserts.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h setpgid);
use Test::More;
use Time::HiRes qw(time sleep);

use Exporter 'import';
our @EXPORT_OK = qw(free_port slurp spew json_encode json_decode
                    root_dir fixture xcs);

our $ROOT = abs_path(dirname(__FILE__) . '/../..');
our $NGINX = $ENV{TSB_NGINX} || '/usr/sbin/nginx';
our @NGINX_WRAPPER = grep { length }
                     split ' ', ($ENV{TSB_NGINX_WRAPPER} // '');
our $TIME_FACTOR = ($ENV{TSB_TIME_FACTOR} // '') =~ /^\d+(\.\d+)?$/
                   && $ENV{TSB_TIME_FACTOR} >= 1 ? $ENV{TSB_TIME_FACTOR} : 1;
# Reading the configuration (nginx's start and each reload) is the slowest
# thing under a checker: OpenSSL allocates a great deal loading the TLS
# files of every location, and ASan's slow unwinder (which make test-asan
# needs to tell the module's leaks from nginx's) takes a whole stack at
# each allocation: t/20's configuration took 36 s under load.  The wait
# ends as soon as the workers run or nginx dies; only a hang pays it.
our $CONF_WAIT = 5 * $TIME_FACTOR * (@NGINX_WRAPPER ? 6 : 1);
our $MODULE = $ENV{TSB_MODULE} || "$ROOT/build/ngx_http_tsb_module.so";
our $SIM = "$ROOT/sim/tsb_sim.py";
our $PYTHON = '/usr/bin/python3';
# the TSB fixtures live in the checkout (t/fixtures/README.md): a clone
# tests with nothing beside it (make test-standalone)
our $FIXTURES = "$ROOT/t/fixtures";

my $JSON = JSON::PP->new->utf8->canonical;
my @LIVE;                       # every harness object, for END

# A test killed by a signal still runs END blocks (and so cleans up).
$SIG{$_} = sub { die "caught SIG$_[0]\n" } for qw(INT TERM HUP);
$SIG{PIPE} = 'IGNORE';

sub root_dir { $ROOT }
sub fixture { "$FIXTURES/$_[0]" }

sub new {
    my ($class, %opt) = @_;
    my $tmp = tempdir('tsb-test-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{TSB_KEEP});
    # nginx workers run as an unprivileged user when the master is root:
    # they must be able to reach the temp paths and files in here.
    chmod 0755, $tmp;
    my $self = bless {
        tmp      => $tmp,
        ports    => {},
        secrets  => [],
        pid      => $$,
        csr_seq  => 0,
    }, $class;
    $self->{ua} = $self->_ua;
    push @LIVE, $self;
    diag("temporary directory kept: $tmp") if $ENV{TSB_KEEP};
    return $self;
}

sub tmp { $_[0]{tmp} }

sub _ua {
    my ($self, %opt) = @_;
    $opt{timeout} *= $TIME_FACTOR if $opt{timeout};
    return HTTP::Tiny->new(timeout => 15 * $TIME_FACTOR, keep_alive => 1,
                           agent => 'tsb-test/1', %opt);
}

# ---------------------------------------------------------------- helpers

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "cannot bind a free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

sub spew {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "cannot write $file: $!";
    print {$fh} $data;
    close $fh or die "cannot write $file: $!";
    return $file;
}

sub json_encode { $JSON->encode($_[0]) }
sub json_decode { my $d = eval { $JSON->decode($_[0]) }; $d }

sub port {
    my ($self, $n) = @_;
    $n ||= 1;
    return $self->{ports}{$n} if $self->{ports}{$n};
    my %taken = map { $_ => 1 } values %{$self->{ports}};
    $taken{$self->{sim_port}} = 1 if $self->{sim_port};
    my $p;
    do { $p = free_port() } while $taken{$p};
    return $self->{ports}{$n} = $p;
}

# Spawn a command in its own process group with stdout/stderr to files.
sub _spawn {
    my ($self, $out, $err, @cmd) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>>', $err or POSIX::_exit(126);
        exec @cmd or POSIX::_exit(127);
    }
    setpgid($pid, $pid);    # also from the parent, to win the race
    return $pid;
}

sub _alive {
    my ($pid) = @_;
    return 0 unless $pid;
    return waitpid($pid, WNOHANG) == 0;    # our child, not reaped yet
}

sub _wait_port {
    my ($port, $deadline, $pid) = @_;
    while (time < $deadline) {
        return 0 if defined $pid && !_alive($pid);
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => 0.5);
        if ($s) { close $s; return 1 }
        sleep 0.02;
    }
    return 0;
}

# Run a command, return (exit status, stdout+stderr).  Never via a shell.
sub run_cmd {
    my ($self, @cmd) = @_;
    # nginx -t and friends run under the same wrapper as the server
    unshift @cmd, @NGINX_WRAPPER if @cmd && $cmd[0] eq $NGINX;
    my $out = "$self->{tmp}/cmd.out";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        exec @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $rc = $?;
    return ($rc, slurp($out) // '');
}

sub _openssl {
    my ($self, @args) = @_;
    my ($rc, $out) = $self->run_cmd('openssl', @args);
    croak "openssl @args failed: $out" if $rc;
    return $out;
}

# -------------------------------------------------------------- simulator

sub start_sim {
    my ($self, @args) = @_;
    croak "simulator already running" if $self->{sim_pid};
    die "simulator not found at $SIM\n" unless -f $SIM;
    my $dir = "$self->{tmp}/sim";
    make_path($dir);
    my $out = "$self->{tmp}/sim.out";
    my $err = "$self->{tmp}/sim.log";
    spew($out, '');
    local $ENV{PYTHONUNBUFFERED} = 1;
    $self->{sim_pid} = $self->_spawn($out, $err, $PYTHON, $SIM,
        '--port', 0, '--state-dir', $dir, @args);
    my $deadline = time + 15;
    my $port;
    while (time < $deadline) {
        my $o = slurp($out) // '';
        if ($o =~ /^READY (\d+)/m) { $port = $1; last }
        last unless _alive($self->{sim_pid});
        sleep 0.05;
    }
    unless ($port) {
        my $log = slurp($err) // '';
        $self->_kill_group('sim_pid');
        die "simulator did not become ready:\n$log\n";
    }
    my $tls = grep { $_ eq '--tls-cert' } @args;
    $self->{sim_port} = $port;
    $self->{sim_url} = ($tls ? 'https' : 'http') . "://127.0.0.1:$port";
    $self->{sim_ca} = "$dir/ca.pem";
    # Secrets handed to the simulator must never show up in nginx's log.
    for my $i (0 .. $#args - 1) {
        push @{$self->{secrets}}, $args[$i + 1]
            if $args[$i] =~ /^--(api-key|bearer)$/;
    }
    return $self->{sim_url};
}

sub sim_url { $_[0]{sim_url} }
sub sim_ca { $_[0]{sim_ca} }
sub sim_log { slurp("$_[0]{tmp}/sim.log") // '' }

sub _sim_request {
    my ($self, $method, $path, $body) = @_;
    croak "simulator not started" unless $self->{sim_url};
    # Control API calls go over plain HTTP unless the simulator runs TLS,
    # in which case we do not verify its (private) CA here.
    my $ua = $self->{sim_ua} //= $self->_ua(verify_SSL => 0);
    my %o;
    if (defined $body) {
        $o{content} = ref $body ? json_encode($body) : $body;
        $o{headers} = { 'Content-Type' => 'application/json' };
    }
    my $res = $ua->request($method, $self->{sim_url} . $path, \%o);
    return _wrap($res);
}

sub sim_get { my ($self, $path) = @_; $self->_sim_request(GET => $path) }

sub sim_post {
    my ($self, $path, $body) = @_;
    return $self->_sim_request(POST => $path, $body);
}

sub sim_delete { my ($self, $path) = @_; $self->_sim_request(DELETE => $path) }

# A simulator approval for every approver; dies if the simulator refuses.
sub sim_approve {
    my ($self, $id) = @_;
    my $r = $self->sim_post("/_sim/approve/$id");
    croak "approve $id: $r->{status} $r->{content}" unless $r->{status} == 200;
    return $r;
}

sub sim_counts {
    my ($self) = @_;
    my $r = $self->sim_get('/_sim/counts');
    croak "GET /_sim/counts: $r->{status} $r->{content}"
        unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
    return $r->{json};
}

sub sim_requests {
    my ($self) = @_;
    my $r = $self->sim_get('/_sim/requests');
    croak "GET /_sim/requests: $r->{status} $r->{content}"
        unless $r->{status} == 200 && $r->{json};
    my $j = $r->{json};
    return ref $j eq 'HASH' ? ($j->{requests} || []) : $j;
}

# The last requests the simulator saw for a route, e.g.
# $t->sim_seen('POST', '/v1/certificate/sign').  Each entry is the
# simulator's record (method, path, headers, body); body_json is added.
sub sim_seen {
    my ($self, $method, $path) = @_;
    my @seen;
    for my $q (@{$self->sim_requests}) {
        next unless ($q->{method} // '') eq $method;
        my $p = $q->{path} // '';
        next unless ref $path ? $p =~ $path : $p eq $path;
        $q->{body_json} = ref $q->{body} ? $q->{body}
                        : json_decode($q->{body} // '');
        push @seen, $q;
    }
    return @seen;
}

sub sim_fault {
    my ($self, %f) = @_;
    my $r = $self->sim_post('/_sim/fault', \%f);
    croak "POST /_sim/fault: $r->{status} $r->{content}"
        unless $r->{status} =~ /^2/;
    return $r;
}

sub sim_clear_fault {
    my ($self) = @_;
    my $r = $self->sim_delete('/_sim/fault');
    croak "DELETE /_sim/fault: $r->{status} $r->{content}"
        unless $r->{status} =~ /^2/;
}

sub sim_reset {
    my ($self) = @_;
    my $r = $self->sim_post('/_sim/reset');
    croak "POST /_sim/reset: $r->{status} $r->{content}"
        unless $r->{status} =~ /^2/;
}

# --------------------------------------------------------------- nginx

sub start_nginx {
    my ($self, $conf, %opt) = @_;
    croak "nginx already running" if $self->{ngx_pid};
    my $load = $opt{module} // 1;       # module => 0: harness self-checks
    die "module not built: $MODULE (run make -C $ROOT build)\n"
        if $load && !-f $MODULE;
    my $tmp = $self->{tmp};
    my $workers = $opt{workers} // 1;
    my $level = $opt{log_level} // 'info';
    my $wconns = $opt{worker_connections} // 1024;
    my $main = $opt{main} // '';        # main-context directives

    # Placeholders.
    my $need = sub { $_[0] // die "%%SIM%% placeholders need the simulator\n" };
    $conf =~ s{%%SIMCA%%}{$need->($self->{sim_ca})}ge;
    $conf =~ s{%%SIM%%}{$need->($self->{sim_url})}ge;
    $conf =~ s/%%TMP%%/$tmp/g;
    $conf =~ s/%%PORT(\d*)%%/$self->port($1 || 1)/ge;

    # Secrets configured for the upstream must never reach the log.
    while ($conf =~ /\btsb_(?:api_key|bearer_token)\s+(["']?)([^"';\s]+)\1/g) {
        push @{$self->{secrets}}, $2;
    }

    for my $d (qw(body proxy fastcgi uwsgi scgi logs)) {
        make_path("$tmp/$d");
    }
    # Load a private copy: a rebuild that overwrites build/*.so in place
    # must not pull the code from under a running test's workers.
    my $so = "$tmp/ngx_http_tsb_module.so";
    if ($load) {
        spew($so, slurp($MODULE) // die "cannot read $MODULE: $!\n");
        chmod 0755, $so;
    }
    my $full = ($load ? "load_module $so;\n" : '') . <<"EOF";
daemon off;
master_process on;
worker_processes $workers;
error_log $tmp/error.log $level;
pid $tmp/nginx.pid;
$main
events { worker_connections $wconns; }
http {
    access_log $tmp/access.log;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
$conf
}
EOF
    spew("$tmp/nginx.conf", $full);
    $self->{conf} = $full;
    $self->{workers} = $workers;

    $self->{ngx_pid} = $self->_spawn("$tmp/nginx.out", "$tmp/nginx.out",
        @NGINX_WRAPPER, $NGINX, '-p', "$tmp/", '-e', "$tmp/error.log",
        '-c', "$tmp/nginx.conf");
    my $ok = _wait_port($self->port(1), time + $CONF_WAIT,
                        $self->{ngx_pid});
    # Ready means: accepting, and the worker processes are up.
    my $deadline = time + $CONF_WAIT;
    while ($ok && time < $deadline
           && $self->worker_pids < $workers) {
        sleep 0.02;
    }
    unless ($ok && _alive($self->{ngx_pid})) {
        my $why = (slurp("$tmp/nginx.out") // '') . $self->error_log;
        $self->_kill_group('ngx_pid');
        die "nginx did not start:\n$why\n";
    }
    return $self->port(1);
}

sub nginx_pid { $_[0]{ngx_pid} }
sub base_url { 'http://127.0.0.1:' . $_[0]->port(1) }

# Direct children of the nginx master: the worker processes.
sub worker_pids {
    my ($self) = @_;
    my $master = $self->{ngx_pid} or return ();
    my @pids;
    opendir my $dh, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat") // next;
        # pid (comm) state ppid ...; comm may contain spaces/parens.
        next unless $stat =~ /\)\s+(\S)\s+(\d+)/;
        next if $1 eq 'Z';
        next unless $2 == $master;
        my $cmd = slurp("/proc/$p/cmdline") // '';
        next if $cmd =~ /cache (manager|loader)/;
        push @pids, $p;
    }
    closedir $dh;
    @pids = sort { $a <=> $b } @pids;
    return @pids;
}

# nginx -s reload: HUP the master, wait until a full set of new workers
# runs.  Returns the new worker pids.  Old workers may still be finishing
# their in-flight requests when this returns.
sub reload {
    my ($self, %opt) = @_;
    my %old = map { $_ => 1 } $self->worker_pids;
    my $log_before = length $self->error_log;
    kill 'HUP', $self->{ngx_pid} or croak "HUP: $!";
    my $deadline = $opt{timeout} ? time + $opt{timeout} * $TIME_FACTOR
                                 : time + $CONF_WAIT;
    my @new;
    while (time < $deadline) {
        @new = grep { !$old{$_} } $self->worker_pids;
        last if @new >= $self->{workers};
        sleep 0.02;
    }
    croak "no new workers after reload:\n"
        . substr($self->error_log, $log_before)
        unless @new >= $self->{workers};
    # Old workers retitle themselves just before they close their listening
    # sockets; wait for that so that new connections reach new workers.
    # Under valgrind /proc/PID/cmdline keeps valgrind's command line: the
    # notice nginx logs just before the retitle says it too.
    for my $p (keys %old) {
        while (time < $deadline) {
            my $cmd = slurp("/proc/$p/cmdline");
            last if !defined $cmd || $cmd =~ /shutting down/
                 || !grep { $_ == $p } $self->worker_pids;
            last if substr($self->error_log, $log_before)
                    =~ /\b$p#\d+: gracefully shutting down/;
            sleep 0.01;
        }
    }
    sleep 0.05 * $TIME_FACTOR;
    # Do not reuse keep-alive connections to the old workers.
    $self->{ua} = $self->_ua;
    return @new;
}

sub error_log { slurp("$_[0]{tmp}/error.log") // '' }

sub error_log_tail {
    my ($self, $n) = @_;
    my @l = split /\n/, $self->error_log;
    $n ||= 30;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l) . "\n";
}

# Log offset bookkeeping: $t->log_mark; ...; $t->log_since.
sub log_mark { $_[0]{log_mark} = length $_[0]->error_log }

sub log_since {
    my ($self) = @_;
    return substr($self->error_log, $self->{log_mark} // 0);
}

# Wait until the error log (from the mark on) matches $re.
sub wait_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = time + ($timeout // 3) * $TIME_FACTOR;
    while (time < $deadline) {
        return 1 if $self->log_since =~ $re;
        sleep 0.05;
    }
    return 0;
}

# No crash, no alert, no secret in the error log.  One test per check.
sub no_worker_crash {
    my ($self, $name) = @_;
    $name = $name ? " ($name)" : '';
    my $log = $self->error_log;
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal/ }
              split /\n/, $log;
    ok(!@bad, "no alert, emerg, crit or worker crash in error.log$name")
        or diag(join "\n", @bad[0 .. ($#bad > 20 ? 20 : $#bad)]);
    my @leaked = grep { length && index($log, $_) >= 0 } @{$self->{secrets}};
    ok(!@leaked, "no upstream secret in error.log$name")
        or diag('secret(s) found in error.log: '
                . join(', ', map { substr($_, 0, 4) . '...' } @leaked));
}

sub _kill_group {
    my ($self, $key) = @_;
    my $pid = delete $self->{$key} or return;
    # TERM first: the nginx master then stops and reaps its workers, the
    # simulator shuts down; KILL whatever is left after a short grace.
    kill 'TERM', $pid;
    my $deadline = time + 3 * $TIME_FACTOR;
    while (time < $deadline && _alive($pid)) { sleep 0.02 }
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# QUIT nginx (graceful), wait; then stop the simulator.  Returns true when
# nginx exited by itself within the grace period.
sub stop {
    my ($self, %opt) = @_;
    my $graceful = $self->stop_nginx(%opt);
    $self->_kill_group('sim_pid');
    return $graceful;
}

# stop() for nginx alone: the simulator keeps running, with what it holds
sub stop_nginx {
    my ($self, %opt) = @_;
    my $graceful = 1;
    if (my $pid = $self->{ngx_pid}) {
        kill 'QUIT', $pid;
        my $deadline = time + ($opt{timeout} // 10) * $TIME_FACTOR;
        while (time < $deadline && _alive($pid)) { sleep 0.02 }
        if (_alive($pid)) {
            $graceful = 0;
            diag("nginx did not exit within the grace period; killing it");
        } else {
            # Orphaned workers would keep the group alive.
            $graceful = 0 if kill 0, -$pid;
        }
        # Always sweep the group: leftover workers must not survive us.
        kill 'KILL', -$pid;
        delete $self->{ngx_pid};
        waitpid($pid, 0);
    }
    return $graceful;
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{pid} && $self->{pid} == $$;   # not in a fork
    local ($?, $!, $@);
    $self->_kill_group('ngx_pid');
    $self->_kill_group('sim_pid');
}

END {
    local ($?, $!, $@);
    for my $t (@LIVE) {
        next unless $t && $t->{pid} == $$;
        $t->_kill_group('ngx_pid');
        $t->_kill_group('sim_pid');
    }
}

# ------------------------------------------------------------------ HTTP

sub _wrap {
    my ($res) = @_;
    my %r = (
        status  => $res->{status},
        reason  => $res->{reason},
        headers => $res->{headers} || {},
        content => $res->{content} // '',
    );
    my $ct = $r{headers}{'content-type'} // '';
    $r{json} = json_decode($r{content})
        if $ct =~ m{[/+]json\b}i && length $r{content};
    return \%r;
}

# request($method, $path, body => ..., content_type => ..., headers => {},
#         port => n (placeholder index), timeout => s)
sub request {
    my ($self, $method, $path, %opt) = @_;
    my %h = %{ $opt{headers} || {} };
    $h{'Content-Type'} = $opt{content_type} if defined $opt{content_type};
    my %o = (headers => \%h);
    $o{content} = $opt{body} if defined $opt{body};
    my $ua = $opt{timeout} ? $self->_ua(timeout => $opt{timeout})
                           : $self->{ua};
    my $url = 'http://127.0.0.1:' . $self->port($opt{port} || 1) . $path;
    my $res = $ua->request($method, $url, \%o);
    return _wrap($res);
}

sub get { my ($self, $path, %o) = @_; $self->request(GET => $path, %o) }

# diag() helper for a failed assertion about a response.
sub explain_response {
    my ($self, $r) = @_;
    my $h = '';
    for my $k (sort keys %{$r->{headers}}) {
        my $v = $r->{headers}{$k};
        $h .= "$k: $_\n" for ref $v ? @$v : ($v);
    }
    diag("response: $r->{status} $r->{reason}\n$h\n"
         . substr($r->{content}, 0, 2000)
         . "\n--- error.log tail:\n" . $self->error_log_tail(25));
}

# Assert an error response: status, JSON body with error/reason/detail and
# the given reason (string or regex).  Returns the response.
sub error_is {
    my ($self, $r, $status, $reason, $name) = @_;
    my $ok = $r->{status} == $status
        && ($r->{headers}{'content-type'} // '') =~ m{^application/json}
        && ref $r->{json} eq 'HASH'
        && defined $r->{json}{error}
        && defined $r->{json}{detail}
        && defined $r->{json}{reason}
        && (ref $reason ? $r->{json}{reason} =~ $reason
                        : $r->{json}{reason} eq $reason)
        && !grep { length && index($r->{content}, $_) >= 0 }
                 @{$self->{secrets}};
    ok($ok, "$name: $status " . (ref $reason ? "$reason" : $reason))
        or $self->explain_response($r);
    return $r;
}

# Raw HTTP over a socket, for requests whose timing we control.
sub raw_connect {
    my ($self, $port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->port($port || 1),
                                  Proto => 'tcp',
                                  Timeout => 5 * $TIME_FACTOR)
        or croak "connect: $!";
    binmode $s;
    return $s;
}

sub raw_request_text {
    my ($self, $method, $path, %opt) = @_;
    my $body = $opt{body} // '';
    my %h = (Host => '127.0.0.1', Connection => 'close',
             %{ $opt{headers} || {} });
    $h{'Content-Type'} = $opt{content_type} if defined $opt{content_type};
    $h{'Content-Length'} = length $body
        if length $body || $method eq 'POST';
    return "$method $path HTTP/1.1\r\n"
        . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
        . "\r\n$body";
}

# Send a request on a fresh connection without waiting for the answer.
sub raw_send {
    my ($self, $method, $path, %opt) = @_;
    my $s = $self->raw_connect($opt{port});
    my $req = $self->raw_request_text($method, $path, %opt);
    while (length $req) {
        my $n = syswrite($s, $req);
        croak "write: $!" unless defined $n;
        substr($req, 0, $n, '');
    }
    $s->blocking(0);
    return $s;
}

# Is an answer (or EOF) waiting on the socket?
sub raw_ready {
    my ($self, $s, $timeout) = @_;
    return scalar IO::Select->new($s)->can_read($timeout // 0);
}

# Read a whole Connection: close response; parse it like request() does.
sub raw_read {
    my ($self, $s, $timeout) = @_;
    my $deadline = time + ($timeout // 10) * $TIME_FACTOR;
    my $buf = '';
    my $sel = IO::Select->new($s);
    while (time < $deadline) {
        next unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
            last;
        }
        last if $n == 0;
    }
    close $s;
    return { status => 599, reason => 'no response', headers => {},
             content => $buf } unless $buf =~ /\r\n\r\n/;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status, $reason) = $status_line =~ m{^HTTP/\S+\s+(\d+)\s*(.*)$};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = exists $h{lc $k} ? [ (ref $h{lc $k} ? @{$h{lc $k}}
                                                       : $h{lc $k}), $v ]
                                     : $v;
    }
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    return _wrap({ status => $status // 599, reason => $reason // '',
                   headers => \%h, content => $body });
}

# A CSR (PEM) signed through a tsb_sign location: its signRequestId, or
# death.  One write for the whole request: HTTP::Tiny's separate header and
# body writes meet Nagle and delayed ACKs, 40 ms a sign.
sub sign_id {
    my ($self, $csr, $path) = @_;
    my $r = $self->raw_read($self->raw_send(POST => $path // '/sign',
        body => $csr, content_type => 'application/x-pem-file'));
    return $r->{json}{signRequestId} if $r->{status} == 200;
    $self->explain_response($r);
    croak "sign failed: $r->{status}";
}

# X-Cache-Status of a response
sub xcs { $_[0]{headers}{'x-cache-status'} // '(none)' }

# ---------------------------------------------------------------- openssl

# make_csr(cn => 'a.svc.example', san => ['DNS:a.svc.example'] or names,
#          key => 'rsa:2048' | 'ec:P-256' | 'ed25519',
#          ku => 'digitalSignature,keyEncipherment',
#          eku => 'serverAuth', ext => ['basicConstraints=CA:TRUE'])
# Returns ($csr_pem, $key_path, $csr_path).
sub make_csr {
    my ($self, %o) = @_;
    my $n = ++$self->{csr_seq};
    my $key = "$self->{tmp}/csr$n.key";
    my $csr = "$self->{tmp}/csr$n.csr";
    my $spec = $o{key} // 'rsa:2048';
    my @newkey;
    if ($spec =~ /^ec:(.+)$/) {
        @newkey = ('-newkey', 'ec', '-pkeyopt', "ec_paramgen_curve:$1");
    } else {
        @newkey = ('-newkey', $spec);
    }
    my $subj = $o{subject} // '/CN=' . ($o{cn} // 'test.svc.example');
    my @ext;
    if ($o{san}) {
        my @san = map { /:/ ? $_ : "DNS:$_" } @{$o{san}};
        push @ext, 'subjectAltName=' . join(',', @san);
    }
    push @ext, "keyUsage=$o{ku}" if $o{ku};
    push @ext, "extendedKeyUsage=$o{eku}" if $o{eku};
    push @ext, @{$o{ext} || []};
    $self->_openssl('req', '-new', @newkey, '-nodes', '-keyout', $key,
        '-out', $csr, '-subj', $subj,
        ($o{md} ? ("-$o{md}") : ()),
        map { ('-addext', $_) } @ext);
    return (slurp($csr), $key, $csr);
}

sub _tmpfile {
    my ($self, $data, $ext) = @_;
    my $f = "$self->{tmp}/data" . (++$self->{file_seq}) . ($ext // '.pem');
    return spew($f, $data);
}

# PEM of a CSR in DER, and the base64 of that DER.
sub csr_der {
    my ($self, $csr_pem) = @_;
    my $in = $self->_tmpfile($csr_pem);
    my $out = "$in.der";
    $self->_openssl('req', '-in', $in, '-outform', 'DER', '-out', $out);
    return slurp($out);
}

sub cert_text {
    my ($self, $pem, %o) = @_;
    my $in = $self->_tmpfile($pem);
    return $self->_openssl('x509', '-in', $in, '-noout', '-text',
                           ($o{der} ? ('-inform', 'DER') : ()));
}

sub cert_subject {
    my ($self, $pem) = @_;
    my $in = $self->_tmpfile($pem);
    my $s = $self->_openssl('x509', '-in', $in, '-noout', '-subject',
                            '-nameopt', 'RFC2253');
    $s =~ s/^subject=\s*//;
    $s =~ s/\s+$//;
    return $s;
}

sub pubkey_of_cert {
    my ($self, $pem, %o) = @_;
    my $in = $self->_tmpfile($pem);
    return $self->_openssl('x509', '-in', $in, '-noout', '-pubkey',
                           ($o{der} ? ('-inform', 'DER') : ()));
}

sub pubkey_of_csr {
    my ($self, $pem) = @_;
    # openssl wants the standard label; TSB CSRs say NEW CERTIFICATE REQUEST.
    (my $std = $pem) =~ s/NEW CERTIFICATE REQUEST/CERTIFICATE REQUEST/g;
    my $in = $self->_tmpfile($std);
    return $self->_openssl('req', '-in', $in, '-noout', '-pubkey');
}

# DER certificate -> PEM (via openssl).
sub der_to_pem {
    my ($self, $der) = @_;
    my $in = $self->_tmpfile($der, '.der');
    return $self->_openssl('x509', '-inform', 'DER', '-in', $in,
                           '-outform', 'PEM');
}

# ($ok, $output) of openssl verify -CAfile.
sub verify_cert {
    my ($self, $pem, $cafile) = @_;
    my $in = $self->_tmpfile($pem);
    my ($rc, $out) = $self->run_cmd('openssl', 'verify', '-CAfile',
                                    $cafile // $self->{sim_ca}, $in);
    return ($rc == 0 && $out =~ /: OK\s*$/, $out);
}

# Poll a condition (code returning true) for up to $timeout seconds.
sub wait_for {
    my ($self, $code, $timeout, $step) = @_;
    my $deadline = time + ($timeout // 5) * $TIME_FACTOR;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return $v if time >= $deadline;
        sleep($step // 0.05);
    }
}

1;
