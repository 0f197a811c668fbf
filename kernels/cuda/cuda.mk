# The CUDA backend, included by the top-level Makefile.
#   make cuda   bin/qstar-cuda: the cpu and cuda backends, kernels for sm_80 and sm_90 plus PTX for
#               newer GPUs, nvcc -Werror; fails on any register spill ptxas reports (the report is
#               kept in build/cuda/ptxas.txt). PROFILE=1 adds -lineinfo for ncu source views.
# On a machine without a GPU the binary builds and says "no CUDA device" when asked for one.

NVCC      ?= $(shell command -v nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_SRC  := kernels/cuda/backend_cuda.cu
CUDA_DEPS := $(wildcard kernels/cuda/*.cuh) kernels/ops.h kernels/philox.h kernels/cuda/portable.h common/util.h
NVCC_FLAGS := -std=c++20 -O3 -I. -Werror all-warnings -Xptxas -v \
              -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
ifeq ($(PROFILE),1)
NVCC_FLAGS += -lineinfo
endif
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart -lstdc++
# Multi-rank training on GPUs (kernels/cuda/comm_nccl.cuh): NCCL when its header is beside CUDA's (the
# emu build uses tests/emu/nccl_emu.cpp instead of libnccl); MPI's headers (MPI_CFLAGS, from the
# Makefile) for the id broadcast, as -isystem so -Werror ignores them. Without MPI, ranks find the id
# through QSTAR_NCCL_ID_FILE only.
ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
CUDA_COMM_FLAGS := -DQSTAR_NCCL $(patsubst -I%,-isystem %,$(MPI_CFLAGS))
CUDA_LIBS += -lnccl
endif

$(BUILD)/cuda/backend_cuda.o: $(CUDA_SRC) $(CUDA_DEPS)
	@mkdir -p $(dir $@)
	@echo "  NVCC  $< (sm_80, sm_90, compute_90)"
	@$(NVCC) $(NVCC_FLAGS) $(CUDA_COMM_FLAGS) -c $< -o $@ > $(BUILD)/cuda/ptxas.txt 2>&1 || (cat $(BUILD)/cuda/ptxas.txt; exit 1)
	@if grep -E "[1-9][0-9]* bytes spill (stores|loads)" $(BUILD)/cuda/ptxas.txt; then \
	   echo "make cuda: ptxas reports register spills (see $(BUILD)/cuda/ptxas.txt)"; rm -f $@; exit 1; fi
	@echo "  ptxas: $$(grep -c 'Compiling entry' $(BUILD)/cuda/ptxas.txt) kernel builds, no spills (report: $(BUILD)/cuda/ptxas.txt)"

bin/qstar-cuda: $(BUILD)/host/main.o $(BUILD)/libqstar.a $(BUILD)/cuda/backend_cuda.o
	@mkdir -p bin
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(CUDA_LIBS) $(LDLIBS)

# The same kernels compiled by g++ against the CPU emulator: the `emu` backend of the tests and of
# bin/qstar-emu (emu.mk provides EMU_OBJ, EMU_CXX, EMU_CXXFLAGS when the CUDA headers are found).
ifneq ($(EMU_OBJ),)
EMU_BACKEND  := $(BUILD)/emu/backend_emu.o $(EMU_OBJ)
EMU_LDLIBS_C := -lstdc++ -pthread
EMU_QSTAR    := bin/qstar-emu

$(BUILD)/emu/backend_emu.o: $(CUDA_SRC) $(CUDA_DEPS) $(EMU_HDR)
	@mkdir -p $(dir $@)
	@echo "  EMU   $<"
	@$(EMU_CXX) $(EMU_CXXFLAGS) $(CUDA_COMM_FLAGS) -std=c++20 -I. -x c++ -include tests/emu/cuemu.h -c $< -o $@

bin/qstar-emu: $(BUILD)/host/main.o $(BUILD)/libqstar.a $(EMU_BACKEND)
	@mkdir -p bin
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) $(EMU_LDLIBS_C)
endif
include bench/cuda/bench.mk
