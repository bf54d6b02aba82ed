/* FSQ forward and backward in one pass each (see fsq.py for the formula and the tie rule).
 *
 * Built and loaded at run time by vistok.utils.native (plain C99 with GCC/Clang vector
 * extensions; OpenMP threads when the compiler has -fopenmp, else one thread; called
 * through ctypes).
 *
 * Forward, per element of z [N tokens][D channels], channel c:
 *     s = sigmoid(2 (z + shift_c)),  b = a_c s + nb_c,  r = round_half_even(b),
 *     q = r inv_hw_c,  digit = r + hw_c,  index = sum_c digit_c basis_c
 * (the index summed in float32: exact below 2^24 codes, which the caller checks).
 * b is the textbook tanh(z + shift_c) half_l_c - offset_c (a_c = 2 half_l_c, nb_c =
 * -(half_l_c + offset_c)) up to the error of this file's exp and division (measured: s
 * within 1e-7 of a float64 sigmoid); a token holding a value with |b - r| > tie (that close
 * to a rounding boundary) is flagged, and the caller recomputes its digits with the
 * textbook formula in torch, so indices and codes are bit-identical to it. s is kept for
 * the backward: grad_z = grad_q s (1 - s) deriv_c.
 *
 * Tokens go in blocks of W: a block's W * D values are D whole vectors, and the per-channel
 * constants, tiled to W * D values by the caller, line up with them.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
#define W 8      /* floats per vector = tokens per block */
#define MAX_D 64 /* most channels (levels) per token */

static inline vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }

static inline vf splat(float a) { return (vf){a, a, a, a, a, a, a, a}; }

/* m ? a : b per lane (m: all ones or all zeros, as vector comparisons give) */
static inline vf sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* exp(x) for x in [-87.3, 88.7] (clamped), Cephes' expf polynomial: ~1 ulp. */
static inline vf vexp(vf x) {
    const vf hi = splat(88.3762626647949f), lo = splat(-87.3365447505531f);
    x = sel(x > hi, hi, x);
    x = sel(x < lo, lo, x);
    const vf magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    vf k = (x * splat(1.44269504088896341f) + magic) - magic;
    vf f = x - k * splat(0.693359375f);
    f = f - k * splat(-2.12194440e-4f);
    vf p = splat(1.9875691500e-4f);
    p = p * f + splat(1.3981999507e-3f);
    p = p * f + splat(8.3334519073e-3f);
    p = p * f + splat(4.1665795894e-2f);
    p = p * f + splat(1.6666665459e-1f);
    p = p * f + splat(5.0000001201e-1f);
    p = p * f * f + f + splat(1.0f);
    vi e = (__builtin_convertvector(k, vi) + 127) << 23;
    vf scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* Tokens [lo, hi) (multiples of W except possibly at the end of the array, where the caller
   pads). consts: 5 arrays of W * D floats (shift2, a, nb, inv_hw, hw), tiled per element.
   basis: D int64. Writes q, s (float, N * D), index (int64, N) and near (uint8, N: 1 when the
   token must be recomputed). Returns the number of flagged tokens. */
/* N tokens (a multiple of W: the caller pads). consts: 6 arrays of W * D floats (shift2, a,
   nb, inv_hw, hw, deriv), per element; basis: D int64. Writes q, s (N * D floats), index (N
   int64) and near (N bytes: 1 when the token must be recomputed), and the first `cap`
   flagged tokens, in no particular order, to `flags`. Returns the number of flagged tokens
   (all of them, also beyond `cap`), or -1 for bad arguments. */
int64_t vistok_fsq_forward(const float *z, int64_t n, int64_t d, const float *consts, const int64_t *basis,
                           float tie, int threads, float *q, float *s, int64_t *index, uint8_t *near,
                           int64_t *flags, int64_t cap) {
    if (n % W != 0 || d < 1 || d > MAX_D) return -1;
    const int64_t block = W * d;
    const float *shift2 = consts, *a = consts + block, *nb = consts + 2 * block;
    const float *inv_hw = consts + 3 * block, *hw = consts + 4 * block;
    float bas[MAX_D];
    for (int64_t c = 0; c < d; c++) bas[c] = (float)basis[c];
    int64_t flagged = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t t = 0; t < n; t += W) {
        const vf magic = splat(12582912.0f), one = splat(1.0f), vtie = splat(tie);
        float dig[MAX_D * W];   /* the block's digits, token-major (element e = k * d + c) */
        int32_t nrm[MAX_D * W]; /* the block's near flags, token-major */
        const int64_t e0 = t * d;
        vi any = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t v = 0; v < d; v++) {
            const int64_t o = v * W;
            const vf u = load(z + e0 + o) * splat(2.0f) + load(shift2 + o);
            const vf sv = one / (one + vexp(-u));
            const vf b = load(a + o) * sv + load(nb + o);
            const vf r = (b + magic) - magic; /* round half to even (|b| < 2^22) */
            const vf frac = b - r;
            const vi nr = (frac > vtie) | (frac < -vtie);
            any |= nr;
            memcpy(nrm + o, &nr, sizeof nr);
            store(s + e0 + o, sv);
            store(q + e0 + o, r * load(inv_hw + o));
            store(dig + o, r + load(hw + o));
        }
        vf acc = splat(0.0f); /* lane k: token t + k's index, summed channel by channel */
        for (int64_t c = 0; c < d; c++) {
            const float *p = dig + c;
            const vf col = {p[0], p[d], p[2 * d], p[3 * d], p[4 * d], p[5 * d], p[6 * d], p[7 * d]};
            acc += col * splat(bas[c]);
        }
        int32_t any_lane = 0;
        for (int k = 0; k < W; k++) {
            index[t + k] = (int64_t)acc[k];
            any_lane |= any[k];
        }
        if (!any_lane) {
            memset(near + t, 0, W);
            continue;
        }
        for (int k = 0; k < W; k++) { /* rare: a value of this block is near a boundary */
            uint8_t nk = 0;
            for (int64_t c = 0; c < d; c++) nk |= nrm[k * d + c] != 0;
            near[t + k] = nk;
            if (nk) {
                int64_t slot;
#pragma omp atomic capture
                slot = flagged++;
                if (slot < cap) flags[slot] = t + k;
            }
        }
    }
    return flagged;
}

