"""The table and plot of a star_arith.sh run: test accuracy per STaR iteration and digit count.

  star_arith_report.py OUT START PROBE_RIGHT PROBE_N SECONDS TRAIN_POOL

Reads OUT/star/metrics.jsonl (every iteration it holds, so a run extended with `qstar selftrain
--resume OUT/star --iterations N` is reported whole) and OUT/base/metrics.jsonl (the starting model's
test accuracy, iteration 0); writes OUT/results.md, OUT/results.json and OUT/accuracy.png.
"""
import json
import sys

out, start, probe, probe_n, secs, pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
recs = [json.loads(l) for l in open(f"{out}/star/metrics.jsonl")]
try:
    base = [json.loads(l) for l in open(f"{out}/base/metrics.jsonl")][-1]
except FileNotFoundError:
    base = None
digits = sorted({int(d) for r in recs for d in r["test_accuracy_by_digits"]})


def by_digits(r):
    by = r["test_accuracy_by_digits"]
    return " | ".join(f"{100 * by[str(d)]:.1f} %" if str(d) in by else "-" for d in digits)


md = ["# STaR on n-digit addition", "",
      f"Starting model: `{start}`" + (f" (SmolLM2 probe: {probe}/{probe_n} two-digit sums right)" if probe >= 0 else "")
      + f"; training pool (digits:problems) {pool}.", "",
      "| iteration | kept (correct + rationalized) | train acc | fine-tune steps | test acc | "
      + " | ".join(f"{d}-digit" for d in digits) + " |",
      "|---|---|---|---|---|" + "---|" * len(digits)]
if base:
    md.append(f"| 0 (starting model) | - | - | - | {100 * base['test_accuracy']:.1f} % | {by_digits(base)} |")
for r in recs:
    md.append(f"| {r['iteration']} | {r['kept']} ({r['correct']} + {r['rationalized']}) | {100 * r['train_accuracy']:.1f} % | "
              f"{r['steps']} | {100 * r['test_accuracy']:.1f} % | {by_digits(r)} |")
md += ["", f"Paper (GPT-J, 16 iterations): 89.5 % overall; baseline without rationales 76.3 %. Wall time {secs} s."]
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
json.dump({"start": start, "train_pool": pool, "probe_right": probe, "probe_n": probe_n, "seconds": secs,
           "starting_model": base, "iterations": recs}, open(f"{out}/results.json", "w"), indent=1)
print("\n".join(md))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("plot: matplotlib missing (make deps): accuracy.png not drawn")
    sys.exit(0)
rows = ([base] if base else []) + recs
its = ([0] if base else []) + [r["iteration"] for r in recs]
fig, ax = plt.subplots(figsize=(6, 3.5))
for d in digits:
    ax.plot(its, [100 * r["test_accuracy_by_digits"].get(str(d), float("nan")) for r in rows], marker="o", label=f"{d}-digit")
ax.plot(its, [100 * r["test_accuracy"] for r in rows], "k--", marker="s", label="overall")
ax.set_xlabel("STaR iteration (0: the starting model)"); ax.set_ylabel("test accuracy (%)"); ax.set_xticks(its)
ax.legend(fontsize=8)
ax.set_title("STaR on n-digit addition")
fig.tight_layout()
fig.savefig(f"{out}/accuracy.png", dpi=120)
print(f"plot: {out}/accuracy.png")
