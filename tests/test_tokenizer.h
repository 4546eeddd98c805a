#pragma once
#include "check.h"

// The tokenizer against ids made by tiktoken itself (tests/tokenizer/fixtures.tsv) for gpt2 and
// cl100k_base, decode round trips, chunked streaming against one-piece encoding, and llm.c's
// tinyshakespeare shards reproduced byte for byte from data/tinyshakespeare/input.txt.
void test_tokenizer(TestReport& r);
