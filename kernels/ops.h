/*
 * The backend contract: every op the model may call, forward and backward, as a table of function
 * pointers. model/ talks to hardware only through a Backend, so the same model code runs on the
 * CPU reference (kernels/cpu), on CUDA (kernels/cuda) and, in tests, on the CUDA sources executed
 * by the emulator (emu/). Pointers passed to ops are backend memory (from be->alloc).
 *
 * Conventions, the same for every backend:
 *  - row-major tensors; shapes in the comment beside each argument; N = rows (tokens).
 *  - linear layers use Hugging Face's (out, in) weight layout: out = inp · weightᵀ.
 *  - gradients of parameters ACCUMULATE (+=), so micro-batches sum; gradients of activations
 *    are overwritten unless the argument says "+=".
 *  - reductions that feed training are deterministic (fixed order, no float atomics).
 *
 * Adding an op: a pointer in Backend below (shapes beside each argument); the C reference in
 * kernels/cpu/<family>.c, declared in kernels/cpu/cpu.h and set in kernels/cpu/backend_cpu.c's table;
 * the kernel with its launcher in kernels/cuda/<family>.cuh, set in kernels/cuda/backend_cuda.cu's
 * table; a comparison of the backends in tests/test_ops.c (cpu, and the CUDA sources on the emulator).
 */
#ifndef QSTAR_OPS_H
#define QSTAR_OPS_H

#include <stddef.h>
#include <stdint.h>

// floatX: the backend's storage type for activations, for the working copy of the weights the ops
// read and for the parameter gradients they write: fp32, or bf16 (llm.c's mixed precision: bf16
// storage, fp32 math and accumulation inside every op, fp32 master weights and AdamW moments).
// Each backend table has one precision (x_bytes). Outside the backends floatX is an incomplete type,
// so model and host code cannot index it as floats by mistake: offsets go through xat(), host
// transfers through x_upload()/x_download(), which convert. A backend's own sources define
// QSTAR_FLOATX to their concrete type (float for kernels/cpu, float or __nv_bfloat16 for the two
// compiles of kernels/cuda) before including this header.
#ifdef QSTAR_FLOATX
typedef QSTAR_FLOATX floatX;
#else
typedef struct qstar_floatX floatX;
#endif

// Device memory the CUDA backend allocates once beside the model: cuBLASLt's workspace (qstar info
// counts it in the per-GPU total).
#define QSTAR_DEVICE_WORKSPACE_BYTES ((size_t)32 << 20)

#define QSTAR_IGNORE_INDEX (-100)  // target value that contributes no loss (transformers' convention)

