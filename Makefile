# kvfp8 — build, test, run, and every side job.  `make help` lists the targets.
#
# Sources are found by wildcard so that adding a module never means editing this
# file: ref/*.c, cpu/*.c, faults/*.c and conformance/lib/*.c go into the library;
# cli/*.c and the conformance suites (conformance/suites/*.c, cmocka) into the tool;
# conformance/plugin_<name>/backend.c into the backend plugin
# build/plugins/libkvfp8_<name>.so; tests/test_*.c each become one cmocka suite;
# bench/bench_*.c one benchmark each; fuzz/fuzz_*.c one fuzz target each.

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
VERSION  := 0.1.0
PY       ?= /usr/bin/python3

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASEFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -Iinclude -Iref $(WARN)
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=
ALL_CFLAGS = $(BASEFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS   := -lcrypto -lxxhash -ljansson -ldl -lm -lpthread

# Instruction-set files get their own flags; everything else stays portable, and
# cpu/dispatch.c decides at run time what may be called.
AVX2_FLAGS   := -mavx2 -mf16c -mfma
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mf16c -mfma

LIB_SRCS   := $(sort $(wildcard ref/*.c cpu/*.c faults/*.c conformance/lib/*.c))
CLI_SRCS   := $(sort $(wildcard cli/*.c))
CONF_SRCS  := $(sort $(wildcard conformance/suites/*.c))
PLUGIN_SRCS := $(sort $(wildcard conformance/plugin_*/backend.c))
TEST_SRCS  := $(sort $(wildcard tests/test_*.c))
BENCH_SRCS := $(sort $(wildcard bench/bench_*.c))
FUZZ_SRCS  := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
CONF_OBJS  := $(CONF_SRCS:%.c=$(BUILD)/obj/%.o)
# What the tool links beyond cli/*.c and the library (the command-line fuzz target
# links the same): the conformance suites, and cmocka under them.
CLI_EXTRA_OBJS := $(CONF_OBJS)
CLI_EXTRA_LIBS := -lcmocka
PLUGINS    := $(PLUGIN_SRCS:conformance/plugin_%/backend.c=$(BUILD)/plugins/libkvfp8_%.so)
TEST_BINS  := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
TESTLIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(sort $(wildcard tests/lib/*.c)))
# tests/fixtures/*.c: shared objects the tests dlopen (backend loader errors)
FIXTURES   := $(patsubst tests/fixtures/%.c,$(BUILD)/tests/fixtures/lib%.so,$(sort $(wildcard tests/fixtures/*.c)))
FUZZ_REPLAY_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz-replay/%)
# The tool's code without its main(), for the command-line fuzz target.
CLI_NOMAIN_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/cli-nomain/%.o)

STATIC_LIB := $(BUILD)/lib/libkvfp8.a
SHARED_LIB := $(BUILD)/lib/libkvfp8.so
CLI_BIN    := $(BUILD)/bin/kvfp8

.PHONY: all lib cli plugins test check run bench bench-gpu cuda hip install sanitize coverage \
        fuzz fuzz-build deps deps-test clean help docs

all: lib cli plugins

help:
	@echo "kvfp8 make targets"
	@echo "  make            build libkvfp8 (static + shared), the kvfp8 tool and the backend plugins into $(BUILD)/"
	@echo "  make test       install missing Debian packages (as root), build, run every test suite"
	@echo "  make run        install missing packages, build, run the main job: FP8 summary, kvfp8 conform"
	@echo "                  against every backend available here, reports in $(BUILD)/report/<backend>/"
	@echo "  make bench      CPU benchmarks; tables go to stdout (copy to bench/results/)"
	@echo "  make cuda       build the CUDA code with nvcc (sm_80, sm_89, sm_90); skips without nvcc"
	@echo "  make hip        build the HIP code with hipcc (gfx90a, gfx1030); skips without hipcc"
	@echo "  make bench-gpu  NVIDIA GPU: build, check the KV-cache kernels against the reference, bench them"
	@echo "                  with the PyTorch baseline (bench/gpu/run.sh; results in \$$OUT or $(BUILD)/bench-gpu/)"
	@echo "  make sanitize   the whole test suite under AddressSanitizer + UBSan (build-san/)"
	@echo "  make coverage   lcov HTML report in build-cov/coverage/, line and branch figures printed"
	@echo "  make docs       regenerate docs/fp8-differences.md from the tool itself"
	@echo "  make install PREFIX=/usr/local   library, headers, tool and kvfp8.pc"
	@echo "  make clean"

lib: $(STATIC_LIB) $(SHARED_LIB)
cli: $(CLI_BIN)
plugins: $(PLUGINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/cpu/%_avx2.o: cpu/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/cpu/%_avx512.o: cpu/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libkvfp8.so.0 -o $@ $^ $(EXTRA_LDFLAGS) $(LDLIBS)

$(CLI_BIN): $(CLI_OBJS) $(CLI_EXTRA_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJS) $(CLI_EXTRA_OBJS) $(STATIC_LIB) $(EXTRA_LDFLAGS) $(CLI_EXTRA_LIBS) $(LDLIBS)

# A backend plugin is built as a vendor builds one: kvfp8's public headers only, no
# kvfp8 library, every symbol hidden but kvfp8_backend_entry (docs/porting.md).
$(BUILD)/plugins/libkvfp8_%.so: conformance/plugin_%/backend.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fvisibility=hidden -shared -MMD -MP -MF $(@:.so=.d) -o $@ $< $(EXTRA_LDFLAGS) -lm

$(BUILD)/tests/fixtures/lib%.so: tests/fixtures/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fvisibility=hidden -shared -MMD -MP -MF $(@:.so=.d) -o $@ $< $(EXTRA_LDFLAGS)

$(BUILD)/tests/%: tests/%.c $(TESTLIB_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/lib -MMD -MP -o $@ $< $(TESTLIB_OBJS) $(STATIC_LIB) $(EXTRA_LDFLAGS) -lcmocka $(LDLIBS)

# Each fuzz target also links against fuzz/replay.c (no libFuzzer): make test replays
# its committed corpus, fuzz/corpus/<name>/, as a regression test.
$(BUILD)/fuzz-replay/%: fuzz/%.c fuzz/replay.c $(TESTLIB_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/lib -o $@ $< fuzz/replay.c $(TESTLIB_OBJS) $(STATIC_LIB) $(EXTRA_LDFLAGS) -lcmocka $(LDLIBS)

# The command-line target links the tool's objects (and whatever else the tool
# links: CLI_EXTRA_OBJS) without main().
$(BUILD)/fuzz-replay/fuzz_cli: fuzz/fuzz_cli.c fuzz/replay.c $(CLI_NOMAIN_OBJS) $(CLI_EXTRA_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icli -o $@ $< fuzz/replay.c $(CLI_NOMAIN_OBJS) $(CLI_EXTRA_OBJS) $(STATIC_LIB) $(EXTRA_LDFLAGS) $(CLI_EXTRA_LIBS) $(LDLIBS)

$(BUILD)/obj/cli-nomain/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DKVFP8_CLI_NO_MAIN -MMD -MP -c $< -o $@

$(BUILD)/bench/%: bench/%.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC_LIB) $(EXTRA_LDFLAGS) $(LDLIBS)

# ---- the README's two commands -------------------------------------------------
test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory check

check: all $(TEST_BINS) $(FIXTURES) $(FUZZ_REPLAY_BINS)
	@KVFP8_BUILD=$(BUILD) KVFP8_PY=$(PY) KVFP8_LDFLAGS="$(EXTRA_LDFLAGS)" \
	  KVFP8_FUZZ_REPLAY="$(FUZZ_REPLAY_BINS)" sh scripts/run-tests.sh $(TEST_BINS)

run:
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	@sh scripts/main-job.sh $(CLI_BIN)

# ---- side jobs -------------------------------------------------------------------
bench: all $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done

sanitize:
	@sh scripts/deps.sh test
	@KVFP8_QUICK=1 $(MAKE) --no-print-directory BUILD=build-san \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" check

coverage:
	@sh scripts/deps.sh coverage
	@rm -rf build-cov
	@KVFP8_QUICK=1 $(MAKE) --no-print-directory BUILD=build-cov \
	  EXTRA_CFLAGS="--coverage -O0" EXTRA_LDFLAGS="--coverage" check
	@sh scripts/coverage.sh build-cov

docs: all
	@sh scripts/gen-docs.sh $(CLI_BIN)

cuda:
	@sh gpu/build.sh cuda $(BUILD)

hip:
	@sh gpu/build.sh hip $(BUILD)

# Builds what it needs itself (the library against carried -dev packages on a GPU
# machine that lacks them, then the CUDA code): bench/gpu/run.sh.
bench-gpu:
	@sh bench/gpu/run.sh $(BUILD)

fuzz-build:
	@sh scripts/deps.sh fuzz
	@sh fuzz/build.sh

fuzz: fuzz-build
	@sh fuzz/run.sh $(or $(FUZZ_SECONDS),60)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/kvfp8 \
	  $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(PREFIX)/lib/libkvfp8.a
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/libkvfp8.so.$(VERSION)
	ln -sf libkvfp8.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libkvfp8.so.0
	ln -sf libkvfp8.so.0 $(DESTDIR)$(PREFIX)/lib/libkvfp8.so
	install -m 644 include/kvfp8/*.h $(DESTDIR)$(PREFIX)/include/kvfp8/
	install -m 755 $(CLI_BIN) $(DESTDIR)$(PREFIX)/bin/kvfp8
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' kvfp8.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/kvfp8.pc

clean:
	rm -rf build build-san build-cov build-fuzz build-evp

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
