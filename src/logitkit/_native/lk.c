/*
 * Ahead-of-time compiled kernels of `logitkit score` (loaded with ctypes by
 * logitkit/_native/__init__.py; no Python API is used here).
 *
 * lk_score_rows_f32: every per-row metric of float32 logits in two passes per
 *   row: the maximum and the label's rank, then S, G, Q and the ties with
 *   float64 arithmetic and a float64 exp written as FMA arithmetic (the same
 *   operations as logitkit/_kernels/_f32.py's exp_nonpos). See
 *   logitkit/_score.py (_logit_rows) for the formulas; each value is rounded
 *   once to float32.
 * lk_bin_sums: exact sums of float64 values by binade into int64
 *   accumulators (logitkit/_score.py, ExactSums).
 *
 * Built with -ffp-contract=off: only the fma() calls written here fuse, so
 * every other product and sum rounds as in NumPy. The reductions are
 * vectorised through `#pragma omp simd reduction` (-fopenmp-simd; no
 * OpenMP runtime), which lets them be summed in another order, as a
 * vectorised NumPy sum does. On x86-64 the row kernel is compiled three
 * times (x86-64-v4: AVX-512, 8 doubles a vector, 1.8x faster than v3 on an
 * AMD EPYC; x86-64-v3: AVX2 and FMA; and the baseline) and the best the CPU
 * runs is picked at load time.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LOG2E 1.4426950408889634
#define LN2_HI 0.6931471805599453
#define LN2_LO 2.3190468138462996e-17
#define SHIFT 6755399441055744.0 /* 1.5 * 2**52 */
#define Q0 1.0
#define Q1 0.5000000000000006
#define Q2 0.1666666666666667
#define Q3 0.041666666666573086
#define Q4 0.008333333333326136
#define Q5 0.0013888888932508548
#define Q6 0.00019841269874815834
#define Q7 2.4801504321690158e-05
#define Q8 2.7557255406285044e-06
#define Q9 2.7626367775723217e-07
#define Q10 2.5105214474751413e-08
#define CUT (-708.0)

/* target_clones needs GCC >= 12 and ifunc (glibc); elsewhere one build. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && \
    !defined(__clang__) && __GNUC__ >= 12
#define LK_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LK_CLONES
#endif

/* Bumped with every change of a signature or of the values computed. */
int lk_abi_version(void) { return 1; }

