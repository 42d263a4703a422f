/* Logistic regression's whole training step under plain SGD (models/lr.py; the DIN paper's
   Table 3 LR row: SGD, learning rate 1, batches of 32, the global gradient norm clipped at 5),
   in two calls (ctrbench/train/lr_step.py: NativeLRStep):

   ctr_lr_grad_f32: the forward pass, the mean binary cross-entropy and its gradient,

       z_b   = bias + w_item[i_b] + w_cate[c_b] + pool_j (u_item[h_bj] + u_cate[k_bj]) (+ w_user[u_b])
       loss  = 1/B sum_b [ max(z_b, 0) - y_b z_b + log(1 + exp(-|z_b|)) ]
       dz_b  = (sigmoid(z_b) - y_b) / B

     pool: the mean (or the sum) over the history's real positions (mask true; an empty history
     pools to 0). Each table's gradient is summed into a zeroed scratch buffer of the table's size;
     the rows it touches are listed once (a mark per row), so the squared global norm (every
     table's summed rows and the bias, in double) and the update read only those rows.

   ctr_lr_apply_f32: w_r <- w_r + alpha g_r over each table's listed rows and the bias (alpha =
     -lr c, c the clipping factor the caller computed from the norm), or no update when the caller
     discards the step (a non-finite loss or norm); either way the scratch rows and marks are
     cleared for the next step.

   The same updates as the autograd step with FlatSGD (train/flat_sgd.py) up to float rounding: the
   loss and the norm are summed in double, the repeated rows in another order. Why native: LR's
   step is ~15 torch ops forward and as many backward over a few hundred numbers, each op 3-10 us
   of dispatch, ~0.6 ms a step at batch 32. Compiled with gru_scan.c into one library. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define LR_TABLES 5 /* w_item, w_cate, u_item, u_cate, w_user (absent: NULL) */

static inline void add_row(float *g, uint8_t *mark, int64_t *rows, int64_t *count, int64_t r, float d) {
    if (!mark[r]) {
        mark[r] = 1;
        rows[(*count)++] = r;
    }
    g[r] += d;
}

static int ids_in_range(const int64_t *ids, int64_t n, int64_t rows, const uint8_t *mask) {
    for (int64_t k = 0; k < n; k++)
        if ((mask == NULL || mask[k]) && (ids[k] < 0 || ids[k] >= rows)) return 0;
    return 1;
}

/* Returns 0, or 2 when an id lies outside its table (nothing written). out[0]: the mean loss;
   out[1]: the squared global gradient norm; out[2]: the bias gradient. */
int ctr_lr_grad_f32(int64_t B, int64_t L, const int64_t *item, const int64_t *cate, const int64_t *user,
                    const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, const float *label,
                    int64_t mean, const float *bias, void **w, void **g, void **mark, void **rows,
                    const int64_t *n_rows, int64_t *count, double *out) {
    const float *wi = w[0], *wc = w[1], *ui = w[2], *uc = w[3], *wu = w[4];
    if (!ids_in_range(item, B, n_rows[0], NULL) || !ids_in_range(cate, B, n_rows[1], NULL) ||
        !ids_in_range(hist_item, B * L, n_rows[2], mask) || !ids_in_range(hist_cate, B * L, n_rows[3], mask) ||
        (wu != NULL && !ids_in_range(user, B, n_rows[4], NULL)))
        return 2;
    double loss = 0.0, g_bias = 0.0;
    const float inv_b = 1.0f / (float)B;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *hi = hist_item + b * L, *hc = hist_cate + b * L;
        const uint8_t *m = mask + b * L;
        float z = bias[0] + wi[item[b]] + wc[cate[b]];
        float pooled = 0.0f;
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++)
            if (m[j]) {
                pooled += ui[hi[j]] + uc[hc[j]];
                n++;
            }
        if (mean && n > 0) pooled /= (float)n;
        z += pooled;
        if (wu != NULL) z += wu[user[b]];
        const float y = label[b];
        loss += (double)fmaxf(z, 0.0f) - (double)y * z + log1p(exp(-fabs((double)z)));
        const float dz = (1.0f / (1.0f + expf(-z)) - y) * inv_b;
        g_bias += dz;
        add_row(g[0], mark[0], rows[0], &count[0], item[b], dz);
        add_row(g[1], mark[1], rows[1], &count[1], cate[b], dz);
        if (wu != NULL) add_row(g[4], mark[4], rows[4], &count[4], user[b], dz);
        const float dh = (mean && n > 0) ? dz / (float)n : dz;
        for (int64_t j = 0; j < L; j++)
            if (m[j]) {
                add_row(g[2], mark[2], rows[2], &count[2], hi[j], dh);
                add_row(g[3], mark[3], rows[3], &count[3], hc[j], dh);
            }
    }
    double sumsq = (double)(float)g_bias * (double)(float)g_bias;
    for (int t = 0; t < LR_TABLES; t++) {
        if (w[t] == NULL) continue;
        const float *gt = g[t];
        const int64_t *rt = rows[t];
        for (int64_t k = 0; k < count[t]; k++) sumsq += (double)gt[rt[k]] * gt[rt[k]];
    }
    out[0] = loss / (double)B;
    out[1] = sumsq;
    out[2] = (double)(float)g_bias;
    return 0;
}

void ctr_lr_apply_f32(int64_t update, float alpha, float g_bias, float *bias, void **w, void **g, void **mark, void **rows,
                      int64_t *count) {
    if (update) bias[0] += alpha * g_bias;
    for (int t = 0; t < LR_TABLES; t++) {
        if (w[t] == NULL) continue;
        float *wt = w[t], *gt = g[t];
        uint8_t *mt = mark[t];
        const int64_t *rt = rows[t];
        for (int64_t k = 0; k < count[t]; k++) {
            const int64_t r = rt[k];
            if (update) wt[r] += alpha * gt[r];
            gt[r] = 0.0f;
            mt[r] = 0;
        }
        count[t] = 0;
    }
}
