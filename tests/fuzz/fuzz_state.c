/*
 * libFuzzer harness: a checkpoint's state.json through run_state_read (train's resume) and
 * checkpoint_setting (eval/sample/generate read the run's settings through it).
 */
#include <stdint.h>
#include <stdlib.h>

#include "io/checkpoint.h"
#include "tests/fuzz/common.h"

static void parse(void* arg) {
    (void)arg;
    RunState rs;
    run_state_read(fz_dir(), &rs, 1);
    run_state_free(&rs);
    (void)checkpoint_setting(fz_dir(), "n_ahead", 12);
    (void)checkpoint_setting(fz_dir(), "lr", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    fz_write("state.json", data, size);
    fz_run(parse, NULL);
    return 0;
}
