# m2rnn.cu build. Targets: train_m2rnn, test_m2rnn, test (build and run the checks), bench (whole-model
# throughput, needs a GPU), tokenize (host only: text to shards), make_tasks (host only: synthetic
# state-tracking shards), m2rnn_export (host only: checkpoints to safetensors and back), clean.
#   make PRECISION=FP32 ...   fp32 activations and GEMMs (TF32 off), for tight checks: builds *_fp32 binaries
#   make SM=80 ...            code for Ampere (sm_80) instead of Hopper (sm_90a): builds *_sm80 binaries
# nvcc comes from CUDA_HOME (default /usr/local/cuda); NCCL's libnccl.so from NCCL_HOME/lib (default CUDA_HOME).

CUDA_HOME ?= /usr/local/cuda
NCCL_HOME ?= $(CUDA_HOME)
NVCC      := $(CUDA_HOME)/bin/nvcc
CXX       ?= g++
PRECISION ?= BF16
SM        ?= 90a
WARN      := -Wall -Wextra
CXXFLAGS  := -std=c++17 -O2 $(WARN)
NVCCFLAGS := -std=c++17 -O2 -gencode arch=compute_$(SM),code=sm_$(SM) -Xcompiler "$(WARN)" -isystem $(NCCL_HOME)/include
LDLIBS    := -L$(CUDA_HOME)/lib -Xlinker -rpath,$(CUDA_HOME)/lib -L$(NCCL_HOME)/lib -Xlinker -rpath,$(NCCL_HOME)/lib \
             -lnccl -lcublasLt -lcudart

SUFFIX    :=
ifeq ($(PRECISION),FP32)
  NVCCFLAGS += -DENABLE_FP32
  SUFFIX    := _fp32
else ifneq ($(PRECISION),BF16)
  $(error PRECISION must be BF16 or FP32, not '$(PRECISION)')
endif
ifneq ($(SM),90a)
  SUFFIX    := $(SUFFIX)_sm$(SM)
endif

BUILD     := build
GPU_BUILD := $(BUILD)/gpu$(SUFFIX)
# Each program links what it uses and no more (`nm -u` on its objects says what that is), host (.cpp) and GPU
# (.cu) sources in separate lists. HOST_SRCS: every host source of the model and the data; GPU_SRCS: the GPU
# model, in every GPU program.
HOST_SRCS := model/config.cpp model/parameters.cpp model/reference.cpp model/parallel.cpp model/cpu_model.cpp \
             model/checkpoint.cpp model/json.cpp model/safetensors.cpp data/shards.cpp data/tokenizer.cpp \
             data/pretokenize.cpp data/utf8.cpp data/prepare.cpp data/tasks.cpp
GPU_SRCS  := model/gpu_model.cu model/gpu_decoder.cu model/distributed.cu
# train_m2rnn: config, parameter table, checkpoints and safetensors, the CPU model (the reference in float, its
# threads), the loader, the tokenizer (samples), the tasks and their scoring (--eval 1)
TRAIN_SRCS := model/config.cpp model/parameters.cpp model/checkpoint.cpp model/json.cpp model/safetensors.cpp \
              model/reference.cpp model/parallel.cpp model/cpu_model.cpp data/shards.cpp data/tokenizer.cpp \
              data/pretokenize.cpp data/tasks.cpp train_state_eval.cpp
TRAIN_GPU_SRCS := $(GPU_SRCS)
# test_m2rnn: HOST_SRCS and GPU_SRCS, and the checks
TEST_SRCS := tests/test_reference.cpp tests/test_shards.cpp tests/test_checkpoint.cpp tests/test_export.cpp \
             tests/test_tokenizer.cpp tests/test_tasks.cpp tests/test_distributed.cpp
GPU_TESTS := tests/test_gpu_model.cu tests/test_decoder.cu tests/test_kernels_small.cu tests/test_kernels_m2rnn_io.cu \
             tests/test_kernels_m2rnn_scan.cu tests/test_kernels_attention.cu
# the host-only tools
TOKENIZE_SRCS := data/tokenize.cpp data/prepare.cpp data/tokenizer.cpp data/pretokenize.cpp data/utf8.cpp \
                 data/shards.cpp
MAKE_TASKS_SRCS := data/make_tasks.cpp data/tasks.cpp data/shards.cpp
EXPORT_SRCS := model/export.cpp model/safetensors.cpp model/json.cpp model/checkpoint.cpp model/parameters.cpp \
               model/parallel.cpp model/config.cpp
