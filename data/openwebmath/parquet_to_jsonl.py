#!/usr/bin/env python3
"""Converts OpenWebMath parquet files to the JSONL that `qstar tokenize` reads.

The dataset's parquet files (columns url, text, date, metadata) are ~240 MB each, so they are
streamed one record batch at a time and only the text column is read: memory stays at a batch,
whatever the file size. Each document becomes one line {"text": ...}. Documents keep their
original order; empty texts are dropped (they would only add an EOS). Output is written to a
temporary file and renamed, so an interrupted run never leaves a partial JSONL behind that a later
run would mistake for finished work.

Usage: python parquet_to_jsonl.py --out OUT.jsonl [--field text] [--max-docs N] IN.parquet [IN2.parquet ...]
Needs pyarrow (in .venv after `make deps`).
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="parquet files, converted in the order given")
    ap.add_argument("--out", required=True, help="output JSONL")
    ap.add_argument("--field", default="text", help="the text column (default: text)")
    ap.add_argument("--max-docs", type=int, default=0, help="stop after this many documents (0: all)")
    ap.add_argument("--batch-rows", type=int, default=1024, help="rows read per batch (memory bound)")
    args = ap.parse_args()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("parquet_to_jsonl: pyarrow is missing (run make deps, then use .venv/bin/python)")

    tmp = args.out + ".tmp"
    n_docs = n_chars = n_empty = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for path in args.inputs:
            pf = pq.ParquetFile(path)
            if args.field not in pf.schema_arrow.names:
                os.unlink(tmp)
                sys.exit("parquet_to_jsonl: %s has no column %r (columns: %s)"
                         % (path, args.field, ", ".join(pf.schema_arrow.names)))
            for batch in pf.iter_batches(batch_size=args.batch_rows, columns=[args.field]):
                for text in batch.column(0).to_pylist():
                    if not text:
                        n_empty += 1
                        continue
                    # ensure_ascii=False keeps the file UTF-8 and about the size of the text.
                    out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                    n_docs += 1
                    n_chars += len(text)
                    if args.max_docs and n_docs >= args.max_docs:
                        break
                if args.max_docs and n_docs >= args.max_docs:
                    break
            if args.max_docs and n_docs >= args.max_docs:
                break
    os.replace(tmp, args.out)
    print("parquet_to_jsonl: %d docs (%d chars, %d empty skipped) -> %s" % (n_docs, n_chars, n_empty, args.out),
          file=sys.stderr)


if __name__ == "__main__":
    main()
