/*
 * Shared by the test runtime plugins whose loads wait for the test (server's
 * test.gated, experiments' test.once): compiled into each plugin (prefix trt_).
 *
 * Thread safety: trt_wait_gate runs on the plugin's load thread, trt_identity on
 * a worker thread; neither keeps state.
 */
#ifndef TRT_GATE_RUNTIME_H
#define TRT_GATE_RUNTIME_H

#include <stddef.h>

#include "seldon/runtime.h"

/* Waits for a shared lock on the file named by m's extra.gate, which the test holds
 * exclusively until it lets the load finish (the kernel lets go of it when the test
 * process ends, so a failed test cannot hang the suite). Returns 0, or m's error
 * (named after runtime, e.g. "test.gated") when the file cannot be opened. */
int trt_wait_gate(seldon_model *m, const char *runtime, const seldon_param *gate);

/* An execute that answers each request with its own tensors; "<runtime>: cannot copy"
 * on failure. Returns 0. */
int trt_identity(seldon_infer *const *infers, size_t count, const char *runtime);

#endif
