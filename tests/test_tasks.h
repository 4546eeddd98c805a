#pragma once
#include "check.h"

// The synthetic state-tracking tasks (data/tasks.h): the group tables against permutations composed
// directly, the group axioms, the sequence layout and its states, and the shards they make.
void test_tasks(TestReport& r);
