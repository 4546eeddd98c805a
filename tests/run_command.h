// Running a shell command from a host check (scripts/launch.sh, m2rnn_export, the python scripts).
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <string>

// Runs `command` with /bin/sh, its output (stdout and stderr) into `out`; returns the exit status, -1 when it
// could not run or died of a signal.
static inline int run(const std::string& command, std::string& out) {
    out.clear();
    FILE* p = popen((command + " 2>&1").c_str(), "r");
    if (!p) return -1;
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
