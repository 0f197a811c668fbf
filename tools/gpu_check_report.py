#!/usr/bin/env python3
"""The report of make gpu-check (tools/gpu_check.sh), and its cpu-vs-cuda run comparison.

  gpu_check_report.py OUT                      OUT/steps.tsv + OUT/logs/*.log -> OUT/report.md, OUT/report.json
  gpu_check_report.py --compare KIND CPU DEV   two metrics.jsonl of the same run on cpu and cuda; exit 1 if
                                               they disagree beyond the stated tolerances

Only the standard library: the GPU machine may lack the .venv.

What the report holds: the GPU (nvidia-smi), nvcc, the commit; each step with its status and seconds;
each test suite's closing "N passed, N failed", its FAIL lines and the worst error it printed; each
benchmark's kernel lines (time, GB/s or TFLOP/s, % of peak, as bench_common.h prints them) under
their case; bench_step's table (ms/step, tokens/s, MFU) with the 100m and mistral-7b rows picked out.

Run comparison tolerances (--compare). The cuda run computes its products in exact fp32 (QSTAR_TF32=0,
tools/gpu_check.sh), so the two runs differ by fp32 rounding order and device math only, as the
emulator does in the cross-backend suite: step 1's loss (lm) or base NLL (quietstar) within 1e-5
relative, every step's within 2e-4 (lm, 30 steps) and 5e-3 (quietstar: its thoughts are sampled by
Gumbel-max, where a near-tie can pick another token on the GPU; docs/cuda.md, make gpu-check). The lm
run's loss must fall (mean of the last 5 steps below the first step's). Measured on an H200
(2026-11-30): step 1 equal (lm) and 2.9e-9 (quietstar); worst 1.1e-5 over 30 lm steps and 6.3e-4 over
4 quietstar steps. With TF32 products the same runs drifted 3.3 % and 18 %.
"""
import json
import os
import re
import sys

TOL = {"lm": {"first": 1e-5, "all": 2e-4}, "quietstar": {"first": 1e-5, "all": 5e-3}}


def compare(kind, cpu_path, dev_path):
    a = [json.loads(l) for l in open(cpu_path) if l.strip()]
    b = [json.loads(l) for l in open(dev_path) if l.strip()]
    ok = len(a) == len(b) and len(a) > 0
    print("%s: %d cpu steps, %d cuda steps" % (kind, len(a), len(b)))
    first_key = "base_nll" if kind == "quietstar" else "loss"
    rel = lambda x, y: abs(x - y) / max(abs(y), 1e-6)
    if ok:
        e1 = rel(b[0][first_key], a[0][first_key])
        worst = max(rel(y["loss"], x["loss"]) for x, y in zip(a, b))
        t = TOL[kind]
        print("step 1 %s: cpu %.6f cuda %.6f, relative difference %.2e (tolerance %.0e)"
              % (first_key, a[0][first_key], b[0][first_key], e1, t["first"]))
        print("worst relative loss difference over %d steps: %.2e (tolerance %.0e)" % (len(a), worst, t["all"]))
        ok = e1 <= t["first"] and worst <= t["all"]
        if kind == "lm":
            last = sum(x["loss"] for x in b[-5:]) / len(b[-5:])
            falls = last < b[0]["loss"]
            print("cuda loss: first %.4f, mean of the last 5 %.4f (%s)" % (b[0]["loss"], last, "falls" if falls else "does not fall"))
            ok = ok and falls
    print("%s run check: %s" % (kind, "passed" if ok else "FAILED"))
    return 0 if ok else 1


NUM = r"([0-9.]+(?:e[-+]?[0-9]+)?)"


def parse_test(text):
    r = {}
    m = re.findall(r"^(?:[A-Za-z_-]+: )?(\d+) passed, (\d+) failed", text, re.M)
    if m:
        r["passed"], r["failed"] = int(m[-1][0]), int(m[-1][1])
    r["fail_lines"] = [l.strip() for l in text.splitlines()
                       if l.lstrip().startswith("FAIL") or re.search(r"\berror: ", l)][:10]
    worst, where = 0.0, None
    for line in text.splitlines():
        for pat in (r"max(?: rel| err| abs err)? " + NUM, r"worst relative (?:difference|error)[^0-9]*" + NUM,
                    r"rel(?:ative)? (?:err|difference) " + NUM):
            for v in re.findall(pat, line):
                try:
                    x = float(v)
                except ValueError:
                    continue
                if x > worst:
                    worst, where = x, line.strip()
    if where:
        r["worst_error"], r["worst_error_line"] = worst, where
    return r


TIME = re.compile(r"^  time (.+?)\s+" + NUM + r" ms\s+" + NUM + r" (GB/s|TFLOP/s)(?: \(\s*" + NUM + r"% of ([^)]+)\))?")
STEP_ROW = re.compile(r"^(\S+(?: \([^)]*\))?)\s+(lm|quietstar)\s+(\d+)\s+(\d+)\s+" + NUM + r"M\s+" + NUM + r"\s+" + NUM
                      + r"\s+" + NUM + r"\s+(?:" + NUM + r"%|peak unknown)")


def parse_bench(text):
    kernels, steps, case = [], [], None
    for line in text.splitlines():
        if line.startswith("-- "):
            case = line[3:].strip()
        m = TIME.match(line)
        if m:
            kernels.append({"case": case, "what": m.group(1).strip(), "ms": float(m.group(2)),
                            "rate": float(m.group(3)), "unit": m.group(4),
                            "pct_peak": float(m.group(5)) if m.group(5) else None, "peak": m.group(6)})
        m = STEP_ROW.match(line)
        if m:
            steps.append({"preset": m.group(1), "mode": m.group(2), "batch": int(m.group(3)), "seq": int(m.group(4)),
                          "params_m": float(m.group(5)), "ms_per_step": float(m.group(6)),
                          "tokens_per_s": float(m.group(7)), "tflops": float(m.group(8)),
                          "mfu_pct": float(m.group(9)) if m.group(9) else None})
    return kernels, steps


