#include "distributed.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "../kernels/common.cuh"

static const int32_t ID_FILE_MAGIC = 20261125;
static const unsigned ABORT_WAIT_S = 10;  // seconds ncclCommAbort gets before the process exits regardless

// ---- who this process is

// The launchers' variables for one value, in the order they are consulted.
static const char* const RANK_VARS[] = {"RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"};
static const char* const WORLD_VARS[] = {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"};
static const char* const LOCAL_RANK_VARS[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"};

// value = the flag when given (>= 0), else the first of `vars` that is set, else `fallback`; `from` names which.
static bool resolve_value(int flag, const char* flag_name, const char* const (&vars)[3], int fallback, int& value,
                          std::string& from, std::string& err) {
    if (flag >= 0) {
        value = flag;
        from = flag_name;
        return true;
    }
    for (const char* name : vars) {
        const char* s = getenv(name);
        if (!s) continue;
        char* end;
        errno = 0;
        const long v = strtol(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno != 0 || v < INT_MIN || v > INT_MAX) {
            err = std::string(name) + "='" + s + "' in the environment is not an integer";
            return false;
        }
        value = (int)v;
        from = name;
        return true;
    }
    value = fallback;
    from = "default";
    return true;
}

bool distributed_resolve(int rank_flag, int world_flag, int local_rank_flag, DistributedSetup& s, std::string& err) {
    std::string rank_from, local_from;
    if (!resolve_value(world_flag, "--world", WORLD_VARS, 1, s.world, s.world_from, err) ||
        !resolve_value(rank_flag, "--rank", RANK_VARS, 0, s.rank, rank_from, err) ||
        !resolve_value(local_rank_flag, "--local-rank", LOCAL_RANK_VARS, 0, s.local_rank, local_from, err))
        return false;
    const std::string world = "world size " + std::to_string(s.world) + " (" + s.world_from + ")";
    if (s.world < 1) {
        err = world + " must be at least 1";
        return false;
    }
    if (s.rank < 0 || s.rank >= s.world) {
        err = "rank " + std::to_string(s.rank) + " (" + rank_from + ") is not in [0, " + std::to_string(s.world) +
              "), the ranks of " + world;
        return false;
    }
    if (s.local_rank < 0) {
        err = "local rank " + std::to_string(s.local_rank) + " (" + local_from + ") is negative";
        return false;
    }
    return true;
}

int distributed_device(int local_rank, int visible) {
    if (visible == 1) return 0;
    return local_rank < visible ? local_rank : -1;
}

int batch_owner(int i, int batches, int world) { return (int)((int64_t)i * world / batches); }

ShardLayout shard_layout(size_t total, int shards) {
    if (shards <= 1) return {total, total};
    const size_t per_shard = (total + shards - 1) / shards;
    const size_t numel = (per_shard + 63) / 64 * 64;
    return {numel, numel * shards};
}

IndexRange range_in_shard(size_t offset, size_t numel, size_t shard_numel, int shard) {
    const size_t lo = std::max(offset, shard * shard_numel), hi = std::min(offset + numel, (shard + 1) * shard_numel);
    return lo < hi ? IndexRange{lo, hi - lo} : IndexRange{0, 0};
}

uint64_t distributed_flags_hash(int argc, char** argv) {
    uint64_t h = 14695981039346656037ull;  // FNV-1a
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rank") || !strcmp(argv[i], "--local-rank")) {
            i++;
            continue;
        }
        for (const char* c = argv[i];; c++) {  // the terminating NUL too, so ("ab", "c") and ("a", "bc") differ
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
            if (*c == '\0') break;
        }
    }
    return h;
}

// ---- the id file

bool distributed_check_id_path(const std::string& path, int rank, std::string& err) {
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        err = "--nccl-id " + path + ": the directory " + dir + " does not exist (it must be one every process sees)";
        return false;
    }
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        err = "--nccl-id " + path + ": is a directory; give a file name in it";
        return false;
    }
    if (rank == 0 && access(dir.c_str(), W_OK) != 0) {
        err = "--nccl-id " + path + ": rank 0 cannot write into " + dir + " (" + strerror(errno) + ")";
        return false;
    }
    return true;
}

bool distributed_write_id(const std::string& path, const ncclUniqueId& id, int world, std::string& err) {
    const std::string tmp = path + ".tmp";
    const int32_t header[2] = {ID_FILE_MAGIC, world};
    FILE* f = fopen(tmp.c_str(), "wb");
    bool ok = f && fwrite(header, sizeof header, 1, f) == 1 && fwrite(&id, sizeof id, 1, f) == 1;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        err = "--nccl-id " + path + ": cannot write the NCCL id (" + strerror(errno) + ")";
        remove(tmp.c_str());
        return false;
    }
    return true;
}

