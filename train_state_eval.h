// train_m2rnn --eval 1: a trained model's accuracy on a state-tracking task shard (data/tasks.h), in place of
// training.
//
// Why a file of its own, beside train_m2rnn.cu rather than in model/: it is the trainer's second mode — its
// flags (-e -j -t -b -m), its messages and its output line are train_m2rnn's — so it belongs with the driver,
// but it is a loop of its own (read, check, forward, score) that has nothing to share with training's; apart,
// train_m2rnn.cu stays a driver. The task's layout (which token is where, which position predicts which) is
// data/tasks.h's and is not restated here.
//
// A row of a task shard at T = 2L+1 is [BOS, g1, s1, ..., gL, sL] and the next sequence's BOS: the model reads
// g_i at task_input_position(i) and must predict s_i, the token at task_state_position(i). The line printed is
// the argmax accuracy (%) of every s_i, of whole sequences, and by bucket of i (1-64, 65-128, 129-256, ...):
//
//   eval L <L> sequences <n> state_accuracy <%> sequence_accuracy <%> buckets 1-64:<%> 65-128:<%> ...
//
// and a second line on where the wrong states are: how many, in how many sequences, the bucket of each failing
// sequence's first wrong state (a count per bucket), the % of the states after a sequence's first wrong one that
// are wrong too (near 100: the state is lost for good; near 0: single slips of the readout, or a state regained),
// and the % of the wrong predictions that repeat the previous state (the input ignored):
//
//   eval_errors wrong_states <n> failing_sequences <n> first_wrong 1-64:<n> ... wrong_after_first <%>
//       repeat_previous <%>
//
// Two calls, so that everything about the input is checked before the trainer touches the device: open (the
// shard and its first batch), then run (on the trainer's Engine: the GPU's model or the CPU's). Both return false
// with a message for the user.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shards.h"
#include "model/config.h"
#include "model/engine.h"

struct StateEval {
    std::string pattern;                 // the -j shard(s), for messages
    int B = 0, T = 0, L = 0, order = 0;  // rows per batch, T = 2L+1, the group order of the model's vocabulary
    DataLoader shard;
    std::vector<int> tokens;             // one batch: B rows of T+1
};

// Checks that T is 2L+1, opens `pattern` at T with the model's vocabulary and checks that its first batch is laid
// out as a task's; the loader is left at the start.
bool state_eval_open(StateEval& e, const char* pattern, int B, int T, int vocab, uint64_t seed, std::string& err);

// `model` (of config c, sized for e.B rows of e.T) over `batches` batches from the start of the shard, every row
// checked again; prints the line above, then closes the loader.
bool state_eval_run(StateEval& e, Engine& model, const Config& c, int batches, std::string& err);
