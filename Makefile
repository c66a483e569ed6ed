# pipetrain — build, test, run.
#
# Modules are found by folder: every .c in model/ net/ coll/ scheduler/ stage/ ps/ goes into
# build/libpipetrain.a; cli/ and bench/ make bin/pipetrain; each tests/test_*.c is
# one CUnit program linked against the library. Adding a file needs no edit here.
#
#   make            build bin/pipetrain
#   make deps       install missing Debian packages (apt-get update first)
#   make test       deps + build + all tests (tests/run.sh)
#   make asan       the tests under AddressSanitizer + UBSan (build-asan/)
#   make run        deps + build + train the default topology
#   make bench      deps + build + benchmarks
#   make clean

DEBS := libevent-dev libopenblas-dev libjansson-dev libcunit1-dev pkg-config libssl-dev libisal-dev
# What the shell tests call besides the build (json checks, netns, pgrep; python3-regex:
# GPT-2's regex in tests/helpers/bpe_ref.py, the tokenizer's reference).
TEST_DEBS := python3 iproute2 procps python3-regex
PKGS := libevent libevent_pthreads jansson openblas libcrypto libisal

CC      ?= cc
BUILD   ?= build
BIN     ?= bin
OPT     ?= -O2 -march=native
SAN     ?=
WERROR  ?= -Werror
# Lazy (=) so that pkg-config runs only after `make deps` has installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) cunit 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  = -std=c11 -D_GNU_SOURCE -g $(OPT) $(SAN) -Wall -Wextra $(WERROR) -MMD -MP \
          -I. $(PKG_CFLAGS)
LDLIBS  = $(PKG_LIBS) -lpthread -lm
TEST_LDLIBS = $(shell pkg-config --libs cunit 2>/dev/null)

