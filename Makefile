# m2rnn.cu build. Targets: train_m2rnn, test_m2rnn, test (build and run the checks), clean.
# nvcc comes from CUDA_HOME (default /usr/local/cuda); code for Hopper (sm_90a) and Ampere (sm_80).

CUDA_HOME ?= /usr/local/cuda
NVCC      := $(CUDA_HOME)/bin/nvcc
CXX       ?= g++
GENCODE   := -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80
WARN      := -Wall -Wextra
CXXFLAGS  := -std=c++17 -O2 $(WARN)
NVCCFLAGS := -std=c++17 -O2 $(GENCODE) -Xcompiler "$(WARN)"
LDLIBS    := -lcudart

BUILD     := build
HOST_SRCS := model/config.cpp model/parameters.cpp model/reference.cpp data/shards.cpp
TEST_SRCS := tests/test_reference.cpp tests/test_shards.cpp
HOST_OBJS := $(HOST_SRCS:%.cpp=$(BUILD)/%.o)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)

.PHONY: all test clean
all: train_m2rnn test_m2rnn

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

train_m2rnn: train_m2rnn.cu $(HOST_OBJS)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LDLIBS)

test_m2rnn: test_m2rnn.cu $(HOST_OBJS) $(TEST_OBJS)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LDLIBS)

test: test_m2rnn
	./test_m2rnn

clean:
	rm -rf $(BUILD) train_m2rnn test_m2rnn

-include $(HOST_OBJS:.o=.d) $(TEST_OBJS:.o=.d)
