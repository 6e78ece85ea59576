#!/usr/bin/env bash
# Rate-distortion fine-tuning of a trained plain model, then the held-out comparison with JPEG-2000 (issue 7):
#   bash scripts/rd_finetune.sh runs/default_residual/best.pth 8
# Trains RUNS/<variant>_l<lambda> from the checkpoint's weights with loss lambda * D + R (factorized prior),
# exports it (integer quantisation step 1, entropy tables counted on its training scenes) and runs the
# rate-distortion benchmark at quality 1 on the held-out GRD scenes (BENCH=0 skips it, e.g. when several lambdas
# are benchmarked together with scripts/rd_curve.sh). STEPS (default 240) is the CPU budget.
set -euo pipefail
cd "$(dirname "$0")/.."
init=${1:?usage: rd_finetune.sh CHECKPOINT LAMBDA}
lmbda=${2:?usage: rd_finetune.sh CHECKPOINT LAMBDA}
variant=${VARIANT:-residual}
steps=${STEPS:-240}
runs=${RUNS:-runs/rd}
run="$runs/${variant}_l$lmbda"
.venv/bin/sar-train --variant "$variant" --init "$init" --lmbda "$lmbda" --out "$run" --epochs $((steps / 40)) \
  --steps-per-epoch 40 --batch-size 8 --patch-size 128 --lr "${LR:-1e-4}" --patience 1000 --device "${DEVICE:-cpu}" \
  --no-progress --resume
[[ -f $runs/bundles/${variant}_l$lmbda/manifest.json ]] || \
  .venv/bin/sar-export "$run/best.pth" "$runs/bundles/${variant}_l$lmbda" --name "$variant-rd-l$lmbda"
[[ ${BENCH:-1} == 0 ]] || .venv/bin/python benchmarks/rate_distortion.py --model "$runs/bundles/${variant}_l$lmbda" --scenes frankfurt panama \
  --qualities 1 --device cpu --out "benchmarks/results/rd_heldout_grd_${variant}_l$lmbda"
