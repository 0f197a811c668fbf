/*
 * Command-line options from a table: each subcommand declares its options once (name, type, where
 * the value goes, help) and gets parsing with clear errors, --help, the resolved-settings table it
 * prints at start, and JSON round-tripping of the settings (checkpoints store them for --resume).
 */
#ifndef QSTAR_ARGS_H
#define QSTAR_ARGS_H

#include <cjson/cJSON.h>

// ARG_UINT and ARG_UFLOAT are ARG_INT and ARG_FLOAT that must not be negative: a count or a scale
// whose 0 means "off" or "default" (the help says which); a negative one is an error naming the option.
typedef enum { ARG_INT, ARG_FLOAT, ARG_STR, ARG_FLAG, ARG_UINT, ARG_UFLOAT } ArgType;

typedef struct {
    const char* name;  // without the leading "--"
    ArgType type;
    void* ptr;         // int*, float*, const char**, int* (flag), int* (uint), float* (ufloat)
    const char* help;
    int given;         // set by args_parse when the option was on the command line
} ArgSpec;

// argv[0] is the subcommand name. Exits with a one-line error on an unknown option, a missing or
// malformed value; prints help and exits 0 on --help.
void args_parse(int argc, char** argv, ArgSpec* specs, int n, const char* summary);
void args_print_table(const ArgSpec* specs, int n);
cJSON* args_to_json(const ArgSpec* specs, int n);
// Sets every option that was not given on the command line from obj (keys as option names).
// String options point into obj: the caller keeps obj until it no longer uses them.
void args_from_json(ArgSpec* specs, int n, const cJSON* obj, const char* source);
int args_given(const ArgSpec* specs, int n, const char* name);

#endif
