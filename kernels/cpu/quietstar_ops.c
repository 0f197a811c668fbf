/*
 * The small ops of the Quiet-STaR step on the CPU: masking the thought tokens out of the sampler,
 * Gumbel-max sampling with Philox noise, broadcasting the start/end embeddings, the mixing head's
 * pieces (bias, ReLU, concatenation, the weighted mix), rolling the base hidden states so they line
 * up with each talk step's target, and the REINFORCE advantage. Column sums run column-parallel so
 * every sum is in a fixed order (deterministic gradients).
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/philox.h"

void cpu_mask_columns(floatX* x, int N, int V, int lo, int hi, float value) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int v = lo; v < hi; v++) x[(size_t)n * V + v] = value;
}

void cpu_gumbel_sample(int32_t* tokens, const floatX* logits, int N, int V, int L, uint64_t seed, uint32_t step, int k) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* z = logits + (size_t)n * V;
        const uint32_t slot = (uint32_t)(n % L), rowk = ((uint32_t)(n / L) << 8) | (uint32_t)k;
        float best = -INFINITY;
        int arg = 0;
        for (int v0 = 0; v0 < V; v0 += 4) {
            Philox4 r = philox4x32((uint32_t)(v0 >> 2), slot, rowk, step, (uint32_t)seed, (uint32_t)(seed >> 32));
            for (int u = 0; u < 4 && v0 + u < V; u++) {
                float g = -logf(-logf(philox_uniform(r.v[u])));
                float score = z[v0 + u] + g;
                if (score > best) {
                    best = score;
                    arg = v0 + u;
                }
            }
        }
        tokens[n] = arg;
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
