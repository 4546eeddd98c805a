// GPU checks of the M²RNN scan kernels (the recurrence forward and backward, with and without state-gradient
// clipping) against the CPU reference steps m2rnn_scan_forward / m2rnn_scan_backward.
#pragma once
#include "check.h"

void test_m2rnn_scan_kernels(TestReport& r);
