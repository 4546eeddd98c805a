// Several GPUs: one process per GPU, data parallel, NCCL for every collective, no MPI library.
//
// Start-up. A process learns who it is from flags, which win, or from its launcher's environment
// (distributed_resolve): RANK / WORLD_SIZE / LOCAL_RANK (scripts/launch.sh, torchrun), OMPI_COMM_WORLD_RANK / _SIZE /
// _LOCAL_RANK (Open MPI's mpirun), SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (srun). It runs on GPU `local_rank`
// of those it sees, or on the only one when the launcher narrowed CUDA_VISIBLE_DEVICES (distributed_device). Rank 0
// writes NCCL's unique id into the --nccl-id file (a temporary name, then a rename, so no reader sees part of it);
// the others poll for the file; all join one communicator, and rank 0 then removes the file.
// One process without --nccl-id makes no NCCL call at all: every collective below is then the identity, so a
// single GPU runs as it always did. One process with --nccl-id builds a communicator of one rank: the whole
// multi-GPU path, collectives included, on one GPU.
//
// The global batch. A step is accum·world micro-batches that every process reads in the same order, the order in
// which one process with world× the accumulation reads them. Process r computes the r-th run of `accum`
// consecutive ones (batch_owner) and skips the rest, so the shares are disjoint, their union is the one-GPU step,
// and the data loader stands at the same position in every process and in a one-GPU run: checkpoints restore on
// any number of GPUs. Each process scales its loss gradient by 1/(accum·world), so the sum over processes is the
// gradient of the global mean loss. Validation is sharded the same way (batch_owner over the -m batches) and its
// loss summed; only rank 0 prints, writes train.log and writes checkpoints.
//
// Gradients are reduced by one collective after the last micro-batch's backward, neither bucketed nor overlapped
// with it. Chosen without measuring: over NVLink a ring all-reduce of d12-hybrid's 0.66 GB of fp32 gradients
// should take a few ms against a step of ~100 ms or more, and one call leaves the backward untouched.
//
// ZeRO-1 (--zero 1). The parameter and gradient arenas are padded to world·shard elements (shard_layout) and
// process r owns elements [r·shard, (r+1)·shard). After the backward: a reduce-scatter of the gradients (each
// process receives the sum of its shard), the squared norm of the shard summed over processes into the global
// norm, AdamW on the owned shard only (its moments are allocated for the shard alone: that is the saving), then
// an all-gather of the fp32 master parameters. Without it: an all-reduce of the gradients, and every process
// runs the same AdamW over the whole arena.
//
// Failure. A collective waits for every rank, so a rank that died would hang the others. The communicator is
// therefore non-blocking (ncclConfig_t blocking = 0) rather than blocking with a polled cudaEvent: a blocking
// communicator can block the host inside NCCL itself (ncclCommInitRank, and the first collective, which connects
// the peers lazily) where no deadline reaches. Here no NCCL call blocks: each returns at once, possibly
// ncclInProgress, and is followed by a wait that polls ncclCommGetAsyncError until NCCL has queued the operation,
// then a CUDA event until the stream has run it, against a deadline of --nccl-timeout seconds. On an NCCL error or
// at the deadline the process prints "rank R: collective X did not complete within S s (another rank died?)" (or
// the error), aborts the communicator (ncclCommAbort, itself bounded by an alarm) and exits 1. No host call that
// could block (a synchronisation, a copy to pageable memory) is issued while a collective may still be running.
// Rank 0 alone writes checkpoints, which can take minutes: the wait that follows allows CHECKPOINT_WAIT_S.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_runtime.h>
#include <nccl.h>

// The longest the other ranks wait for rank 0 to write a checkpoint (when --nccl-timeout is shorter).
static const double CHECKPOINT_WAIT_S = 600;

// Who this process is among how many.
struct DistributedSetup {
    int rank = 0, world = 1, local_rank = 0;
    std::string world_from;  // where the world size came from, for messages ("--world", "SLURM_NTASKS", "default")
};

// Fills `s` from the flags (-1 = not given) and, for each value not given, from the first launcher variable set
// (RANK, then OMPI_COMM_WORLD_RANK, then SLURM_PROCID; likewise for the world size and the local rank); the
// defaults are rank 0 of world 1, local rank 0. False with `err` when a variable is not an integer or the values
// do not fit (world < 1, rank outside [0, world), local rank < 0).
bool distributed_resolve(int rank_flag, int world_flag, int local_rank_flag, DistributedSetup& s, std::string& err);

