/* Body of gru_scan.c for one floating type: REAL, VEC (a vector of REAL), W (its lanes), SFX(name). */

static inline int64_t SFX(clamp_len)(int64_t n, int64_t T) { return n < 0 ? 0 : (n > T ? T : n); }

/* The rows of the block starting at b0 (row[r], -1 past the batch's end) and their lengths L[r]
   (clamped to [0, T]); returns the longest. */
static inline int64_t SFX(block_rows)(int64_t b0, int64_t B, int64_t T, const int64_t *len, const int64_t *order,
                                      int64_t row[ROWS], int64_t L[ROWS]) {
    int64_t Lmax = 0;
    for (int r = 0; r < ROWS; r++) {
        row[r] = b0 + r < B ? (order ? order[b0 + r] : b0 + r) : -1;
        L[r] = row[r] >= 0 ? SFX(clamp_len)(len[row[r]], T) : 0;
        Lmax = L[r] > Lmax ? L[r] : Lmax;
    }
    return Lmax;
}

/* out[r][0..PV) = bias + sum_k x[r][k] Wv[k][0..PV), for the ROWS rows r; Wv is [K][PV] vectors.
   Each loaded weight vector serves the ROWS rows, and the accumulators stay in registers. */
static inline void SFX(rows_times)(const REAL *const x[ROWS], int64_t K, const VEC *Wv, int64_t PV, const VEC *bias,
                                   VEC *const out[ROWS]) {
    const VEC zero = {0};
    int64_t v = 0;
    for (; v + 3 <= PV; v += 3) {
        VEC a00 = bias ? bias[v] : zero, a01 = bias ? bias[v + 1] : zero, a02 = bias ? bias[v + 2] : zero;
        VEC a10 = a00, a11 = a01, a12 = a02, a20 = a00, a21 = a01, a22 = a02, a30 = a00, a31 = a01, a32 = a02;
        for (int64_t k = 0; k < K; k++) {
            const VEC w0 = Wv[k * PV + v], w1 = Wv[k * PV + v + 1], w2 = Wv[k * PV + v + 2];
            REAL xk = x[0][k];
            a00 += xk * w0; a01 += xk * w1; a02 += xk * w2;
            xk = x[1][k];
            a10 += xk * w0; a11 += xk * w1; a12 += xk * w2;
            xk = x[2][k];
            a20 += xk * w0; a21 += xk * w1; a22 += xk * w2;
            xk = x[3][k];
            a30 += xk * w0; a31 += xk * w1; a32 += xk * w2;
        }
        out[0][v] = a00; out[0][v + 1] = a01; out[0][v + 2] = a02;
        out[1][v] = a10; out[1][v + 1] = a11; out[1][v + 2] = a12;
        out[2][v] = a20; out[2][v + 1] = a21; out[2][v + 2] = a22;
        out[3][v] = a30; out[3][v + 1] = a31; out[3][v + 2] = a32;
    }
    for (; v + 2 <= PV; v += 2) {
        VEC a00 = bias ? bias[v] : zero, a01 = bias ? bias[v + 1] : zero;
        VEC a10 = a00, a11 = a01, a20 = a00, a21 = a01, a30 = a00, a31 = a01;
        for (int64_t k = 0; k < K; k++) {
            const VEC w0 = Wv[k * PV + v], w1 = Wv[k * PV + v + 1];
            const REAL x0 = x[0][k], x1 = x[1][k], x2 = x[2][k], x3 = x[3][k];
            a00 += x0 * w0; a01 += x0 * w1;
            a10 += x1 * w0; a11 += x1 * w1;
            a20 += x2 * w0; a21 += x2 * w1;
            a30 += x3 * w0; a31 += x3 * w1;
        }
        out[0][v] = a00; out[0][v + 1] = a01;
        out[1][v] = a10; out[1][v + 1] = a11;
        out[2][v] = a20; out[2][v + 1] = a21;
        out[3][v] = a30; out[3][v + 1] = a31;
    }
    if (v < PV) {
        VEC a0 = bias ? bias[v] : zero;
        VEC a1 = a0, a2 = a0, a3 = a0;
        for (int64_t k = 0; k < K; k++) {
            const VEC w = Wv[k * PV + v];
            a0 += x[0][k] * w; a1 += x[1][k] * w; a2 += x[2][k] * w; a3 += x[3][k] * w;
        }
        out[0][v] = a0; out[1][v] = a1; out[2][v] = a2; out[3][v] = a3;
    }
}

