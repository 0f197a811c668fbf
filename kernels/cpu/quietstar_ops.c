/*
 * The small ops of the Quiet-STaR step on the CPU: masking the thought tokens out of the sampler,
 * Gumbel-max sampling with Philox noise, broadcasting the start/end embeddings, the mixing head's
 * pieces (bias, ReLU, concatenation, the weighted mix), rolling the base hidden states so they line
 * up with each talk step's target, and the REINFORCE advantage. Column sums run column-parallel so
 * every sum is in a fixed order (deterministic gradients).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastexp.h"
#include "kernels/cpu/simd.h"
#include "kernels/philox.h"

void cpu_mask_columns(floatX* x, int N, int V, int lo, int hi, float value) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int v = lo; v < hi; v++) x[(size_t)n * V + v] = value;
}

// Gumbel noise −log(−log u) costs two logf per column, most of the sampler's time when done for all V
// columns with glibc's scalar logf. So a row is done in two passes with the same result, bit for bit:
// (1) for all columns, vectorized: the Philox words, and a screening score z + g' where g' is the noise
// from fast_logf (|g' − g| < 1e-6 over all 2^23 values of u, checked exhaustively), and the largest
// screening score M; (2) the exact score z + g (logf, as before) only for the columns whose screening
// score is within a margin of M, and the argmax over those, first index on ties. The margin (1e-4 plus
// 1e-5·|M|, for the roundings of z + g at |M|) exceeds twice the screen's error, so the exact best
// column and every column tied with it are among the candidates: the answer is the full exact argmax.
// A row whose M is not finite (±inf, or NaN logits only) takes the exact path over all columns.
#define GUMBEL_LANES 16  // Philox counters per vector (4 columns each)

void cpu_gumbel_sample(int32_t* tokens, const floatX* logits, int N, int V, int L, uint64_t seed, uint32_t step, int k) {
    const int nc = (V + 4 * GUMBEL_LANES - 1) / (4 * GUMBEL_LANES) * GUMBEL_LANES;  // counters, whole vectors
#pragma omp parallel
    {
        uint32_t* words = xmalloc(sizeof(uint32_t) * 4 * (size_t)nc);  // column v: word v % 4 of counter v / 4
        float* screen = xmalloc(sizeof(float) * (size_t)V);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const floatX* z = logits + (size_t)n * V;
            const uint32_t slot = (uint32_t)(n % L), rowk = ((uint32_t)(n / L) << 8) | (uint32_t)k;
#pragma omp simd
            for (int c = 0; c < nc; c++) {
                const Philox4 r = philox4x32((uint32_t)c, slot, rowk, step, (uint32_t)seed, (uint32_t)(seed >> 32));
                words[4 * (size_t)c] = r.v[0];
                words[4 * (size_t)c + 1] = r.v[1];
                words[4 * (size_t)c + 2] = r.v[2];
                words[4 * (size_t)c + 3] = r.v[3];
            }
#pragma omp simd
            for (int v = 0; v < V; v++) screen[v] = z[v] - fast_logf(-fast_logf(philox_uniform(words[v])));
            const float M = vmax_of(screen, V, -INFINITY);
            const float thr = isfinite(M) ? M - (1e-4f + 1e-5f * fabsf(M)) : -INFINITY;
            float best = -INFINITY;
            int arg = 0;
            for (int v0 = 0; v0 < V; v0 += 64) {  // candidates are few: look at 64 screens at a time
                const int nv = V - v0 < 64 ? V - v0 : 64;
                int hits = 0;
#pragma omp simd reduction(+ : hits)
                for (int v = v0; v < v0 + nv; v++) hits += screen[v] >= thr;
                for (int v = v0; hits && v < v0 + nv; v++) {
                    if (!(screen[v] >= thr)) continue;  // a NaN screen is a NaN logit: its score never wins
                    const float g = -logf(-logf(philox_uniform(words[v])));
                    const float score = z[v] + g;
                    if (score > best) {
                        best = score;
                        arg = v;
                    }
                }
            }
            tokens[n] = arg;
        }
        free(words);
        free(screen);
    }
}

void cpu_row_broadcast(floatX* out, const float* vec, float scale, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) out[(size_t)n * H + c] = scale * vec[c];
}

void cpu_column_sum(float* out, const floatX* x, float scale, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < H; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += x[(size_t)n * H + c];
        out[c] += scale * (float)acc;
    }
}

void cpu_add_bias(floatX* x, const float* bias, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < H; c++) x[(size_t)n * H + c] += bias[c];
}

void cpu_relu_forward(floatX* out, const floatX* inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void cpu_relu_backward(floatX* dinp, const floatX* dout, const floatX* out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void cpu_concat_columns(floatX* out, const floatX* a, const floatX* b, int N, int A, int B) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        memcpy(out + (size_t)n * (A + B), a + (size_t)n * A, sizeof(floatX) * A);
        memcpy(out + (size_t)n * (A + B) + A, b + (size_t)n * B, sizeof(floatX) * B);
    }
}

void cpu_split_columns_backward(floatX* da, floatX* db, const floatX* dout, int N, int A, int B) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* d = dout + (size_t)n * (A + B);
        for (int c = 0; c < A; c++) da[(size_t)n * A + c] += d[c];
        for (int c = 0; c < B; c++) db[(size_t)n * B + c] += d[A + c];
    }
}

void cpu_roll_rows(floatX* out, const floatX* inp, int R, int L, int H, int s) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < R * L; n++) {
        const int r = n / L, i = n % L;
        memcpy(out + (size_t)n * H, inp + ((size_t)r * L + (i + s) % L) * H, sizeof(floatX) * H);
    }
}

// Each destination row receives exactly one source row, so this parallelizes without races.
void cpu_roll_rows_backward(floatX* dinp, const floatX* dout, int R, int L, int H, int s) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < R * L; n++) {
        const int r = n / L, i = n % L;
        const floatX* d = dout + ((size_t)r * L + (i - s % L + L) % L) * H;
        for (int c = 0; c < H; c++) dinp[(size_t)n * H + c] += d[c];
    }
}

void cpu_mix_forward(floatX* out, const floatX* base, const floatX* thought, const floatX* w, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float wn = w[n];
        for (int c = 0; c < H; c++) {
            const size_t i = (size_t)n * H + c;
            out[i] = (1.0f - wn) * base[i] + wn * thought[i];
        }
    }
}

void cpu_mix_backward(floatX* dbase, floatX* dthought, floatX* dw, const floatX* dout, const floatX* base,
                      const floatX* thought, const floatX* w, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float wn = w[n];
        double acc = 0.0;
        for (int c = 0; c < H; c++) {
            const size_t i = (size_t)n * H + c;
            dbase[i] += (1.0f - wn) * dout[i];
            dthought[i] += wn * dout[i];
            acc += (double)dout[i] * (thought[i] - base[i]);
        }
        dw[n] = (float)acc;
    }
}

void cpu_quietstar_advantage(float* reward, float* advantage, const float* base_losses, const float* talk_losses,
                             int B, int P, int L, int T) {
    const size_t RL = (size_t)B * P * L;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < RL; n++) {
        const int i = (int)(n % L);
        float r = 0.0f;
        if (i < L - 1 - T)
            for (int s = 0; s < T; s++) r += base_losses[n + s] - talk_losses[s * RL + n];
        reward[n] = r;
    }
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < RL; n++) {
        const size_t b = n / ((size_t)P * L), i = n % L;
        float mean = 0.0f;
        if (P > 1) {
            for (int p = 0; p < P; p++) mean += reward[(b * P + p) * L + i];
            mean /= (float)P;
        }
        const float a = reward[n] - mean;
        advantage[n] = a > 0.0f ? a : 0.0f;
    }
}

void cpu_shift_tokens(int32_t* out, const int32_t* x, int N, int L, int shift, int limit, int32_t fill) {
    for (int n = 0; n < N; n++) out[n] = n % L < limit ? x[n + shift] : fill;
}

void cpu_row_weights(float* out, const float* per_row, float value, int N, int L, int limit) {
    for (int n = 0; n < N; n++) out[n] = n % L < limit ? value * (per_row ? per_row[n] : 1.0f) : 0.0f;
}

// Sequential sums in double, in row order: the order the host loop of the step used before the
// statistics moved to the device, so CPU runs keep their numbers bit for bit.
void cpu_quietstar_stats(double* stats, const float* base_losses, const float* talk_losses, const floatX* w,
                         const float* policy_losses, const float* reward, const float* advantage, int N, int L,
                         int T, int K) {
    for (int j = 0; j < 2 * T + 5; j++) stats[j] = 0.0;
    for (int n = 0; n < N; n++) stats[0] += base_losses[n];
    for (int s = 0; s < T; s++) {
        double sum = 0.0, sw = 0.0;
        for (int n = 0; n < N; n++) {
            sum += talk_losses[(size_t)s * N + n];
            if (n % L < L - 1 - s) sw += w[(size_t)s * N + n];
        }
        stats[1 + s] = sum;
        stats[1 + T + s] = sw;
    }
    double rw = 0.0, adv = 0.0, pos = 0.0, policy = 0.0;
    for (int n = 0; n < N; n++) {
        if (n % L >= L - 1 - T) continue;
        float nll = 0.0f;
        for (int k = 0; k < K; k++) nll += policy_losses[(size_t)k * N + n];
        rw += reward[n];
        adv += advantage[n];
        pos += advantage[n] > 0.0f;
        policy += advantage[n] * nll;
    }
    stats[1 + 2 * T] = rw;
    stats[2 + 2 * T] = adv;
    stats[3 + 2 * T] = pos;
    stats[4 + 2 * T] = policy;
}
