#!/usr/bin/python3
"""Configure arguments for building the module for a given nginx binary.

    python3 .ci/nginx-flags.py /path/to/nginx  >args   (NUL-separated)

Used by the Makefile when the nginx source tree has no Debian conf_flags
(a release tarball, a git checkout, any self-built nginx): the module must
be configured like the nginx that loads it.  --with-compat makes the
module's signature compatible whatever else differs, but the features the
module compiles in follow the arguments: without --with-http_ssl_module
NGX_HTTP_SSL is undefined ($tsb_ssl_client_cn always empty), without
--with-threads NGX_THREADS is (tsb_store's file I/O on the event loop).

Kept: every argument that defines a feature of the core or of the HTTP
module (--with-compat, --with-threads, --with-http_ssl_module, --with-debug,
--with-file-aio, in-tree --with-*_module ...).  Dropped, with a note on
stderr: other modules (--add-module, --add-dynamic-module, --with-*=dynamic)
and the static modules that need libraries of their own (GeoIP, XSLT, GD,
perl, perftools), which change nothing in this module's build; the
installation paths, user and group; --with-cc-opt and --with-ld-opt (the
Makefile passes its own: NGX_CC_EXTRA, NGX_LD_OPT); source directories
(--with-openssl=DIR ...) that do not exist here.
"""

import os
import shlex
import subprocess
import sys

PATHS = ('--prefix=', '--sbin-path=', '--modules-path=', '--conf-path=',
         '--error-log-path=', '--pid-path=', '--lock-path=', '--user=',
         '--group=', '--build=', '--builddir=', '--http-log-path=',
         '--http-client-body-temp-path=', '--http-proxy-temp-path=',
         '--http-fastcgi-temp-path=', '--http-uwsgi-temp-path=',
         '--http-scgi-temp-path=')
OTHER_MODULES = ('--add-module=', '--add-dynamic-module=')
OWN_OPTS = ('--with-cc-opt=', '--with-ld-opt=', '--with-cc=', '--with-cpp=')
NEED_LIBS = ('--with-http_xslt_module', '--with-http_image_filter_module',
             '--with-http_geoip_module', '--with-stream_geoip_module',
             '--with-http_perl_module', '--with-google_perftools_module',
             '--with-perl_modules_path=', '--with-perl=')
SOURCES = {'--with-openssl=': '--with-openssl-opt=',
           '--with-pcre=': '--with-pcre-opt=',
           '--with-zlib=': '--with-zlib-opt=',
           '--with-libatomic=': None}


def note(msg):
    sys.stderr.write('nginx-flags: %s\n' % msg)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else '/usr/sbin/nginx'
    try:
        out = subprocess.run([binary, '-V'], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        note('cannot run %s -V: %s' % (binary, e))
        return 1

    args = []
    for line in out.decode('utf-8', 'replace').splitlines():
        if line.startswith('configure arguments:'):
            args = shlex.split(line[len('configure arguments:'):])

    compat = '--with-compat' in args
    if not compat:
        note('%s was built without --with-compat: a dynamic module loads'
             ' only if built from the same nginx version with the same'
             ' arguments; keeping all of them but other modules' % binary)

    absent = set()
    for a in args:
        for src, opt in SOURCES.items():
            if a.startswith(src) and not os.path.isdir(a[len(src):]):
                absent.add(src)
                if opt:
                    absent.add(opt)

    kept = []
    for a in args:
        why = None
        if a.startswith(OTHER_MODULES) or a.endswith('=dynamic'):
            why = 'another module'
        elif a.startswith(OWN_OPTS):
            why = 'the Makefile passes its own (NGX_CC_EXTRA, NGX_LD_OPT)'
        elif compat and a.startswith(PATHS):
            why = 'a path'
        elif compat and a.startswith(NEED_LIBS):
            why = 'a module that needs libraries of its own'
        elif any(a.startswith(p) for p in absent):
            why = 'no such source directory here'
        if why:
            note('dropped %s (%s)' % (a, why))
            continue
        kept.append(a)

    for feature in ('--with-http_ssl_module', '--with-threads'):
        if feature not in kept:
            note('%s has no %s: the module is built without it too'
                 % (binary, feature))

    sys.stdout.write(''.join(a + '\0' for a in kept))
    return 0


if __name__ == '__main__':
    sys.exit(main())
