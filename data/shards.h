// Token shards in llm.c's format, so its prepared datasets (tinyshakespeare, TinyStories, FineWeb)
// load unchanged. A shard is a header of 256 int32, then the tokens:
//
//   header[0] magic     20240520 -> uint16 tokens (header[1] version 1)
//                       20240801 -> uint32 tokens (header[1] version 7)
//   header[2] ntok      number of tokens after the header
//
// A glob pattern selects the shards, taken in name order. A batch is B rows of T+1 consecutive tokens
// of one shard (inputs row[0..T-1], targets row[1..T]). A row is a "window": window w of a shard
// starts at token w*T, so consecutive windows overlap by one token, as in llm.c, and a shard of n
// tokens holds (n-1)/T windows; a tail shorter than a window is never read.
//
// Order: each epoch visits the shards in a shuffled order and, within a shard, its windows in a
// shuffled order; both are drawn from (seed, epoch) only, so the same seed gives the same batches on
// every machine, and a position (epoch, shard, window) restores the stream exactly. Batches run on
// across shard and epoch boundaries. Several GPUs read the same stream and split its batches
// (model/distributed.h, batch_owner), so the loader itself knows of one process only.
//
// Every problem (wrong magic or version, short file, count mismatch, a token >= vocab, an empty
// match) is reported as false plus a message naming the file and the problem. Headers, sizes and the
// tokens of all shards are checked at open.
//
// Writing (the tokenize and make_tasks tools): a ShardWriter appends tokens to <path>.tmp after a
// placeholder header; closing writes the header, now that the count is known, and renames the file
// into place, so no reader ever sees a partial shard under its name.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#define SHARD_HEADER_INTS 256
#define SHARD_MAGIC_U16 20240520
#define SHARD_VERSION_U16 1
#define SHARD_MAGIC_U32 20240801
#define SHARD_VERSION_U32 7

struct DataLoader {
    // Fixed at open.
    std::vector<std::string> files;   // every matching shard, sorted by name
    std::vector<int64_t> file_tokens; // token count of each file (its header, checked against its size)
    std::vector<int> file_version;    // SHARD_VERSION_U16 or SHARD_VERSION_U32
    int B = 0, T = 0, vocab = 0;
    uint64_t seed = 0;

    // Position: the next row is the `window`-th window (of window_order) of the `shard`-th file of
    // shard_order, in epoch `epoch`. Kept pointing at a window that exists, so it is also the state to save.
    int64_t epoch = 0, shard = 0, window = 0;
    std::vector<int64_t> shard_order; // file index at each shard position of this epoch

    // The shard in memory and its window order for this epoch.
    int64_t loaded_file = -1;                   // whose tokens are in `tokens`; -1 = none
    int64_t order_file = -1, order_epoch = -1;  // what window_order was drawn for
    std::vector<int32_t> tokens;
    std::vector<int64_t> window_order;          // a shuffle of 0 .. (ntok-1)/T - 1
};

struct DataLoaderState { int64_t epoch, shard, window; };

struct ShardWriter {
    std::string path, tmp;
    FILE* f = nullptr;
    bool u16 = true;     // uint16 tokens (magic 20240520) or uint32 (magic 20240801)
    int64_t count = 0;   // tokens appended
};

// Creates <path>.tmp with a placeholder header. False with `err` naming the file.
bool shard_writer_open(ShardWriter& w, const std::string& path, bool u16, std::string& err);
bool shard_writer_append(ShardWriter& w, const uint32_t* tokens, size_t n, std::string& err);
// Writes the header and renames the file into place; on failure the temporary file is removed.
bool shard_writer_close(ShardWriter& w, std::string& err);
// Abandons an open shard: the temporary file goes.
void shard_writer_discard(ShardWriter& w);

// Reads and checks one shard's header: magic/version pair, and the token count against the file size.
// version: SHARD_VERSION_U16 or SHARD_VERSION_U32; ntok: the number of tokens.
bool shard_read_header(const char* path, int& version, int64_t& ntok, std::string& err);

// Opens every file matching `pattern` (glob), checks each header and size and every token now (one read
// of the whole set), and reads the first shard. B rows of T+1 tokens per batch; tokens must be < vocab.
// seed fixes the order of everything.
bool dataloader_open(DataLoader& dl, const char* pattern, int B, int T, int vocab, uint64_t seed, std::string& err);

// Fills tokens[B*(T+1)] with the next batch, row after row. False with `err` when a shard read on
// the way is bad.
bool dataloader_next(DataLoader& dl, int* tokens, std::string& err);

// The position before the next batch, for a checkpoint. Restore puts a loader opened with the same
// files, T and seed back there, so the following rows are the ones that followed (B may differ: the
// position counts windows, not batches), and reads the shard it points into.
DataLoaderState dataloader_state(const DataLoader& dl);
bool dataloader_restore(DataLoader& dl, const DataLoaderState& s, std::string& err);

int64_t dataloader_num_tokens(const DataLoader& dl);  // total over all shards, tails included
void dataloader_close(DataLoader& dl);