// The CUDA device of a process with this local rank that sees `visible` devices: the only one, or device
// local_rank; -1 when local_rank is not below `visible` (> 1).
int distributed_device(int local_rank, int visible);

// The process that computes batch i of `batches` split over `world` processes: contiguous runs whose lengths
// differ by at most one (exactly batches/world each when world divides batches).
int batch_owner(int i, int batches, int world);

// ZeRO-1's partition of an arena of `total` elements over `shards` processes: shard r is elements
// [r·shard_numel, (r+1)·shard_numel) of an arena padded to padded_total = shards·shard_numel elements.
// shard_numel is a multiple of 64 (every shard starts 256-byte aligned for fp32); with shards = 1 the shard is
// the whole, unpadded arena. The last shards hold only padding when total is small.
struct ShardLayout {
    size_t shard_numel, padded_total;
};
ShardLayout shard_layout(size_t total, int shards);

// The part of elements [offset, offset + numel) that lies in shard `shard` of shard_numel elements each
// (numel 0 when none does).
struct IndexRange {
    size_t offset, numel;
};
IndexRange range_in_shard(size_t offset, size_t numel, size_t shard_numel, int shard);

// A hash of the command line without --rank and --local-rank and their values: every process of a run must get
// the same flags (distributed_check_same compares it).
uint64_t distributed_flags_hash(int argc, char** argv);

// The --nccl-id file: int32 magic 20261125, int32 world size, then the 128 bytes of the ncclUniqueId.
// A path fit for it: its directory exists (and, for rank 0, which writes it, is writable). Host only.
bool distributed_check_id_path(const std::string& path, int rank, std::string& err);
// Writes <path>.tmp, then renames it to path.
bool distributed_write_id(const std::string& path, const ncclUniqueId& id, int world, std::string& err);
// Polls for the file up to `seconds`; false with `err` when it does not appear, is not an id file, or was
// written for another world size.
bool distributed_read_id(const std::string& path, int world, double seconds, ncclUniqueId& id, std::string& err);

struct Distributed {
    int rank = 0, world = 1, local_rank = 0;
    bool zero = false;               // ZeRO-1: the optimizer state is sharded (model/gpu_model.h)
    double timeout_s = 30;           // --nccl-timeout: the longest a collective may wait
    ncclComm_t comm = nullptr;       // null: one process without NCCL, every collective the identity
    cudaStream_t stream = nullptr;   // runs the collectives on host values (distributed_sum, _check_same)
    cudaEvent_t done = nullptr;      // recorded after each collective and polled against the deadline
    void* scratch = nullptr;         // device: the 16 bytes those collectives reduce
};

// Joins the communicator when `id_path` is given (world 1 without it: no NCCL). Call with the process's GPU
// current. Exits with a message when the id file does not come or the ranks do not all join within timeout_s.
void distributed_init(Distributed& d, const DistributedSetup& s, const std::string& id_path, double timeout_s,
                      bool zero);
void distributed_free(Distributed& d);

// In-place collectives on device fp32 data, queued on `stream` after the work already there; each returns when
// the stream has run it (and exits with a message naming `what` on an error or at the deadline).
//   all_reduce_sum:     data[0, n) = Σ over processes
//   reduce_scatter_sum: data holds world·shard_numel elements; this process's shard
//                       data[rank·shard_numel, (rank+1)·shard_numel) becomes the sum over processes
//   all_gather:         every process's shard of data is copied into all the others' data
void distributed_all_reduce_sum(Distributed& d, float* data, size_t n, cudaStream_t stream, const char* what);
void distributed_reduce_scatter_sum(Distributed& d, float* data, size_t shard_numel, cudaStream_t stream,
                                    const char* what);
void distributed_all_gather(Distributed& d, float* data, size_t shard_numel, cudaStream_t stream, const char* what);

// The sum of a host value over processes, waiting at most `seconds` for the others; also a barrier.
double distributed_sum(Distributed& d, double x, double seconds, const char* what);
// Exits on every process, with a message naming `what`, unless all of them passed the same value.
void distributed_check_same(Distributed& d, uint64_t value, const char* what);
