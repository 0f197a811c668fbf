/*
 * A model's parameters to and from Hugging Face safetensors, by tensor name: the one place where the
 * model's flat parameter table (model/params.c) meets the file format (io/safetensors.c). Loading
 * checks every value is finite, naming the file and tensor, so a damaged checkpoint stops here instead
 * of training or scoring as NaN.
 */
#include <math.h>
#include <stdlib.h>

#include "common/util.h"
#include "io/safetensors.h"
#include "io/weights.h"

void model_load_weights(Model* m, const char* path) {
    StIndex* st = st_open(path);
    float* host = xmalloc(sizeof(float) * m->n_params);
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const ParamTensor* t = &m->tensors[ti];
        const StTensor* s = st_find(st, t->name);
        if (!s) fatal("%s: checkpoint has no tensor \"%s\" required by the model config", path, t->name);
        st_read_f32(st, s, host + t->offset, t->shape, t->ndim);
        // A NaN or Inf weight makes every loss NaN: eval would print "loss nan" and training would
        // blame the learning rate. Name the file and tensor instead.
        const float* w = host + t->offset;
        for (size_t i = 0; i < t->numel; i++)
            if (!isfinite(w[i])) fatal("%s: tensor \"%s\" holds %g at element %zu", s->file, t->name, w[i], i);
    }
    model_set_weights(m, host);
    free(host);
    st_close(st);
}

void model_save_host_weights(const Model* m, const float* host, const char* path, int bf16) {
    StWriteTensor* wt = xcalloc((size_t)m->n_tensors, sizeof(StWriteTensor));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor* t = &m->tensors[i];
        wt[i].name = t->name;
        wt[i].ndim = t->ndim;
        wt[i].shape[0] = t->shape[0];
        wt[i].shape[1] = t->shape[1];
        wt[i].data = host + t->offset;
        wt[i].bf16 = bf16;
    }
    st_write(path, wt, m->n_tensors, NULL);
    free(wt);
}

void model_save_weights(const Model* m, const char* path) {
    float* host = xmalloc(sizeof(float) * m->n_params);
    model_get_weights(m, host);
    model_save_host_weights(m, host, path, 0);
    free(host);
}
