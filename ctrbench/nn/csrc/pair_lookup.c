/* DIEN's behaviour embeddings e = [E_item(i); E_cate(c)] for the target, the history (its padded
   positions zeroed) and the negative behaviours, as one native call forward and one backward
   (ctrbench/nn/native_lookup.py: NativePairLookup), for item and category tables with row-wise
   (sparse) gradients, which RowAdam steps:

       forward:  each segment's rows [E_item(i); E_cate(c)], zeros at the history's padding
       backward: each table's (row id, gradient) pairs, in the segments' order, without the rows of
                 id 0 (nn.Embedding(padding_idx=0) never updates its padding row)

   which is what torch's ops give (two index_selects, a concatenation, a split and a mask forward;
   the mask's, split's and concatenation's backward and two sparse embedding backwards, each
   filtering the padding id), value for value and in the same order, so RowAdam's step is the same
   to the bit. Why native: timed alone over 60 of DIEN's Electronics batches (batch 256), those
   ~15 ops forward and backward took 1.1-1.5 ms a batch, these two calls 0.7-0.8 ms, for ~1 MB of
   rows (docs/performance.md). Compiled with gru_scan.c into one library (native.py). */

#define IMPL "pair_lookup_impl.h"
#include "per_type.h"