/* exp(d) for CUT <= d <= 0 (a NaN propagates). */
static inline double exp_inrange(double d) {
    double t = fma(d, LOG2E, SHIFT);
    double k = t - SHIFT;
    double r = fma(-k, LN2_HI, d);
    r = fma(-k, LN2_LO, r);
    double r2 = r * r;
    double r4 = r2 * r2;
    double b0 = fma(r2, fma(r, Q3, Q2), fma(r, Q1, Q0));
    double b1 = fma(r2, fma(r, Q7, Q6), fma(r, Q5, Q4));
    double b2 = fma(r2, Q10, fma(r, Q9, Q8));
    double q = fma(r4 * r4, b2, fma(r4, b1, b0));
    double e = fma(r, q, 1.0);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* exp(d) for d <= 0 (NaN propagates); 0 below -708. */
static inline double exp_nonpos(double d) {
    double e = exp_inrange(d < CUT ? CUT : d);
    return d < CUT ? 0.0 : e;
}

/* Rows [first, last) of x (rows of n float32, `stride` floats apart).
 * labels[i] < 0: an ignored row (checked, values unused).
 * status[i]: 1 for a row with a NaN, +inf or no finite logit, else 0. */
LK_CLONES
void lk_score_rows_f32(const float *x, int64_t stride, int64_t n, int64_t first,
                       int64_t last, const int64_t *labels, float *nll, float *ent,
                       float *brier, float *conf, int64_t *rank, int8_t *status) {
    for (int64_t i = first; i < last; ++i) {
        const float *row = x + i * stride;
        int64_t y = labels[i] >= 0 ? labels[i] : 0;
        float xy = row[y];
        float mf = -INFINITY, lo = INFINITY;
        int32_t above = 0, tied = 0;
#pragma omp simd reduction(max : mf) reduction(min : lo) reduction(+ : above)
        for (int64_t j = 0; j < n; ++j) {
            float v = row[j];
            mf = v > mf ? v : mf; /* a NaN is passed over here, caught by S */
            lo = v < lo ? v : lo;
            above += v > xy;
        }
#pragma omp simd reduction(+ : tied)
        for (int64_t j = 0; j < y; ++j) tied += row[j] == xy;
        double m = (double)mf;
        if (!isfinite(m)) {
            status[i] = 1;
            continue;
        }
        double s = 0.0, t = 0.0, g = 0.0, q = 0.0;
        if ((double)lo - m > CUT) {
            /* the common row: every d in (CUT, 0] (a NaN is caught by s),
             * the same values without the clamps (13% faster) */
#pragma omp simd reduction(+ : s, t, g, q)
            for (int64_t j = 0; j < n; ++j) {
                double d = (double)row[j] - m;
                double e = exp_inrange(d);
                s += d != 0.0 ? e : 0.0;
                t += d == 0.0 ? 1.0 : 0.0;
                g += e * -d;
                q += d != 0.0 ? e * e : 0.0;
            }
        } else { /* -inf or a spread over 708: e = 0 below the cut */
#pragma omp simd reduction(+ : s, t, g, q)
            for (int64_t j = 0; j < n; ++j) {
                double d = (double)row[j] - m;
                double e = exp_nonpos(d);
                s += d != 0.0 ? e : 0.0;
                t += d == 0.0 ? 1.0 : 0.0;
                g += e * (d > CUT ? -d : 0.0);
                q += d != 0.0 ? e * e : 0.0;
            }
        }
        s = s + (t - 1.0);
        if (isnan(s) || isnan(g)) { /* a NaN in the row: s is NaN */
            status[i] = 1;
            continue;
        }
        status[i] = 0;
        double big = log1p(s);
        double one_s = 1.0 + s;
        double dy = (double)xy - m;
        nll[i] = (float)(big - dy);
        ent[i] = (float)(big + g / one_s);
        double miss, other;
        if (dy == 0.0) { /* y is a maximum: 1 - p_y = S / (1 + S) */
            miss = s / one_s;
            other = q + (t - 1.0);
        } else {
            double ey = exp_nonpos(dy);
            miss = (1.0 + (s - ey)) / one_s;
            other = (q - ey * ey) + t;
        }
        brier[i] = (float)(miss * miss + other / (one_s * one_s));
        conf[i] = (float)(1.0 / one_s);
        rank[i] = (int64_t)above + tied;
    }
}

/* Adds each v[i] to the accumulators of its group (groups == NULL: group
 * 0): binade k = max(E, 1) - 1 of its biased exponent E, significand M =
 * hi * 2**27 + lo. Returns 0, adding nothing, when a value is not finite. */
int lk_bin_sums(const double *v, int64_t size, const int64_t *groups, int64_t keys,
                int64_t *hi, int64_t *lo) {
    for (int64_t i = 0; i < size; ++i) {
        uint64_t b;
        memcpy(&b, &v[i], sizeof b);
        if (((b >> 52) & 0x7FF) == 0x7FF) return 0;
    }
    for (int64_t i = 0; i < size; ++i) {
        uint64_t b;
        memcpy(&b, &v[i], sizeof b);
        int64_t e = (int64_t)((b >> 52) & 0x7FF);
        int64_t m = (int64_t)(b & 0xFFFFFFFFFFFFFull);
        if (e > 0) {
            m |= 0x10000000000000ll;
            e -= 1;
        }
        if (m == 0) continue;
        int64_t key = e + (groups ? groups[i] * keys : 0);
        if (b >> 63) {
            hi[key] -= m >> 27;
            lo[key] -= m & 0x7FFFFFF;
        } else {
            hi[key] += m >> 27;
            lo[key] += m & 0x7FFFFFF;
        }
    }
    return 1;
}
