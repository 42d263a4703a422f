/* The GRU recurrences of DIEN (ctrbench/nn/gru_scan.py: NativeGRUScan) as native loops, forward and
   backward:

       xs_t  = W x_t + bx                                the input projection [3H] (blocks u, r, c)
       p_t   = xs_t + U h_{t-1} + bh
       u_t, r_t = sigmoid(p_t^u), sigmoid(p_t^r)        update and reset gates (DIEN Eqs. 2-3)
       c_t   = tanh(xs_t^c + r_t * (U^c h_{t-1} + bh^c))  candidate (Eq. 4)
       u'_t  = g0_t + g1_t * u_t                         the update gate of AUGRU / AIGRU / a plain
                                                         GRU (g0 = 0, g1 = 1); AGRU: u'_t = g0_t
       h_t   = h_{t-1} + u'_t * (c_t - h_{t-1})          = (1 - u'_t) h_{t-1} + u'_t c_t  (Eq. 5, 12)

   per row, over the row's real positions only (t < len[b], h_0 = 0): a padded step would leave the
   state as it is, so it is not run. Batch-first layout: x [B, T, D], g0 / g1 [B, T] (NULL:
   absent), h_seq [B, T, H] = h_1..h_T (0 past the row's length), h_last [B, H].

   Why native: at DIEN's shapes (B = 256 rows, H = 36) every torch op of a step costs 5-30 us of
   dispatch and autograd bookkeeping whatever its size, and a step is ~20 of them forward and
   backward; here a (row, step) costs ~0.3-0.4 us forward and ~1 us backward (with the input
   projection and its gradients). Rows are stepped 4 at a time so that each
   weight vector loaded serves 4 products (3 vectors of outputs at a time, 12 accumulators); the
   weight and bias gradients are summed here, so no per-step tensor (projections, gate gradients)
   is written out: a block of 4 rows keeps its steps' gate gradients and inputs and sums their outer
   products after its last step, in register tiles (per step, the [3H, H] accumulators would be read
   and written back every step; DIEN at batch 256: ~12% off a recurrence's forward and backward).

   Compiled on first use by ctrbench/nn/native.py (cc -O3 -march=native); float and double. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
/* Gradients that fade over a long backward recurrence reach subnormal floats, on which x86 cores
   run arithmetic many times slower: each entry point flushes them to zero (MXCSR FTZ and DAZ, a
   change below 1.2e-38 only) and restores the caller's mode on return. */
#define FLUSH_SUBNORMALS unsigned int saved_csr_ = _mm_getcsr(); _mm_setcsr(saved_csr_ | 0x8040u)
#define RESTORE_MODE _mm_setcsr(saved_csr_)
#else
#define FLUSH_SUBNORMALS
#define RESTORE_MODE
#endif

/* exp for float on [-87, 88] (clamped outside, where sigmoid and tanh are saturated anyway):
   exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, exp(r) by its degree-7 Taylor
   polynomial (relative error < 2e-7 on that interval, about float's rounding), written without
   branches or calls so that the compiler vectorises the loops that use it. */
static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x; /* not fminf / fmaxf: those do not vectorise without -ffast-math */
    x = x > 88.0f ? 88.0f : x;   /* a NaN stays NaN (and so does the result) */
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.4426950408889634f + shift) - shift;
    float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f; /* ln 2 in two parts */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23}; /* 2^n */
    return p * scale.f;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
static inline float tanh_f32(float x) { return 1.0f - 2.0f / (1.0f + exp_f32(2.0f * x)); }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double tanh_f64(double x) { return tanh(x); }

/* The products step ROWS rows together, on vectors of 32 bytes (GCC / Clang vector extensions: the
   compiler maps them onto the CPU's SIMD registers, or splits them where they are narrower). */
#define ROWS 4
typedef float vec_f32 __attribute__((vector_size(32)));
typedef double vec_f64 __attribute__((vector_size(32)));

#define REAL float
#define VEC vec_f32
#define W 8
#define SFX(name) name##_f32
#include "gru_scan_impl.h"
#undef REAL
#undef VEC
#undef W
#undef SFX

#define REAL double
#define VEC vec_f64
#define W 4
#define SFX(name) name##_f64
#include "gru_scan_impl.h"
#undef REAL
#undef VEC
#undef W
#undef SFX

/* The layout version the Python side checks (ctrbench/nn/native.py: ABI), for the whole library
   (this file, dice.c, adam_rows.c, lr_step.c, aux_loss.c, pair_lookup.c and attention.c). */
int ctr_gru_abi(void) { return 13; }
