/*
 * config.json reading and writing with cJSON. Reading is strict: a missing required key, a value
 * of the wrong type or an unsupported architecture feature is an error naming the file and the key,
 * never a silent default; optional keys take transformers' MistralConfig defaults.
 */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "common/util.h"

static int get_int(const cJSON* root, const char* path, const char* key, int required, int def) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) fatal("%s: missing required key \"%s\"", path, key);
        return def;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2e9)
        fatal("%s: key \"%s\" must be an integer", path, key);
    return (int)v->valuedouble;
}

static float get_float(const cJSON* root, const char* path, const char* key, float def) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsNumber(v)) fatal("%s: key \"%s\" must be a number", path, key);
    // cJSON turns 1e400 into infinity and 1e39 does not fit a float: either would pass a "> 0"
    // check as infinity, train a dead model and be written back as null.
    const double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > FLT_MAX) fatal("%s: key \"%s\" is %g, not a finite 32-bit float", path, key, d);
    if (d != 0 && fabs(d) < FLT_MIN)  // would flush to zero or lose its precision as a float
        fatal("%s: key \"%s\" is %g, too small for a 32-bit float", path, key, d);
    return (float)d;
}

static int get_bool(const cJSON* root, const char* path, const char* key, int def) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsBool(v)) fatal("%s: key \"%s\" must be true or false", path, key);
    return cJSON_IsTrue(v);
}

void config_validate(const ModelConfig* c, const char* src) {
    if (c->vocab_size <= 0) fatal("%s: vocab_size must be positive (got %d)", src, c->vocab_size);
    if (c->hidden_size <= 0) fatal("%s: hidden_size must be positive (got %d)", src, c->hidden_size);
    if (c->intermediate_size <= 0) fatal("%s: intermediate_size must be positive (got %d)", src, c->intermediate_size);
    if (c->num_hidden_layers <= 0) fatal("%s: num_hidden_layers must be positive (got %d)", src, c->num_hidden_layers);
    if (c->num_attention_heads <= 0) fatal("%s: num_attention_heads must be positive", src);
    if (c->num_key_value_heads <= 0 || c->num_attention_heads % c->num_key_value_heads != 0)
        fatal("%s: num_key_value_heads (%d) must divide num_attention_heads (%d)", src, c->num_key_value_heads,
              c->num_attention_heads);
    if (c->hidden_size % c->num_attention_heads != 0)
        fatal("%s: num_attention_heads (%d) must divide hidden_size (%d)", src, c->num_attention_heads, c->hidden_size);
    if (c->head_dim % 2 != 0 || c->head_dim > 512) fatal("%s: head_dim %d must be even and at most 512", src, c->head_dim);
    // Float fields: finite and in a range a working model uses (the ranges are generous; what they
    // keep out are values that make every activation or rotation degenerate).
    if (!(isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0 && c->rms_norm_eps <= 1))
        fatal("%s: rms_norm_eps must be in (0, 1] (got %g)", src, c->rms_norm_eps);
    if (!(isfinite(c->rope_theta) && c->rope_theta >= 1 && c->rope_theta <= 1e12f))
        fatal("%s: rope_theta must be in [1, 1e12] (got %g)", src, c->rope_theta);
    if (!(isfinite(c->initializer_range) && c->initializer_range >= 0 && c->initializer_range <= 1))
        fatal("%s: initializer_range must be in [0, 1] (got %g)", src, c->initializer_range);
    if (c->sliding_window < 0)
        fatal("%s: sliding_window must be positive, or null for none (got %d)", src, c->sliding_window);
    if (c->max_position_embeddings <= 0) fatal("%s: max_position_embeddings must be positive", src);
}

