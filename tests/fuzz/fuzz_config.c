/* libFuzzer harness: config.json through config_load (and, when it loads, what config_save writes must read back equal). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "tests/fuzz/common.h"

static const char* g_path;

static char g_out[600];
static ModelConfig g_cfg, g_back;

static void parse(void* arg) {
    (void)arg;
    config_load(&g_cfg, g_path);
    config_save(&g_cfg, g_out, "float32");
}

static void reload(void* arg) {
    (void)arg;
    config_load(&g_back, g_out);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    if (!g_out[0]) snprintf(g_out, sizeof g_out, "%s", fz_path("config.out.json"));
    g_path = fz_write("config.json", data, size);
    if (fz_run(parse, NULL) != 0) return 0;
    // what qstar writes (every checkpoint's config.json) must read back as the same configuration
    if (fz_run(reload, NULL) != 0 || memcmp(&g_cfg, &g_back, sizeof g_cfg) != 0) {
        fprintf(stderr, "fuzz: config.json written from a loaded config does not read back the same\n");
        abort();
    }
    return 0;
}
