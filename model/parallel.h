// Threads for the CPU reference's hot loops (std::thread, no library): a loop is split into tasks 0..n-1 that each
// write their own outputs, and a task's result does not depend on the thread that runs it, so the whole loop gives
// the same bits for any thread count. A sum over tasks is taken from per-task partials, added in task order.
//
// One pool for the process: parallel_set_threads(n) starts n - 1 workers beside the caller, which takes tasks
// too. With one thread (the default) every task runs on the caller, in order. A task that calls parallel_for
// runs its loop on its own thread.
#pragma once
#include <functional>

void parallel_set_threads(int n);
int parallel_threads();
// Runs fn(0) … fn(tasks − 1), each once, and returns when all have.
void parallel_for(int tasks, const std::function<void(int)>& fn);
