/* Fused nearest-code search: scores and their running argmax in registers, no score matrix.
 *
 * Built and loaded at run time by vistok.utils.native (plain C99, no Python or torch
 * headers; called through ctypes, which releases the GIL, so Python threads split the rows).
 *
 * For rows x[i] (D floats) and codes c[j] given transposed, ct[D][KP] with KP a multiple of
 * LANES, the score of code j is bias[j] + sum_d x[i][d] * ct[d][j], summed in the order
 * d = 0..D-1 in every lane, so equal codes get bit-equal scores wherever they sit. The
 * result is the index of the highest score; ties go to the lowest index, as a brute-force
 * argmax. Padded codes carry bias -inf and never win.
 *
 * Codes are walked in chunks of about 64 KiB of ct (kept in L2 while a thread's rows pass
 * over them); ROWS rows share each loaded code vector; each lane keeps its own running
 * best (strict >, so the first of equal scores in a lane), and the lanes are reduced once
 * per chunk (highest score, then lowest index), then merged into the row's running best
 * across chunks (strict >, chunks in increasing order).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* GCC/Clang vector extensions: lowered to AVX2, SSE, NEON... or scalar code, whatever the
   target has; no intrinsics, so the same file builds everywhere. */
typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
#define W 8                /* floats per vector */
#define NV 2               /* vectors per step */
#define LANES (W * NV)     /* codes per step */
#define ROWS 4             /* rows per step: each loaded code vector feeds ROWS x LANES scores */
#define CHUNK_BYTES 65536  /* ct bytes per code chunk */

static inline vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vf splat(float a) { return (vf){a, a, a, a, a, a, a, a}; }

static void scan_chunk(const float *x, int64_t d, const float *ct, const float *bias, int64_t kp,
                       int64_t j_lo, int64_t j_hi, float *best_val, int64_t *best_idx) {
    vf best[ROWS][NV];
    vi bidx[ROWS][NV];
    const vi iota = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int r = 0; r < ROWS; r++)
        for (int u = 0; u < NV; u++) {
            best[r][u] = splat(-INFINITY);
            bidx[r][u] = iota * 0;
        }
    for (int64_t j = j_lo; j < j_hi; j += LANES) {
        vf acc[ROWS][NV];
        for (int u = 0; u < NV; u++) {
            const vf b = load(bias + j + u * W);
            for (int r = 0; r < ROWS; r++) acc[r][u] = b;
        }
        for (int64_t k = 0; k < d; k++) {
            const float *c = ct + k * kp + j;
            vf cv[NV];
            for (int u = 0; u < NV; u++) cv[u] = load(c + u * W);
            for (int r = 0; r < ROWS; r++) {
                const vf xv = splat(x[r * d + k]);
                for (int u = 0; u < NV; u++) acc[r][u] += xv * cv[u];
            }
        }
        const int32_t off = (int32_t)(j - j_lo);
        for (int u = 0; u < NV; u++) {
            const vi jv = iota + (off + u * W);
            for (int r = 0; r < ROWS; r++) {
                const vi gt = acc[r][u] > best[r][u]; /* strict: a lane keeps its first max */
                best[r][u] = (vf)(((vi)acc[r][u] & gt) | ((vi)best[r][u] & ~gt));
                bidx[r][u] = (jv & gt) | (bidx[r][u] & ~gt);
            }
        }
    }
    for (int r = 0; r < ROWS; r++) {
        float bv = -INFINITY;
        int32_t bi = 0;
        for (int u = 0; u < NV; u++)
            for (int v = 0; v < W; v++) {
                const float s = best[r][u][v];
                const int32_t i = bidx[r][u][v];
                if (s > bv || (s == bv && i < bi)) {
                    bv = s;
                    bi = i;
                }
            }
        if (bv > best_val[r]) { /* strict: an earlier chunk keeps its tie */
            best_val[r] = bv;
            best_idx[r] = j_lo + bi;
        }
    }
}

/* Rows [row_lo, row_hi) of x [N][D], a multiple of ROWS (the caller pads x); writes out[i]. */
int vistok_nearest_code(const float *x, int64_t d, const float *ct, const float *bias, int64_t kp,
                        int64_t row_lo, int64_t row_hi, int64_t *out) {
    if ((row_hi - row_lo) % ROWS != 0 || kp % LANES != 0) return -1;
    int64_t chunk = (CHUNK_BYTES / (int64_t)sizeof(float)) / (d > 0 ? d : 1);
    chunk = chunk < LANES ? LANES : chunk - chunk % LANES;
    for (int64_t i = row_lo; i < row_hi; i += ROWS) {
        float best_val[ROWS];
        int64_t best_idx[ROWS];
        for (int r = 0; r < ROWS; r++) {
            best_val[r] = -INFINITY;
            best_idx[r] = 0;
        }
        for (int64_t j = 0; j < kp; j += chunk) {
            int64_t hi = j + chunk < kp ? j + chunk : kp;
            scan_chunk(x + i * d, d, ct, bias, kp, j, hi, best_val, best_idx);
        }
        for (int r = 0; r < ROWS; r++) out[i + r] = best_idx[r];
    }
    return 0;
}

/* Which rows ROWS and code lanes LANES the caller must pad to. */
int vistok_nearest_code_rows(void) { return ROWS; }
int vistok_nearest_code_lanes(void) { return LANES; }
