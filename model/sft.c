/*
 * SFT rows and the fine-tuning micro-step (model/sft.h): the row layout that keeps the loss on the
 * completion, and a step that is the language-model step on those rows.
 */
#include "model/sft.h"

#include "common/util.h"

int sft_make_row(const int32_t* prompt, int n_prompt, const int32_t* completion, int n_completion, int T, int32_t pad,
                 int32_t* inputs, int32_t* targets) {
    QSTAR_ASSERT(T > 0 && n_prompt >= 0 && n_completion >= 0);
    const int n = n_prompt + n_completion;
    int counted = 0;
    for (int t = 0; t < T; t++) {
        inputs[t] = t < n ? (t < n_prompt ? prompt[t] : completion[t - n_prompt]) : pad;
        const int next = t + 1;  // the token position t predicts
        if (next < n && next >= n_prompt) {
            targets[t] = completion[next - n_prompt];
            counted++;
        } else {
            targets[t] = QSTAR_IGNORE_INDEX;
        }
    }
    return counted;
}

float sft_step(Model* m, const int32_t* inputs, const int32_t* targets, float loss_scale) {
    float loss = model_forward(m, inputs, targets, NULL);
    if (m->n_valid) model_backward(m, loss_scale);
    return loss;
}
