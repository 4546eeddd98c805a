#include "parallel.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// A loop being run: the workers and the caller take its tasks from `next` until none are left. `generation` counts
// loops, so that a worker wakes once per loop; `busy` counts the workers not yet done with the current one.
struct Pool {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable wake, done;
    const std::function<void(int)>* fn = nullptr;
    int tasks = 0, busy = 0;
    std::atomic<int> next{0};
    unsigned long long generation = 0;
    bool stop = false;

    void drain() {
        for (int t; (t = next.fetch_add(1)) < tasks;) (*fn)(t);
    }
    void stop_workers() {
        {
            std::lock_guard<std::mutex> lock(mu);
            stop = true;
        }
        wake.notify_all();
        for (std::thread& w : workers) w.join();
        workers.clear();
        stop = false;
    }
    ~Pool() { stop_workers(); }
};

Pool pool;
thread_local bool in_task = false;  // true on a worker, and on the caller while it runs tasks

void worker_loop() {
    in_task = true;
    unsigned long long seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(pool.mu);
            pool.wake.wait(lock, [&] { return pool.stop || pool.generation != seen; });
            if (pool.stop) return;
            seen = pool.generation;
        }
        pool.drain();
        std::lock_guard<std::mutex> lock(pool.mu);
        if (--pool.busy == 0) pool.done.notify_one();
    }
}

}  // namespace

void parallel_set_threads(int n) {
    pool.stop_workers();
    for (int i = 1; i < n; i++) pool.workers.emplace_back(worker_loop);
}

int parallel_threads() { return (int)pool.workers.size() + 1; }

void parallel_for(int tasks, const std::function<void(int)>& fn) {
    if (pool.workers.empty() || in_task || tasks <= 1) {
        for (int t = 0; t < tasks; t++) fn(t);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(pool.mu);
        pool.fn = &fn;
        pool.tasks = tasks;
        pool.next = 0;
        pool.busy = (int)pool.workers.size();
        pool.generation++;
    }
    pool.wake.notify_all();
    in_task = true;
    pool.drain();
    in_task = false;
    std::unique_lock<std::mutex> lock(pool.mu);
    pool.done.wait(lock, [] { return pool.busy == 0; });
}
