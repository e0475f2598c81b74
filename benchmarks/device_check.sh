#!/usr/bin/env bash
# GPU check of issue 10, at most ~8 minutes on one GPU. Run from anywhere:
#
#     OUT=/some/folder bash benchmarks/device_check.sh
#
# Steps (each with its own time limit, all together at most TOTAL_LIMIT=470 s; the script stops with a non-zero
# status at the first failure, a step past its limit included):
#   1. the device: nvidia-smi, torch's view of CUDA;
#   2. CPU vs CUDA: ours on three small problems (Crammer-Singer, binary, d >> n) on both, 1 - cosine <= 1e-9;
#   3. the solver benchmarks on cuda: svm_scale.py --quick (every case), then cifar10-head and cifar100-20k
#      at full size (baselines on the CPU, same run); first the cached MNIST features they use (trained once);
#   4. a short CUDA training + tracking run: nnboundary reproduce blobs --profile smoke --device cuda;
#   5. a CUDA analyze of a small saved model (a TorchScript MLP trained here on three blobs).
# Every number is printed; logs and JSON go to $OUT (default: a new temporary folder, printed at the start).
# DEVICE=cpu runs the same plumbing without a GPU (used to test this script; SKIP_FULL=1 skips the full-size
# benchmarks of step 3); the default is cuda.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-$(mktemp -d -t device_check.XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
START=$SECONDS
TOTAL_LIMIT="${TOTAL_LIMIT:-470}"   # seconds for the whole script; every step gets at most what is left
echo "device_check: device=$DEVICE, logs in $OUT"

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, stop on failure
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((TOTAL_LIMIT - (SECONDS - START)))
    if [ "$left" -le 5 ]; then
        echo "FAILED: no time left for $name (the whole check may take ${TOTAL_LIMIT}s)"
        exit 124
    fi
    if [ "$left" -lt "$limit" ]; then limit="$left"; fi
    echo
    echo "=== $name (limit ${limit}s, elapsed $((SECONDS - START))s)"
    set +e
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc="${PIPESTATUS[0]}"
    set -e
    if [ "$rc" -ne 0 ]; then
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "FAILED: $name ran past its ${limit}s limit (exit $rc); log: $OUT/$name.log"
        else
            echo "FAILED: $name (exit $rc); log: $OUT/$name.log"
        fi
        exit "$rc"
    fi
    echo "--- $name ok ($((SECONDS - START))s elapsed)"
}

cd "$ROOT"

# 1. the device
if [ "$DEVICE" != "cpu" ]; then
    step nvidia-smi 30 nvidia-smi
fi
step torch-device 60 "$PY" - "$DEVICE" <<'EOF'
import sys
import torch
from nnboundary.device import resolve_device
dev = resolve_device(sys.argv[1])
print("torch", torch.__version__, "device", dev, "cuda available", torch.cuda.is_available())
if dev.type == "cuda":
    print("gpu", torch.cuda.get_device_name(dev), "capability", torch.cuda.get_device_capability(dev))
    x = torch.randn(2048, 2048, dtype=torch.float64, device=dev)
    eye = torch.eye(2048, dtype=x.dtype, device=dev)
    print("float64 matmul check, max |x@I - x| =", float((x @ eye - x).abs().max()))
EOF

# 2. CPU vs CUDA: the same problem on both, cosine of the solutions
step cpu-vs-device 120 "$PY" - "$DEVICE" <<'EOF'
import sys, time
import numpy as np
sys.path.insert(0, "benchmarks")
import scale_data
from nnboundary.svm import MaxMarginClassifier

