// Checkpoint files: round trip, latest, damaged files.
#pragma once
#include "check.h"

void test_checkpoint(TestReport& r);
