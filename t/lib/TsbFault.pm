package TsbFault;

# Helpers for the fault and bad-input suites (t/4x-*.t) and bench/soak:
#
# - resource figures of nginx's workers: pids, open fds, RSS, and a check
#   that they came back to a baseline after a burst of bad traffic;
# - a scriptable fake upstream for what the simulator cannot do (a 429
#   with Retry-After, a body cut by an RST, an endless chunked body, an
#   answer dripped byte by byte);
# - a tally of the cases tried, printed as the suite's figures.
#
#   my $f = TsbFault->new($t);            # $t: a TsbTest with nginx running
#   my $base = $f->snapshot;
#   ... bad traffic ...
#   $f->back_to_baseline($base, 'after the garbage bodies');
#
#   my $up = $f->fake_upstream;           # port of the fake TSB
#   $f->fake_mode({ raw => "HTTP/1.1 429 ...\r\n\r\n" });

use strict;
use warnings;

use Carp qw(croak);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h setpgid);
use Socket qw(SOL_SOCKET SO_LINGER);
use Test::More;
use Time::HiRes qw(time sleep);

use TsbTest qw(slurp spew);

my @FAKES;                      # fake upstream pids, killed in END

sub new {
    my ($class, $t) = @_;
    return bless { t => $t, tally => {}, order => [] }, $class;
}

# Under valgrind or ASan, memory figures say nothing about the module.
sub instrumented { scalar @TsbTest::NGINX_WRAPPER }

# ------------------------------------------------------------ resources

sub fd_count {
    my ($pid) = @_;
    opendir my $dh, "/proc/$pid/fd" or return undef;
    my $n = grep { /^\d+$/ } readdir $dh;
    closedir $dh;
    return $n;
}