void config_load(ModelConfig* c, const char* path_in) {
    char* path = dir_exists(path_in) ? xsprintf("%s/config.json", path_in) : xstrdup(path_in);
    size_t len;
    char* text = read_file_or_die(path, &len);
    cJSON* root = cJSON_ParseWithLength(text, len);
    if (!root) fatal("%s: malformed JSON near byte %ld", path, (long)(cJSON_GetErrorPtr() - text));
    if (!cJSON_IsObject(root)) fatal("%s: expected a JSON object", path);

    const cJSON* mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && !(cJSON_IsString(mt) && (!strcmp(mt->valuestring, "mistral") || !strcmp(mt->valuestring, "llama"))))
        fatal("%s: unsupported model_type (qstar runs \"mistral\" and \"llama\" decoders)", path);
    const cJSON* act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
        fatal("%s: unsupported hidden_act (only \"silu\")", path);
    if (get_bool(root, path, "attention_bias", 0) || get_bool(root, path, "mlp_bias", 0))
        fatal("%s: attention_bias/mlp_bias are not supported", path);
    const cJSON* rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) fatal("%s: rope_scaling is not supported", path);

    memset(c, 0, sizeof *c);
    c->vocab_size = get_int(root, path, "vocab_size", 1, 0);
    c->hidden_size = get_int(root, path, "hidden_size", 1, 0);
    c->intermediate_size = get_int(root, path, "intermediate_size", 1, 0);
    c->num_hidden_layers = get_int(root, path, "num_hidden_layers", 1, 0);
    c->num_attention_heads = get_int(root, path, "num_attention_heads", 1, 0);
    c->num_key_value_heads = get_int(root, path, "num_key_value_heads", 0, c->num_attention_heads);
    c->max_position_embeddings = get_int(root, path, "max_position_embeddings", 0, 131072);
    c->rms_norm_eps = get_float(root, path, "rms_norm_eps", 1e-6f);
    c->rope_theta = get_float(root, path, "rope_theta", 10000.0f);
    c->tie_word_embeddings = get_bool(root, path, "tie_word_embeddings", 0);
    c->bos_token_id = get_int(root, path, "bos_token_id", 0, 1);
    c->eos_token_id = get_int(root, path, "eos_token_id", 0, 2);
    c->initializer_range = get_float(root, path, "initializer_range", 0.02f);
    c->sliding_window = get_int(root, path, "sliding_window", 0, 0);
    c->start_thought_id = get_int(root, path, "start_thought_token_id", 0, -1);
    c->end_thought_id = get_int(root, path, "end_thought_token_id", 0, -1);
    if ((c->start_thought_id < 0) != (c->end_thought_id < 0) || c->start_thought_id >= c->vocab_size ||
        c->end_thought_id >= c->vocab_size)
        fatal("%s: start_thought_token_id and end_thought_token_id must both be valid token ids or both absent", path);
    c->head_dim = c->num_attention_heads > 0 ? c->hidden_size / c->num_attention_heads : 0;
    int hd = get_int(root, path, "head_dim", 0, c->head_dim);
    if (hd != c->head_dim)
        fatal("%s: head_dim %d differs from hidden_size / num_attention_heads = %d (not supported)", path, hd,
              c->head_dim);
    config_validate(c, path);
    cJSON_Delete(root);
    free(text);
    free(path);
}

void config_save(const ModelConfig* c, const char* path, const char* torch_dtype) {
    cJSON* root = cJSON_CreateObject();
    cJSON* arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("MistralForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "mistral");
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", c->num_key_value_heads);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddNumberToObject(root, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(root, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddNumberToObject(root, "bos_token_id", c->bos_token_id);
    cJSON_AddNumberToObject(root, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(root, "initializer_range", c->initializer_range);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    if (c->sliding_window > 0) cJSON_AddNumberToObject(root, "sliding_window", c->sliding_window);
    else cJSON_AddNullToObject(root, "sliding_window");
    cJSON_AddNumberToObject(root, "attention_dropout", 0.0);
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype);
    if (c->start_thought_id >= 0) {
        cJSON_AddNumberToObject(root, "start_thought_token_id", c->start_thought_id);
        cJSON_AddNumberToObject(root, "end_thought_token_id", c->end_thought_id);
    }
    char* text = cJSON_Print(root);
    char* with_nl = xsprintf("%s\n", text);
    write_file_atomic(path, with_nl, strlen(with_nl));
    free(with_nl);
    free(text);
    cJSON_Delete(root);
}
