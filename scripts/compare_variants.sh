#!/usr/bin/env bash
# The four-variant comparison in rate-distortion terms (issue: codec model, item 6), one recipe for all:
#   bash scripts/compare_variants.sh train 0 baseline resnet_lite residual attention   # seed 0, all four
#   bash scripts/compare_variants.sh train 1 residual attention                         # more seeds, two best
#   bash scripts/compare_variants.sh evaluate                                           # export + BD-rate each
# Runs land in runs/compare/<variant>_s<seed>; every step resumes from its last checkpoint if interrupted.
# SEED changes the initialisation and the patch stream only: every run holds out split seed 0's scenes, the ones
# the evaluation measures on (runs made before --split-seed existed split by --seed, and seed 1 trained on them).
# STEPS (default 3000) optimiser steps of BATCH (4) x PATCH (256) px, the default model's recipe (variable rate,
# default lambdas, lr 2e-4); THREADS (1) torch threads. Evaluation: each run exported and run through the real
# codec against JPEG-2000 on the GRD validation scenes of seed 0's split (Frankfurt and Panama intensity, four
# sigma0 dB chips: benchmarks/rate_distortion.py --sigma0), so every variant's BD-rate is measured on the same
# pixels. Each run's best.pth (lowest validation loss) is exported: the table gives each one's steps and patches.
# Toy scale (on one core about 20 s a run to train, 1-2 minutes a run to export and measure; runs and results
# outside the committed ones):
#   export RUNS=/tmp/cv/runs RESULTS=/tmp/cv/res STEPS=3 PATCH=64 BATCH=2 QUICK=1
#   bash scripts/compare_variants.sh train 0 baseline attention && bash scripts/compare_variants.sh evaluate
# QUICK=1 measures two quality levels against three JPEG-2000 rates (rate_distortion.py --quick) instead of every
# level against nine: minutes less per run, a cruder BD-rate; not for figures to keep.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-runs/compare}
res=${RESULTS:-benchmarks/results/variant_comparison_rd}
steps=${STEPS:-3000}
device=${DEVICE:-cpu}

train() {
  local seed=$1; shift
  local done_at='import sys; from trainer.checkpoint import load_checkpoint; '
  done_at+='sys.exit(load_checkpoint(sys.argv[1])["step"] < int(sys.argv[2]))'  # exit 0: at STEPS already
  for v in "$@"; do
    local out=$runs/${v}_s$seed
    # a run already at STEPS is done (sar-train refuses to resume one whose stop is reached): a rerun after an
    # interruption goes on with the runs it had not finished (an unreadable last.pth is sar-train's to report)
    if [[ -f $out/last.pth ]] && .venv/bin/python -c "$done_at" "$out/last.pth" "$steps" 2>/dev/null; then
      echo "$out: already at $steps steps"
      continue
    fi
    .venv/bin/sar-train --variant "$v" --seed "$seed" --split-seed 0 --out "$out" --max-steps "$steps" \
      --batch-size "${BATCH:-4}" --patch-size "${PATCH:-256}" --lr 2e-4 --patience 1000 --device "$device" \
      --threads "${THREADS:-1}" --no-progress --resume
  done
}

evaluate() {
  mkdir -p "$res"
  local quick=()  # QUICK=1 only: QUICK=0 is no request for the crude sweep
  if [[ ${QUICK:-0} == 1 ]]; then quick=(--quick); fi
  for ck in "$runs"/*_s*/best.pth; do
    local run; run=$(basename "$(dirname "$ck")")
    # exported again when the run has a newer best.pth (trained on since): an older bundle would be measured
    if [[ $ck -nt $runs/bundles/$run/manifest.json ]]; then
      # the export's report under a temporary name: a failed export emptied the earlier one as it started
      .venv/bin/sar-export "$ck" "$runs/bundles/$run" --name "$run" > "$res/.export_$run.json.partial" \
        || { rm -f "$res/.export_$run.json.partial"; exit 1; }
      mv "$res/.export_$run.json.partial" "$res/export_$run.json"
    fi
    .venv/bin/python benchmarks/rate_distortion.py --model "$runs/bundles/$run" --sigma0 \
      --scenes frankfurt panama india_900498 mekong srilanka_534068 paraguay_jja10 --device "$device" \
      "${quick[@]}" --out "$res/$run"
  done
  .venv/bin/python -m trainer.compare_runs "$runs" --out "$res"
}

cmd=${1:?usage: compare_variants.sh train SEED VARIANT... | evaluate}; shift
"$cmd" "$@"
