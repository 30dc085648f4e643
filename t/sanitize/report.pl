#!/usr/bin/perl
# Reads what a sanitizer run left behind and says whether the module is
# clean.  Used by t/sanitize/run.sh (make test-valgrind, make test-asan).
#
#   report.pl --valgrind LOGDIR | --asan LOGDIR  --tmp TESTDIRS --prove LOG
#
# Fails (exit 1) on:
#   - valgrind: any invalid read/write/free, mismatched free, or a process
#     killed by a signal, wherever it is; any error or definitely lost
#     block whose stack has a frame of the module (ngx_http_tsb_*, tsb_*,
#     or ngx_http_tsb_module.so);
#   - ASan/UBSan: any AddressSanitizer or UBSan report; a LeakSanitizer
#     leak whose stack has a frame of the module;
#   - an nginx error.log or stderr of the run that says "exited on signal"
#     or carries a sanitizer report;
#   - a test script that did not run to its end (no plan, died): then the
#     suite did not really run under the tool.
# Definite leaks without a module frame (nginx, OpenSSL, libcurl
# internals) and failed assertions are listed, but do not fail: under a
# 10-50x slowdown some tests' timing assertions cannot hold.

use strict;
use warnings;

use File::Basename qw(basename);
use Getopt::Long;

my ($vgdir, $asandir, $tmpdir, $prove);
my $module_re = qr/\bngx_http_tsb_|\btsb_[a-z]|ngx_http_tsb_module\.so/;
GetOptions('valgrind=s' => \$vgdir, 'asan=s' => \$asandir,
           'tmp=s' => \$tmpdir, 'prove=s' => \$prove)
    or die "usage: $0 --valgrind DIR | --asan DIR [--tmp DIR] "
         . "[--prove LOG]\n";

my (@fail, @warn, %fig, %seen);

# The same finding in many processes is listed once, with a count.
sub add {
    my ($list, $msg) = @_;
    my $key = $msg;
    $key =~ s/0x[0-9A-Fa-f]+//g;
    $key =~ s/\b(vg|asan|ubsan)\.\d+(\.log)?//g;
    $key =~ s/==\d+==//g;
    $key =~ s/\b\d[\d,]* (bytes|byte\(s\))//g;
    $key =~ s/loss record \d+ of \d+//g;
    if (my $e = $seen{$key}) { $e->[1]++; return }
    my $e = [$msg, 1];
    $seen{$key} = $e;
    push @$list, $e;
}

sub slurp {
    open my $fh, '<', $_[0] or return '';
    local $/;
    return scalar <$fh>;
}

sub module_frames { grep { /$module_re/ } @{$_[0]} }

sub first_lines {
    my ($text, $n) = @_;
    my @l = split /\n/, $text;
    $#l = $n - 1 if @l > $n;
    return join("\n", map { "      $_" } @l);
}

