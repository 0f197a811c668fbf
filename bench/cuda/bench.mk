# bench/cuda — GPU benchmarks of the CUDA backend, validate-then-benchmark (bench/cuda/bench_common.h).
# Included at the end of kernels/cuda/cuda.mk (it uses NVCC, CUDA_LIBS, EMU_BACKEND, EMU_CXX, ... from
# there and from emu/emu.mk).
#   make cuda-bench   build/bench/cuda/<name>: each bench_<name>.cu compiled by nvcc and linked like
#                     bin/qstar-cuda (the cuda backend); validates and times on a GPU, and without one
#                     says "timing needs a GPU" and exits 0.
#   make emu-bench    build/bench/emu/<name>: the same sources compiled by g++ against the CPU emulator
#                     (the emu backend: the same kernel sources run on the CPU); validates at small sizes.
#   bench/cuda/run.sh runs the GPU builds when a GPU is present, else the emulator builds.
# The benches call the ops only through the backend table, so they are host code: nvcc compiles no
# kernels here, the kernels come from $(CUDA_OBJ) (or the emulator's $(EMU_BACKEND)). Objects go
# to build/bench/obj-{cuda,emu}, so the binary folders hold only the benchmarks.

BENCH_CU_SRC   := $(wildcard bench/cuda/bench_*.cu)
BENCH_CU_NAMES := $(BENCH_CU_SRC:bench/cuda/%.cu=%)
BENCH_CU_BIN   := $(BENCH_CU_NAMES:%=$(BUILD)/bench/cuda/%)
BENCH_EMU_BIN  := $(BENCH_CU_NAMES:%=$(BUILD)/bench/emu/%)
BENCH_CU_DEPS  := bench/cuda/bench_common.h kernels/gpu_peaks.h kernels/ops.h common/util.h model/model.h \
                  model/quietstar.h model/config.h
BENCH_NVCC_FLAGS := -std=c++20 -O2 -I. -Werror all-warnings -Xcompiler -Wall,-Wextra

.PHONY: cuda-bench emu-bench
cuda-bench:
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory $(BENCH_CU_BIN); \
	 else echo "make cuda-bench: nvcc not found, skipping the GPU benchmarks"; fi

$(BENCH_CU_BIN): $(BUILD)/bench/cuda/%: bench/cuda/%.cu $(BENCH_CU_DEPS) $(BUILD)/libqstar.a $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo "  NVCC  $<"
	@mkdir -p $(BUILD)/bench/obj-cuda
	@$(NVCC) $(BENCH_NVCC_FLAGS) -c $< -o $(BUILD)/bench/obj-cuda/$*.o
	@$(CC) $(CFLAGS) $(BUILD)/bench/obj-cuda/$*.o $(CUDA_OBJ) $(BUILD)/libqstar.a -o $@ $(CUDA_LIBS) $(LDLIBS)

ifneq ($(EMU_OBJ),)
emu-bench: $(BENCH_EMU_BIN)

$(BENCH_EMU_BIN): $(BUILD)/bench/emu/%: bench/cuda/%.cu $(BENCH_CU_DEPS) $(BUILD)/libqstar.a $(EMU_BACKEND) $(EMU_HDR)
	@mkdir -p $(dir $@)
	@echo "  EMU   $<"
	@mkdir -p $(BUILD)/bench/obj-emu
	@$(EMU_CXX) $(EMU_CXXFLAGS) -std=c++20 -I. -x c++ -include emu/cuemu.h -c $< -o $(BUILD)/bench/obj-emu/$*.o
	@$(CC) $(CFLAGS) $(BUILD)/bench/obj-emu/$*.o $(EMU_BACKEND) $(BUILD)/libqstar.a -o $@ $(LDLIBS) $(EMU_LDLIBS_C)
else
emu-bench:
	@echo "make emu-bench: the emulator needs nvcc's CUDA headers; skipping"
endif
