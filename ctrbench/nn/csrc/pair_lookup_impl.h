/* Body of pair_lookup.c for one floating type: REAL, SFX(name). */

/* One segment's rows: out[i] = [item_w[items[i]]; cate_w[cates[i]]] (2d wide), or zeros where
   keep[i] is 0 (keep NULL: every row kept). */
static void SFX(lookup_rows)(int64_t n, int64_t d, const REAL *item_w, const REAL *cate_w, const int64_t *items,
                             const int64_t *cates, const uint8_t *keep, REAL *out) {
    for (int64_t i = 0; i < n; i++) {
        REAL *o = out + i * 2 * d;
        if (keep && !keep[i]) {
            memset(o, 0, (size_t)(2 * d) * sizeof(REAL));
            continue;
        }
        memcpy(o, item_w + items[i] * d, (size_t)d * sizeof(REAL));
        memcpy(o + d, cate_w + cates[i] * d, (size_t)d * sizeof(REAL));
    }
}

/* The three segments (target, history with its keep mask, negatives: n[s] rows each) looked up in
   one call. Returns 0, or 2 when an id is outside its table (nothing is written then). */
int SFX(ctr_pair_lookup_fwd)(int64_t d, int64_t n_items, int64_t n_cates, const REAL *item_w, const REAL *cate_w,
                             const int64_t *n, const int64_t *const *items, const int64_t *const *cates,
                             const uint8_t *keep1, REAL *const *out) {
    for (int s = 0; s < 3; s++)
        for (int64_t i = 0; i < n[s]; i++)
            if (items[s][i] < 0 || items[s][i] >= n_items || cates[s][i] < 0 || cates[s][i] >= n_cates) return 2;
    for (int s = 0; s < 3; s++) SFX(lookup_rows)(n[s], d, item_w, cate_w, items[s], cates[s], s == 1 ? keep1 : NULL, out[s]);
    return 0;
}

/* Backward: the row-wise gradients of both tables from the segments' gradients grad[s] [n[s], 2d]
   (NULL: zero), in the order of the rows (target, history, negatives), leaving out the rows whose
   id is 0 (the padding row, which nn.Embedding(padding_idx=0) never updates): item_idx / item_val
   and cate_idx / cate_val get counts[0] and counts[1] rows (at most the sum of n). A history row
   that keep drops has a zero gradient (its output was zeroed). */
void SFX(ctr_pair_lookup_bwd)(int64_t d, const int64_t *n, const int64_t *const *items, const int64_t *const *cates,
                              const uint8_t *keep1, const REAL *const *grad, int64_t *item_idx, REAL *item_val,
                              int64_t *cate_idx, REAL *cate_val, int64_t *counts) {
    int64_t ki = 0, kc = 0;
    for (int s = 0; s < 3; s++) {
        const REAL *g = grad[s];
        for (int64_t i = 0; i < n[s]; i++) {
            const int zero = g == NULL || (s == 1 && keep1 && !keep1[i]);
            const REAL *gi = zero ? NULL : g + i * 2 * d;
            if (items[s][i] != 0) {
                item_idx[ki] = items[s][i];
                if (gi) memcpy(item_val + ki * d, gi, (size_t)d * sizeof(REAL));
                else memset(item_val + ki * d, 0, (size_t)d * sizeof(REAL));
                ki++;
            }
            if (cates[s][i] != 0) {
                cate_idx[kc] = cates[s][i];
                if (gi) memcpy(cate_val + kc * d, gi + d, (size_t)d * sizeof(REAL));
                else memset(cate_val + kc * d, 0, (size_t)d * sizeof(REAL));
                kc++;
            }
        }
    }
    counts[0] = ki;
    counts[1] = kc;
}
