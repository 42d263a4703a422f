/* Adam (Kingma & Ba 2015, Algorithm 1; torch.optim.Adam's update with L2 weight decay) for an
   embedding table whose gradient is row-wise (a sparse gradient, as nn.Embedding(sparse=True) gives
   it: the rows a step looked up, repeats not summed), as one pass over the table
   (ctrbench/train/row_adam.py: RowAdam):

       g     = the summed gradient of a row the step used, 0 for every other row (+ wd p)
       m     = m + (1 - beta1) (g - m)
       v     = beta2 v + (1 - beta2) g^2
       p     = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

   in the order of operations of torch's fused CPU Adam (optim.adam's ``fused: true``), so that with
   the dense gradient's values (which the rows sum to, in the dense backward's order) a step is
   torch's to the bit.

   Every row moves, as with a dense gradient (this is Adam, not a lazy variant): a row the step did
   not use decays its moments and moves by its momentum. Why native: with a dense gradient the
   backward zeroes a whole-table buffer and adds the rows into it, one BLAS call per index, and Adam
   then reads it back (DIEN's 63,001 x 18 item table at batch 256, the DIEN paper's setup; 331,867 x
   18 at Books size). Compiled with gru_scan.c into one library. */

#define IMPL "adam_rows_impl.h"
#include "per_type.h"