bool distributed_read_id(const std::string& path, int world, double seconds, ncclUniqueId& id, std::string& err) {
    const auto start = std::chrono::steady_clock::now();
    FILE* f;
    while (!(f = fopen(path.c_str(), "rb"))) {
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) {
            char s[32];
            snprintf(s, sizeof s, "%g", seconds);
            err = "--nccl-id " + path + ": rank 0 wrote no NCCL id there within " + s +
                  " s (is rank 0 running, and is the path on a file system every host shares?)";
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    int32_t header[2];
    char extra;
    const bool ok = fread(header, sizeof header, 1, f) == 1 && fread(&id, sizeof id, 1, f) == 1 &&
                    fread(&extra, 1, 1, f) == 0 && header[0] == ID_FILE_MAGIC;
    fclose(f);
    if (!ok) {
        err = "--nccl-id " + path + ": not an NCCL id file written by train_m2rnn";
        return false;
    }
    if (header[1] != world) {
        err = "--nccl-id " + path + ": rank 0 wrote it for world size " + std::to_string(header[1]) +
              ", this process has world size " + std::to_string(world) +
              " (a stale file of an earlier run, or processes started with different world sizes)";
        return false;
    }
    return true;
}

// ---- failing

static void exit_at_alarm(int) { _exit(EXIT_FAILURE); }

// Prints "rank R: <msg>", aborts the communicator (ncclCommAbort makes the NCCL kernels stuck on a dead peer
// return) and exits 1. _exit, not exit: the CUDA runtime's teardown could wait on such a kernel.
[[noreturn]] static void die(Distributed& d, const std::string& msg) {
    fflush(stdout);
    fprintf(stderr, "rank %d: %s\n", d.rank, msg.c_str());
    fflush(stderr);
    if (d.comm) {
        signal(SIGALRM, exit_at_alarm);
        alarm(ABORT_WAIT_S);
        ncclCommAbort(d.comm);
    }
    _exit(EXIT_FAILURE);
}

static const char* const PEER_HINT = "another rank died?";

// The time left for one wait.
struct Deadline {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    double seconds;
    explicit Deadline(double s) : seconds(s) {}
    bool passed() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds;
    }
};

[[noreturn]] static void timed_out(Distributed& d, const std::string& what, const Deadline& deadline,
                                   const char* hint) {
    char s[32];
    snprintf(s, sizeof s, "%g", deadline.seconds);
    die(d, what + " did not complete within " + s + " s (" + hint + ")");
}

// Dies on an NCCL error (ncclInProgress is none).
static void check(Distributed& d, ncclResult_t r, const std::string& what, const char* hint) {
    if (r != ncclSuccess && r != ncclInProgress)
        die(d, what + " failed: " + ncclGetErrorString(r) + ": " + ncclGetLastError(d.comm) + " (" + hint + ")");
}

// The communicator's state: ncclSuccess, ncclInProgress (a call's host part still running) or an error.
static ncclResult_t comm_state(Distributed& d) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(d.comm, &state);
    return r != ncclSuccess ? r : state;
}

static void pause_briefly() { std::this_thread::sleep_for(std::chrono::microseconds(50)); }

// After an NCCL call of the non-blocking communicator returned `r`: waits until its host part is done (for a
// collective: until NCCL has queued it on the stream), polling for errors.
static void finish_call(Distributed& d, ncclResult_t r, const std::string& what, const char* hint,
                        const Deadline& deadline) {
    check(d, r, what, hint);
    while (r == ncclInProgress) {
        r = comm_state(d);
        check(d, r, what, hint);
        if (r == ncclSuccess) break;
        if (deadline.passed()) timed_out(d, what, deadline, hint);
        pause_briefly();
    }
}

// After a collective on `stream` returned `r`: waits until it has been queued, then until the stream has run it.
static void complete(Distributed& d, ncclResult_t r, cudaStream_t stream, const char* what, double seconds) {
    const Deadline deadline(seconds);
    const std::string name = std::string("collective '") + what + "'";
    finish_call(d, r, name, PEER_HINT, deadline);
    cudaCheck(cudaEventRecord(d.done, stream));
    for (;;) {
        const cudaError_t q = cudaEventQuery(d.done);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) cudaCheck(q);
        check(d, comm_state(d), name, PEER_HINT);
        if (deadline.passed()) timed_out(d, name, deadline, PEER_HINT);
        pause_briefly();
    }
}

// ---- start and end