/* The scan's gate row j (of 3H, in its order u, r, c) in a weight the caller holds in its layout:
   the same row (torch_gates 0), or the row of torch's nn.GRU, whose gates are (r, z, n) with
   z = 1 - u (torch_gates 1): u's rows are z's, negated (sigmoid(-p) = 1 - sigmoid(p)). */
static inline int64_t SFX(gate_row)(int64_t j, int64_t H, int64_t torch_gates) {
    return !torch_gates ? j : (j < H ? j + H : (j < 2 * H ? j - H : j));
}
static inline REAL SFX(gate_sign)(int64_t j, int64_t H, int64_t torch_gates) { return torch_gates && j < H ? (REAL)-1 : (REAL)1; }

/* The caller's [3H][K] weight m as the scan's [3H][PV] vectors (rows 1: row j = gate row j, padded)
   or as its transpose [K][PV] (rows 0: vector k holds column k of the gate rows, padded: what a
   product x W^T reads); zero-padded; NULL when out of memory. */
static VEC *SFX(gates)(const REAL *m, int64_t H, int64_t K, int64_t PV, int64_t torch_gates, int rows) {
    const int64_t n = rows ? 3 * H : K;
    VEC *out = aligned_alloc(sizeof(VEC), (size_t)(n * PV) * sizeof(VEC) + sizeof(VEC));
    if (!out) return NULL;
    memset(out, 0, (size_t)(n * PV) * sizeof(VEC));
    for (int64_t j = 0; j < 3 * H; j++) {
        const REAL *src = m + SFX(gate_row)(j, H, torch_gates) * K, sign = SFX(gate_sign)(j, H, torch_gates);
        for (int64_t k = 0; k < K; k++) {
            if (rows) ((REAL *)(out + j * PV))[k] = sign * src[k];
            else ((REAL *)(out + k * PV))[j] = sign * src[k];
        }
    }
    return out;
}

/* Forward; returns 0, or 1 when out of memory. The input projection xs_t = W x_t + bx is taken per
   step here (x [B, T, D], W [3H, D], bx [3H] or NULL), over real positions only, so it is never
   written out. ur [B, T, 2H], cs [B, T, H], hpc [B, T, H] (U^c h_{t-1} + bh^c) are saved for the
   backward when not NULL. U is [3H, H]. W, U and the biases are in torch's nn.GRU gate layout when
   torch_gates is 1 (gate_row). Rows are stepped ROWS at a time in the order ``order`` (a
   permutation of 0..B-1; NULL: 0..B-1): rows of similar lengths together waste no steps. */
