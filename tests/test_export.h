// Models that leave the trainer: the safetensors round trip, the bf16 export, the python checker, and the windows
// scripts/m2rnn_torch.py evaluates.
#pragma once
#include "check.h"

void test_export(TestReport& r);
