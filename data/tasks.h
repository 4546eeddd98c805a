// Synthetic state-tracking tasks, written as llm.c token shards: the model reads a stream of group
// elements and must say, after each one, the product of all of them so far. A recurrence that tracks
// the state exactly generalises to any length; one that learned shortcuts does not.
//
// Groups: the symmetric group S_d of the permutations of {0..d-1}. A permutation p is its image list
// (p[0], ..., p[d-1]); the elements are numbered 0..n-1 (n = d!) in lexicographic order of their image
// lists, so element 0 is the identity. Composition: (a∘b)(x) = a(b(x)), compose[a * n + b] = a∘b.
//   "parity"  S_2 = Z_2: elements 0 (identity) and 1 (the swap), a∘b = a xor b      (n = 2)
//   "s3"      S_3, the smallest non-abelian group                                   (n = 6)
//   "s5"      S_5, not solvable: tracking it is NC^1-complete                       (n = 120)
//
// A sequence of L elements is 2L+1 tokens:
//
//   [BOS, g1, s1, g2, s2, ..., gL, sL]     g_i uniform in the group, s_i = g1∘g2∘...∘g_i (s_i = s_{i-1}∘g_i)
//
// Token ids: BOS = 0, input element e -> 1 + e, state element e -> 1 + n + e; vocabulary 2n + 1
// (parity 5, s3 13, s5 241). The model reads g_i at position 2i-1 and predicts s_i there, the token at 2i.
//
// A shard (shards.h, uint16 tokens: magic 20240520, version 1) holds S rows of 2L+1 tokens back to back and one
// trailing BOS: S·(2L+1) + 1 tokens. The loader cuts windows of T+1 tokens at multiples of T, so at
// T = 2L+1 window k is exactly row k, with the next row's BOS as its last target. The rows are task_row's,
// drawn in order from one Random(seed) (TaskRows below): each a sequence of L elements; or, for a minimum length
// M < L, of a length drawn uniformly from M..L and padded with BOS to 2L+1 tokens (lengths mixed, every sequence
// still starting from the zero state at its row's start); or, packed, whole sequences of M..L elements back to
// back, so that each one after the first starts from the state the one before it left (the model's state is
// not reset inside a row: it must learn to start over at each BOS).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../model/random.h"

#define TASK_BOS 0

struct Group {
    std::string name;
    int order = 0;             // n, the number of elements
    int degree = 0;            // d: the elements are permutations of {0..d-1}
    std::vector<int> compose;  // [n * n]: compose[a * n + b] = a∘b
};

// "parity", "s3" or "s5", its table built by enumerating the permutations; false with err for any other name.
bool group_by_name(const char* name, Group& g, std::string& err);

// Token ids and sizes of a group of `order` elements.
inline int task_vocab(int order) { return 2 * order + 1; }
// The inverse of task_vocab, for a model that knows only its vocabulary: (vocab - 1) / 2, the largest order
// whose tokens all fit.
inline int task_order_of_vocab(int vocab) { return (vocab - 1) / 2; }
inline int task_input_token(int e) { return 1 + e; }
inline int task_state_token(int order, int e) { return 1 + order + e; }
inline bool task_is_input_token(int order, int token) { return token >= 1 && token <= order; }
inline bool task_is_state_token(int order, int token) { return token > order && token <= 2 * order; }
// The element an input or state token stands for; -1 for BOS or a token outside the vocabulary.
inline int task_token_element(int order, int token) {
    if (task_is_input_token(order, token)) return token - 1;
    return task_is_state_token(order, token) ? token - 1 - order : -1;
}
inline int task_sequence_tokens(int L) { return 2 * L + 1; }  // also the T to train and evaluate with
// The inverse of task_sequence_tokens: L for T = 2L+1 with L >= 1, else -1.
inline int task_length_of(int T) { return T >= 3 && T % 2 == 1 ? (T - 1) / 2 : -1; }
inline int64_t task_shard_tokens(int L, int64_t sequences) { return sequences * task_sequence_tokens(L) + 1; }

// Positions in a sequence, BOS at 0, for i = 1..L: g_i at 2i-1, where the model reads it and must predict s_i;
// s_i at 2i, the target of that position.
inline int task_input_position(int i) { return 2 * i - 1; }
inline int task_state_position(int i) { return 2 * i; }

// Checks a row of T+1 tokens as the loader cuts a task shard at T = 2L+1 (its last token is the next
// sequence's BOS): [BOS, g1, s1, ..., gL, sL, BOS] for a group of `order` elements. Returns the first
// position that breaks the layout, or -1 when none does.
int task_row_mismatch(const int* row, int T, int order);

// Appends one sequence of L elements (2L+1 tokens) drawn from rng to out.
void task_sequence(const Group& g, int L, Random& rng, std::vector<uint32_t>& out);

// How a shard's rows of 2L+1 tokens are filled.
struct TaskRows {
    int L = 64;           // the longest sequence's elements: a row is 2L+1 tokens
    int min_length = 64;  // the shortest's: lengths are drawn uniformly from min_length..L (none drawn when equal)
    bool pack = false;    // false: one sequence a row; true: sequences back to back while one of min_length fits
};

// Appends one row (2L+1 tokens) drawn from rng to out: a sequence (its length drawn first, then cut to the room
// left in the row, and not written if that leaves it shorter than min_length), more of them while packing, then
// BOS up to 2L+1 tokens.
void task_row(const Group& g, const TaskRows& rows, Random& rng, std::vector<uint32_t>& out);

// Writes a shard of `count` rows (task_row) drawn from Random(seed), through path + ".tmp" renamed into place.
// False with err (naming the file) when L or count is < 1, min_length is not in 1..L, the count does not fit the
// header's int32, or a write fails; nothing is left at path or path.tmp then.
bool task_write_shard(const char* path, const Group& g, const TaskRows& rows, int64_t count, uint64_t seed,
                      std::string& err);
