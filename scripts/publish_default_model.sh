#!/usr/bin/env bash
# Rebuilds everything the docs quote for the bundled default model, from its training run:
#   bash scripts/publish_default_model.sh runs/default_residual/best.pth
# Exports the bundle into the plugin, then writes every figure file under benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:-runs/default_residual/best.pth}
name=${2:-sar-residual-cpu-v1}
py=.venv/bin/python
res=benchmarks/results
mkdir -p "$res"

.venv/bin/sar-export "$ckpt" sar_compress_plugin/models/default --name "$name" | tee "$res/default_model_export.json"
.venv/bin/sar-demo --json --out runs/demo > "$res/demo_cpu.json"
.venv/bin/sar-demo --out runs/demo
# float PyTorch figures and the same model through the real codec, on the validation scenes of its run
.venv/bin/sar-eval "$ckpt" --bundle sar_compress_plugin/models/default --out "$res/default_model_eval"
# learned codec vs JPEG-2000 on the held-out Sentinel-1 GRD scenes (the other six were training scenes)
$py benchmarks/rate_distortion.py --scenes frankfurt panama --device cpu --out "$res/rd_heldout_grd"
$py benchmarks/throughput.py --size 2048 --device cpu --out "$res/throughput_cpu"
# tile seams: many 128-px tiles against one tile, held-out GRD scenes
$py benchmarks/seams.py --scenes frankfurt panama --tile 128 --out "$res/seams_cpu"
