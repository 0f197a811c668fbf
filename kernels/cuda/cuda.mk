# The CUDA backend, included by the top-level Makefile.
#   make cuda   bin/qstar-cuda: the cpu and cuda backends, kernels for sm_80 and sm_90 plus PTX for
#               newer GPUs, nvcc -Werror; fails on any register spill ptxas reports (the reports are
#               kept in build/cuda/*.ptxas.txt). PROFILE=1 adds -lineinfo for ncu source views.
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
# emu build uses emu/nccl_emu.cpp instead of libnccl); MPI's headers (MPI_CFLAGS, from the
# Makefile) for the id broadcast, as -isystem so -Werror ignores them. Without MPI, ranks find the id
# through QSTAR_NCCL_ID_FILE only.
ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
CUDA_COMM_FLAGS := -DQSTAR_NCCL $(patsubst -I%,-isystem %,$(MPI_CFLAGS))
CUDA_LIBS += -lnccl
endif

# The runtime once; the op tables once per precision (backend_cuda.cu with QSTAR_CUDA_BF16 = 0 or 1).
# Each object's ptxas report is build/cuda/<object>.ptxas.txt; any spill fails the build.
CUDA_OBJ := $(BUILD)/cuda/runtime.o $(BUILD)/cuda/backend_cuda.o $(BUILD)/cuda/backend_cuda_bf16.o

# $(call nvcc_compile,BF16): $< to $@ with QSTAR_CUDA_BF16=BF16
define nvcc_compile
	@mkdir -p $(dir $@)
	@echo "  NVCC  $<$(if $(filter 1,$(1)), (bf16),) (sm_80, sm_90, compute_90)"
	@$(NVCC) $(NVCC_FLAGS) $(CUDA_COMM_FLAGS) -DQSTAR_CUDA_BF16=$(1) -c $< -o $@ > $(@:.o=.ptxas.txt) 2>&1 || (cat $(@:.o=.ptxas.txt); exit 1)
	@if grep -E "[1-9][0-9]* bytes spill (stores|loads)" $(@:.o=.ptxas.txt); then \
	   echo "make cuda: ptxas reports register spills (see $(@:.o=.ptxas.txt))"; rm -f $@; exit 1; fi
	@echo "  ptxas: $$(grep -c 'Compiling entry' $(@:.o=.ptxas.txt)) kernel builds, no spills (report: $(@:.o=.ptxas.txt))"
endef

$(BUILD)/cuda/runtime.o: kernels/cuda/runtime.cu $(CUDA_DEPS) kernels/cuda/runtime.cuh
	$(call nvcc_compile,0)
$(BUILD)/cuda/backend_cuda.o: $(CUDA_SRC) $(CUDA_DEPS) kernels/cuda/runtime.cuh
	$(call nvcc_compile,0)
$(BUILD)/cuda/backend_cuda_bf16.o: $(CUDA_SRC) $(CUDA_DEPS) kernels/cuda/runtime.cuh
	$(call nvcc_compile,1)

bin/qstar-cuda: $(BUILD)/cli/main.o $(BUILD)/libqstar.a $(CUDA_OBJ)
	@mkdir -p bin
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(CUDA_LIBS) $(LDLIBS)

# The same kernels compiled by g++ against the CPU emulator: the `emu` backend of the tests and of
# bin/qstar-emu (emu.mk provides EMU_OBJ, EMU_CXX, EMU_CXXFLAGS when the CUDA headers are found).
ifneq ($(EMU_OBJ),)
EMU_BACKEND  := $(BUILD)/emu/runtime_emu.o $(BUILD)/emu/backend_emu.o $(BUILD)/emu/backend_emu_bf16.o $(EMU_OBJ)
EMU_LDLIBS_C := -lstdc++ -pthread
EMU_QSTAR    := bin/qstar-emu

# $(call emu_compile,BF16)
define emu_compile
	@mkdir -p $(dir $@)
	@echo "  EMU   $<$(if $(filter 1,$(1)), (bf16),)"
	@$(EMU_CXX) $(EMU_CXXFLAGS) $(CUDA_COMM_FLAGS) -DQSTAR_CUDA_BF16=$(1) -std=c++20 -I. -x c++ -include emu/cuemu.h -c $< -o $@
endef
$(BUILD)/emu/runtime_emu.o: kernels/cuda/runtime.cu $(CUDA_DEPS) kernels/cuda/runtime.cuh $(EMU_HDR)
	$(call emu_compile,0)
$(BUILD)/emu/backend_emu.o: $(CUDA_SRC) $(CUDA_DEPS) kernels/cuda/runtime.cuh $(EMU_HDR)
	$(call emu_compile,0)
$(BUILD)/emu/backend_emu_bf16.o: $(CUDA_SRC) $(CUDA_DEPS) kernels/cuda/runtime.cuh $(EMU_HDR)
	$(call emu_compile,1)

bin/qstar-emu: $(BUILD)/cli/main.o $(BUILD)/libqstar.a $(EMU_BACKEND)
	@mkdir -p bin
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) $(EMU_LDLIBS_C)
endif
include bench/cuda/bench.mk
