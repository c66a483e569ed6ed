# pipetrain — build, test, run.
#
# Modules are found by folder: every .c in model/ net/ scheduler/ stage/ goes into
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

LIB_SRCS  := $(sort $(wildcard base/*.c model/*.c net/*.c scheduler/*.c topo/*.c run/*.c stage/*.c coord/*.c))
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
$(BUILD)/model/optim.o: CFLAGS += -fno-math-errno -fvect-cost-model=dynamic

# Targets that need packages re-enter make after `deps`, so pkg-config sees them.
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

# libFuzzer targets: each tests/fuzz/fuzz_*.c, built with clang against the library
# (ASan + UBSan), run for FUZZ_SECONDS on its corpus tests/fuzz/corpus/<name>/.
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
fuzz: deps
	@command -v clang >/dev/null || { echo "make fuzz: installing clang"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; }
	$(MAKE) CC=clang BUILD=build-fuzz BIN=bin-fuzz OPT="-O1 -g" WERROR= \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libpipetrain.a
	@mkdir -p bin-fuzz fuzz-out
	@set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -I. $$(pkg-config --cflags $(PKGS)) \
	    -fsanitize=fuzzer,address,undefined -o bin-fuzz/$$n $$f build-fuzz/libpipetrain.a \
	    $$(pkg-config --libs $(PKGS)) -lpthread -lm; \
	  mkdir -p fuzz-out/$$n; \
	  echo "== $$n for $(FUZZ_SECONDS) s"; \
	  bin-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    fuzz-out/$$n tests/fuzz/corpus/$$n 2>&1 | tail -n 12; \
	done

# The fault matrix of issue #6 (tests/chaos/run.sh; `make test` runs a quick
# subset, tests/t_chaos_quick.sh). CHAOS_TRIALS=N kill trials (default 20).
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
	rm -rf build build-asan build-fuzz build-tsan bin bin-asan bin-fuzz bin-tsan soak-out fuzz-out

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