int SFX(ctr_gru_fwd)(int64_t B, int64_t T, int64_t H, int64_t D, const REAL *x, const REAL *Wm, const REAL *bx,
                     const REAL *U, const REAL *bh, const REAL *g0, const REAL *g1, const int64_t *len,
                     const int64_t *order, REAL *h_seq, REAL *h_last, REAL *ur, REAL *cs, REAL *hpc, int64_t torch_gates) {
    const int64_t H2 = 2 * H, H3 = 3 * H, PV = (H3 + W - 1) / W;
    const int agru = g0 != NULL && g1 == NULL;
    VEC *Uv = SFX(gates)(U, H, H, PV, torch_gates, 0), *bv = bh ? SFX(gates)(bh, H, 1, PV, torch_gates, 0) : NULL;
    VEC *Wv = SFX(gates)(Wm, H, D, PV, torch_gates, 0), *bxv = bx ? SFX(gates)(bx, H, 1, PV, torch_gates, 0) : NULL;
    VEC *acc = aligned_alloc(sizeof(VEC), (size_t)(2 * ROWS * PV) * sizeof(VEC));
    REAL *zero = calloc((size_t)(H > D ? H : D), sizeof(REAL)), *ur_tmp = malloc((size_t)H2 * sizeof(REAL)), *c_tmp = malloc((size_t)H * sizeof(REAL));
    int status = 0;
    if (!Uv || (bh && !bv) || !Wv || (bx && !bxv) || !acc || !zero || !ur_tmp || !c_tmp) { status = 1; goto done; }
    FLUSH_SUBNORMALS;
    VEC *const out[ROWS] = {acc, acc + PV, acc + 2 * PV, acc + 3 * PV};
    VEC *const xout[ROWS] = {acc + 4 * PV, acc + 5 * PV, acc + 6 * PV, acc + 7 * PV};
    for (int64_t b0 = 0; b0 < B; b0 += ROWS) {
        int64_t L[ROWS], row[ROWS];
        const int64_t Lmax = SFX(block_rows)(b0, B, T, len, order, row, L);
        for (int64_t t = 0; t < Lmax; t++) {
            const REAL *hprev[ROWS], *xin[ROWS];
            for (int r = 0; r < ROWS; r++) {
                hprev[r] = t > 0 && t < L[r] ? h_seq + (row[r] * T + t - 1) * H : zero;
                xin[r] = t < L[r] ? x + (row[r] * T + t) * D : zero;
            }
            SFX(rows_times)(xin, D, Wv, PV, bxv, xout);  /* xs_t = W x_t + bx */
            SFX(rows_times)(hprev, H, Uv, PV, bv, out);  /* U h_{t-1} + bh */
            for (int r = 0; r < ROWS; r++) {
                if (t >= L[r]) continue;
                const int64_t i = row[r] * T + t;
                const REAL *xs = (const REAL *)xout[r], *a = (const REAL *)out[r], *h = hprev[r];
                REAL *g = ur ? ur + i * H2 : ur_tmp;
                for (int64_t j = 0; j < H2; j++) g[j] = SFX(sigmoid)(xs[j] + a[j]);
                REAL *c = cs ? cs + i * H : c_tmp;
                for (int64_t j = 0; j < H; j++) c[j] = SFX(tanh)(xs[H2 + j] + g[H + j] * a[H2 + j]);
                if (hpc) memcpy(hpc + i * H, a + H2, (size_t)H * sizeof(REAL));
                const REAL a0 = g0 ? g0[i] : 0, a1 = agru ? 0 : (g1 ? g1[i] : 1);
                REAL *hn = h_seq + i * H;
                for (int64_t j = 0; j < H; j++) hn[j] = h[j] + (a0 + a1 * g[j]) * (c[j] - h[j]);
            }
        }
        for (int r = 0; r < ROWS && row[r] >= 0; r++) {
            const int64_t b = row[r];
            if (L[r] < T) memset(h_seq + (b * T + L[r]) * H, 0, (size_t)((T - L[r]) * H) * sizeof(REAL));
            memcpy(h_last + b * H, L[r] > 0 ? h_seq + (b * T + L[r] - 1) * H : zero, (size_t)H * sizeof(REAL));
        }
    }
    RESTORE_MODE;
done:
    free(Uv); free(bv); free(Wv); free(bxv); free(acc); free(zero); free(ur_tmp); free(c_tmp);
    return status;
}

/* One step of one row in the backward, through the gates: d_xs, d_p (see ctr_gru_bwd), d u'_t per
   unit (due, for d_g0 / d_g1) and the (1 - u'_t) part of dh_{t-1}. A function of its own so that
   its pointers are restrict-qualified and the loop vectorises. */
static inline void SFX(bwd_gates)(int64_t H, REAL a0, REAL a1, const REAL *restrict dh, const REAL *restrict hp,
                                  const REAL *restrict u, const REAL *restrict r, const REAL *restrict c,
                                  const REAL *restrict pc, REAL *restrict dx, REAL *restrict dp, REAL *restrict due,
                                  REAL *restrict dhn) {
    for (int64_t j = 0; j < H; j++) {
        const REAL ue = a0 + a1 * u[j];
        const REAL d_ue = dh[j] * (c[j] - hp[j]);
        const REAL dc = dh[j] * ue * (1 - c[j] * c[j]); /* through tanh */
        const REAL dpu = d_ue * a1 * u[j] * (1 - u[j]); /* through sigmoid */
        const REAL dpr = dc * pc[j] * r[j] * (1 - r[j]);
        due[j] = d_ue;
        dx[j] = dpu;
        dx[H + j] = dpr;
        dx[2 * H + j] = dc;
        dp[j] = dpu;
        dp[H + j] = dpr;
        dp[2 * H + j] = dc * r[j];
        dhn[j] = dh[j] * (1 - ue); /* the (1 - u'_t) h_{t-1} path */
    }
}

