/* DIEN's auxiliary loss (DIEN paper Eq. 6, the inner-product form) in training, as one native call
   forward and one backward (ctrbench/nn/sequence.py: NativeAuxLoss):

       s+_bt = <h_bt, e_b,t+1>,  s-_bt = <h_bt, ê_b,t+1>          for each t whose t and t+1 are real
       L_aux = (1/N) sum_bt [ softplus(-s+_bt) + softplus(s-_bt) ]  (N: the batch, or the pairs counted)

   and its gradients with respect to h, e and ê. Why native: as torch ops the loss is two products
   and two sums over [B, L-1, H] slices, the softplus terms and their masks, and the backward four
   more products and a sum, each a pass over ~3.6 MB at the DIEN table's batch of 256 with histories
   of 100: ~1.2 ms of a ~14 ms DIEN step, where one pass each way reads and writes what it must.
   Sums over pairs are taken in double. Compiled with gru_scan.c into one library (native.py). */

#include <math.h>
#include <stdint.h>

#define REAL float
#define SFX(name) name##_f32
static inline float exp_f32(float x) { return expf(x); }
static inline float log1p_f32(float x) { return log1pf(x); }
#include "aux_loss_impl.h"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
static inline double exp_f64(double x) { return exp(x); }
static inline double log1p_f64(double x) { return log1p(x); }
#include "aux_loss_impl.h"
#undef REAL
#undef SFX