# What a process's fds are: { tsb => connections to $tsb_port (libcurl's
# pool of idle keep-alive connections), client => connections on
# $own_port, other => the rest (listening sockets, logs, eventfd, ...) }.
sub fd_kinds {
    my ($pid, $tsb_port, $own_port) = @_;
    my %sock;
    for my $tab ('/proc/net/tcp', '/proc/net/tcp6') {
        for my $l (split /\n/, slurp($tab) // '') {
            my @c = split ' ', $l;
            next unless @c > 9 && $c[1] =~ /:([0-9A-F]{4})$/;
            my $lport = hex $1;
            my ($rport) = $c[2] =~ /:([0-9A-F]{4})$/;
            $sock{$c[9]} = [$lport, hex($rport // 0)];
        }
    }
    my %k = (tsb => 0, client => 0, other => 0);
    opendir my $dh, "/proc/$pid/fd" or return \%k;
    for my $fd (grep { /^\d+$/ } readdir $dh) {
        my $to = readlink("/proc/$pid/fd/$fd") // '';
        my ($ino) = $to =~ /^socket:\[(\d+)\]/;
        my $s = defined $ino ? $sock{$ino} : undef;
        if ($s && $tsb_port && $s->[1] == $tsb_port) { $k{tsb}++ }
        elsif ($s && $own_port && $s->[0] == $own_port && $s->[1]) {
            $k{client}++;
        } else { $k{other}++ }
    }
    closedir $dh;
    return \%k;
}

sub rss_kb {
    my ($pid, $field) = @_;
    my $st = slurp("/proc/$pid/status") // return undef;
    $field //= 'VmRSS';
    return $st =~ /^$field:\s+(\d+)\s+kB/m ? $1 : undef;
}

# The private part of the RSS: what a leak grows.  VmRSS also counts the
# pages of shared memory zones a worker has touched.
sub anon_kb { rss_kb($_[0], 'RssAnon') }

# { pids => [...], fds => {pid => n}, rss => {pid => kB}, anon => {...} }
sub snapshot {
    my ($self) = @_;
    my @pids = $self->{t}->worker_pids;
    return {
        pids => \@pids,
        fds  => { map { $_ => fd_count($_) } @pids },
        rss  => { map { $_ => rss_kb($_) } @pids },
        anon => { map { $_ => anon_kb($_) } @pids },
        time => time,
    };
}

sub _sum { my $s = 0; $s += $_ // 0 for @_; $s }

sub describe {
    my ($self, $snap) = @_;
    return join ', ', map {
        sprintf 'worker %d: %d fds, %d kB RSS (%d kB private)', $_,
            $snap->{fds}{$_} // -1, $snap->{rss}{$_} // -1,
            $snap->{anon}{$_} // -1
    } @{$snap->{pids}};
}

# The same workers still run (none died and was replaced), their fds are
# back to the baseline (within $o{fd_slack}, default 3: libcurl may keep
# a connection to the TSB alive), and their private RSS (RssAnon) grew by
# at most $o{rss_slack_kb} (default 1024); VmRSS is printed too.  Waits up
# to $o{settle} s for idle connections to close.  Three tests; returns the
# final snapshot.
sub back_to_baseline {
    my ($self, $base, $name, %o) = @_;
    my $t = $self->{t};
    my $fd_slack = $o{fd_slack} // 3;
    my $rss_slack = $o{rss_slack_kb} // 1024;

    # Our own keep-alive connections to nginx count in its fds.
    $t->{ua} = $t->_ua;

    my $now;
    my $settled = $t->wait_for(sub {
        $now = $self->snapshot;
        return 0 unless "@{$now->{pids}}" eq "@{$base->{pids}}";
        for my $p (@{$base->{pids}}) {
            return 0 if ($now->{fds}{$p} // 1e9)
                        > ($base->{fds}{$p} // 0) + $fd_slack;
        }
        return 1;
    }, $o{settle} // 5, 0.1);

    is("@{$now->{pids}}", "@{$base->{pids}}",
       "$name: the same worker process(es), none died")
        or diag("error.log tail:\n" . $t->error_log_tail(20));
    my @fd = map { sprintf '%d -> %d', $base->{fds}{$_} // -1,
                           $now->{fds}{$_} // -1 } @{$base->{pids}};
    ok($settled, "$name: worker fds back to baseline (@fd, slack "
                 . "$fd_slack)")
        or system("ls -l /proc/$_/fd >&2") for @{$now->{pids}};
    my $grow = _sum(values %{$now->{anon}}) - _sum(values %{$base->{anon}});
    my $rss_name = sprintf '%s: worker RSS %d -> %d kB, private %d -> %d '
        . 'kB (%+d kB, slack %d)', $name, _sum(values %{$base->{rss}}),
        _sum(values %{$now->{rss}}), _sum(values %{$base->{anon}}),
        _sum(values %{$now->{anon}}), $grow, $rss_slack;
    SKIP: {
        skip "$rss_name: not checked under $TsbTest::NGINX_WRAPPER[0]", 1
            if instrumented();
        cmp_ok($grow, '<=', $rss_slack, $rss_name);
    }
    return $now;
}

# ---------------------------------------------------------------- tally

# $f->count('client', 'garbage bodies', $n_tried, crashes => 0, ...)
sub count {
    my ($self, $group, $what, $n, %extra) = @_;
    my $k = "$group\0$what";
    push @{$self->{order}}, $k unless $self->{tally}{$k};
    my $e = $self->{tally}{$k} //= { group => $group, what => $what,
                                     n => 0 };
    $e->{n} += $n;
    $e->{$_} = ($e->{$_} // 0) + $extra{$_} for keys %extra;
}

sub total {
    my ($self, $group) = @_;
    return _sum(map { $self->{tally}{$_}{n} }
                grep { !defined $group || $self->{tally}{$_}{group} eq $group }
                @{$self->{order}});
}

sub report {
    my ($self, $title) = @_;
    my @lines = ("$title:");
    for my $k (@{$self->{order}}) {
        my $e = $self->{tally}{$k};
        my $extra = join '', map { ", $e->{$_} $_" }
                    grep { !/^(group|what|n)$/ } sort keys %$e;
        push @lines, sprintf '  %-9s %-52s %5d tried%s', $e->{group},
            $e->{what}, $e->{n}, $extra;
    }
    diag(join "\n", @lines);
}

# ------------------------------------------------------ raw HTTP clients

# One request on a fresh connection, written in pieces: @parts are
# strings, or numbers (seconds to pause).  Returns the parsed answer
# (status 599 when the connection closed without one) and how long the
# whole exchange took.
sub raw_exchange {
    my ($self, $timeout, @parts) = @_;
    my $t = $self->{t};
    my $s = $t->raw_connect;
    my $t0 = time;
    for my $p (@parts) {
        if ($p =~ /^\d+(\.\d+)?$/ && length($p) < 8) { sleep $p; next }
        my $off = 0;
        while ($off < length $p) {
            my $n = syswrite($s, $p, length($p) - $off, $off);
            last unless defined $n;         # nginx closed it: fine
            $off += $n;
        }
    }
    my $r = $t->raw_read($s, $timeout);
    return ($r, time - $t0);
}

# -------------------------------------------------------- fake upstream

# A fake TSB on a free port.  Each connection reads one request and then
# does what the current mode (fake_mode) says:
#   { raw => BYTES }                  send them, close
#   { raw => BYTES, rst => 1 }        send them, then reset the connection
#   { stall => SECONDS }              send nothing for that long, close
#   { head => BYTES, drip => MS }     send the head, then one byte of "x"
#                                     every MS milliseconds
#   { endless => 1 }                  200, chunked, 64 KiB chunks forever
# Every request is appended to fake.log (method and path).
sub fake_upstream {
    my ($self) = @_;
    return $self->{fake_port} if $self->{fake_port};
    my $t = $self->{t};
    my $dir = $t->tmp;
    $self->fake_mode({ raw => "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n"
                              . "Connection: close\r\n\r\n" });
    spew("$dir/fake.log", '');
    my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 64, ReuseAddr => 1,
                                   Proto => 'tcp')
        or croak "fake upstream: $!";
    my $port = $ls->sockport;
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        $SIG{CHLD} = 'IGNORE';
        my $deadline = time + 600;          # never outlive a test run
        while (time < $deadline) {
            my $c = $ls->accept or next;
            my $k = fork;
            if (defined $k && $k == 0) {
                close $ls;
                _fake_serve($c, $dir);
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $ls;
    push @FAKES, $pid;
    $self->{fake_pid} = $pid;
    return $self->{fake_port} = $port;
}

sub fake_mode {
    my ($self, $mode) = @_;
    spew($self->{t}->tmp . '/fake.mode',
         JSON::PP->new->canonical->encode(
             { map { $_ => _latin1($mode->{$_}) } keys %$mode }));
}

sub _latin1 { my $v = shift; utf8::downgrade($v, 1) if defined $v; $v }

sub fake_requests {
    my ($self) = @_;
    my $log = slurp($self->{t}->tmp . '/fake.log') // '';
    return scalar(() = $log =~ /\n/g);
}

sub _fake_serve {
    my ($c, $dir) = @_;
    binmode $c;
    my $mode = eval { JSON::PP->new->decode(slurp("$dir/fake.mode")) } || {};
    # Read the head and a Content-Length body (what the gateway sends).
    my $buf = '';
    my $sel = IO::Select->new($c);
    my $end = time + 10;
    while ($buf !~ /\r\n\r\n/ && time < $end) {
        last unless $sel->can_read($end - time);
        my $n = sysread($c, $buf, 65536, length $buf) or last;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    $head //= '';
    $body //= '';
    my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
    syswrite($c, "HTTP/1.1 100 Continue\r\n\r\n")
        if $head =~ /^expect:\s*100-continue/mi && !length $body;
    while (defined $len && length($body) < $len && time < $end) {
        last unless $sel->can_read($end - time);
        my $n = sysread($c, $body, 65536, length $body) or last;
    }
    my ($line) = $head =~ /^([^\r\n]*)/;
    if (open my $lf, '>>', "$dir/fake.log") {
        print {$lf} ($line // '?'), "\n";
        close $lf;
    }
    local $SIG{PIPE} = 'IGNORE';
    if (defined $mode->{stall}) {
        sleep $mode->{stall};
    } elsif (defined $mode->{drip}) {
        syswrite($c, $mode->{head} // '') or return;
        my $stop = time + 30;
        while (time < $stop) {
            syswrite($c, 'x') or last;
            sleep $mode->{drip} / 1000;
        }
    } elsif ($mode->{endless}) {
        syswrite($c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     . "Transfer-Encoding: chunked\r\n\r\n") or return;
        my $chunk = sprintf("%x\r\n", 65536) . ('[' x 65536) . "\r\n";
        my $stop = time + 30;
        while (time < $stop) { syswrite($c, $chunk) or last }
    } else {
        my $raw = $mode->{raw} // '';
        my $off = 0;
        while ($off < length $raw) {
            my $n = syswrite($c, $raw, length($raw) - $off, $off);
            last unless $n;
            $off += $n;
        }
        if ($mode->{rst}) {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        }
    }
    close $c;
}

sub stop_fake {
    my ($self) = @_;
    my $pid = delete $self->{fake_pid} or return;
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    @FAKES = grep { $_ != $pid } @FAKES;
    delete $self->{fake_port};
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop_fake;
}

END {
    local ($?, $!, $@);
    for my $pid (@FAKES) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
    }
}

1;
