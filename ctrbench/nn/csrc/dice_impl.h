/* Body of dice.c for one floating type: REAL, SFX(name). Sums over the rows are taken in double. */

/* Forward over x [N, H] (row-major, N >= 1): the per-unit mean and biased variance of the rows,
   rstd = 1 / (sqrt(var + eps) + c), p = sigmoid((x - mean) rstd) (saved for the backward) and
   out = x (alpha + (1 - alpha) p). Returns 0, or 1 when out of memory. */
int SFX(ctr_dice_fwd)(int64_t N, int64_t H, const REAL *x, const REAL *alpha, double eps, double c, REAL *out, REAL *p,
                      REAL *mean, REAL *var, REAL *rstd) {
    double *s = calloc((size_t)H, sizeof(double)), *s2 = calloc((size_t)H, sizeof(double));
    if (!s || !s2) {
        free(s);
        free(s2);
        return 1;
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < H; j++) s[j] += x[i * H + j];
    for (int64_t j = 0; j < H; j++) mean[j] = (REAL)(s[j] / (double)N);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < H; j++) {
            const double d = (double)x[i * H + j] - (double)mean[j];
            s2[j] += d * d;
        }
    for (int64_t j = 0; j < H; j++) {
        var[j] = (REAL)(s2[j] / (double)N);
        rstd[j] = (REAL)(1.0 / (sqrt((double)var[j] + eps) + c));
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < H; j++) {
            const int64_t k = i * H + j;
            const REAL q = (REAL)1 / ((REAL)1 + SFX(exp)(-(x[k] - mean[j]) * rstd[j]));
            p[k] = q;
            out[k] = x[k] * (alpha[j] + ((REAL)1 - alpha[j]) * q);
        }
    free(s);
    free(s2);
    return 0;
}

/* Backward: g [N, H], the gradient of out -> dx [N, H] and dalpha [H]. With z = (x - mean) / s,
   s = sqrt(var + eps) + c and q = sqrt(var + eps), batch normalisation's backward through the mean
   and the variance of the rows:
       gz     = g x (1 - alpha) p (1 - p)
       dx     = g (alpha + (1 - alpha) p) + (gz - mean_i gz) / s - (x - mean) mean_i(gz (x - mean)) / (s^2 q)
       dalpha = sum_i g x (1 - p)
   Returns 0, or 1 when out of memory. */
int SFX(ctr_dice_bwd)(int64_t N, int64_t H, const REAL *x, const REAL *alpha, const REAL *p, const REAL *mean,
                      const REAL *var, const REAL *rstd, double eps, const REAL *g, REAL *dx, REAL *dalpha) {
    double *sgz = calloc((size_t)H, sizeof(double)), *sgzd = calloc((size_t)H, sizeof(double)), *sa = calloc((size_t)H, sizeof(double));
    REAL *k1 = malloc((size_t)H * sizeof(REAL)), *k2 = malloc((size_t)H * sizeof(REAL));
    int status = 0;
    if (!sgz || !sgzd || !sa || !k1 || !k2) {
        status = 1;
        goto done;
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < H; j++) {
            const int64_t k = i * H + j;
            const REAL gz = g[k] * x[k] * ((REAL)1 - alpha[j]) * p[k] * ((REAL)1 - p[k]);
            sgz[j] += gz;
            sgzd[j] += (double)gz * ((double)x[k] - (double)mean[j]);
            sa[j] += (double)g[k] * x[k] * ((REAL)1 - p[k]);
        }
    for (int64_t j = 0; j < H; j++) {
        k1[j] = (REAL)(sgz[j] / (double)N);
        k2[j] = (REAL)(sgzd[j] / (double)N * (double)rstd[j] * (double)rstd[j] / sqrt((double)var[j] + eps));
        dalpha[j] = (REAL)sa[j];
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < H; j++) {
            const int64_t k = i * H + j;
            const REAL gz = g[k] * x[k] * ((REAL)1 - alpha[j]) * p[k] * ((REAL)1 - p[k]);
            dx[k] = g[k] * (alpha[j] + ((REAL)1 - alpha[j]) * p[k]) + (gz - k1[j]) * rstd[j] - (x[k] - mean[j]) * k2[j];
        }
done:
    free(sgz);
    free(sgzd);
    free(sa);
    free(k1);
    free(k2);
    return status;
}
