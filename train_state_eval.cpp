// train_m2rnn --eval 1 (train_state_eval.h): check the rows, run the model, score the predictions of the states.
#include "train_state_eval.h"

#include <algorithm>
#include <cstdio>

#include "data/tasks.h"

// True when every row of the batch in e.tokens is laid out as a task's at e.T; else false with a message that
// shows the first offending token and the layout expected.
static bool rows_are_task_rows(const StateEval& e, std::string& err) {
    for (int b = 0; b < e.B; b++) {
        const int* row = e.tokens.data() + (size_t)b * (e.T + 1);
        const int t = task_row_mismatch(row, e.T, e.order);
        if (t < 0) continue;
        const int n = e.order;
        err = "--eval 1: " + e.pattern + " is not a task shard of " + std::to_string(n) +
              "-element groups laid out for -t " + std::to_string(e.T) + " (token " + std::to_string(row[t]) +
              " at position " + std::to_string(t) + " of a row; expected [BOS " + std::to_string(TASK_BOS) + ", g " +
              std::to_string(task_input_token(0)) + ".." + std::to_string(task_input_token(n - 1)) + ", s " +
              std::to_string(task_state_token(n, 0)) + ".." + std::to_string(task_state_token(n, n - 1)) + ", …])";
        return false;
    }
    return true;
}

bool state_eval_open(StateEval& e, const char* pattern, int B, int T, int vocab, uint64_t seed, std::string& err) {
    e.pattern = pattern;
    e.B = B;
    e.T = T;
    e.L = task_length_of(T);
    e.order = task_order_of_vocab(vocab);
    if (e.L < 1) {
        err = "--eval 1: -t must be 2L+1 for a task of L group elements, not " + std::to_string(T);
        return false;
    }
    if (!dataloader_open(e.shard, pattern, B, T, vocab, seed, err)) {
        err = "-j: " + err;
        return false;
    }
    e.tokens.resize((size_t)B * (T + 1));
    return dataloader_next(e.shard, e.tokens.data(), err) && rows_are_task_rows(e, err) &&
           dataloader_restore(e.shard, {0, 0, 0}, err);
}

// Right and counted predictions of the s_i by bucket of i, and whole sequences right.
struct Score {
    std::vector<int> bucket_end;  // the last i of each bucket: 64, 128, 256, ..., L
    std::vector<long long> right, total;
    long long sequences = 0, sequences_right = 0;
    // where the wrong states are: the bucket of each failing sequence's first wrong state; the states after it and
    // how many of them are wrong too; wrong predictions and how many of them repeat the previous state
    std::vector<long long> first_wrong;
    long long after_first = 0, wrong_after_first = 0, wrong = 0, repeats = 0;
};

static Score score_init(int L) {
    Score s;
    for (int end = 64; ; end *= 2) {
        s.bucket_end.push_back(std::min(end, L));
        if (end >= L) break;
    }
    s.right.assign(s.bucket_end.size(), 0);
    s.total.assign(s.bucket_end.size(), 0);
    s.first_wrong.assign(s.bucket_end.size(), 0);
    return s;
}

// Scores the batch in e.tokens from its logits (B, T, Vp): the prediction of s_i is the argmax over the vocabulary
// at the position that reads g_i.
static void score_batch(Score& s, const StateEval& e, const float* logits, int Vp, int vocab) {
    for (int b = 0; b < e.B; b++) {
        const int* row = e.tokens.data() + (size_t)b * (e.T + 1);
        bool all_right = true;
        for (int i = 1, bucket = 0; i <= e.L; i++) {
            if (i > s.bucket_end[bucket]) bucket++;
            const float* z = logits + ((size_t)b * e.T + task_input_position(i)) * Vp;
            const int predicted = (int)(std::max_element(z, z + vocab) - z), target = row[task_state_position(i)];
            const bool right = predicted == target;
            s.right[bucket] += right;
            s.total[bucket]++;
            if (!all_right) {
                s.after_first++;
                s.wrong_after_first += !right;
            } else if (!right) {
                s.first_wrong[bucket]++;
            }
            if (!right) {
                s.wrong++;
                s.repeats += i > 1 && predicted == row[task_state_position(i - 1)];
            }
            all_right = all_right && right;
        }
        s.sequences++;
        s.sequences_right += all_right;
    }
}

static void print_score(const Score& s, int L) {
    long long all = 0, all_right = 0;
    std::string buckets;
    for (size_t k = 0; k < s.bucket_end.size(); k++) {
        all += s.total[k];
        all_right += s.right[k];
        char buf[64];
        snprintf(buf, sizeof(buf), " %d-%d:%.2f", k == 0 ? 1 : s.bucket_end[k - 1] + 1, s.bucket_end[k],
                 100.0 * s.right[k] / s.total[k]);
        buckets += buf;
    }
    printf("eval L %d sequences %lld state_accuracy %.2f sequence_accuracy %.2f buckets%s\n", L, s.sequences,
           100.0 * all_right / all, 100.0 * s.sequences_right / s.sequences, buckets.c_str());
    std::string first;
    for (size_t k = 0; k < s.bucket_end.size(); k++)
        first += " " + std::to_string(k == 0 ? 1 : s.bucket_end[k - 1] + 1) + "-" + std::to_string(s.bucket_end[k]) +
                 ":" + std::to_string(s.first_wrong[k]);
    auto percent = [](long long part, long long whole) { return whole ? 100.0 * part / whole : 0.0; };
    printf("eval_errors wrong_states %lld failing_sequences %lld first_wrong%s wrong_after_first %.2f "
           "repeat_previous %.2f\n", s.wrong, s.sequences - s.sequences_right, first.c_str(),
           percent(s.wrong_after_first, s.after_first), percent(s.repeats, s.wrong));
}

bool state_eval_run(StateEval& e, Engine& model, const Config& c, int batches, std::string& err) {
    std::vector<float> logits((size_t)e.B * e.T * c.Vp);
    Score s = score_init(e.L);
    for (int batch = 0; batch < batches; batch++) {
        if (!dataloader_next(e.shard, e.tokens.data(), err) || !rows_are_task_rows(e, err)) return false;
        model.forward(e.tokens.data(), 0, {});  // every M²RNN scan from the zero state
        model.logits(logits.data());
        score_batch(s, e, logits.data(), c.Vp, c.vocab);
    }
    print_score(s, e.L);
    dataloader_close(e.shard);
    return true;
}
