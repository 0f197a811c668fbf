#!/usr/bin/env bash
# The docs point at things that exist: every relative link in README.md and docs/*.md names a file of
# the tree (and, with #anchor, a heading of that file), and every repository path written in
# backticks exists (paths git ignores, such as build/, runs/ or a prepared data/gsm8k/test.jsonl, are
# made by running things, and paths with placeholders or wildcards such as <target>, NAME or * stand
# for many; both are skipped).
# The README stays a front door: at most 250 lines.
set -u
cd "$(dirname "$0")/.."
python3 - <<'PY'
import fnmatch, glob, os, re, subprocess, sys
docs = ["README.md"] + sorted(glob.glob("docs/*.md"))
top = {p.split("/")[0] for p in os.listdir(".")}
generated = ("build", "bin", "runs", ".venv", "build-portable", "build-fuzz", "build-san")
fails, passes = [], 0

in_git = subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True).returncode == 0

def ignored(path):  # git ignores it; in a copy of the tree without git, by the .gitignore files alone
    if in_git: return subprocess.run(["git", "check-ignore", "-q", "--", path], capture_output=True).returncode == 0
    parts = path.rstrip("/").split("/")
    for i in range(len(parts)):
        gi = os.path.join(*(parts[:i] or ["."]), ".gitignore")
        rest = "/".join(parts[i:])
        if os.path.exists(gi):
            for pat in open(gi).read().split():
                pat = pat.strip("/")
                if fnmatch.fnmatch(rest, pat) or fnmatch.fnmatch(parts[i], pat) or fnmatch.fnmatch(parts[-1], pat): return True
    return False

def slug(heading):  # GitHub's anchor for a heading
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")

def anchors(path):
    out, fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"): fence = not fence
        elif not fence and (m := re.match(r"^#+ (.*)", line)): out.add(slug(m.group(1)))
    return out

for doc in docs:
    text = open(doc, encoding="utf-8").read()
    here = os.path.dirname(doc)
    for n, line in enumerate(text.split("\n"), 1):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target): continue  # http:, mailto:
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(here, path)) if path else doc
            if not os.path.exists(full): fails.append(f"{doc}:{n}: link to {target}: no {full}"); continue
            if anchor and full.endswith(".md") and anchor not in anchors(full):
                fails.append(f"{doc}:{n}: link to {target}: {full} has no heading #{anchor}"); continue
            passes += 1
        for tok in re.findall(r"`([^`\s]+)`", line):
            tok = re.sub(r":\d+(-\d+)?$", "", tok)  # file:line
            if "/" not in tok or tok.split("/")[0] not in top or tok.split("/")[0] in generated: continue
            if re.search(r"[*<>{}\[\]…$]|\.\.\.|\b[A-Z][A-Z_]{2,}\b|NNN", tok): continue
            if not os.path.exists(tok.rstrip("/")):
                if not ignored(tok): fails.append(f"{doc}:{n}: `{tok}` does not exist")
                continue
            passes += 1
lines = open("README.md", encoding="utf-8").read().count("\n")
if lines <= 250: passes += 1
else: fails.append(f"README.md: {lines} lines, over the front door's 250")
for f in fails: print("FAIL", f)
print(f"ok   {passes} links and paths checked")
print(f"{passes} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
PY
