# ngx_tsb_module: build, test and demo.
#
#   make            build build/ngx_http_tsb_module.so against Debian's nginx
#   make test       install what is missing (as root), build, run every test
#   make demo       start nginx + the module + the TSB simulator on loopback
#   make NGINX_SRC=/path/to/nginx-1.x   build against another nginx tree

NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
PYTHON      ?= /usr/bin/python3
BUILD       ?= build
CC          ?= cc

MODULE_SO    = $(BUILD)/ngx_http_tsb_module.so
# extra compiler and linker flags for the module (make test-asan uses them
# in a tree of its own)
NGX_CC_EXTRA ?=
NGX_LD_OPT   ?=
NGX_TREE     = $(BUILD)/nginx-src
SRC_DIR      = ngx_tsb_module
MODULE_SRCS  = $(wildcard $(SRC_DIR)/*.c $(SRC_DIR)/*.h) config

COMMA        = ,

# the plain C parts: no nginx types, unit tested and fuzzed directly
CORE_SRCS    = $(SRC_DIR)/tsb_usage.c $(SRC_DIR)/tsb_csr.c \
               $(SRC_DIR)/tsb_policy.c $(SRC_DIR)/tsb_json.c \
               $(SRC_DIR)/tsb_cert.c $(SRC_DIR)/tsb_path.c \
               $(SRC_DIR)/tsb_verify.c $(SRC_DIR)/tsb_allow.c \
               $(SRC_DIR)/tsb_front.c $(SRC_DIR)/tsb_tls.c \
               $(SRC_DIR)/tsb_describe.c \
               $(SRC_DIR)/tsb_owner.c
CORE_SRCS   += $(SRC_DIR)/tsb_name.c
CORE_SRCS   += $(SRC_DIR)/tsb_jws.c $(SRC_DIR)/tsb_acme.c
CORE_SRCS   += $(SRC_DIR)/tsb_etag.c
CORE_HDRS    = $(wildcard $(SRC_DIR)/tsb_*.h)
UNIT_OBJS    = $(CORE_SRCS:$(SRC_DIR)/%.c=$(BUILD)/obj-unit/%.o)
FUZZ_OBJS    = $(CORE_SRCS:$(SRC_DIR)/%.c=$(BUILD)/obj-fuzz/%.o)
UNIT_TESTS   = $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(wildcard t/unit/test_*.c))
UNIT_CFLAGS  = -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 \
               -fsanitize=address,undefined -fno-omit-frame-pointer \
               -I$(SRC_DIR) -DTSB_FIXTURES='"$(TSB_FIXTURES)"'
UNIT_LIBS    = -lyajl -lcrypto

# libFuzzer targets, one per parser (fuzz/, docs/fuzzing.md)
FUZZ_CC      ?= clang
FUZZ_TARGETS  = fuzz_csr fuzz_sign_req fuzz_upstream fuzz_cert fuzz_path \
                fuzz_allow fuzz_front fuzz_verify fuzz_csr_diff \
                fuzz_owner \
                fuzz_front_path
FUZZ_TARGETS += fuzz_name
FUZZ_TARGETS += fuzz_acme
FUZZ_TARGETS += fuzz_etag
FUZZ_BINS     = $(patsubst %,$(BUILD)/fuzz/%,$(FUZZ_TARGETS))
FUZZ_CFLAGS   = -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 \
                -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -fno-omit-frame-pointer \
                -I$(SRC_DIR)
FUZZ_OBJ_CFLAGS = $(subst -fsanitize=fuzzer$(COMMA),-fsanitize=fuzzer-no-link$(COMMA),$(FUZZ_CFLAGS))
FUZZ_SECONDS       ?= 180
FUZZ_SMOKE_SECONDS ?= 5
# per target: a little above the largest input the parser sees in practice
FUZZ_MAX_LEN_fuzz_csr      = 8192
FUZZ_MAX_LEN_fuzz_sign_req = 16384
FUZZ_MAX_LEN_fuzz_upstream = 16384
FUZZ_MAX_LEN_fuzz_cert     = 8192
FUZZ_MAX_LEN_fuzz_path     = 512
FUZZ_MAX_LEN_fuzz_allow    = 4608
FUZZ_MAX_LEN_fuzz_front    = 16384
FUZZ_MAX_LEN_fuzz_verify   = 8192
FUZZ_MAX_LEN_fuzz_csr_diff = 8192
FUZZ_MAX_LEN_fuzz_owner    = 4200
FUZZ_MAX_LEN_fuzz_front_path = 683
FUZZ_MAX_LEN_fuzz_name     = 512
FUZZ_MAX_LEN_fuzz_acme     = 8192
FUZZ_MAX_LEN_fuzz_etag     = 1024

# benchmarks (bench/, results in docs/benchmarks.md)
BENCH_CFLAGS  = -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O2 \
                -I$(SRC_DIR)
BENCH_SECONDS ?= 2

# the TSB fixtures: in the checkout (t/fixtures/README.md); nothing outside
# it is read (make test-standalone proves it)
TSB_FIXTURES = $(CURDIR)/t/fixtures

# Debian packages the build, the tests and the demo need
DEB_PKGS     = nginx nginx-dev libcurl4-openssl-dev libyajl-dev libssl-dev \
               gcc make openssl curl python3 python3-cryptography perl \
               libjson-pp-perl libio-socket-ssl-perl libhttp-tiny-perl \
               clang libclang-rt-14-dev strace certbot lego \
               chromium chromium-driver python3-selenium

.PHONY: all build deps unit unit-build test integration demo demo-stop clean
.PHONY: fuzz fuzz-smoke fuzz-build fuzz-coverage bench bench-policy
.PHONY: bench-cache bench-sign bench-acme
.PHONY: test-valgrind test-asan soak page-bundle
.PHONY: test-standalone test-build

all: build

build: $(MODULE_SO)

deps:
	@sh .ci/deps.sh $(DEB_PKGS)

# Configure a private copy of the nginx tree once, with the flags of the
# nginx that loads the module, so that its signature and its features
# (NGX_HTTP_SSL, NGX_THREADS) match that binary: NGX_CONFIGURE_ARGS when
# given, else Debian's conf_flags when the tree has them, else the
# arguments of $(NGINX_BIN) -V less other modules and paths
# (.ci/nginx-flags.py).  A release tarball has ./configure, a git
# checkout auto/configure.
NGX_CONFIGURE_ARGS ?=
$(NGX_TREE)/Makefile: config
	rm -rf $(NGX_TREE)
	mkdir -p $(BUILD)
	cp -a $(NGINX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && bash -c 'set -e; \
	    cfg=./configure; [ -x "$$cfg" ] || cfg=auto/configure; \
	    if [ -n "$(NGX_CONFIGURE_ARGS)" ]; then \
	        flags=($(NGX_CONFIGURE_ARGS)); \
	    elif [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); \
	    else $(PYTHON) $(CURDIR)/.ci/nginx-flags.py $(NGINX_BIN) \
	            >configure.args; \
	        mapfile -d "" -t flags <configure.args; fi; \
	    echo "configure: $${flags[*]}"; \
	    $$cfg "$${flags[@]}" --add-dynamic-module=$(CURDIR) \
	        --with-cc-opt="-g -O2 -Wall -Wextra -Werror $(NGX_CC_EXTRA)" \
	        $(if $(NGX_LD_OPT),--with-ld-opt="$(NGX_LD_OPT)") >configure.log \
	    || { tail -30 configure.log; exit 1; }'

$(MODULE_SO): $(NGX_TREE)/Makefile $(MODULE_SRCS)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile modules
	cp $(NGX_TREE)/objs/ngx_http_tsb_module.so $@.tmp
	mv -f $@.tmp $@

# The engine is compiled once per flavour (unit: ASan+UBSan; fuzz: the
# same plus libFuzzer's coverage) and linked into every test and harness.
.SECONDARY: $(UNIT_OBJS) $(FUZZ_OBJS)

$(BUILD)/obj-unit/%.o: $(SRC_DIR)/%.c $(CORE_HDRS)
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -c -o $@ $<

$(BUILD)/obj-fuzz/%.o: $(SRC_DIR)/%.c $(CORE_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -c -o $@ $<

$(BUILD)/unit/%: t/unit/%.c $(UNIT_OBJS) $(CORE_HDRS) \
                 t/unit/tap.h $(wildcard t/unit/*.h)
	@mkdir -p $(BUILD)/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(UNIT_OBJS) $(UNIT_LIBS)

unit-build: $(UNIT_TESTS)

unit: unit-build
	prove --exec '' $(UNIT_TESTS)

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_OBJS) $(CORE_HDRS)
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_OBJS) $(UNIT_LIBS)

fuzz-build: $(FUZZ_BINS)

# each run replays the seeds and fuzz/regressions/ first; -j runs in parallel
$(FUZZ_TARGETS:%=fuzz-run-%): fuzz-run-%: $(BUILD)/fuzz/%
	@sh fuzz/run.sh $< $* $(FUZZ_SECONDS) $(FUZZ_MAX_LEN_$*) $(BUILD)/fuzz

$(FUZZ_TARGETS:%=fuzz-smoke-%): fuzz-smoke-%: $(BUILD)/fuzz/%
	@sh fuzz/run.sh $< $* $(FUZZ_SMOKE_SECONDS) $(FUZZ_MAX_LEN_$*) \
	    $(BUILD)/fuzz

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-smoke: $(FUZZ_TARGETS:%=fuzz-smoke-%)

# line coverage of the engine by the seeds plus what fuzzing added
fuzz-coverage:
	@sh fuzz/coverage.sh $(BUILD)/fuzz "$(CORE_SRCS)" "$(FUZZ_TARGETS)"

$(BUILD)/bench/policy_bench: bench/policy_bench.c $(CORE_SRCS) \
                             $(wildcard $(SRC_DIR)/tsb_*.h)
	@mkdir -p $(BUILD)/bench
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(CORE_SRCS) $(UNIT_LIBS)

bench-policy: $(BUILD)/bench/policy_bench
	@sh bench/policy_report.sh $< $(BENCH_SECONDS) docs/benchmarks.md

# status cache: cached GET vs static file, 1000 waiters, zone capacity,
# tsb_store's disk I/O (about five minutes; options at the top of
# bench/cache_bench.pl)
bench-cache: build
	@sh .ci/deps.sh wrk strace
	TSB_MODULE=$(abspath $(MODULE_SO)) perl bench/cache_bench.pl \
	    --module $(abspath $(MODULE_SO)) --doc docs/benchmarks.md

# tsb_sign against nginx's proxy_pass to the same stub upstream, and the
# upstream connections it opens (about a minute; bench/sign_bench.pl)
$(BUILD)/bench/csr_decode: bench/csr_decode.c $(CORE_SRCS) \
                            $(wildcard $(SRC_DIR)/tsb_*.h)
	@mkdir -p $(BUILD)/bench
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(CORE_SRCS) $(UNIT_LIBS)

bench-sign: build $(BUILD)/bench/csr_decode
	@sh .ci/deps.sh wrk
	perl bench/sign_bench.pl --module $(abspath $(MODULE_SO)) \
	    --decode $(abspath $(BUILD)/bench/csr_decode) --doc docs/benchmarks.md

# several gateways sharing one tsb_store: TSB GETs per refresh interval
# with 1000 waiters spread over 2 and 3 instances (about half a minute;
# bench/ha_bench.pl prints the rows of docs/benchmarks.md)
.PHONY: bench-ha
bench-ha: build
	perl bench/ha_bench.pl --module $(abspath $(MODULE_SO))

# tsb_acme: newNonce and order polling against a cached status GET, one
# keep-alive connection, same run (bench/acme_bench.pl)
bench-acme: build
	perl bench/acme_bench.pl --module $(abspath $(MODULE_SO))

bench: bench-policy bench-cache bench-sign bench-acme

# Test files run TEST_JOBS at a time: each has its own nginx, simulator
# and ports, and most of their time is spent waiting (approvals, timeouts,
# reloads), so three at once take about a third of the time on two cores.
# TEST_JOBS=1 runs them one by one.
TEST_JOBS ?= 3
integration: build
	prove -j$(TEST_JOBS) -r t/ --ext .t

# The integration suite under memory checkers (t/sanitize/run.sh; results
# and logs in $(BUILD)/sanitize/).  Not part of make test: minutes each.
#   test-valgrind: Debian's nginx under valgrind memcheck
#   test-asan:     the module built with ASan+UBSan in a tree of its own,
#                  loaded into Debian's nginx with the ASan runtime preloaded
# SANITIZE_TESTS picks test files, SANITIZE_TIMEOUT bounds the run (s).
SANITIZE_TESTS ?= $(sort $(wildcard t/*.t))
ASAN_CC_EXTRA   = -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_LD_OPT     = -fsanitize=address,undefined

test-valgrind: build
	@sh .ci/deps.sh valgrind
	sh t/sanitize/run.sh valgrind $(MODULE_SO) $(BUILD)/sanitize/valgrind \
	    $(SANITIZE_TESTS)

test-asan:
	ASAN_OPTIONS=detect_leaks=0 $(MAKE) BUILD=$(BUILD)/asan \
	    NGX_CC_EXTRA="$(ASAN_CC_EXTRA)" NGX_LD_OPT="$(ASAN_LD_OPT)" build
	sh t/sanitize/run.sh asan $(BUILD)/asan/ngx_http_tsb_module.so \
	    $(BUILD)/sanitize/asan $(SANITIZE_TESTS)

# Mixed load with reloads and a TSB restart for SOAK_SECONDS (default 60);
# prints the figures and writes them to docs/benchmarks.md (bench/soak).
# SOAK_NOTE: said next to the machine's figures (what else ran; no ')
SOAK_SECONDS ?= 60
SOAK_NOTE    ?=
soak: build
	@sh .ci/deps.sh wrk
	perl bench/soak --module $(abspath $(MODULE_SO)) \
	    --seconds $(SOAK_SECONDS) --doc docs/benchmarks.md \
	    --note '$(SOAK_NOTE)'

# The tracked files copied into an empty directory: no file names a path
# outside the checkout, and the tests that read fixtures pass there and
# open none elsewhere (t/standalone.sh; about a minute)
test-standalone: build
	sh t/standalone.sh $(abspath $(MODULE_SO))

# A module built with --with-compat alone (no SSL, no threads) is refused
# by Debian's nginx, which has both (t/07-build.t; about a minute)
test-build: build
	$(MAKE) BUILD=$(BUILD)/compat NGX_CONFIGURE_ARGS=--with-compat build
	TSB_MODULE_COMPAT=$(abspath $(BUILD)/compat/ngx_http_tsb_module.so) \
	    prove -v t/07-build.t

# the builds and the fuzz smoke run on every core (the integration tests
# pick their own parallelism, TEST_JOBS)
BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: deps
	$(MAKE) -j$(BUILD_JOBS) build unit-build fuzz-build
	$(MAKE) unit
	$(MAKE) -j$(BUILD_JOBS) fuzz-smoke
	$(MAKE) integration
	$(MAKE) test-standalone

# The self-service page's one library, @peculiar/x509, bundled into
# page/x509.bundle.js (committed: nginx serves it, no build at install
# time).  Versions are pinned in page/package.json and page/package-lock.json.
page-bundle:
	cd page && npm ci --no-audit --no-fund && npm run build

demo: deps build
	@sh conf/demo.sh start

demo-stop:
	@sh conf/demo.sh stop

clean:
	rm -rf $(BUILD)
