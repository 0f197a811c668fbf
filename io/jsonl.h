/*
 * JSON Lines, the format of the task files and of the selftrain run directory's records: one reader
 * loop for every .jsonl file the host reads and one line writer. The reader counts every line,
 * skips blank ones (nothing but spaces, tabs and '\r') and parses each of the others on its own, so
 * that a caller's message names the file and the line ("FILE:LINE: what is wrong"); what a value must
 * hold, and the message when it does not, stay with the caller.
 */
#ifndef QSTAR_JSONL_H
#define QSTAR_JSONL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "common/util.h"

// A line is one JSON value and nothing else but white space: a second value or any other text after
// it, a NUL byte, a string escape \u0000 (C strings would end there) or bytes that are not UTF-8
// make the line no value (value NULL), and error says which, for the caller's "FILE:LINE: " message.
typedef struct {
    int line;      // the number (from 1) of the line jsonl_next stopped at
    cJSON* value;  // that line's value; NULL when the line is not one (error says why)
    const char* error;  // NULL with a value, else why the line is none (a static string)
    int nul;            // the line holds a NUL byte
    const char *p, *end;  // what is left of the text
    char* text;           // the file's text, when jsonl_open read it
} Jsonl;

// The lines of text[0, len); the text is not copied and must outlive the reader.
void jsonl_from_text(Jsonl* r, const char* text, size_t len);
// The lines of the file at path. Returns 0 (errno says why) when it cannot be opened.
int jsonl_open(Jsonl* r, const char* path);
// Moves to the next line that is not blank: 1, or 0 after the last. The previous value is deleted
// (after a 0 the reader holds nothing but what jsonl_open read).
int jsonl_next(Jsonl* r);
// What is wrong with the line when value is not an object: error, or "not a JSON object".
const char* jsonl_not_object(const Jsonl* r);
// Deletes the last value and frees what jsonl_open read; calling it again does nothing.
void jsonl_close(Jsonl* r);

// value as one line (unformatted, then '\n') of f; value is deleted.
void jsonl_write(AtomicFile* f, cJSON* value);

#endif
