#!/usr/bin/env bash
# Rebuilds everything the docs quote for the bundled default model, from its training run:
#   bash scripts/publish_default_model.sh runs/ctx_lr/last.pth sar-baseline-ctx4-cpu-v4
# Exports the bundle into the plugin, writes the fp16 warm start next sessions resume from, then every figure
# file under benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:-runs/vr_baseline/best.pth}
name=${2:?"usage: $0 CHECKPOINT BUNDLE_NAME (a new name for every published model, e.g. sar-baseline-ctx4-cpu-v4)"}
py=.venv/bin/python
res=benchmarks/results
mkdir -p "$res" checkpoints

# The outgoing default stays in the plugin under its own name, decode-only, so the files it wrote still decode: a
# file names its decoder's SHA-256, and the codec looks for that decoder in every bundle under
# sar_compress_plugin/models/ (export/retire.py).
models=sar_compress_plugin/models
if [ -f "$models/default/manifest.json" ]; then
  old=$($py -c "import json, sys; print(json.load(open(sys.argv[1]))['name'])" "$models/default/manifest.json")
  if [ "$old" != "$name" ] && [ ! -e "$models/$old" ]; then
    # a file the outgoing default writes now, which tests/unit/test_shipped_models.py decodes from then on
    $py - "$old" <<'PY'
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests/unit")
from codec_fixtures import write_geotiff
from sar_compress_plugin.core.codec import CompressOptions, compress
from sar_compress_plugin.core.raster_io import RasterReader
with RasterReader("../shared/data/sar/s1_iw_grd_frankfurt_512.tif") as r:
    chip = r.read(0, 0, 0, 160, 144)
with tempfile.TemporaryDirectory() as tmp:
    src = write_geotiff(Path(tmp) / "chip.tif", chip)
    compress(src, f"tests/unit/data/frankfurt_chip_{sys.argv[1]}.sarc", CompressOptions(device="cpu"))
PY
    $py -m export.retire "$models/default" "$models/$old"
  fi
fi
.venv/bin/sar-export "$ckpt" sar_compress_plugin/models/default --name "$name" --halo 32 \
  | tee "$res/default_model_export.json"
$py -m trainer.warm_start "$(dirname "$ckpt")/last.pth" "checkpoints/warm_start_$($py -c "
import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['model_name'])" "$ckpt").pth"
.venv/bin/sar-demo --json --out runs/demo > "$res/demo_cpu.json"
# float PyTorch figures per level and the same model through the real codec, on the validation scenes of its run
.venv/bin/sar-eval "$ckpt" --bundle sar_compress_plugin/models/default --out "$res/default_model_eval"
# learned codec vs JPEG-2000 on the GRD validation scenes of the run (Frankfurt, Panama, four sigma0 dB chips)
$py benchmarks/rate_distortion.py --sigma0 --scenes frankfurt panama india_900498 mekong srilanka_534068 \
  paraguay_jja10 --device cpu --out "$res/rd_heldout_grd"
$py benchmarks/throughput.py --size 2048 --device cpu --out "$res/throughput_cpu"
# is core.codec.OUTLIER_MARGIN_SCALE_DB still the best fit for this model? (training scenes; prints K)
$py benchmarks/outlier_margin.py --max-scene-bands 10 --out "$res/outlier_margin"
# tile seams: many 128-px tiles against one tile, held-out GRD scenes
$py benchmarks/seams.py --scenes frankfurt panama --tile 128 --out "$res/seams_cpu"