HOST_OBJS := $(HOST_SRCS:%.cpp=$(BUILD)/%.o)
GPU_OBJS  := $(GPU_SRCS:%.cu=$(GPU_BUILD)/%.o)
TRAIN_OBJS := $(TRAIN_SRCS:%.cpp=$(BUILD)/%.o)
TRAIN_GPU_OBJS := $(TRAIN_GPU_SRCS:%.cu=$(GPU_BUILD)/%.o)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)
GPU_TEST_OBJS := $(GPU_TESTS:%.cu=$(GPU_BUILD)/%.o)
TOKENIZE_OBJS := $(TOKENIZE_SRCS:%.cpp=$(BUILD)/%.o)
MAKE_TASKS_OBJS := $(MAKE_TASKS_SRCS:%.cpp=$(BUILD)/%.o)
EXPORT_OBJS := $(EXPORT_SRCS:%.cpp=$(BUILD)/%.o)

TRAIN := train_m2rnn$(SUFFIX)
TEST  := test_m2rnn$(SUFFIX)

.PHONY: all test bench clean
all: $(TRAIN) $(TEST)
ifneq ($(SUFFIX),)
# `make test_m2rnn PRECISION=FP32` builds test_m2rnn_fp32
.PHONY: train_m2rnn test_m2rnn
train_m2rnn: $(TRAIN)
test_m2rnn: $(TEST)
endif

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

# The reference's loops are the CPU trainer's hot loops: -O3 vectorises them (-O2's cost model leaves them scalar)
# for the instructions of this machine's CPU; CPU_ARCH names another (make CPU_ARCH=x86-64-v2 for a portable build).
CPU_ARCH ?= native
$(BUILD)/model/reference.o: CXXFLAGS += -O3 -march=$(CPU_ARCH)

# the host checks of model/distributed.h, which declares NCCL's and CUDA's types
$(BUILD)/tests/test_distributed.o: CXXFLAGS += -isystem $(CUDA_HOME)/include -isystem $(NCCL_HOME)/include

$(GPU_BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(TRAIN): train_m2rnn.cu $(TRAIN_OBJS) $(TRAIN_GPU_OBJS)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LDLIBS)

$(TEST): test_m2rnn.cu $(HOST_OBJS) $(TEST_OBJS) $(GPU_OBJS) $(GPU_TEST_OBJS)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LDLIBS)

tokenize: $(TOKENIZE_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ -pthread

make_tasks: $(MAKE_TASKS_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^

m2rnn_export: $(EXPORT_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ -pthread

# the bad-input table of train_m2rnn and the tools (scripts/check_bad_inputs.sh), the trainer end to end on the CPU
# (scripts/check_cpu_trainer.sh), its faults (scripts/check_faults.sh: signals, kills, a full disk, spikes), then the test binary (which runs m2rnn_export);
# the GPU tracer is built too, so that a change that breaks its build fails here
test: $(TEST) $(TRAIN) tokenize make_tasks m2rnn_export $(BUILD)/libgpu_trace.so
	@bash scripts/check_bad_inputs.sh ./$(TRAIN) > $(BUILD)/bad_inputs$(SUFFIX).md || { cat $(BUILD)/bad_inputs$(SUFFIX).md; exit 1; }
	@echo "$$(tail -n 1 $(BUILD)/bad_inputs$(SUFFIX).md) (./$(TRAIN), table in $(BUILD)/bad_inputs$(SUFFIX).md)"
	@bash scripts/check_cpu_trainer.sh ./$(TRAIN)
	@bash scripts/check_faults.sh ./$(TRAIN)
	./$(TEST)

# a GPU timeline of any CUDA program, loaded through the driver's injection hook (scripts/gpu_trace.py reads it);
# CUPTI is the toolkit's (lib, lib64 or extras/CUPTI/lib64 by install), and no program links it
$(BUILD)/libgpu_trace.so: scripts/gpu_trace.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -shared -fPIC -isystem $(CUDA_HOME)/include -o $@ $< -L$(CUDA_HOME)/lib \
	    -Wl,-rpath,$(CUDA_HOME)/lib -Wl,-rpath,$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/extras/CUPTI/lib64 -lcupti

bench_%$(SUFFIX): scripts/bench_%.cu scripts/bench_common.h $(wildcard kernels/*.cuh model/*.h)
	$(NVCC) $(NVCCFLAGS) -o $@ $< $(LDLIBS)

# the M²RNN scan alone, attention alone, then the whole model, its GPU busy time traced (all need a GPU)
bench: bench_m2rnn_scan$(SUFFIX) bench_attention$(SUFFIX) $(TRAIN) $(BUILD)/libgpu_trace.so
	./bench_m2rnn_scan$(SUFFIX)
	./bench_attention$(SUFFIX)
	TRAIN=./$(TRAIN) scripts/bench_model.sh

clean:
	rm -rf $(BUILD) train_m2rnn test_m2rnn train_m2rnn_* test_m2rnn_* bench_m2rnn_scan* bench_attention* tokenize make_tasks m2rnn_export

-include $(patsubst %.o,%.d,$(sort $(HOST_OBJS) $(TEST_OBJS) $(TOKENIZE_OBJS) $(MAKE_TASKS_OBJS) $(EXPORT_OBJS) \
         $(TRAIN_GPU_OBJS) $(GPU_TEST_OBJS)))
