#pragma once
#include "check.h"

// The host side of several GPUs (model/distributed.h), no GPU needed: rank and world from flags and launcher
// variables, the device choice, the split of a step's micro-batches over processes against one process reading
// them all (with the real data loader), ZeRO-1's shards and the AdamW runs cut by them, the checkpoint's
// gather/scatter layout across process counts, the flags hash, the NCCL id file, and scripts/launch.sh.
void test_distributed(TestReport& r);