void distributed_init(Distributed& d, const DistributedSetup& s, const std::string& id_path, double timeout_s,
                      bool zero) {
    d.rank = s.rank;
    d.world = s.world;
    d.local_rank = s.local_rank;
    d.zero = zero;
    d.timeout_s = timeout_s;
    d.comm = nullptr;
    if (id_path.empty()) return;  // one process, no NCCL (the caller refuses world > 1 without an id file)
    std::string err;
    ncclUniqueId id;
    if (d.rank == 0) {
        const ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) die(d, std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(r));
        if (!distributed_write_id(id_path, id, d.world, err)) die(d, err);
    } else if (!distributed_read_id(id_path, d.world, timeout_s, id, err)) {
        die(d, err);
    }
    const Deadline deadline(timeout_s);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const std::string what = "joining the NCCL communicator of " + std::to_string(d.world) + " ranks";
    const std::string hint = "are all " + std::to_string(d.world) + " processes running, with one --nccl-id that " +
                             "is not a stale file of an earlier run? a slow start needs a larger --nccl-timeout";
    finish_call(d, ncclCommInitRankConfig(&d.comm, d.world, id, d.rank, &config), what, hint.c_str(), deadline);
    if (d.rank == 0) remove(id_path.c_str());  // every rank has read it: joining needs them all
    cudaCheck(cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&d.done, cudaEventDisableTiming));
    cudaCheck(cudaMalloc(&d.scratch, 2 * sizeof(uint64_t)));
}

void distributed_free(Distributed& d) {
    if (!d.comm) return;
    finish_call(d, ncclCommFinalize(d.comm), "shutting the NCCL communicator down", PEER_HINT,
                Deadline(d.timeout_s));
    ncclCommDestroy(d.comm);
    d.comm = nullptr;
    cudaCheck(cudaFree(d.scratch));
    cudaCheck(cudaEventDestroy(d.done));
    cudaCheck(cudaStreamDestroy(d.stream));
}

// ---- collectives

void distributed_all_reduce_sum(Distributed& d, float* data, size_t n, cudaStream_t stream, const char* what) {
    if (!d.comm) return;
    complete(d, ncclAllReduce(data, data, n, ncclFloat, ncclSum, d.comm, stream), stream, what, d.timeout_s);
}

void distributed_reduce_scatter_sum(Distributed& d, float* data, size_t shard_numel, cudaStream_t stream,
                                    const char* what) {
    if (!d.comm) return;
    float* mine = data + (size_t)d.rank * shard_numel;  // in place: NCCL reads all of data, writes this shard
    complete(d, ncclReduceScatter(data, mine, shard_numel, ncclFloat, ncclSum, d.comm, stream), stream, what,
             d.timeout_s);
}

void distributed_all_gather(Distributed& d, float* data, size_t shard_numel, cudaStream_t stream, const char* what) {
    if (!d.comm) return;
    const float* mine = data + (size_t)d.rank * shard_numel;  // in place: this shard is sent, all are written
    complete(d, ncclAllGather(mine, data, shard_numel, ncclFloat, d.comm, stream), stream, what, d.timeout_s);
}

double distributed_sum(Distributed& d, double x, double seconds, const char* what) {
    if (!d.comm) return x;
    double* scratch = (double*)d.scratch;
    cudaCheck(cudaMemcpyAsync(scratch, &x, sizeof x, cudaMemcpyHostToDevice, d.stream));
    complete(d, ncclAllReduce(scratch, scratch, 1, ncclDouble, ncclSum, d.comm, d.stream), d.stream, what, seconds);
    double sum;
    cudaCheck(cudaMemcpyAsync(&sum, scratch, sizeof sum, cudaMemcpyDeviceToHost, d.stream));
    cudaCheck(cudaStreamSynchronize(d.stream));
    return sum;
}

void distributed_check_same(Distributed& d, uint64_t value, const char* what) {
    if (!d.comm) return;
    // the maximum of (v, ~v) over processes is (v, ~v) itself only when every process has v
    const uint64_t mine[2] = {value, ~value};
    uint64_t most[2];
    uint64_t* scratch = (uint64_t*)d.scratch;
    const std::string comparing = std::string("comparing the ") + what;
    cudaCheck(cudaMemcpyAsync(scratch, mine, sizeof mine, cudaMemcpyHostToDevice, d.stream));
    complete(d, ncclAllReduce(scratch, scratch, 2, ncclUint64, ncclMax, d.comm, d.stream), d.stream,
             comparing.c_str(), d.timeout_s);
    cudaCheck(cudaMemcpyAsync(most, scratch, sizeof most, cudaMemcpyDeviceToHost, d.stream));
    cudaCheck(cudaStreamSynchronize(d.stream));
    if (most[0] != mine[0] || most[1] != mine[1])
        die(d, std::string("the processes were started with different ") + what +
                   ": every process needs the same flags, apart from --rank and --local-rank");
}