device = sys.argv[1]
params = MaxMarginClassifier().get_params()
worst = 0.0
for (n, d, K) in [(2000, 64, 10), (1000, 128, 2), (30, 2000, 3)]:
    H, y, _ = scale_data.collapse_features(n, d, K, seed=1)
    kw = dict(C=None, bias="free")
    t = time.perf_counter(); cpu = MaxMarginClassifier(**kw).fit(H, y); t_cpu = time.perf_counter() - t
    if "device" in params:
        t = time.perf_counter(); dev = MaxMarginClassifier(**kw, device=device).fit(H, y); how = "device="
    else:
        import torch
        X = torch.from_numpy(H).to(device)
        t = time.perf_counter(); dev = MaxMarginClassifier(**kw).fit(X, y); how = "tensor input"
    t_dev = time.perf_counter() - t
    num = lambda a: np.ravel(a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a, dtype=float))
    A = np.concatenate([num(cpu.coef_), num(cpu.intercept_)])
    B = np.concatenate([num(dev.coef_), num(dev.intercept_)])
    one_minus_cos = 1.0 - float(A @ B / (np.linalg.norm(A) * np.linalg.norm(B)))
    worst = max(worst, abs(one_minus_cos))
    print(f"n={n} d={d} K={K}: cpu {t_cpu:.2f}s (max viol {cpu.max_violation_:.1e}, gap {cpu.duality_gap_:.1e}); "
          f"{device} via {how} {t_dev:.2f}s (max viol {float(dev.max_violation_):.1e}, "
          f"gap {float(dev.duality_gap_):.1e}); "
          f"1 - cos = {one_minus_cos:.2e}")
print(f"largest |1 - cos| = {worst:.2e} (target <= 1e-9)")
sys.exit(0 if worst <= 1e-9 else 1)
EOF

# 3. the solver benchmarks on the device (baselines on the CPU in the same run). Their real-feature case needs the
# penultimate features of an MNIST network, trained once and cached in benchmarks/.cache (about 4 minutes on two
# cores the first time; carry that folder to a fresh machine to skip it): built here, in a step of its own.
step mnist-features 300 "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import scale_data; scale_data.mnist_features()"
step svm-scale-quick 180 "$PY" benchmarks/svm_scale.py --quick --device "$DEVICE" --no-verbose \
    --json "$OUT/svm_scale_quick_$DEVICE.json"
if [ "${SKIP_FULL:-0}" != "1" ]; then
step svm-scale-full 200 "$PY" benchmarks/svm_scale.py --case cifar10-head --case cifar100-20k \
    --device "$DEVICE" --no-verbose --timeout 150 --json "$OUT/svm_scale_full_$DEVICE.json"
fi

# 4. a short training + tracking run on the device
step reproduce-blobs 90 nnboundary reproduce blobs --profile smoke --device "$DEVICE" --no-progress \
    --out "$OUT/blobs-smoke-$DEVICE"
step reproduce-summary 10 "$PY" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=1))" \
    "$OUT/blobs-smoke-$DEVICE/summary.json"

# 5. analyze of a small saved model on the device
step analyze-prepare 60 "$PY" - "$OUT" "$DEVICE" <<'EOF'
import sys
import numpy as np
import torch
out, device = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
rng = np.random.default_rng(0)
centers = np.array([[0.0, 4.0], [-4.0, -2.0], [4.0, -2.0]])
y = np.repeat(np.arange(3), 200)
X = (centers[y] + rng.standard_normal((600, 2))).astype(np.float32)
net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                          torch.nn.Linear(16, 3)).to(device)
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
for _ in range(500):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(Xt), yt).backward()
    opt.step()
acc = float((net(Xt).argmax(1) == yt).float().mean())
print(f"trained on {device}: training accuracy {acc:.4f}")
torch.jit.save(torch.jit.script(net.cpu().eval()), f"{out}/blobs3_mlp.pt")
np.savez(f"{out}/blobs3_data.npz", X=X, y=y)
EOF
step analyze 120 nnboundary analyze "$OUT/blobs3_mlp.pt" --data "$OUT/blobs3_data.npz" --device "$DEVICE" \
    --out "$OUT/analyze-$DEVICE"
step analyze-summary 10 "$PY" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=1))" \
    "$OUT/analyze-$DEVICE/summary.json"

echo
echo "device_check: all steps passed in $((SECONDS - START))s; logs in $OUT"
