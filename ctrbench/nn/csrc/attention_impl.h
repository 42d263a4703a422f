/* Body of attention.c for one floating type: REAL, SFX(name), SFX(exp). h [B, L, H] row-major, q [B, H],
   mask [B, L] (bytes, nonzero: a real position). */

/* a[b, t] = exp(s_t - max) / sum over the row's real positions of exp(s_j - max), s_t = <h[b, t], q[b]>;
   0 at padding, and a row without real positions all 0. */
void SFX(ctr_attn_fwd)(int64_t B, int64_t L, int64_t H, const REAL *h, const REAL *q, const uint8_t *mask, REAL *a) {
    for (int64_t b = 0; b < B; b++) {
        const REAL *qb = q + b * H;
        REAL *ab = a + b * L;
        REAL top = 0;
        int any = 0;
        for (int64_t t = 0; t < L; t++) {
            if (!mask[b * L + t]) {
                ab[t] = 0;
                continue;
            }
            const REAL *ht = h + (b * L + t) * H;
            REAL s = 0;
            for (int64_t j = 0; j < H; j++) s += ht[j] * qb[j];
            ab[t] = s;
            top = any && top > s ? top : s;
            any = 1;
        }
        if (!any) continue;
        REAL total = 0;
        for (int64_t t = 0; t < L; t++)
            if (mask[b * L + t]) {
                ab[t] = SFX(exp)(ab[t] - top);
                total += ab[t];
            }
        for (int64_t t = 0; t < L; t++)
            if (mask[b * L + t]) ab[t] /= total;
    }
}

/* Backward from da [B, L]: ds_t = a_t (da_t - sum_j a_j da_j) over the real positions (softmax's
   backward), dh[b, t] = ds_t q[b] (0 at padding), dq[b] = sum_t ds_t h[b, t]. */
void SFX(ctr_attn_bwd)(int64_t B, int64_t L, int64_t H, const REAL *h, const REAL *q, const uint8_t *mask, const REAL *a,
                       const REAL *da, REAL *dh, REAL *dq) {
    for (int64_t b = 0; b < B; b++) {
        const REAL *qb = q + b * H, *ab = a + b * L, *gb = da + b * L;
        REAL *dqb = dq + b * H;
        REAL dot = 0;
        for (int64_t t = 0; t < L; t++)
            if (mask[b * L + t]) dot += ab[t] * gb[t];
        for (int64_t j = 0; j < H; j++) dqb[j] = 0;
        for (int64_t t = 0; t < L; t++) {
            REAL *dht = dh + (b * L + t) * H;
            if (!mask[b * L + t]) {
                for (int64_t j = 0; j < H; j++) dht[j] = 0;
                continue;
            }
            const REAL ds = ab[t] * (gb[t] - dot);
            const REAL *ht = h + (b * L + t) * H;
            for (int64_t j = 0; j < H; j++) {
                dht[j] = ds * qb[j];
                dqb[j] += ds * ht[j];
            }
        }
    }
}