def report(out):
    rows = []
    for line in open(os.path.join(out, "steps.tsv")):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 5:
            rows.append({"name": f[0], "kind": f[1], "status": f[2], "seconds": int(f[3]), "log": f[4]})
    read = lambda p: open(os.path.join(out, p), errors="replace").read() if os.path.exists(os.path.join(out, p)) else ""
    gpu = read("gpu.csv").strip().splitlines()
    rep = {"gpu": gpu[1] if len(gpu) > 1 else "unknown", "gpu_fields": gpu[0] if gpu else "",
           "nvcc": read("nvcc.txt").strip(), "commit": read("commit.txt").strip(), "steps": rows,
           "kernels": [], "train_steps": [], "mfu": {}}
    for r in rows:
        text = read(r["log"])
        if r["kind"] in ("test", "run"):
            r.update(parse_test(text))
        if r["kind"] == "bench":
            if r["status"] == "passed" and "no CUDA device" in text:  # a GPU build that found none exits 0
                r["status"] = "failed"
                r.setdefault("fail_lines", []).append("no CUDA device: nothing was timed")
            k, s = parse_bench(text)
            for x in k:
                x["bench"] = r["name"]
            rep["kernels"] += k
            for x in s:  # bench_step_bf16 runs --precision bf16; bench_step fp32 storage with TF32 GEMMs
                x["precision"] = "bf16" if r["name"].endswith("_bf16") else "fp32"
            rep["train_steps"] += s
            parsed = parse_test(text)
            r.update({k2: v for k2, v in parsed.items() if k2 in ("passed", "failed")})
            r["fail_lines"] = r.get("fail_lines", []) + parsed["fail_lines"]
    for s in rep["train_steps"]:
        if s["preset"].startswith("100m") or s["preset"].startswith("mistral-7b"):
            rep["mfu"]["%s %s %s" % (s["preset"], s["mode"], s.get("precision", "fp32"))] = s["mfu_pct"]
    checks = [r for r in rows if r["kind"] != "build"]
    rep["total_seconds"] = sum(r["seconds"] for r in checks)
    rep["build_seconds"] = sum(r["seconds"] for r in rows if r["kind"] == "build")
    rep["all_passed"] = all(r["status"] == "passed" for r in rows)
    json.dump(rep, open(os.path.join(out, "report.json"), "w"), indent=1)

    md = ["# gpu-check report", "",
          "GPU: %s  " % rep["gpu"], "(%s)  " % rep["gpu_fields"], "nvcc: %s  " % rep["nvcc"].replace("\n", " "),
          "commit: %s  " % rep["commit"],
          "checks: %d s (build %d s); result: **%s**" % (rep["total_seconds"], rep["build_seconds"],
                                                       "all passed" if rep["all_passed"] else "FAILURES"), "",
          "## Steps", "", "| step | kind | status | s | passed | failed | worst error printed |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| %s | %s | %s | %d | %s | %s | %s |" % (
            r["name"], r["kind"], r["status"], r["seconds"], r.get("passed", ""), r.get("failed", ""),
            "%.2e" % r["worst_error"] if "worst_error" in r else ""))
    fails = [(r["name"], l) for r in rows for l in r.get("fail_lines", [])]
    if fails:
        md += ["", "### Failures", ""] + ["- %s: `%s`" % (n, l) for n, l in fails]
    md += ["", "## MFU of the training steps (bench_step; fp32 rows against the dense TF32 peak, bf16 rows the BF16)", ""]
    if rep["train_steps"]:
        md += ["| preset | mode | precision | batch | seq | ms/step | tokens/s | TFLOP/s | MFU |",
               "|---|---|---|---|---|---|---|---|---|"]
        for s in rep["train_steps"]:
            md.append("| %s | %s | %s | %d | %d | %.2f | %.0f | %.1f | %s |" % (
                s["preset"], s["mode"], s.get("precision", "fp32"), s["batch"], s["seq"], s["ms_per_step"],
                s["tokens_per_s"], s["tflops"],
                "%.1f%%" % s["mfu_pct"] if s["mfu_pct"] is not None else "peak unknown"))
    else:
        md.append("no bench_step rows (see its log)")
    md += ["", "## Kernels (bench/cuda, cold L2, mean of the repeats)", ""]
    if rep["kernels"]:
        md += ["| bench | case | kernel | ms | rate | % of peak |", "|---|---|---|---|---|---|"]
        for k in rep["kernels"]:
            md.append("| %s | %s | %s | %.4f | %.1f %s | %s |" % (
                k["bench"], k["case"] or "", k["what"], k["ms"], k["rate"], k["unit"],
                "%.1f%% of %s" % (k["pct_peak"], k["peak"]) if k["pct_peak"] is not None else "peak unknown"))
    else:
        md.append("no kernel timings (see the bench logs)")
    md.append("")
    open(os.path.join(out, "report.md"), "w").write("\n".join(md))
    print("report: %s (%d steps, %d kernel timings, %d training-step rows)" % (
        os.path.join(out, "report.md"), len(rows), len(rep["kernels"]), len(rep["train_steps"])))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4]))
    if len(sys.argv) == 2:
        sys.exit(report(sys.argv[1]))
    sys.exit(__doc__)
