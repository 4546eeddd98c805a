// Generation one token at a time (model/gpu_decoder) against the CPU reference's full forward.
#pragma once
#include "check.h"

void test_decoder(TestReport& r);
