/* Dice (DIN paper Eq. 9) in training, as one native call forward and one backward (ctrbench/nn/
   native_dice.py: NativeDice), over the rows of x [N, H] that are all real:

       mean, var = the per-unit mean and biased variance of the rows (batch statistics)
       p   = sigmoid((x - mean) / (sqrt(var + eps) + c))      (c = 0; the official code's c = eps)
       out = p x + (1 - p) alpha x = x (alpha + (1 - alpha) p)

   Why native: composed of torch ops, a Dice layer is ~10 ops forward and ~20 backward, each 5-30 us
   at the batch-32 shapes of the papers' tables whatever its size: ~300-600 us a layer (measured
   alone), so the four layers of a DIN-with-Dice step were an estimated ~45% of it; with these two
   calls the din_table3 row trained 1.18x faster in an in-process A/B (docs/performance.md).
   Compiled with gru_scan.c into one library (native.py). */

#define IMPL "dice_impl.h"
#include "per_type.h"
