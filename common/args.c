/*
 * Table-driven option parsing (see args.h). Values are validated as they are parsed so that a typo
 * such as "--steps 1O" stops the program with the option named, before any work starts.
 */
#include "common/args.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

// The storage type of an option: the unsigned kinds are stored as their signed ones.
static ArgType base_type(ArgType t) { return t == ARG_UINT ? ARG_INT : t == ARG_UFLOAT ? ARG_FLOAT : t; }

static void set_value(ArgSpec* s, const char* cmd, const char* val) {
    char* end = NULL;
    errno = 0;
    switch (s->type) {
    case ARG_INT:
    case ARG_UINT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < -2147483647L || v > 2147483647L)
            fatal("%s: --%s expects an integer from %s to 2147483647, got \"%s\"", cmd, s->name,
                  s->type == ARG_UINT ? "0" : "-2147483647", val);
        if (s->type == ARG_UINT && v < 0) fatal("%s: --%s must not be negative, got \"%s\"", cmd, s->name, val);
        *(int*)s->ptr = (int)v;
        break;
    }
    case ARG_FLOAT:
    case ARG_UFLOAT: {
        float v = strtof(val, &end);
        if (errno || end == val || *end || !isfinite(v)) fatal("%s: --%s expects a number, got \"%s\"", cmd, s->name, val);
        if (s->type == ARG_UFLOAT && v < 0) fatal("%s: --%s must not be negative, got \"%s\"", cmd, s->name, val);
        *(float*)s->ptr = v;
        break;
    }
    case ARG_STR:
        *(const char**)s->ptr = val;
        break;
    case ARG_FLAG:
        *(int*)s->ptr = 1;
        break;
    }
}

static void print_help(const ArgSpec* specs, int n, const char* summary) {
    printf("%s\n\noptions:\n", summary);
    for (int i = 0; i < n; i++) {
        const ArgSpec* s = &specs[i];
        const ArgType t = base_type(s->type);
        const char* meta = t == ARG_INT ? " N" : t == ARG_FLOAT ? " X" : t == ARG_STR ? " S" : "";
        char def[64] = "";
        if (t == ARG_INT) snprintf(def, sizeof def, " (default %d)", *(int*)s->ptr);
        if (t == ARG_FLOAT) snprintf(def, sizeof def, " (default %g)", *(float*)s->ptr);
        if (s->type == ARG_STR && *(const char**)s->ptr) snprintf(def, sizeof def, " (default %s)", *(const char**)s->ptr);
        printf("  --%s%-*s %s%s\n", s->name, (int)(22 - strlen(s->name) - strlen(meta)), meta, s->help, def);
    }
}

void args_parse(int argc, char** argv, ArgSpec* specs, int n, const char* summary) {
    const char* cmd = argv[0];
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(specs, n, summary);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) fatal("%s: unexpected argument \"%s\" (see qstar %s --help)", cmd, a, cmd);
        ArgSpec* s = NULL;
        for (int j = 0; j < n; j++)
            if (!strcmp(specs[j].name, a + 2)) s = &specs[j];
        if (!s) fatal("%s: unknown option %s (see qstar %s --help)", cmd, a, cmd);
        if (s->type == ARG_FLAG) {
            set_value(s, cmd, NULL);
        } else {
            if (i + 1 >= argc) fatal("%s: option %s needs a value", cmd, a);
            set_value(s, cmd, argv[++i]);
        }
        s->given = 1;
    }
}

void args_print_table(const ArgSpec* specs, int n) {
    printf("+----------------------+------------------------------------------------+\n");
    printf("| %-20s | %-46s |\n", "setting", "value");
    printf("+----------------------+------------------------------------------------+\n");
    for (int i = 0; i < n; i++) {
        const ArgSpec* s = &specs[i];
        char val[256];
        switch (s->type) {
        case ARG_INT:
        case ARG_UINT: snprintf(val, sizeof val, "%d", *(int*)s->ptr); break;
        case ARG_FLOAT:
        case ARG_UFLOAT: snprintf(val, sizeof val, "%g", *(float*)s->ptr); break;
        case ARG_STR: snprintf(val, sizeof val, "%s", *(const char**)s->ptr ? *(const char**)s->ptr : "-"); break;
        case ARG_FLAG: snprintf(val, sizeof val, "%s", *(int*)s->ptr ? "yes" : "no"); break;
        }
        printf("| %-20s | %-46.46s |\n", s->name, val);
    }
    printf("+----------------------+------------------------------------------------+\n");
}

cJSON* args_to_json(const ArgSpec* specs, int n) {
    cJSON* o = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const ArgSpec* s = &specs[i];
        switch (s->type) {
        case ARG_UINT:
        case ARG_INT: cJSON_AddNumberToObject(o, s->name, *(int*)s->ptr); break;
        case ARG_FLOAT:
        case ARG_UFLOAT: cJSON_AddNumberToObject(o, s->name, *(float*)s->ptr); break;
        case ARG_STR:
            if (*(const char**)s->ptr) cJSON_AddStringToObject(o, s->name, *(const char**)s->ptr);
            else cJSON_AddNullToObject(o, s->name);
            break;
        case ARG_FLAG: cJSON_AddBoolToObject(o, s->name, *(int*)s->ptr); break;
        }
    }
    return o;
}

void args_from_json(ArgSpec* specs, int n, const cJSON* obj, const char* source) {
    for (int i = 0; i < n; i++) {
        ArgSpec* s = &specs[i];
        if (s->given) continue;
        const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, s->name);
        if (!v) continue;
        if (s->type == ARG_STR) {
            if (cJSON_IsNull(v)) *(const char**)s->ptr = NULL;
            else if (cJSON_IsString(v)) *(const char**)s->ptr = v->valuestring;  // obj outlives it (args.h)
            else fatal("%s: setting \"%s\" must be a string", source, s->name);
        } else if (s->type == ARG_FLAG) {
            if (!cJSON_IsBool(v)) fatal("%s: setting \"%s\" must be true or false", source, s->name);
            *(int*)s->ptr = cJSON_IsTrue(v);
        } else {
            if (!cJSON_IsNumber(v)) fatal("%s: setting \"%s\" must be a number", source, s->name);
            const double d = v->valuedouble;  // range-checked: a conversion out of range is undefined
            if ((s->type == ARG_UINT || s->type == ARG_UFLOAT) && d < 0)
                fatal("%s: setting \"%s\" must not be negative (got %g)", source, s->name, d);
            if (base_type(s->type) == ARG_INT) {
                if (!(d >= -2147483647.0 && d <= 2147483647.0 && d == floor(d)))
                    fatal("%s: setting \"%s\" must be an integer (got %g)", source, s->name, d);
                *(int*)s->ptr = (int)d;
            } else {
                if (!(isfinite(d) && fabs(d) <= FLT_MAX))
                    fatal("%s: setting \"%s\" must be a finite 32-bit float (got %g)", source, s->name, d);
                *(float*)s->ptr = (float)d;
            }
        }
    }
}

int args_given(const ArgSpec* specs, int n, const char* name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(specs[i].name, name)) return specs[i].given;
    return 0;
}