typedef struct Backend {
    const char* name;       // registry name: "cpu", "cuda", "cuda-bf16", "emu", "emu-bf16"
    const char* precision;  // "fp32" or "bf16": what floatX is in this table
    size_t x_bytes;         // sizeof(floatX): 4 or 2

    // ---- memory -------------------------------------------------------------------------------
    void* (*alloc)(size_t bytes);                                  // zero-filled
    void (*free)(void* ptr);
    void (*upload)(void* dst, const void* host_src, size_t bytes);   // host -> backend
    void (*download)(void* host_dst, const void* src, size_t bytes); // backend -> host
    void (*copy)(void* dst, const void* src, size_t bytes);          // backend -> backend
    void (*zero)(void* ptr, size_t bytes);
    void (*sync)(void);
    // Host synchronisations so far (a process-wide counter): every download and sync, and every
    // upload that had to wait for the device. upload itself is asynchronous: the host buffer may be
    // reused at once (CUDA stages it in pinned memory and waits only when the stage is full or the
    // upload is larger than the stage). Tests count the syncs of a training micro-step with it.
    uint64_t (*sync_count)(void);
    // profiling: named ranges (NVTX on CUDA, for nsys), the profiler's capture window
    // (cudaProfilerStart/Stop, for ncu/nsys --capture-range), and the device's peak FLOP/s for MFU
    // (TF32 tensor cores for fp32 on CUDA; 0 where unknown)
    void (*range_push)(const char* name);
    void (*range_pop)(void);
    void (*profiler)(int on);
    double (*peak_flops)(void);

    // ---- token embedding ------------------------------------------------------------------------
    // out[n] = table[tokens[n]]
    void (*embedding_forward)(floatX* out,          // (N, H)
                              const int32_t* tokens, // (N)
                              const floatX* table,   // (V, H)
                              int N, int H);
    // dtable[tokens[n]] += dout[n]; deterministic for repeated tokens
    void (*embedding_backward)(floatX* dtable,       // (V, H) +=
                               const floatX* dout,   // (N, H)
                               const int32_t* tokens,// (N)
                               int N, int V, int H);

    // ---- RMSNorm: out = inp * rsqrt(mean(inp²) + eps) * weight -----------------------------------
    void (*rmsnorm_forward)(floatX* out,         // (N, H)
                            float* rstd,         // (N) saved for backward
                            const floatX* inp,   // (N, H)
                            const floatX* weight,// (H)
                            int N, int H, float eps);
    void (*rmsnorm_backward)(floatX* dinp,         // (N, H) +=
                             floatX* dweight,      // (H) +=
                             const floatX* dout,   // (N, H)
                             const floatX* inp,    // (N, H)
                             const floatX* weight, // (H)
                             const float* rstd,    // (N)
                             int N, int H);

    // Residual add fused with the RMSNorm that follows it: sum = a + b; out = rmsnorm(sum) as above.
    // One pass over the row instead of two (the norm reads what the add just wrote).
    void (*add_rmsnorm_forward)(floatX* sum,         // (N, H) a + b, the new residual stream
                                floatX* out,         // (N, H)
                                float* rstd,         // (N)
                                const floatX* a,     // (N, H)
                                const floatX* b,     // (N, H)
                                const floatX* weight,// (H)
                                int N, int H, float eps);

    // ---- matmul (linear layer without bias): out = inp · weightᵀ --------------------------------
    void (*matmul_forward)(floatX* out,          // (N, OUT)
                           const floatX* inp,    // (N, IN)
                           const floatX* weight, // (OUT, IN)
                           int N, int IN, int OUT);
    // dinp = (accumulate ? dinp : 0) + dout · weight ; dweight += doutᵀ · inp
    // dinp may be NULL (input needs no gradient), dweight may be NULL (frozen weight).
    void (*matmul_backward)(floatX* dinp,         // (N, IN)
                            floatX* dweight,      // (OUT, IN) +=
                            const floatX* dout,   // (N, OUT)
                            const floatX* inp,    // (N, IN)
                            const floatX* weight, // (OUT, IN)
                            int N, int IN, int OUT, int accumulate_dinp);

    // ---- rotary position embedding, transformers' rotate-half convention, in place --------------
    // Rotates the NH query heads and NKV key heads at the front of each qkv row; values untouched.
    // Angle for pair j of a head at position p: p * theta^(-2j/HD), computed in fp32.
    void (*rope_forward)(floatX* qkv,            // (N, (NH + 2*NKV) * HD) in place
                         const int32_t* pos,     // (N) position of each row
                         int N, int NH, int NKV, int HD, float theta);
    // The inverse rotation applied to the gradient (dqkv in place).
    void (*rope_backward)(floatX* dqkv,          // (N, (NH + 2*NKV) * HD) in place
                          const int32_t* pos,    // (N)
                          int N, int NH, int NKV, int HD, float theta);

    // ---- causal grouped-query attention ------------------------------------------------------
    // qkv rows hold NH query heads, then NKV key heads, then NKV value heads (each HD wide);
    // query head h reads kv head h / (NH/NKV). Scale 1/sqrt(HD). lse keeps each query's
    // log-sum-exp of scaled scores, so backward recomputes probabilities without an (T, T) store.
    void (*attention_forward)(floatX* out,        // (B*T, NH*HD)
                              float* lse,         // (B, NH, T)
                              const floatX* qkv,  // (B*T, (NH + 2*NKV) * HD)
                              int B, int T, int NH, int NKV, int HD);
    void (*attention_backward)(floatX* dqkv,         // (B*T, (NH + 2*NKV) * HD) overwritten
                               const floatX* dout,   // (B*T, NH*HD)
                               const floatX* out,    // (B*T, NH*HD)
                               const float* lse,     // (B, NH, T)
                               const floatX* qkv,    // (B*T, (NH + 2*NKV) * HD)
                               int B, int T, int NH, int NKV, int HD);

    // ---- SwiGLU: out = silu(gate) * up, with gate_up rows = [gate (IM) | up (IM)] ------------------
    void (*swiglu_forward)(floatX* out,             // (N, IM)
                           const floatX* gate_up,   // (N, 2*IM)
                           int N, int IM);
    void (*swiglu_backward)(floatX* dgate_up,       // (N, 2*IM)
                            const floatX* dout,     // (N, IM)
                            const floatX* gate_up,  // (N, 2*IM)
                            int N, int IM);

    // ---- elementwise ----------------------------------------------------------------------------
    void (*add)(floatX* out, const floatX* a, const floatX* b, size_t n);  // out = a + b (out may alias)
    void (*scale)(floatX* x, float s, size_t n);                           // x *= s

    // ---- fused softmax cross-entropy, probabilities never stored -------------------------------
    // losses[n] = logsumexp(logits[n]) - logits[n][targets[n]], or 0 where targets[n] is ignored.
    void (*crossentropy_forward)(float* losses,          // (N)
                                 const floatX* logits,   // (N, V)
                                 const int32_t* targets, // (N)
                                 int N, int V);
    // dlogits[n] = dlosses[n] * (softmax(logits[n]) - onehot(targets[n])); zero rows where ignored.
    // dlogits may alias logits (the usual case: the logits buffer becomes the gradient).
    void (*crossentropy_backward)(floatX* dlogits,         // (N, V)
                                  const floatX* logits,    // (N, V)
                                  const int32_t* targets,  // (N)
                                  const float* dlosses,    // (N) upstream gradient of each loss
                                  int N, int V);
    // Forward and backward in one pass, for a loss whose per-row upstream gradient is known before
    // the forward (a training step's mean loss): losses as crossentropy_forward and dlogits as
    // crossentropy_backward, the logits read once. dlogits may alias logits.
    void (*crossentropy_fused)(float* losses,           // (N)
                               floatX* dlogits,         // (N, V)
                               const floatX* logits,    // (N, V)
                               const int32_t* targets,  // (N)
                               const float* dlosses,    // (N) upstream gradient of each loss
                               int N, int V);

    // ---- Quiet-STaR: thought attention ---------------------------------------------------------
    // The query of step k at (row r, slot i) attends to the step-0 keys of slots 0..i (causal over
    // the original text) and to the keys of its own slot i at steps 1..k (its own thought so far,
    // itself included); one softmax over both sets, as two partial softmaxes merged by log-sum-exp.
    // qkv points at step 0 of a stack of per-step qkv blocks, step j at qkv + j*step_stride, each
    // (R*L, (NH+2NKV)*HD) after RoPE. k = 0 is ordinary causal attention.
    void (*thought_attention_forward)(floatX* out,        // (R*L, NH*HD) for step k's queries
                                      float* lse,         // (R, NH, L)
                                      const floatX* qkv,  // steps 0..k, stride step_stride
                                      size_t step_stride, int k, int R, int L, int NH, int NKV, int HD);
    // Accumulates (+=) dq into step k's block and dk, dv into the blocks of steps 0..k of dqkv
    // (same layout and stride as qkv): later steps add their key/value gradients before earlier
    // steps run their own backward.
    void (*thought_attention_backward)(floatX* dqkv, const floatX* dout, const floatX* out, const float* lse,
                                       const floatX* qkv, size_t step_stride, int k, int R, int L, int NH,
                                       int NKV, int HD);

    // ---- Quiet-STaR: thought sampling, mixing head, rewards ------------------------------------
    // x[n][lo..hi) = value (hides the thought tokens from the sampler).
    void (*mask_columns)(floatX* x, int N, int V, int lo, int hi, float value);
    // Gumbel-max sample per row: argmax_v(logits[n][v] + g), g = -log(-log(u)), u from Philox with
    // key seed and counter (v/4, slot n%L, (row n/L) << 8 | thought k, step); identical on every backend.
    void (*gumbel_sample)(int32_t* tokens,       // (N) out
                          const floatX* logits,  // (N, V)
                          int N, int V, int L, uint64_t seed, uint32_t step, int k);
    // out[n] = scale * vec (every row the same embedding: the start/end thought tokens)
    void (*row_broadcast)(floatX* out, const floatX* vec, float scale, int N, int H);
    // out (+=) scale * Σ_n x[n]: the gradient of row_broadcast and of a bias
    void (*column_sum)(floatX* out, const floatX* x, float scale, int N, int H);
    void (*add_bias)(floatX* x, const floatX* bias, int N, int H);  // x[n] += bias
    void (*relu_forward)(floatX* out, const floatX* inp, size_t n);
    void (*relu_backward)(floatX* dinp, const floatX* dout, const floatX* out, size_t n);  // uses the output
    // out rows = [a (A) | b (B)]; backward adds the two halves into da, db
    void (*concat_columns)(floatX* out, const floatX* a, const floatX* b, int N, int A, int B);
    void (*split_columns_backward)(floatX* da, floatX* db, const floatX* dout, int N, int A, int B);
    // out[r, i] = inp[r, (i + s) mod L] for R blocks of L rows of width H (the base hidden state that
    // predicts the same token as talk step s); backward adds dout back to the source rows.
    void (*roll_rows)(floatX* out, const floatX* inp, int R, int L, int H, int s);
    void (*roll_rows_backward)(floatX* dinp, const floatX* dout, int R, int L, int H, int s);
    // Mixing: out = (1 - w) * base + w * thought, w per row (unbounded, as in the reference).
    void (*mix_forward)(floatX* out, const floatX* base, const floatX* thought, const floatX* w, int N, int H);
    // dbase +=, dthought +=, dw = Σ_h dout * (thought - base)
    void (*mix_backward)(floatX* dbase, floatX* dthought, floatX* dw, const floatX* dout, const floatX* base,
                         const floatX* thought, const floatX* w, int N, int H);
    // reward[b*P+p, i] = Σ_s (base_losses[row, i+s] - talk_losses[s][row, i]) for i < L-1-T (0 after);
    // advantage = max(0, reward - mean over the P passes of the same sequence); with P = 1, max(0, reward).
    void (*quietstar_advantage)(float* reward, float* advantage, // (B*P*L) each
                                const float* base_losses,        // (B*P*L)
                                const float* talk_losses,        // (T, B*P*L)
                                int B, int P, int L, int T);

    // ---- Quiet-STaR: device-resident step (no host round trip of ids, weights or losses) --------
    // out[n] = x[n + shift] where slot i = n % L satisfies i < limit (limit + shift <= L: the source stays
    // in the row), fill elsewhere: the true tokens fed at talk steps (shift s, limit L - s, fill pad) and the
    // next-token targets (shift s + 1, limit L - 1 - s, fill QSTAR_IGNORE_INDEX), built from the text on
    // the device. out must not alias x.
    void (*shift_tokens)(int32_t* out,          // (N)
                         const int32_t* x,      // (N) R rows of L slots
                         int N, int L, int shift, int limit, int32_t fill);
    // out[n] = value * (per_row ? per_row[n] : 1) for slots n % L < limit, 0 elsewhere: the per-row
    // upstream gradients of the step's losses (per_row: the advantages of the policy loss).
    void (*row_weights)(float* out,              // (N)
                        const float* per_row,    // (N) or NULL
                        float value, int N, int L, int limit);
    // The step's statistics, each a sum in double over rows n (slot i = n % L), into stats (2T + 5):
    //   [0]           Σ base_losses[n]
    //   [1 + s]       Σ talk_losses[s][n]                       s < T
    //   [1 + T + s]   Σ w[s][n] over i < L - 1 - s              (the rows with a talk target)
    //   [1 + 2T]      Σ reward[n]                 over i < L - 1 - T
    //   [2 + 2T]      Σ advantage[n]              over i < L - 1 - T
    //   [3 + 2T]      #{advantage[n] > 0}         over i < L - 1 - T
    //   [4 + 2T]      Σ advantage[n] · nll[n]     over i < L - 1 - T, nll[n] = Σ_k policy_losses[k][n]
    //                 summed over k = 0..K-1 in float, in that order
    // Deterministic on each backend; the summation order may differ between backends (double sums).
    void (*quietstar_stats)(double* stats,              // (2T + 5) out, backend memory
                            const float* base_losses,   // (N)
                            const float* talk_losses,   // (T, N)
                            const floatX* w,            // (T, N) mixing weights
                            const float* policy_losses, // (K, N)
                            const float* reward,        // (N)
                            const float* advantage,     // (N)
                            int N, int L, int T, int K);

    // ---- generation with a key/value cache ----------------------------------------------------------
    // dst[r * dst_stride + c] = src[r * src_stride + c] for rows r < rows, columns c < cols (moves a
    // row's keys or values between a qkv row and a cache).
    void (*copy_strided)(floatX* dst, size_t dst_stride, const floatX* src, size_t src_stride, int rows, int cols);
    // One query row (the q part of a qkv row) attends to keys/values k1/v1 rows 0..n1-1 and k2/v2 rows
    // 0..n2-1 (each row NKV*HD wide: the text so far, and the query's own thought so far), one softmax
    // over both; GQA head mapping as in attention_forward.
    void (*cached_attention_forward)(floatX* out,        // (NH*HD)
                                     const floatX* q,    // (NH*HD)
                                     const floatX* k1, const floatX* v1, int n1,
                                     const floatX* k2, const floatX* v2, int n2,
                                     int NH, int NKV, int HD);
    // Batched decoding: N query rows of different sequences and lengths in one call, each exactly
    // cached_attention_forward (bitwise the same result as that op on the row alone): row r's query at
    // q + r*q_stride, its keys/values k1/v1 + slot[r]*stride1 (n1[r] rows) and k2/v2 + slot[r]*stride2
    // (n2[r] rows), out rows NH*HD apart. slot, n1, n2 are backend memory; max_n >= n1[r] + n2[r] for
    // every r (it sizes the launch).
    void (*cached_attention_batched)(floatX* out,                   // (N, NH*HD)
                                     const floatX* q, size_t q_stride,
                                     const floatX* k1, const floatX* v1, size_t stride1,
                                     const floatX* k2, const floatX* v2, size_t stride2,
                                     const int32_t* slot, const int32_t* n1, const int32_t* n2,  // (N)
                                     int N, int max_n, int NH, int NKV, int HD);

    // ---- optimizer -------------------------------------------------------------------------------
    // AdamW with decoupled weight decay on one contiguous range; g = grad * grad_scale (clipping).
    // t is the 1-based step used for bias correction. With master NULL (fp32) param is the weight
    // itself; otherwise master holds the fp32 weights, updated, and param their floatX copy, written
    // in the same pass (round to nearest even, or stochastic rounding when seed != 0: Philox keyed by
    // seed and the element's index, index0 + i for param[i]: a caller updating part of a tensor passes the
    // part's offset in it, so that ZeRO-1's shards draw what one whole update draws). bf16_state: the Quiet-STaR reference's
    // precision, weights and moments held in bf16: m and v are floatX (fp32 otherwise; fp32 storage of
    // bf16 values where floatX is fp32), rounded to nearest even before the update uses them, and the new
    // weight is rounded to a bf16 value (stochastically when seed != 0) and written to master (if given)
    // and param alike.
    void (*adamw_update)(floatX* param, float* master, const floatX* grad, void* m, void* v, size_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         float grad_scale, int t, uint64_t seed, size_t index0, int bf16_state);
    // x = bf16(x): round to the nearest bfloat16 (ties to even), kept in fp32 storage. Emulates a model
    // whose weights live in bf16, as the Quiet-STaR reference's do.
    void (*round_bf16)(float* x, size_t n);
    // out[0] = Σ x², accumulated in double in a fixed order (out is backend memory, 1 float).
    void (*sum_squares)(float* out, const floatX* x, size_t n);
    // Conversions between fp32 and floatX on the backend (a copy when floatX is fp32): the master
    // weights to their working copy, a gradient to fp32 for a reduction or a checkpoint.
    void (*to_floatX)(floatX* out, const float* x, size_t n);
    void (*from_floatX)(float* out, const floatX* x, size_t n);
} Backend;

// Backend registry: "cpu" always; "cuda" in CUDA builds; "emu" in the test build.
const Backend* backend_get(const char* name);  // NULL if unknown or not built in
const char* backend_names(void);               // "cpu, cuda" etc. for messages
// The table for a --device and --precision pair ("fp32", "bf16", or NULL/"" for the device's default:
// bf16 on cuda, fp32 elsewhere); exits with a one-line message when the pair is unknown or not built.
const Backend* backend_select(const char* device, const char* precision);

// floatX buffers addressed by element: the element n of p (p + n in the backend's precision).
static inline floatX* xat(const Backend* be, const floatX* p, size_t n) {
    return (floatX*)((char*)p + n * be->x_bytes);
}
// Host fp32 arrays to and from floatX backend buffers (converted on the host, round to nearest even).
void x_upload(const Backend* be, floatX* dst, const float* src, size_t n);
void x_download(const Backend* be, float* dst, const floatX* src, size_t n);

extern const Backend backend_cpu;

#endif
