/* One weight per id under plain SGD: logistic regression's whole training step (models/lr.py; the
   DIN paper's Table 3 LR row: SGD, learning rate 1, batches of 32, the global gradient norm clipped
   at 5) and the first-order part of Wide&Deep and DeepFM (models/fields.py: FirstOrder), with
   ctrbench/nn/native_first_order.py (FirstOrderRows) and ctrbench/train/native_step.py:

       z_b = w_item[i_b] + w_cate[c_b] + pool_j (u_item[h_bj] + u_cate[k_bj]) (+ w_user[u_b])
             (+ mean_j (x_cate[hash(c_b, k_bj)] + x_item[hash(i_b, h_bj)]))

   pool: the mean (or the sum) over the history's real positions (mask true; an empty history pools
   to 0). The history's ids and mask are [B, L] with rows ld elements apart (the Batcher's batches
   are views into a group's wider gather). The last line is Wide&Deep's crosses (models/wdl.py): hash(a, b) = (a * 1,000,003 + b) mod
   the tables' n_buckets rows, averaged over the real positions. The seven tables are [n, 1] float32
   weights, in that order; an absent user table, and the cross tables of a model without crosses,
   are NULL.

   ctr_fo_forward_f32:  z_b (+ bias, as the caller's models add it first).
   ctr_fo_backward_f32: given dz_b, each table's gradient summed into a zeroed scratch buffer of the
     table's size; the rows it touches are listed once (a mark per row), so that the squared norm
     (returned, over every listed row, in double) and the update read only those rows.
   ctr_lr_grad_f32:     LR's step: the forward, the mean binary cross-entropy
       loss = 1/B sum_b [ max(z_b, 0) - y_b z_b + log(1 + exp(-|z_b|)) ],  dz_b = (sigmoid(z_b) - y_b) / B,
     the backward, the bias gradient and the squared global norm (tables and bias).
   ctr_fo_apply_f32:    w_r <- w_r + alpha g_r over the listed rows (alpha = -lr c, c the clipping
     factor the caller computed from the norm), or no update when the caller discards the step; either
     way the scratch rows and marks are cleared.

   The same updates as autograd with FlatSGD (train/flat_sgd.py) up to float rounding: the loss and
   the norm are summed in double, repeated rows in another order. Why native: a step of these tables
   is ~30 torch ops over a few hundred numbers at batch 32, each op 3-10 us of dispatch, and the
   dense backward of a one-weight table builds and the update reads a whole-table gradient (Amazon
   Electronics: 63,001 items). Compiled with gru_scan.c into one library. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define FO_TABLES 7 /* w_item, w_cate, u_item, u_cate, w_user, x_cate, x_item (absent: NULL) */
#define CROSS_MUL 1000003 /* models/wdl.py: WideDeep.bucket */

static int ids_in_range(const int64_t *ids, int64_t n, int64_t rows, const uint8_t *mask) {
    for (int64_t k = 0; k < n; k++)
        if ((mask == NULL || mask[k]) && (ids[k] < 0 || ids[k] >= rows)) return 0;
    return 1;
}

static int fo_ids_in_range(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                           const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, void **w,
                           const int64_t *n_rows) {
    if (!ids_in_range(item, B, n_rows[0], NULL) || !ids_in_range(cate, B, n_rows[1], NULL) ||
        (w[4] != NULL && !ids_in_range(user, B, n_rows[4], NULL)))
        return 0;
    for (int64_t b = 0; b < B; b++)
        if (!ids_in_range(hist_item + b * ld, L, n_rows[2], mask + b * ld) ||
            !ids_in_range(hist_cate + b * ld, L, n_rows[3], mask + b * ld))
            return 0;
    return 1;
}

/* z_b = bias + the first-order terms, in the models' order of additions. */
static void fo_forward(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                       const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, int64_t mean,
                       float bias, void **w, const int64_t *n_rows, float *z) {
    const float *wi = w[0], *wc = w[1], *ui = w[2], *uc = w[3], *wu = w[4];
    for (int64_t b = 0; b < B; b++) {
        const int64_t *hi = hist_item + b * ld, *hc = hist_cate + b * ld;
        const uint8_t *m = mask + b * ld;
        float t = bias + wi[item[b]] + wc[cate[b]];
        float pooled = 0.0f;
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++)
            if (m[j]) {
                pooled += ui[hi[j]] + uc[hc[j]];
                n++;
            }
        if (mean && n > 0) pooled /= (float)n;
        t += pooled;
        if (wu != NULL) t += wu[user[b]];
        if (w[5] != NULL) { /* Wide&Deep's crosses, averaged over the real positions */
            const float *xc = w[5], *xi = w[6];
            const int64_t nb = n_rows[5];
            float crosses = 0.0f;
            for (int64_t j = 0; j < L; j++)
                if (m[j]) crosses += xc[(cate[b] * CROSS_MUL + hc[j]) % nb] + xi[(item[b] * CROSS_MUL + hi[j]) % nb];
            if (n > 0) crosses /= (float)n;
            t += crosses;
        }
        z[b] = t;
    }
}

static inline void add_row(float *g, uint8_t *mark, int64_t *rows, int64_t *count, int64_t r, float d) {
    if (!mark[r]) {
        mark[r] = 1;
        rows[(*count)++] = r;
    }
    g[r] += d;
}

