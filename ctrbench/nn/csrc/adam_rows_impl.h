/* Body of adam_rows.c for one floating type: REAL, SFX(name). */

/* Adam on n consecutive weights whose gradient is g, in torch's fused CPU Adam's order of operations
   (optim.adam's ``fused: true``), so that a step gives torch's values to the bit: its vectorised
   loop (``tail`` 0) fuses the second moment's multiply-add one way, its scalar loop over the last
   elements (``tail`` 1) the other. wd = 0 means no weight decay; lerp_small: |1 - beta1| < 0.5. */
static inline void SFX(adam_span)(int64_t n, REAL *restrict p, REAL *restrict m, REAL *restrict v, const REAL *restrict g,
                                  int tail, REAL wd, int lerp_small, REAL b1c, REAL b2, REAL b2c, REAL neg_step_size,
                                  REAL bc2_sqrt, REAL eps) {
    for (int64_t i = 0; i < n; i++) {
        const REAL gi = wd != 0 ? g[i] + p[i] * wd : g[i];                       /* L2 weight decay */
        m[i] = lerp_small ? SFX(fma)(b1c, gi - m[i], m[i]) : SFX(fma)(b1c - 1, gi - m[i], gi); /* m <- lerp(m, g, 1 - beta1) */
        v[i] = tail ? SFX(fma)(v[i], b2, (b2c * gi) * gi) : SFX(fma)(b2c * gi, gi, v[i] * b2); /* beta2 v + (1 - beta2) g^2 */
        const REAL denom = SFX(sqrt)(v[i]) / bc2_sqrt + eps;                      /* sqrt(v / (1 - beta2^t)) + eps */
        p[i] = p[i] + neg_step_size * m[i] / denom;                               /* -lr / (1 - beta1^t) */
    }
}

/* One Adam step of a [R, D] table p (moments m, v) whose gradient is the sparse gradient (idx [N],
   G [N, D]): rows idx[i] in any order, repeats summed in the order given into the zero buffer g
   [R, D] (as a dense backward adds them), zero on every row not listed. g is the caller's scratch,
   zero on entry and again on return: only the listed rows are written and cleared, and the update
   is one pass over the whole table (the long loop vectorises; its cost is the square roots and
   divisions, not the extra stream). lanes: the width of torch's vectors for REAL (its CPU
   capability's: 8 floats for AVX2), whose last n % lanes weights torch steps in its scalar loop.
   Returns 0, or 2 when an index is outside [0, R) (nothing is
   changed then). */
int SFX(ctr_adam_rows)(int64_t R, int64_t D, REAL *p, REAL *m, REAL *v, int64_t N, const int64_t *idx, const REAL *G,
                       REAL *g, int64_t lanes, double wd, double beta1, double beta2, double step_size, double bc2_sqrt, double eps) {
    for (int64_t i = 0; i < N; i++)
        if (idx[i] < 0 || idx[i] >= R) return 2;
    for (int64_t i = 0; i < N; i++) {
        REAL *restrict a = g + idx[i] * D;
        const REAL *restrict b = G + i * D;
        for (int64_t j = 0; j < D; j++) a[j] += b[j];
    }
    const REAL b1c = (REAL)(1.0 - beta1), wd_ = (REAL)wd, b2_ = (REAL)beta2, b2c = (REAL)(1.0 - beta2);
    const REAL ss = (REAL)(-step_size), bc = (REAL)bc2_sqrt, e = (REAL)eps;
    const int small = (b1c < 0 ? -b1c : b1c) < (REAL)0.5;
    const int64_t n = R * D, body = lanes > 0 ? n - n % lanes : n; /* torch's vectorised part, then its scalar tail */
    SFX(adam_span)(body, p, m, v, g, 0, wd_, small, b1c, b2_, b2c, ss, bc, e);
    SFX(adam_span)(n - body, p + body, m + body, v + body, g + body, 1, wd_, small, b1c, b2_, b2c, ss, bc, e);
    for (int64_t i = 0; i < N; i++) memset(g + idx[i] * D, 0, (size_t)D * sizeof(REAL));
    return 0;
}
