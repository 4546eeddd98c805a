// A timeline of what an unmodified CUDA program runs on the GPU, for scripts/gpu_trace.py (GPU busy and idle
// time per training step). Loaded by the CUDA driver through its injection hook, not linked into the program:
//   CUDA_INJECTION64_PATH=$PWD/build/libgpu_trace.so GPU_TRACE=trace.tsv ./train_m2rnn ...
// CUPTI's activity records, one tab-separated line each, times in ns on one clock:
//   gpu   start end stream name     a kernel, memset or memcpy as the GPU ran it
//   host  start end -      name     a CUDA runtime call as the host ran it (its duration includes any wait)
// Records are written as CUPTI hands over its buffers, and the rest when the program exits. A measurement tool,
// like ncu: the trainer itself links only the CUDA runtime, cuBLASLt and NCCL.
#include <cupti.h>
#include <cxxabi.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

static FILE* trace_file = nullptr;
static std::mutex trace_lock;  // CUPTI may hand over buffers from its own thread

static void cupti_check(CUptiResult r, const char* what) {
    if (r == CUPTI_SUCCESS) return;
    const char* message = "";
    cuptiGetResultString(r, &message);
    fprintf(stderr, "gpu_trace: %s: %s\n", what, message);
    exit(1);
}

static void write_record(const char* side, uint64_t start, uint64_t end, long long stream, const char* name) {
    fprintf(trace_file, "%s\t%llu\t%llu\t%lld\t%s\n", side, (unsigned long long)start, (unsigned long long)end,
            stream, name);
}

static void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *size = 8u << 20;
    *buffer = static_cast<uint8_t*>(aligned_alloc(8, *size));
    *max_records = 0;  // as many as fit
    if (!*buffer) { fprintf(stderr, "gpu_trace: out of host memory for a record buffer\n"); exit(1); }
}

static void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    std::lock_guard<std::mutex> hold(trace_lock);
    CUpti_Activity* record = nullptr;
    char what[64];
    while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
        switch (record->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
            const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
            int status = 0;
            char* readable = abi::__cxa_demangle(k->name, nullptr, nullptr, &status);
            write_record("gpu", k->start, k->end, k->streamId, status == 0 ? readable : k->name);
            free(readable);
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
            const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
            snprintf(what, sizeof what, "memset %llu bytes", (unsigned long long)m->bytes);
            write_record("gpu", m->start, m->end, m->streamId, what);
            break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
            const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
            snprintf(what, sizeof what, "memcpy %llu bytes (kind %u)", (unsigned long long)m->bytes, m->copyKind);
            write_record("gpu", m->start, m->end, m->streamId, what);
            break;
        }
        case CUPTI_ACTIVITY_KIND_RUNTIME: {
            const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
            const char* name = "?";
            cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name);
            write_record("host", a->start, a->end, -1, name);
            break;
        }
        default:
            break;
        }
    }
    free(buffer);
}

static void flush_at_exit() {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    std::lock_guard<std::mutex> hold(trace_lock);
    if (trace_file && fclose(trace_file) != 0) fprintf(stderr, "gpu_trace: cannot finish the trace file\n");
    trace_file = nullptr;
}

// The driver calls this once, when the program first initialises CUDA.
extern "C" int InitializeInjection(void) {
    const char* path = getenv("GPU_TRACE");
    if (!path || !*path) { fprintf(stderr, "gpu_trace: set GPU_TRACE to the trace file to write\n"); exit(1); }
    trace_file = fopen(path, "w");
    if (!trace_file) { fprintf(stderr, "gpu_trace: cannot create %s: %s\n", path, strerror(errno)); exit(1); }
    cupti_check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "registering buffers");
    const CUpti_ActivityKind kinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMSET,
                                        CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_RUNTIME};
    for (CUpti_ActivityKind kind : kinds) cupti_check(cuptiActivityEnable(kind), "enabling an activity kind");
    atexit(flush_at_exit);
    return 1;
}