/* Accumulates dz into the scratch rows; returns the squared norm of every listed row. */
static double fo_backward(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                          const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, int64_t mean,
                          const float *dz, void **w, const int64_t *n_rows, void **g, void **mark, void **rows,
                          int64_t *count) {
    for (int64_t b = 0; b < B; b++) {
        const int64_t *hi = hist_item + b * ld, *hc = hist_cate + b * ld;
        const uint8_t *m = mask + b * ld;
        const float d = dz[b];
        add_row(g[0], mark[0], rows[0], &count[0], item[b], d);
        add_row(g[1], mark[1], rows[1], &count[1], cate[b], d);
        if (w[4] != NULL) add_row(g[4], mark[4], rows[4], &count[4], user[b], d);
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++) n += m[j] != 0;
        const float dh = (mean && n > 0) ? d / (float)n : d;
        for (int64_t j = 0; j < L; j++)
            if (m[j]) {
                add_row(g[2], mark[2], rows[2], &count[2], hi[j], dh);
                add_row(g[3], mark[3], rows[3], &count[3], hc[j], dh);
            }
        if (w[5] != NULL && n > 0) { /* the crosses' mean */
            const int64_t nb = n_rows[5];
            const float dx = d / (float)n;
            for (int64_t j = 0; j < L; j++)
                if (m[j]) {
                    add_row(g[5], mark[5], rows[5], &count[5], (cate[b] * CROSS_MUL + hc[j]) % nb, dx);
                    add_row(g[6], mark[6], rows[6], &count[6], (item[b] * CROSS_MUL + hi[j]) % nb, dx);
                }
        }
    }
    double sumsq = 0.0;
    for (int t = 0; t < FO_TABLES; t++) {
        if (w[t] == NULL) continue;
        const float *gt = g[t];
        const int64_t *rt = rows[t];
        for (int64_t k = 0; k < count[t]; k++) sumsq += (double)gt[rt[k]] * gt[rt[k]];
    }
    return sumsq;
}

/* Returns 0, or 2 when an id lies outside its table (nothing written). */
int ctr_fo_forward_f32(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                       const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, int64_t mean,
                       const float *bias, void **w, const int64_t *n_rows, float *z) {
    if (!fo_ids_in_range(B, L, ld, item, cate, user, hist_item, hist_cate, mask, w, n_rows)) return 2;
    fo_forward(B, L, ld, item, cate, user, hist_item, hist_cate, mask, mean, bias[0], w, n_rows, z);
    return 0;
}

/* Returns 0, or 2 when an id lies outside its table (nothing written); out[0]: the squared norm of
   the scratch's listed rows after adding this gradient. */
int ctr_fo_backward_f32(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                        const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, int64_t mean,
                        const float *dz, void **w, void **g, void **mark, void **rows, const int64_t *n_rows,
                        int64_t *count, double *out) {
    if (!fo_ids_in_range(B, L, ld, item, cate, user, hist_item, hist_cate, mask, w, n_rows)) return 2;
    out[0] = fo_backward(B, L, ld, item, cate, user, hist_item, hist_cate, mask, mean, dz, w, n_rows, g, mark, rows, count);
    return 0;
}

/* LR's step up to the update. Returns 0, or 2 when an id lies outside its table (nothing written);
   out[0]: the mean loss; out[1]: the squared global gradient norm; out[2]: the bias gradient. `z`:
   B floats of working memory. */
int ctr_lr_grad_f32(int64_t B, int64_t L, int64_t ld, const int64_t *item, const int64_t *cate, const int64_t *user,
                    const int64_t *hist_item, const int64_t *hist_cate, const uint8_t *mask, const float *label,
                    int64_t mean, const float *bias, void **w, void **g, void **mark, void **rows,
                    const int64_t *n_rows, int64_t *count, float *z, double *out) {
    if (!fo_ids_in_range(B, L, ld, item, cate, user, hist_item, hist_cate, mask, w, n_rows)) return 2;
    fo_forward(B, L, ld, item, cate, user, hist_item, hist_cate, mask, mean, bias[0], w, n_rows, z);
    double loss = 0.0, g_bias = 0.0;
    const float inv_b = 1.0f / (float)B;
    for (int64_t b = 0; b < B; b++) {
        const float zb = z[b], y = label[b];
        loss += (double)fmaxf(zb, 0.0f) - (double)y * zb + log1p(exp(-fabs((double)zb)));
        z[b] = (1.0f / (1.0f + expf(-zb)) - y) * inv_b; /* dz_b, in place */
        g_bias += z[b];
    }
    const double sumsq = fo_backward(B, L, ld, item, cate, user, hist_item, hist_cate, mask, mean, z, w, n_rows, g, mark, rows, count);
    const float gb = (float)g_bias;
    out[0] = loss / (double)B;
    out[1] = sumsq + (double)gb * gb;
    out[2] = gb;
    return 0;
}

/* `bias` (LR's; NULL for a first-order part, whose bias autograd steps) moves by alpha g_bias. */
void ctr_fo_apply_f32(int64_t update, float alpha, void **w, void **g, void **mark, void **rows, int64_t *count, float *bias,
                      float g_bias) {
    if (update && bias != NULL) bias[0] += alpha * g_bias;
    for (int t = 0; t < FO_TABLES; t++) {
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
