/* DIEN's auxiliary loss (DIEN paper Eq. 6, the inner-product form) in training, as one native call
   forward and one backward (ctrbench/nn/sequence.py: NativeAuxLoss):

       s+_bt = <h_bt, e_b,t+1>,  s-_bt = <h_bt, ê_b,t+1>          for each t whose t and t+1 are real
       L_aux = (1/N) sum_bt [ softplus(-s+_bt) + softplus(s-_bt) ]  (N: the batch, or the pairs counted)

   and its gradients with respect to h, e and ê. Why native: as torch ops the loss is two products
   and two sums over [B, L-1, H] slices, the softplus terms and their masks, and the backward four
   more products and a sum, each a pass over ~3.6 MB at the DIEN table's batch of 256 with histories
   of 100: ~1.2 ms of a ~14 ms DIEN step, where one pass each way reads and writes what it must.
   Sums over pairs are taken in double. Compiled with gru_scan.c into one library (native.py). */

#define IMPL "aux_loss_impl.h"
#include "per_type.h"
