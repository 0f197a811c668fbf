#!/usr/bin/env bash
# Cross-checks io/safetensors against the reference Python library (safetensors + torch in .venv):
# (a) files written by safetensors.torch.save_file in F32, F16 and BF16 must read, through
#     `test_safetensors --dump`, to exactly the float32 values torch's .float() gives;
# (b) a file written by st_write_f32 (`test_safetensors --write`) must load with
#     safetensors.torch.load_file bitwise equal to the input, with "format": "pt" metadata.
# A missing .venv is a failure, not a skip that passes: the check is the point of this suite.
set -u
cd "$(dirname "$0")/.."
bin=${ST_TEST_BIN:-build/tests/test_safetensors}  # override to run e.g. a sanitizer build
py=.venv/bin/python
if [ ! -x "$py" ]; then
  echo "SKIP: .venv missing (run make deps)"
  echo "0 passed, 1 failed"; exit 1
fi
if [ ! -x "$bin" ]; then
  echo "FAIL $bin not built (make build/tests/test_safetensors)"
  echo "0 passed, 1 failed"; exit 1
fi
tmp=$(mktemp -d /tmp/qstar_st_py.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$py" - "$bin" "$tmp" <<'EOF'
import os, subprocess, sys
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

bin_path, tmp = sys.argv[1], sys.argv[2]
passed = failed = 0

def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", msg)

def run(args):
    r = subprocess.run([bin_path] + args, capture_output=True, text=True)
    if r.returncode != 0:
        print("   ", " ".join(args), "->", r.returncode, r.stderr.strip())
    return r.returncode

g = torch.Generator().manual_seed(1234)
# Scale spreads values over many exponents; the fp16 tensor also gets values that are subnormal,
# overflow to inf, or are signed zeros once converted.
f16 = (torch.randn(37, 41, generator=g) * 10.0 ** torch.randint(-8, 5, (37, 41), generator=g).float()).half()
f16.view(-1)[:8] = torch.tensor([6e-8, -6e-8, 3e-5, 65504.0, float("inf"), float("-inf"), -0.0, 0.0]).half()
tensors = {
    "model.embed.weight": torch.randn(64, 33, generator=g),
    "layers.0.f16": f16,
    "layers.0.bf16": (torch.randn(5, 7, 3, generator=g) * 1e3).bfloat16(),
    "big.bf16": torch.randn(70001, generator=g).bfloat16(),  # spans conversion chunks
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 4),
    "ids": torch.arange(10, dtype=torch.int64),
}
ref_path = os.path.join(tmp, "ref.safetensors")
save_file(tensors, ref_path, metadata={"format": "pt", "who": "torch"})
check(run(["--open", ref_path]) == 0, "C reader refused a file written by safetensors.torch.save_file")

for name, t in tensors.items():
    if not t.is_floating_point():
        continue
    out = os.path.join(tmp, name + ".bin")
    rc = run(["--dump", ref_path, name, out])
    check(rc == 0, f"--dump {name} failed")
    if rc != 0:
        continue
    got = open(out, "rb").read()
    want = t.float().contiguous().numpy().tobytes()
    check(got == want, f"{name} ({t.dtype}): C values differ from torch .float() "
                       f"({len(got)} vs {len(want)} bytes)")

# (b) C writes, Python reads.
rng = np.random.default_rng(5)
arrays = {
    "w.q": rng.standard_normal((17, 9)).astype(np.float32),
    "w.k": (rng.standard_normal((3, 4, 5)) * 1e-40).astype(np.float32),  # float32 subnormals
    "norm": np.array([1.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38], dtype=np.float32),
    "s": np.array(7.0, dtype=np.float32),
    "z": np.zeros((2, 0), dtype=np.float32),
}
args = []
for name, a in arrays.items():
    b = os.path.join(tmp, "in_" + name + ".bin")
    a.tofile(b)
    args += [name, "x".join(str(d) for d in a.shape), b]
c_path = os.path.join(tmp, "c.safetensors")
check(run(["--write", c_path] + args) == 0, "--write failed")
check(not any(".tmp." in f for f in os.listdir(tmp)), "temp file left after st_write_f32")
try:
    loaded = load_file(c_path)
    check(sorted(loaded) == sorted(arrays), f"tensor names {sorted(loaded)}")
    for name, a in arrays.items():
        t = loaded.get(name)
        check(t is not None and t.dtype == torch.float32 and tuple(t.shape) == a.shape,
              f"{name}: dtype/shape {None if t is None else (t.dtype, tuple(t.shape))}")
        if t is not None:
            check(t.numpy().tobytes() == a.tobytes(), f"{name}: values differ bitwise")
    with safe_open(c_path, framework="pt") as f:
        check(f.metadata() == {"format": "pt", "source": "qstar-test"}, f"metadata {f.metadata()}")
        check(sorted(f.keys()) == sorted(arrays), "keys")
except Exception as e:  # a file the library refuses is the failure this test exists for
    check(False, f"safetensors could not load the C-written file: {e!r}")

# The header pads to 8 bytes so the data is aligned.
n = int.from_bytes(open(c_path, "rb").read(8), "little")
check((8 + n) % 8 == 0, f"header length {n} leaves the data unaligned")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
