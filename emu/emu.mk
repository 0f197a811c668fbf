# emu/emu.mk — builds the CUDA-on-CPU emulator (emu/) and its own tests.
# Included by the top-level Makefile (-include emu/emu.mk); uses its BUILD, BLAS_DIR and
# BLAS_INC when set. Provides:
#   EMU_OBJ        build/emu/*.o, the runtime (cuemu.o) and the cuBLAS/cuBLASLt shim (cublas_emu.o)
#   EMU_TEST_BIN   build/tests/test_emu_* (tests/run_all.sh runs every build/tests/test_*)
#   EMU_CXX, EMU_CXXFLAGS, EMU_LDLIBS  for other emulator builds, e.g. of kernels/cuda:
#       $(EMU_CXX) $(EMU_CXXFLAGS) -x c++ -include emu/cuemu.h kernels.cu -x none $(EMU_OBJ) $(EMU_LDLIBS)
# The emulator needs only the CUDA headers (found next to nvcc) and g++, no GPU and no libcudart.
# Without nvcc/headers EMU_TEST_BIN is a phony target that says the tests are skipped.

BUILD ?= build
# this fragment may be included before the including Makefile's first target: keep its default goal
EMU_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)
EMU_NVCC := $(shell command -v nvcc 2>/dev/null)
EMU_CUDA_HOME := $(if $(EMU_NVCC),$(patsubst %/bin/nvcc,%,$(EMU_NVCC)))

ifneq ($(wildcard $(EMU_CUDA_HOME)/include/cuda_runtime.h),)

EMU_CXX      ?= g++
EMU_BLAS_INC := $(if $(BLAS_INC),-isystem $(BLAS_INC))
EMU_COMMA    := ,
EMU_BLAS_LIB := $(if $(BLAS_DIR),-L$(BLAS_DIR) -Wl$(EMU_COMMA)-rpath$(EMU_COMMA)$(BLAS_DIR)) -lopenblas
# -Wno-unknown-pragmas: `#pragma unroll` means nothing to g++
EMU_CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -pthread \
                -I$(EMU_CUDA_HOME)/include $(EMU_BLAS_INC) $(EMU_EXTRA_CXXFLAGS)
EMU_LDLIBS   := $(EMU_BLAS_LIB) -pthread -lm
EMU_SRC      := $(wildcard emu/*.cpp)
EMU_OBJ      := $(EMU_SRC:emu/%.cpp=$(BUILD)/emu/%.o)
EMU_HDR      := emu/cuemu.h kernels/cuda/portable.h
EMU_TESTS    := $(wildcard emu/test_*.cu)
EMU_TEST_BIN := $(EMU_TESTS:emu/test_%.cu=$(BUILD)/tests/test_emu_%)

$(BUILD)/emu/%.o: emu/%.cpp $(EMU_HDR)
	@mkdir -p $(dir $@)
	@echo "  CXX   $<"
	@$(EMU_CXX) $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@

# a test kernel file compiled as C++ against the emulator prelude, linked with the runtime
$(BUILD)/tests/test_emu_%: emu/test_%.cu $(EMU_OBJ) $(EMU_HDR) emu/test_helpers.h
	@mkdir -p $(dir $@) $(BUILD)/emu
	@echo "  EMU   $<"
	@$(EMU_CXX) $(EMU_CXXFLAGS) -MMD -MP -MF $(BUILD)/emu/$(notdir $@).d -MT $@ -x c++ -include emu/cuemu.h $< -x none \
	    $(EMU_OBJ) -o $@ $(EMU_LDLIBS)

# Dependency files (.d) in a build/ made before the emulator moved here from tests/emu still name the
# old paths; this empty rule lets such a build rebuild what they cover instead of stopping at
# "No rule to make target 'tests/emu/...'" (as -MP does for deleted headers).
tests/emu/%: ;

# The objects are prerequisites of pattern rules only. The including Makefile's bare `.SECONDARY:`
# keeps every intermediate; a `.SECONDARY: <list>` here would narrow that to this list (make honours
# the last form it reads), so a clean `make tests` would delete the test objects and rebuild them.
.PHONY: emu-tests
emu-tests: $(EMU_TEST_BIN)

else

EMU_OBJ      :=
EMU_TEST_BIN := emu-skipped
.PHONY: emu-tests emu-skipped
emu-tests emu-skipped:
	@echo "emulator tests skipped: nvcc / CUDA headers not found (emu/ needs the CUDA headers)"

endif

.DEFAULT_GOAL := $(EMU_SAVED_DEFAULT_GOAL)
