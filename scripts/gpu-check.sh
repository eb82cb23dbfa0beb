#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU and TensorRT (pip install tensorrt), build fp32/fp16/bf16/int8
# TensorRT engines for densenet121 and densenet_bc100_k12, verify each against PyTorch, benchmark them.
# Writes one JSON file per step plus summary.json to $OUT (or ./gpu-check-out). Budget: < 8 min on an H100.
#
#   scripts/gpu-check.sh                 # uses `dnx` from PATH, else `python -m densenet_deploy.cli`
#   OUT=/tmp/gpu PYTHON=python3.11 scripts/gpu-check.sh
#   TARGET=onnxruntime MODELS=densenet_bc22_k8 scripts/gpu-check.sh   # CPU smoke test of the script itself
#
# Every step runs even if an earlier one failed; the exit status is non-zero if any step failed.
set -uo pipefail

OUT="${OUT:-./gpu-check-out}"
PYTHON="${PYTHON:-python}"
MODELS="${MODELS:-densenet121 densenet_bc100_k12}"
PRECISIONS="${PRECISIONS:-fp32 fp16 bf16 int8}"
CALIB_SAMPLES="${CALIB_SAMPLES:-64}"   # calibration runs on the CPU with ONNX Runtime: keep it small
TARGET="${TARGET:-tensorrt}"           # TARGET=onnxruntime: the same flow as a CPU smoke test
case "$TARGET" in tensorrt) EXT=plan ;; *) EXT=ort.onnx ;; esac
# The profile and timing cache are TensorRT's; other targets refuse them. ONNX Runtime builds no bf16.
TARGET_OPTS=()
if [ "$TARGET" = tensorrt ]; then
  TARGET_OPTS=(--min-batch 1 --opt-batch 8 --max-batch 8 --timing-cache "$OUT/timing.cache")
else
  PRECISIONS="${PRECISIONS//bf16/}"
fi
mkdir -p "$OUT"
if command -v dnx >/dev/null 2>&1; then DNX=(dnx); else DNX=("$PYTHON" -m densenet_deploy.cli); fi
FAILED=()
START=$(date +%s)

step() {  # step NAME CMD...: run CMD, stdout (the --json object) to $OUT/NAME.json, stderr to $OUT/NAME.log
  local name="$1"; shift
  local t0=$(date +%s)
  echo "[$(( t0 - START ))s] $name: $*" >&2
  if "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"; then
    echo "    ok ($(( $(date +%s) - t0 ))s)" >&2
  else
    local rc=$?
    echo "    FAILED (exit $rc, $(( $(date +%s) - t0 ))s): $(tail -n 1 "$OUT/$name.log")" >&2
    FAILED+=("$name")
  fi
}

step doctor "${DNX[@]}" doctor --json

for model in $MODELS; do
  onnx="$OUT/$model.onnx"
  step "export-$model" "${DNX[@]}" export "$model" -o "$onnx" --json
  # Built-in digits (resized to the model's input) for both: with random weights any calibration data
  # proves little, the INT8 gate is top-1 agreement with the fp32 model on held-out digits.
  calib="${CALIB_DATA:-digits}"
  plans=()
  for precision in $PRECISIONS; do
    plan="$OUT/$model.$precision.$EXT"
    case "$precision" in
      fp32) flags=() ;;
      fp16) flags=(--fp16) ;;
      bf16) flags=(--bf16) ;;
      int8) flags=(--int8 --calib-data "$calib" --samples "$CALIB_SAMPLES") ;;
    esac
    step "build-$model-$precision" "${DNX[@]}" build-engine "$onnx" "${flags[@]}" -o "$plan" --target "$TARGET" \
      "${TARGET_OPTS[@]}" --json
    step "verify-$model-$precision" "${DNX[@]}" verify "$model" "$plan" --samples 64 --batch-size 8 --json
    [ -f "$plan" ] && plans+=("$plan")
  done
  if [ "${#plans[@]}" -gt 0 ]; then
    step "bench-$model" "${DNX[@]}" bench "$onnx" "${plans[@]}" --batch 1,8 --seconds 3 --json
  fi
done

# One summary: every step's exit status and the headline numbers of verify/bench.
"$PYTHON" - "$OUT" "${FAILED[@]}" <<'EOF'
import json, os, sys
out, failed = sys.argv[1], set(sys.argv[2:])
summary = {"failed": sorted(failed), "steps": {}}
for name in sorted(f[:-5] for f in os.listdir(out) if f.endswith(".json") and f != "summary.json"):
    try:
        doc = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        doc = None
    entry = {"ok": name not in failed}
    if isinstance(doc, dict) and name.startswith("verify-"):
        entry.update({k: doc.get(k) for k in ("passed", "rel_l2", "centered_cosine_min", "top1_agreement", "failures")})
    elif isinstance(doc, dict) and name.startswith("build-"):
        entry.update({k: doc.get(k) for k in ("precision", "seconds")})
    elif isinstance(doc, dict) and name.startswith("bench-"):
        entry["results"] = [{k: r.get(k) for k in ("artifact", "backend", "precision", "batch", "latency_ms", "throughput")}
                            for r in doc.get("results", [])]
    summary["steps"][name] = entry
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps({"failed": summary["failed"], "out": out}))
EOF
echo "total $(( $(date +%s) - START ))s; results in $OUT/summary.json" >&2
[ "${#FAILED[@]}" -eq 0 ]
