// GPU checks of the small fused kernels (encoder, rmsnorm with the fused residual add, swiglu, crossentropy)
// against the CPU reference steps.
#pragma once
#include "check.h"

void test_small_kernels(TestReport& r);
