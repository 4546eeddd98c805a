// Tests of the token-shard loader (data/shards.h).
#pragma once
#include "check.h"

void test_shard_loader(TestReport& r);