/* sum_j a[j] b[j] (b NULL: sum_j a[j]), in W partial sums: a chain of scalar additions would wait on
   each addition's latency. */
static inline REAL SFX(dot)(const REAL *a, const REAL *b, int64_t n) {
    VEC acc = {0};
    int64_t j = 0;
    for (; j + W <= n; j += W) {
        VEC x, y;
        memcpy(&x, a + j, sizeof x);
        if (b) {
            memcpy(&y, b + j, sizeof y);
            x *= y;
        }
        acc += x;
    }
    REAL s = 0;
    for (int k = 0; k < W; k++) s += acc[k];
    for (; j < n; j++) s += b ? a[j] * b[j] : a[j];
    return s;
}

/* out[k0 + q][v0 + j] += sum_{i < n} d[i][k0 + q] hv[i][v0 + j] for q < NK, j < NV (vectors): one tile of
   a block's weight gradient, its NK x NV accumulators in registers over the block's n (step, row) pairs. */
static inline __attribute__((always_inline)) void SFX(outer_tile)(int64_t n, int64_t K, const REAL *d, const VEC *hv, int64_t PV,
                                                                  int64_t k0, int64_t v0, const int NK, const int NV, VEC *out) {
    const VEC zero = {0};
    VEC a[4][3];
    for (int q = 0; q < 4; q++)
        for (int j = 0; j < 3; j++) a[q][j] = zero;
    for (int64_t i = 0; i < n; i++) {
        const VEC *h = hv + i * PV + v0;
        const REAL *di = d + i * K + k0;
        const VEC h0 = h[0], h1 = NV > 1 ? h[1] : zero, h2 = NV > 2 ? h[2] : zero;
        for (int q = 0; q < 4; q++) {
            if (q >= NK) break;
            const REAL s = di[q];
            a[q][0] += s * h0;
            if (NV > 1) a[q][1] += s * h1;
            if (NV > 2) a[q][2] += s * h2;
        }
    }
    for (int q = 0; q < NK; q++)
        for (int j = 0; j < NV; j++) out[(k0 + q) * PV + v0 + j] += a[q][j];
}

/* out[k][0..PV) += sum_{i < n} d[i][k] hv[i][0..PV), for k < K (d: n rows of K; hv: n rows of PV
   vectors): a block's weight gradient sum_t d_t h^T as one product over its (step, row) pairs, taken
   after its steps (per step, the [K][PV] accumulators would be read and written back every step). */
static void SFX(outer_sum)(int64_t n, int64_t K, const REAL *d, const VEC *hv, int64_t PV, VEC *out) {
    for (int64_t k0 = 0; k0 < K; k0 += 4) {
        const int64_t nk = K - k0 < 4 ? K - k0 : 4;
        for (int64_t v0 = 0; v0 < PV; v0 += 3) {
            const int64_t nv = PV - v0 < 3 ? PV - v0 : 3;
            if (nk == 4) {
                if (nv == 3) SFX(outer_tile)(n, K, d, hv, PV, k0, v0, 4, 3, out);
                else if (nv == 2) SFX(outer_tile)(n, K, d, hv, PV, k0, v0, 4, 2, out);
                else SFX(outer_tile)(n, K, d, hv, PV, k0, v0, 4, 1, out);
            } else {
                for (int64_t q = 0; q < nk; q++) {
                    if (nv == 3) SFX(outer_tile)(n, K, d, hv, PV, k0 + q, v0, 1, 3, out);
                    else if (nv == 2) SFX(outer_tile)(n, K, d, hv, PV, k0 + q, v0, 1, 2, out);
                    else SFX(outer_tile)(n, K, d, hv, PV, k0 + q, v0, 1, 1, out);
                }
            }
        }
    }
}

/* Backward; returns 0, or 1 when out of memory. grad_seq [B, T, H] (the gradient of h_seq) and
   grad_last [B, H] (of h_last) may be NULL. Writes d_x [B, T, D] (of x; 0 at positions past a row's
   length), d_W [3H, D] = sum_t d_xs_t x_t^T and d_bx [3H] = sum_t d_xs_t (d_xs_t: the gradient of
   the input projection), d_U [3H, H] = sum_t d_p_t h_{t-1}^T and d_bh [3H] = sum_t d_p_t (d_p_t:
   of U h_{t-1} + bh), and d_g0 / d_g1 [B, T] (0 past a row's length); d_bx, d_bh, d_g0 and d_g1
   when not NULL. W is [3H, D], U [3H, H], and they and the gradients are in torch's nn.GRU gate
   layout when torch_gates is 1 (gate_row). The steps of a block of ROWS rows keep their d_p_t,
   d_xs_t, h_{t-1} and x_t; the block's sums over its steps are taken after them (outer_sum), then
   added over blocks. */
