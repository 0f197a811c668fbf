/*
 * Loading and saving a model's parameters as safetensors (single file or sharded with an index), by the
 * tensor names of the model's parameter table.
 */
#ifndef QSTAR_WEIGHTS_H
#define QSTAR_WEIGHTS_H

#include "model/model.h"

// Loads every tensor of the model's table from path (a .safetensors file, or a directory with
// model.safetensors or an index); exits naming the file on a missing tensor, wrong shape or non-finite value.
void model_load_weights(Model* m, const char* path);
// Writes the parameters to path as fp32 safetensors (atomically).
void model_save_weights(const Model* m, const char* path);
// The same for weights the caller holds (n_params fp32 on the host, e.g. gathered from several ranks).
void model_save_host_weights(const Model* m, const float* host, const char* path, int bf16);  // bf16: BF16 tensors, rounded to nearest

#endif
