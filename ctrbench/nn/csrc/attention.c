/* DIEN's attention, Eq. (8) in the bilinear form, a_t = softmax over the real positions of
   h_t . q (q = W e_a, taken by torch), as one native call forward and one backward
   (ctrbench/nn/native_attention.py: NativeAttention): the same values as the torch ops of
   nn/sequence.py (BilinearAttention: a product, a sum, masked_fill, softmax, nan_to_num) up to float
   rounding. Why native: those ops and their backwards are ~12 calls of 5-40 us at DIEN's shapes
   (batch 256), for a few thousand numbers. Compiled with gru_scan.c into one library (native.py). */

#include <math.h>
#include <stdint.h>

#define REAL float
#define SFX(name) name##_f32
static inline float exp_f32(float x) { return expf(x); }
#include "attention_impl.h"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
static inline double exp_f64(double x) { return exp(x); }
#include "attention_impl.h"
#undef REAL
#undef SFX
