// GPU checks of kernels/attention.cuh (RoPE and causal softmax attention, forward and backward) against the CPU
// reference steps.
#pragma once
#include "check.h"

void test_attention_kernels(TestReport& r);