# ---------------------------------------------------------------- valgrind
sub valgrind {
    my ($dir) = @_;
    my @logs = sort glob("$dir/vg.*.log");
    $fig{processes} = @logs;
    my %kinds;
    for my $log (@logs) {
        my $text = slurp($log);
        unless ($text =~ /ERROR SUMMARY:/) {
            # killed before valgrind could look at its heap
            $fig{incomplete}++;
            add(\@warn, "no summary in " . basename($log)
                        . " (the process was killed; no leak check ran)");
        }
        my ($cmd) = $text =~ /Command: (.*)/;
        my @lines = map { s/^==\d+==\s?//r } grep { /^==\d+==/ }
                    split /\n/, $text;
        my (@block, @blocks);
        my $head_re = qr/^(Invalid |Mismatched |Process terminating |
                             Conditional |Use of |Syscall |Source and |
                             Argument |[\d,]+ (\([\d,]+ direct)?)/x;
        for my $l (@lines, '') {
            if ($l =~ /^\s*$/ || $l =~ $head_re) {
                push @blocks, [@block] if @block;
                @block = ();
            }
            push @block, $l if $l =~ /\S/;
        }
        for my $b (@blocks) {
            my $head = $b->[0];
            my $kind;
            if ($head =~ /^Invalid (read|write|free)|^Mismatched free/) {
                $kind = $head =~ s/ of size \d+//r;
                $kind =~ s/\(\).*$/()/;
            } elsif ($head =~ /^Process terminating with default action
                                of (signal \d+ \(\w+\))/x) {
                $kind = "killed by $1";
            } elsif ($head =~ /^(Conditional\ jump|Use\ of\ uninitialised
                                |Syscall\ param|Source\ and\ destination
                                |Argument\ '.*'\ of\ function)/x) {
                $kind = $1;
            } elsif ($head =~ /^([\d,]+)(?:\ \(([\d,]+)\ direct,\ ([\d,]+)
                                \ indirect\))?\ bytes\ in\ [\d,]+\ blocks
                                \ are\ definitely\ lost/x) {
                my $bytes = ($2 // $1) =~ s/,//gr;
                my $mod = module_frames($b) ? 'module' : 'other';
                $fig{"leak_bytes_$mod"} += $bytes;
                $fig{"leaks_$mod"}++;
                $kind = 'definitely lost';
                if ($mod eq 'module') {
                    add(\@fail, "definitely lost, $bytes bytes, in "
                        . basename($log) . ":\n"
                        . first_lines(join("\n", @$b), 24));
                } else {
                    add(\@warn, "definitely lost without a module frame, "
                        . "$bytes bytes, in " . basename($log)
                        . " (nginx/library internals? see valgrind.supp):\n"
                        . first_lines(join("\n", @$b), 14));
                }
                $kinds{$kind}++;
                next;
            } else {
                next;
            }
            $kinds{$kind}++;
            my $mod = module_frames($b);
            my $always = $kind =~ /^(Invalid|Mismatched|killed)/;
            my $msg = "$kind" . ($mod ? ' (module frame)' : '') . ' in '
                      . basename($log) . ":\n"
                      . first_lines(join("\n", @$b), 30);
            if ($mod || $always) {
                add(\@fail, $msg);
                $fig{errors_module}++ if $mod;
            } else {
                add(\@warn, $msg);
            }
        }
    }
    $fig{kinds} = join(', ', map { "$kinds{$_} x $_" } sort keys %kinds)
                  || 'none';
    printf "valgrind: %d nginx processes checked (%d without a summary); "
         . "errors: %s\n", $fig{processes}, $fig{incomplete} // 0,
         $fig{kinds};
    printf "valgrind: definitely lost attributable to the module: %d bytes "
         . "in %d blocks; elsewhere (unsuppressed): %d bytes in %d blocks\n",
         $fig{leak_bytes_module} // 0, $fig{leaks_module} // 0,
         $fig{leak_bytes_other} // 0, $fig{leaks_other} // 0;
    add(\@fail, "no valgrind log in $dir: did nginx run under valgrind?")
        unless @logs;
}

# ------------------------------------------------------------- ASan/UBSan
my %kinds;

# Reports in a log: ASan's own files, or an error.log a worker's stderr
# went to.
sub asan_text {
    my ($text, $log) = @_;
    {
        # UBSan: one line per finding
        while ($text =~ /^(.*runtime error: .*)$/mg) {
            $kinds{'UBSan runtime error'}++;
            add(\@fail, "UBSan: $1");
        }
        for my $rep (split /(?=^=+\n==\d+==ERROR: )/m, $text) {
            next unless $rep =~ /==\d+==ERROR: (\w+): ([^\n]*)/;
            my ($tool, $what) = ($1, $2);
            if ($tool eq 'LeakSanitizer') {
                for my $leak (split /(?=^(?:Direct|Indirect) leak of)/m,
                              $rep) {
                    next unless $leak =~
                        /^(Direct|Indirect) leak of (\d+) byte/;
                    my ($how, $bytes) = ($1, $2);
                    my @frames = $leak =~ /^\s+#\d+ .*$/mg;
                    # an indirect leak is reachable from a direct one: only
                    # the direct leak's owner is to blame
                    my $mod = $how eq 'Direct' && module_frames(\@frames)
                              ? 'module' : 'other';
                    $fig{"leak_bytes_$mod"} += $bytes;
                    $fig{"leaks_$mod"}++;
                    $kinds{"$how leak"}++;
                    (my $stack = $leak)
                        =~ s/^(?!Direct|Indirect|\s+#).*\n?//mg;
                    my $msg = "$how leak of $bytes bytes in "
                              . basename($log) . ":\n"
                              . first_lines($stack, 20);
                    if ($mod eq 'module') { add(\@fail, $msg) }
                    else {
                        add(\@warn, "$msg\n      (" . ($how eq 'Direct'
                            ? 'no module frame' : 'indirect: reachable from '
                              . 'a direct leak, which is what is judged')
                            . ')');
                    }
                }
            } else {
                $what =~ s/ on address.*//;
                $kinds{"$tool: $what"}++;
                add(\@fail, "$tool: $what in " . basename($log) . ":\n"
                            . first_lines($rep, 40));
            }
        }
    }
}

sub asan {
    my ($dir) = @_;
    my @logs = sort glob("$dir/asan.* $dir/ubsan.*");
    asan_text(slurp($_), $_) for @logs;
    if ($tmpdir) {
        # a worker whose stderr is its error.log may report there
        for my $f (glob("$tmpdir/tsb-test-*/error.log"),
                   glob("$tmpdir/tsb-test-*/nginx.out")) {
            my $text = slurp($f);
            next unless $text =~ /Sanitizer|runtime error: /;
            $fig{in_error_log}++;
            asan_text($text, $f);
        }
    }
    $fig{kinds} = join(', ', map { "$kinds{$_} x $_" } sort keys %kinds)
                  || 'none';
    printf "asan: %d report file(s), %d nginx log(s) with reports; "
         . "findings: %s\n", scalar @logs, $fig{in_error_log} // 0,
         $fig{kinds};
    printf "asan: leaked at exit, attributable to the module: %d bytes in "
         . "%d allocations; elsewhere: %d bytes in %d\n",
         $fig{leak_bytes_module} // 0, $fig{leaks_module} // 0,
         $fig{leak_bytes_other} // 0, $fig{leaks_other} // 0;
}

# ------------------------------------------------- nginx's own logs
sub test_dirs {
    my ($dir) = @_;
    my @dirs = glob("$dir/tsb-test-*");
    my ($crash, $san, $nlogs) = (0, 0, 0);
    for my $d (@dirs) {
        for my $f ("$d/error.log", "$d/nginx.out") {
            next unless -f $f;
            $nlogs++;
            my $text = slurp($f);
            for my $l (split /\n/, $text) {
                if ($l =~ /exited on signal 9\b/) {
                    # SIGKILL: nginx's master escalates a fast shutdown
                    # when a worker is slow to exit (a leak check), or the
                    # harness swept the process group
                    $fig{sigkill}++;
                    add(\@warn, "$f: $l (SIGKILL: a slow exit, not a "
                                . 'crash; its leak check is lost)');
                } elsif ($l =~ /exited on signal/) {
                    $crash++;
                    add(\@fail, "$f: $l");
                } elsif ($l =~ /ERROR:\ (Address|Leak|Memory|Thread)Sanitizer
                                |runtime\ error:\ /x) {
                    # read by asan() (valgrind runs have no such line)
                    $san++;
                    add(\@fail, "$f: $l") unless $asandir;
                }
            }
        }
    }
    printf "nginx logs: %d test directories, %d logs read; %d worker "
         . "crash(es), %d killed (SIGKILL), %d sanitizer line(s)\n",
         scalar @dirs, $nlogs, $crash, $fig{sigkill} // 0, $san;
}

# ----------------------------------------------------------- prove output
sub prove_log {
    my ($file) = @_;
    my $text = slurp($file);
    my ($files, $tests) = $text =~ /Files=(\d+), Tests=(\d+)/;
    unless (defined $files) {
        add(\@fail, "prove did not finish (timeout?): no summary in $file");
        return;
    }
    my ($summary) = $text =~ /^Test Summary Report\n-+\n(.*)/ms;
    my (@broken, @failed, $tf, $last);
    for my $l (split /\n/, $summary // '') {
        if ($l =~ /^(\S+\.t)\s+\(Wstat: .*?Failed: (\d+)\)$/) {
            $tf = $1;
            $last = undef;
            push @failed, ($last = "$tf: $2 failed") if $2;
        } elsif ($tf && $l =~ /^\s+Failed tests?:\s+(.*)/) {
            my $which = $1;
            $failed[-1] .= " (tests $which)" if defined $last;
        } elsif ($tf && $l =~ /^\s+(Parse\ errors:\ .*|No\ plan\ found.*
                                   |Bad\ plan.*)/x) {
            push @broken, "$tf: $1";
        }
    }
    printf "tests: %d files, %d assertions; %d assertion(s) failed under "
         . "the tool, %d file(s) did not run to the end\n", $files, $tests,
         eval { my $n = 0; $n += (/: (\d+) failed/)[0] for @failed; $n },
         scalar @broken;
    add(\@fail, "test file did not run to its end: $_") for @broken;
    add(\@warn, "failed under the tool (timing?): $_") for @failed;
}

valgrind($vgdir) if $vgdir;
test_dirs($tmpdir) if $tmpdir;
asan($asandir) if $asandir;
prove_log($prove) if $prove;

sub show {
    my ($title, $list, $max) = @_;
    return unless @$list;
    print "\n$title\n";
    for my $e (@$list[0 .. ($#$list < $max - 1 ? $#$list : $max - 1)]) {
        print "  - ", ($e->[1] > 1 ? "($e->[1] times) " : ''), "$e->[0]\n";
    }
    print "  ... and ", @$list - $max, " more\n" if @$list > $max;
}
show('not failing the run, but worth a look:', \@warn, 30);
if (@fail) {
    show('FAILED:', \@fail, 50);
    exit 1;
}
print "\nclean: nothing attributable to the module\n";
exit 0;
