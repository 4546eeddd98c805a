// The whole GPU model against the CPU reference (gradients, clipping, five AdamW steps).
#pragma once
#include "check.h"

void test_gpu_model(TestReport& r);
