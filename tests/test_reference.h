// Checks of the CPU reference (golden vectors, finite differences, state-gradient clipping, training).
#pragma once
#include "check.h"

void test_reference(TestReport& r);