int SFX(ctr_gru_bwd)(int64_t B, int64_t T, int64_t H, int64_t D, const REAL *x, const REAL *Wm, const REAL *U,
                     const REAL *g0, const REAL *g1, const int64_t *len, const int64_t *order, const REAL *h_seq,
                     const REAL *ur, const REAL *cs, const REAL *hpc, const REAL *grad_seq, const REAL *grad_last,
                     REAL *d_x, REAL *d_W, REAL *d_bx, REAL *d_U, REAL *d_bh, REAL *d_g0, REAL *d_g1, int64_t torch_gates) {
    const int64_t H2 = 2 * H, H3 = 3 * H, PV = (H + W - 1) / W, PD = (D + W - 1) / W, NP = (T > 0 ? T : 1) * ROWS;
    const int agru = g0 != NULL && g1 == NULL;
    VEC *Uv = SFX(gates)(U, H, H, PV, torch_gates, 1), *Wv = SFX(gates)(Wm, H, D, PD, torch_gates, 1);
    VEC *back = aligned_alloc(sizeof(VEC), (size_t)(ROWS * PV) * sizeof(VEC)), *dxo = aligned_alloc(sizeof(VEC), (size_t)(ROWS * PD) * sizeof(VEC));
    /* a block's (step, row) pairs: h_{t-1} and x_t padded to whole vectors (the padding lanes stay 0), d_p_t and d_xs_t */
    VEC *hb = aligned_alloc(sizeof(VEC), (size_t)(NP * PV) * sizeof(VEC)), *xb = aligned_alloc(sizeof(VEC), (size_t)(NP * PD) * sizeof(VEC));
    REAL *dpb = malloc((size_t)(NP * H3) * sizeof(REAL)), *dxb = malloc((size_t)(NP * H3) * sizeof(REAL));
    VEC *dU_all = aligned_alloc(sizeof(VEC), (size_t)(H3 * PV) * sizeof(VEC)), *dW_all = aligned_alloc(sizeof(VEC), (size_t)(H3 * PD) * sizeof(VEC));
    REAL *zero = calloc((size_t)H3, sizeof(REAL)), *dh = malloc((size_t)(ROWS * H) * sizeof(REAL));
    REAL *dhn = malloc((size_t)(ROWS * H) * sizeof(REAL)), *due = malloc((size_t)H * sizeof(REAL));
    REAL *sums = calloc((size_t)(4 * H3), sizeof(REAL)); /* d_bh and d_bx: per block, then over blocks */
    int status = 0;
    if (!Uv || !Wv || !back || !dxo || !hb || !xb || !dpb || !dxb || !dU_all || !dW_all || !zero || !dh || !dhn || !due || !sums) {
        status = 1;
        goto done;
    }
    FLUSH_SUBNORMALS;
    REAL *dbh_blk = sums, *dbh_all = sums + H3, *dbx_blk = sums + 2 * H3, *dbx_all = sums + 3 * H3;
    memset(hb, 0, (size_t)(NP * PV) * sizeof(VEC));
    memset(xb, 0, (size_t)(NP * PD) * sizeof(VEC));
    memset(dU_all, 0, (size_t)(H3 * PV) * sizeof(VEC));
    memset(dW_all, 0, (size_t)(H3 * PD) * sizeof(VEC));
    VEC *const out[ROWS] = {back, back + PV, back + 2 * PV, back + 3 * PV};
    VEC *const dx_out[ROWS] = {dxo, dxo + PD, dxo + 2 * PD, dxo + 3 * PD};
    for (int64_t b0 = 0; b0 < B; b0 += ROWS) {
        int64_t L[ROWS], row[ROWS];
        const int64_t Lmax = SFX(block_rows)(b0, B, T, len, order, row, L);
        for (int r = 0; r < ROWS; r++) {
            const int64_t b = row[r];
            for (int64_t j = 0; j < H; j++) dh[r * H + j] = b >= 0 && grad_last ? grad_last[b * H + j] : 0;
            if (b >= 0 && L[r] < T) {
                const int64_t i = b * T + L[r], n = T - L[r];
                memset(d_x + i * D, 0, (size_t)(n * D) * sizeof(REAL));
                if (d_g0) memset(d_g0 + i, 0, (size_t)n * sizeof(REAL));
                if (d_g1) memset(d_g1 + i, 0, (size_t)n * sizeof(REAL));
            }
        }
        int64_t n = 0; /* the block's (step, row) pairs so far */
        for (int64_t t = Lmax - 1; t >= 0; t--) {
            const REAL *dps[ROWS], *dxss[ROWS];
            for (int r = 0; r < ROWS; r++) {
                dps[r] = dxss[r] = zero;
                if (t >= L[r]) continue;
                const int64_t i = row[r] * T + t;
                REAL *dhr = dh + r * H, *dpr = dpb + n * H3, *dxr = dxb + n * H3;
                if (grad_seq)
                    for (int64_t j = 0; j < H; j++) dhr[j] += grad_seq[i * H + j];
                const REAL *u = ur + i * H2, *hp = t > 0 ? h_seq + (i - 1) * H : zero;
                const REAL a0 = g0 ? g0[i] : 0, a1 = agru ? 0 : (g1 ? g1[i] : 1);
                SFX(bwd_gates)(H, a0, a1, dhr, hp, u, u + H, cs + i * H, hpc + i * H, dxr, dpr, due, dhn + r * H);
                if (d_g0) d_g0[i] = SFX(dot)(due, NULL, H);
                if (d_g1) d_g1[i] = SFX(dot)(due, u, H);
                memcpy((REAL *)(hb + n * PV), hp, (size_t)H * sizeof(REAL));
                memcpy((REAL *)(xb + n * PD), x + i * D, (size_t)D * sizeof(REAL));
                dps[r] = dpr;
                dxss[r] = dxr;
                n++;
            }
            SFX(rows_times)(dps, H3, Uv, PV, NULL, out);     /* the U h_{t-1} path: d_p_t U */
            SFX(rows_times)(dxss, H3, Wv, PD, NULL, dx_out); /* d_x_t = d_xs_t W */
            for (int r = 0; r < ROWS; r++) {
                if (t >= L[r]) continue;
                const REAL *back_r = (const REAL *)out[r];
                for (int64_t j = 0; j < H; j++) dh[r * H + j] = dhn[r * H + j] + back_r[j];
                memcpy(d_x + (row[r] * T + t) * D, (const REAL *)dx_out[r], (size_t)D * sizeof(REAL));
            }
        }
        SFX(outer_sum)(n, H3, dpb, hb, PV, dU_all); /* d_U += sum_t d_p_t h_{t-1}^T */
        SFX(outer_sum)(n, H3, dxb, xb, PD, dW_all); /* d_W += sum_t d_xs_t x_t^T */
        memset(dbh_blk, 0, (size_t)H3 * sizeof(REAL));
        memset(dbx_blk, 0, (size_t)H3 * sizeof(REAL));
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < H3; k++) {
                dbh_blk[k] += dpb[i * H3 + k];
                dbx_blk[k] += dxb[i * H3 + k];
            }
        for (int64_t k = 0; k < H3; k++) {
            dbh_all[k] += dbh_blk[k];
            dbx_all[k] += dbx_blk[k];
        }
    }
    for (int64_t k = 0; k < H3; k++) { /* back to the caller's layout */
        const int64_t to = SFX(gate_row)(k, H, torch_gates);
        const REAL sign = SFX(gate_sign)(k, H, torch_gates);
        for (int64_t j = 0; j < H; j++) d_U[to * H + j] = sign * ((const REAL *)(dU_all + k * PV))[j];
        for (int64_t j = 0; j < D; j++) d_W[to * D + j] = sign * ((const REAL *)(dW_all + k * PD))[j];
        if (d_bh) d_bh[to] = sign * dbh_all[k];
        if (d_bx) d_bx[to] = sign * dbx_all[k];
    }
    RESTORE_MODE;
done:
    free(Uv); free(Wv); free(back); free(dxo); free(hb); free(xb); free(dpb); free(dxb); free(dU_all); free(dW_all);
    free(zero); free(dh); free(dhn); free(due); free(sums);
    return status;
}
