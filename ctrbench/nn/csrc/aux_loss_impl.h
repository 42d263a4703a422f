/* Body of aux_loss.c for one floating type: REAL, SFX(name). h, e, ê: [B, L, H] row-major; mask
   [B, L] (bytes, nonzero: a real position). A pair (b, t) counts when mask[b, t] and mask[b, t+1]. */

/* <a, b> over n, in eight partial sums (vectorised). */
static inline REAL SFX(aux_dot)(const REAL *a, const REAL *b, int64_t n) {
    REAL acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    REAL s = 0;
    for (; j < n; j++) s += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s;
}

/* softplus(s) (torch's: beta 1, threshold 20: s above 20, else log(1 + exp(s))) and sigmoid(s), from
   one exponential: with q = exp(-|s|), softplus(s) = max(s, 0) + log1p(q), sigmoid(s) = 1 / (1 + q)
   for s >= 0, q / (1 + q) below. */
static inline REAL SFX(aux_softplus_sigmoid)(REAL s, REAL *sig) {
    const REAL q = SFX(exp)(-(s < 0 ? -s : s));
    *sig = s >= 0 ? (REAL)1 / ((REAL)1 + q) : q / ((REAL)1 + q);
    return s > (REAL)20 ? s : (s > 0 ? s : (REAL)0) + SFX(log1p)(q);
}

/* out[0]: the sum over counted pairs of softplus(-s+) + softplus(s-); out[1]: the pairs counted.
   sig [B, L, 2]: sigmoid(s+) and sigmoid(s-) of each counted pair (b, t), for the backward. */
void SFX(ctr_aux_fwd)(int64_t B, int64_t L, int64_t H, const REAL *h, const REAL *e, const REAL *en, const uint8_t *mask,
                      REAL *sig, double *out) {
    double total = 0.0;
    int64_t pairs = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t + 1 < L; t++) {
            if (!mask[b * L + t] || !mask[b * L + t + 1]) continue;
            const REAL *ht = h + (b * L + t) * H, *ep = e + (b * L + t + 1) * H, *eq = en + (b * L + t + 1) * H;
            REAL sp_sig, sn_sig;
            const REAL sp = SFX(aux_dot)(ht, ep, H), sn = SFX(aux_dot)(ht, eq, H);
            const REAL lp = SFX(aux_softplus_sigmoid)(-sp, &sp_sig), ln = SFX(aux_softplus_sigmoid)(sn, &sn_sig);
            sig[(b * L + t) * 2] = (REAL)1 - sp_sig; /* sigmoid(s+) = 1 - sigmoid(-s+) */
            sig[(b * L + t) * 2 + 1] = sn_sig;
            total += (double)(lp + ln);
            pairs++;
        }
    out[0] = total;
    out[1] = (double)pairs;
}

/* With g = dL_aux/d(sum over pairs) (the loss's gradient over its denominator) and the forward's
   sig: dh, de, dê [B, L, H], every element written (0 where no counted pair reaches it). */
void SFX(ctr_aux_bwd)(int64_t B, int64_t L, int64_t H, const REAL *h, const REAL *e, const REAL *en, const uint8_t *mask,
                      const REAL *sig, double g, REAL *dh, REAL *de, REAL *den) {
    if (L == 0) return;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < H; j++) { /* position 0 of e and ê, and position L-1 of h, take no pair's gradient */
            de[b * L * H + j] = 0;
            den[b * L * H + j] = 0;
            dh[((b + 1) * L - 1) * H + j] = 0;
        }
        for (int64_t t = 0; t + 1 < L; t++) {
            const int64_t i = (b * L + t) * H, k = i + H;
            if (!mask[b * L + t] || !mask[b * L + t + 1]) {
                for (int64_t j = 0; j < H; j++) {
                    dh[i + j] = 0;
                    de[k + j] = 0;
                    den[k + j] = 0;
                }
                continue;
            }
            const REAL gp = (sig[(b * L + t) * 2] - (REAL)1) * (REAL)g; /* d softplus(-s)/ds = sigmoid(s) - 1 */
            const REAL gn = sig[(b * L + t) * 2 + 1] * (REAL)g;
            for (int64_t j = 0; j < H; j++) {
                dh[i + j] = gp * e[k + j] + gn * en[k + j];
                de[k + j] = gp * h[i + j];
                den[k + j] = gn * h[i + j];
            }
        }
    }
}