LIB_SRCS  := $(sort $(wildcard base/*.c model/*.c net/*.c coll/*.c scheduler/*.c topo/*.c run/*.c stage/*.c coord/*.c ps/*.c))
CLI_SRCS  := $(sort $(wildcard cli/*.c bench/*.c))
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BIN)/tests/%)
# Helper programs used by tests (tests/helpers/*.c), one binary each.
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c))
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(BIN)/tests/%)

.PHONY: all deps build test test-only asan run bench clean fuzz soak
all: build
build: $(BIN)/pipetrain $(TEST_BINS) $(HELPER_BINS)

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BUILD)/libpipetrain.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BIN)/pipetrain: $(CLI_OBJS) $(BUILD)/libpipetrain.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libpipetrain.a $(LDLIBS)

$(BIN)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libpipetrain.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libpipetrain.a $(LDLIBS) $(TEST_LDLIBS)

$(BIN)/tests/%: $(BUILD)/tests/helpers/%.o $(BUILD)/libpipetrain.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libpipetrain.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# AdamW's loop vectorizes only when sqrtf need not set errno (its argument is
# never negative) and with the dynamic cost model; neither flag lets the
# compiler reorder or contract floating-point arithmetic, so the bits stay.
# Per-file flags go through cc_flags: the same Makefile builds with gcc (build,
# asan, soak) and clang (fuzz), and clang rejects -fvect-cost-model=.
# cc_flags FLAG...: each FLAG that $(CC) accepts (compiling an empty file with
# -Werror), the others dropped; run once per make invocation, when $(CC) is known.
cc_flags = $(foreach f,$(1),$(shell $(CC) -Werror $(f) -x c -c /dev/null -o /dev/null >/dev/null 2>&1 && echo $(f)))
OPTIM_CFLAGS := $(call cc_flags,-fno-math-errno -fvect-cost-model=dynamic)
$(BUILD)/model/optim.o: CFLAGS += $(OPTIM_CFLAGS)
$(BUILD)/coll/coll.o: CFLAGS += $(OPTIM_CFLAGS)

# Targets that need packages re-enter make after `deps`, so pkg-config sees them.
# Target-specific DEBS reach the `deps` prerequisite too.
test asan chaos: DEBS += $(TEST_DEBS)
test: deps
	$(MAKE) build
	BIN=$(BIN) tests/run.sh

asan: deps
	$(MAKE) BUILD=build-asan BIN=bin-asan OPT="-O1 -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" build
	BIN=bin-asan ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  PIPETRAIN_ASAN=1 tests/run.sh

# RUN_ARGS passes options through, e.g. make run RUN_ARGS="--data FILE --steps 500"
RUN_TOPOLOGY ?= topologies/default.json
RUN_OUT ?= runs/default
run: deps
	$(MAKE) build
	$(BIN)/pipetrain run $(RUN_TOPOLOGY) --out $(RUN_OUT) $(RUN_ARGS)
	@echo "--- a sample from $(RUN_OUT):"
	@$(BIN)/pipetrain sample $(RUN_OUT) --prompt "The " --tokens 300 --temperature 0.8 --top-k 40

bench: deps
	$(MAKE) build
	$(BIN)/pipetrain bench compute

# The 4096-token byte-level BPE that topologies/shakespeare-bpe.json reads (about a
# second to train; generated, so not in git): make shakespeare-bpe, then
# bin/pipetrain run topologies/shakespeare-bpe.json
SHAKESPEARE ?= ../shared/data/tinyshakespeare.txt
.PHONY: shakespeare-bpe
shakespeare-bpe: runs/shakespeare-bpe4096.json
runs/shakespeare-bpe4096.json: $(BIN)/pipetrain
	@mkdir -p $(@D)
	$(BIN)/pipetrain tokenizer train $(SHAKESPEARE) --vocab 4096 --out $@

# libFuzzer targets: each tests/fuzz/fuzz_*.c, built with clang against the library
# (ASan + UBSan, any UBSan report fatal; optimised with FUZZ_OPT) into FUZZ_BUILD
# (objects) and FUZZ_BIN (programs), run for FUZZ_SECONDS each on its corpus
# tests/fuzz/corpus/<name>/, FUZZ_JOBS of them at a time.
# New inputs go to FUZZ_OUT/<name>/, the log to FUZZ_OUT/<name>.log and a crash
# to FUZZ_OUT/<name>-crash-<sha1> (replay: FUZZ_BIN/<name> FILE). Exit status
# non-zero when a target fails to build, crashes, leaks, times out on an input
# (FUZZ_INPUT_TIMEOUT s) or runs past its time plus a minute.
# tests/t_fuzz_quick.sh runs this for a few seconds per target in `make test`.
FUZZ_SECONDS ?= 60
FUZZ_INPUT_TIMEOUT ?= 20
FUZZ_OUT ?= fuzz-out
FUZZ_BUILD ?= build-fuzz
FUZZ_BIN ?= bin-fuzz
FUZZ_OPT ?= -O1 -g
FUZZ_JOBS ?= 1
# -fsanitize=fuzzer needs libclang-rt-14-dev beside clang on Debian 12.
FUZZ_DEBS := clang libclang-rt-14-dev
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/%.c=%)
.PHONY: fuzz-deps fuzz-build
fuzz-deps:
	@$(MAKE) --no-print-directory deps DEBS="$(FUZZ_DEBS)"

# Inside the fuzz build (CC=clang, BUILD/BIN the fuzz folders): the programs.
fuzz-build: $(FUZZ_NAMES:%=$(BIN)/%)

$(BIN)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/libpipetrain.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libpipetrain.a $(LDLIBS)

# Each target's exit status goes to FUZZ_OUT/<name>.rc; the logs' tails are
# printed in name order once all have run.
fuzz: deps fuzz-deps
	$(MAKE) CC=clang BUILD=$(FUZZ_BUILD) BIN=$(FUZZ_BIN) OPT="$(FUZZ_OPT)" WERROR= \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" fuzz-build
	@mkdir -p $(FUZZ_OUT); failed=""; \
	one() { \
	  mkdir -p $(FUZZ_OUT)/$$1; \
	  UBSAN_OPTIONS=print_stacktrace=1 timeout -k 5 $$(( $(FUZZ_SECONDS) + 60 )) \
	    $(FUZZ_BIN)/$$1 -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_INPUT_TIMEOUT) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_OUT)/$$1- \
	    $(FUZZ_OUT)/$$1 tests/fuzz/corpus/$$1 >$(FUZZ_OUT)/$$1.log 2>&1; \
	  echo $$? >$(FUZZ_OUT)/$$1.rc; \
	}; \
	k=0; for n in $(FUZZ_NAMES); do \
	  rm -f $(FUZZ_OUT)/$$n.rc; one $$n & k=$$((k + 1)); \
	  [ $$((k % $(FUZZ_JOBS))) -ne 0 ] || wait; \
	done; wait; \
	for n in $(FUZZ_NAMES); do \
	  echo "== $$n for $(FUZZ_SECONDS) s"; \
	  tail -n 12 $(FUZZ_OUT)/$$n.log; \
	  rc=$$(cat $(FUZZ_OUT)/$$n.rc 2>/dev/null); \
	  if [ "$$rc" != 0 ]; then \
	    echo "make fuzz: $$n FAILED (exit $$rc): $(FUZZ_OUT)/$$n.log"; failed="$$failed $$n"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: failed:$$failed"; exit 1; fi; \
	echo "make fuzz: $(words $(FUZZ_NAMES)) targets, $(FUZZ_SECONDS) s each, no crash"

# The fault matrix of issue #6 (tests/chaos/run.sh; `make test` runs a quick
# subset, tests/t_chaos_quick.sh). CHAOS_TRIALS=N kill trials (default 20).
# Issue #11 measured in network namespaces with tbf-shaped links (needs root;
# skips with a message where namespaces cannot be created): ring bus bandwidth
# against the link rate and plain TCP, and 2x2 training runs' exposed
# all-reduce against the simulator (tests/netns/bench_dp.sh; RATES, RANKS,
# BUCKETS, STEPS). `make test` runs its functional check, tests/t_netns_dp.sh.
.PHONY: bench-netns
bench-netns: deps
	$(MAKE) build
	BIN=$(BIN) bash tests/netns/bench_dp.sh; rc=$$?; [ $$rc -eq 77 ] || exit $$rc

# Slow links, measured and predicted (issue 14; needs root and network
# namespaces, skips with a message otherwise): a 2-stage run per tbf rate and
# wire encoding, measured step time against `schedule --calibrate` with the
# topology's "links" (bench/wire_links.sh; RATES, WIRES, STEPS, LAT_MS).
.PHONY: bench-wire
bench-wire: deps
	$(MAKE) build
	BIN=$(BIN) bash bench/wire_links.sh; rc=$$?; [ $$rc -eq 77 ] || exit $$rc

.PHONY: chaos
chaos: deps
	$(MAKE) build
	BIN=$(BIN) tests/chaos/run.sh

# The transport's concurrency under ThreadSanitizer, over and over: its suites
# race posting threads, the network thread and peers dying; a rare interleaving
# shows only in many runs. SOAK_SECONDS (default 600) bounds the loop.
SOAK_SECONDS ?= 600
SOAK_TESTS := test_net_threads test_net test_net_peers
.PHONY: soak
soak: deps
	$(MAKE) BUILD=build-tsan BIN=bin-tsan OPT="-O1 -g" SAN=-fsanitize=thread \
	  $(SOAK_TESTS:%=bin-tsan/tests/%) bin-tsan/tests/net_peer
	@end=$$(( $$(date +%s) + $(SOAK_SECONDS) )); n=0; mkdir -p soak-out; \
	while [ $$(date +%s) -lt $$end ]; do n=$$((n + 1)); \
	  for t in $(SOAK_TESTS); do \
	    if ! TSAN_OPTIONS=halt_on_error=1 bin-tsan/tests/$$t >soak-out/$$t.log 2>&1 || \
	       grep -q ThreadSanitizer soak-out/$$t.log; then \
	      echo "make soak: $$t failed in round $$n: soak-out/$$t.log"; exit 1; fi; \
	  done; \
	done; echo "make soak: $$n rounds of $(SOAK_TESTS) under TSan, $(SOAK_SECONDS) s, clean"

clean:
	rm -rf build build-asan build-fuzz build-fuzz-quick build-tsan bin bin-asan bin-fuzz bin-tsan soak-out fuzz-out

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
