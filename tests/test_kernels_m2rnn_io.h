// GPU checks of the M²RNN input kernels (conv + silu + forget gate), the output gate kernels (D skip + silu(g)
// + gnorm) and the optimizer (global gradient norm, AdamW) against the CPU reference steps.
#pragma once
#include "check.h"

void test_m2rnn_io_kernels(TestReport& r);
