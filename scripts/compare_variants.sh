#!/usr/bin/env bash
# The four-variant comparison of docs/results.md, one recipe for all (issue 5):
#   bash scripts/compare_variants.sh train 0 baseline resnet_lite residual attention   # seed 0, all four
#   bash scripts/compare_variants.sh train 1 residual attention                         # more seeds, two best
#   bash scripts/compare_variants.sh evaluate                                           # export + sar-eval
# Runs land in runs/compare/<variant>_s<seed>; every step resumes from its last checkpoint if interrupted.
# EPOCHS (default 6, 40 steps of 8 x 128 px each) is the CPU budget; the recipe is otherwise the default
# model's (lr 5e-4, 0.7 MSE + 0.3 (1 - SSIM), AdamW, no schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-runs/compare}
res=${RESULTS:-benchmarks/results/variant_comparison}
epochs=${EPOCHS:-6}
device=${DEVICE:-cpu}

train() {
  local seed=$1; shift
  for v in "$@"; do
    .venv/bin/sar-train --variant "$v" --seed "$seed" --out "$runs/${v}_s$seed" --epochs "$epochs" \
      --steps-per-epoch 40 --batch-size 8 --patch-size 128 --lr 5e-4 --patience 1000 --device "$device" \
      --no-progress --resume
  done
}

evaluate() {
  mkdir -p "$res"
  local bundles=() ckpts=()
  for v in baseline resnet_lite residual attention; do
    local ck="$runs/${v}_s0/best.pth"
    [[ -f $ck ]] || continue
    [[ -f $runs/bundles/$v/manifest.json ]] || .venv/bin/sar-export "$ck" "$runs/bundles/$v" --name "$v-s0" \
      > "$res/export_$v.json"
    bundles+=("$runs/bundles/$v")
  done
  for ck in "$runs"/*_s*/best.pth; do ckpts+=("$ck"); done
  .venv/bin/sar-eval "${ckpts[@]}" --out "$res/float"
  # CODEC_EVAL=0 skips the (slower) codec pass, e.g. after adding seeds of variants already evaluated
  [[ ${CODEC_EVAL:-1} == 0 ]] || .venv/bin/sar-eval --bundle "${bundles[@]}" --out "$res/codec"
  .venv/bin/python -m trainer.compare_runs "$runs" --out "$res"
}

cmd=${1:?usage: compare_variants.sh train SEED VARIANT... | evaluate}; shift
"$cmd" "$@"
