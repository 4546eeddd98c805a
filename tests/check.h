// The test binary's bookkeeping: every check prints one line saying what it compared and the figure
// it got, and counts as passed or failed. test_m2rnn ends with "N passed, N failed".
#pragma once
#include <cstdarg>
#include <cmath>
#include <cstddef>
#include <cstdio>

struct TestReport {
    int passed = 0;
    int failed = 0;

    // Records one check; `fmt` describes it and the figure compared ("gnorm grad max rel err 3.1e-7").
    bool check(bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
        va_list ap;
        va_start(ap, fmt);
        printf("  [%s] ", ok ? "ok  " : "FAIL");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        fflush(stdout);
        (ok ? passed : failed)++;
        return ok;
    }
};

// The error of `got` against `want` relative to the tensor's scale: max_i |got_i − want_i| / max_i |want_i|.
// Normwise rather than elementwise, so an element that is zero up to rounding cannot dominate; 0 when
// both are exactly zero, infinite when only `got` is nonzero, NaN when any element is NaN (so every
// `err <= tolerance` check fails on it).
template <typename A, typename B>
double max_rel_err(const A* got, const B* want, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (std::isnan(d)) return NAN;
        diff = fmax(diff, d);
        scale = fmax(scale, fabs((double)want[i]));
    }
    if (diff == 0) return 0;
    return scale > 0 ? diff / scale : INFINITY;
}
