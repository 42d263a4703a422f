/* DIEN's attention, Eq. (8) in the bilinear form, a_t = softmax over the real positions of
   h_t . q (q = W e_a, taken by torch), as one native call forward and one backward
   (ctrbench/nn/native_attention.py: NativeAttention): the same values as the torch ops of
   nn/sequence.py (BilinearAttention: a product, a sum, masked_fill, softmax, nan_to_num) up to float
   rounding. Why native: those ops and their backwards are ~12 calls of 5-40 us at DIEN's shapes
   (batch 256), for a few thousand numbers; in-process A/Bs of DIEN's training step at Electronics
   size gave +0.7% to +2.3% (docs/performance.md). Compiled with gru_scan.c into one library
   (native.py). */

#define IMPL "attention_impl.h"
#include "per_type.h"