/* The flagged tokens again, from their textbook b = tanh(z + shift) half_l - offset
   (b_exact: M x D floats, computed by the caller with torch): round half to even, then q and
   the index as in the forward. consts and basis as in vistok_fsq_forward. */
void vistok_fsq_fix(const float *b_exact, const int64_t *rows, int64_t m, int64_t d, const float *consts,
                    const int64_t *basis, float *q, int64_t *index) {
    const int64_t block = W * d;
    const float *inv_hw = consts + 3 * block, *hw = consts + 4 * block; /* channel c at [c] */
    for (int64_t i = 0; i < m; i++) {
        const int64_t row = rows[i];
        int64_t idx = 0;
        for (int64_t c = 0; c < d; c++) {
            const float r = nearbyintf(b_exact[i * d + c]);
            q[row * d + c] = r * inv_hw[c];
            idx += (int64_t)(r + hw[c]) * basis[c];
        }
        index[row] = idx;
    }
}

/* grad_z = grad_q s (1 - s) deriv, N tokens (a multiple of W). Returns 0, or -1. */
int vistok_fsq_backward(const float *grad_q, const float *s, int64_t n, int64_t d, const float *deriv,
                        int threads, float *grad_z) {
    if (n % W != 0 || d < 1 || d > MAX_D) return -1;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t t = 0; t < n; t += W) {
        const int64_t e0 = t * d;
        for (int64_t v = 0; v < d; v++) {
            const int64_t o = v * W;
            const vf sv = load(s + e0 + o);
            store(grad_z + e0 + o, load(grad_q + e0 + o) * (sv - sv * sv) * load(deriv + o));
        }
    }
    return 0;
}

int vistok_fsq_tokens_per_block(void) { return W; }
int vistok_fsq_max_channels(void) { return MAX_D; }
