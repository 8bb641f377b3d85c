/*
 * The builtin runtimes: the sample models of Seldon's and Triton's examples,
 * implemented in plain C so that pipelines can be tried and tested without
 * any model artifact. The repository registers them under their names:
 *
 *   builtin.identity     outputs = inputs
 *   builtin.simple       Triton's "simple": OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
 *   builtin.add          OUTPUT = INPUT + parameters.extra.constant (add10, add20)
 *   builtin.mul          OUTPUT = INPUT * parameters.extra.constant (mul10)
 *   builtin.conditional  CHOICE == 0 ? OUTPUT0 = INPUT0 : OUTPUT1 = INPUT1
 *
 * All of them are stateless after load, cheap and non-blocking: they set
 * SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE.
 */
#ifndef SDN_RUNTIME_BUILTIN_H
#define SDN_RUNTIME_BUILTIN_H

#include "seldon/runtime.h"

extern const seldon_runtime sdn_rt_identity;
extern const seldon_runtime sdn_rt_simple;
extern const seldon_runtime sdn_rt_add;
extern const seldon_runtime sdn_rt_mul;
extern const seldon_runtime sdn_rt_conditional;

#endif
