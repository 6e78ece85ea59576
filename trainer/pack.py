"""Pack the training collection into one compact file that travels to a GPU machine without GDAL or rasterio.

A GPU call carries at most 64 MiB with the checkout, and the GPU machine has no raster libraries, so the
planes the trainer would read (dB, validity, scene, band, domain) are stored as dB quantised to uint16 in
0.01 dB steps above each plane's minimum (0.005 dB worst-case error, far below the speckle's 2 dB spread) in a
zlib-compressed .npz of plain arrays. Each uint16 plane is stored as its two byte planes (high bytes, then low):
the high bytes hold the scene's structure and compress well, the low bytes hold the speckle and do not, and
zlib on the interleaved bytes could exploit neither (20.0 MiB for the shared collection, against 23.8 MiB
interleaved). The call carries it beside the checkout and the constriction wheel (tests/unit/test_gpu_script.py
checks the sums). `trainer.data.build_datasets` reads
such a file like a folder, so a run on the packed data splits and normalises exactly as one on the original files.

    python -m trainer.pack --data ../shared/data/sar/MANIFEST.json --out .gpu_data/planes.npz

The codec call (scripts/gpu_codec.sh) measures speed and cross-device decoding on a few planes, and carries two
wheels (6 MiB) beside them, so it packs only the first planes of a tile's size: `--max-planes 16 --min-side 512`
(about 5 MiB; smaller planes would be tiled mostly from their own reflections).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from sar_compress_plugin.core.errors import OutputPathError, SarCompressError
from sar_compress_plugin.core.raster_io import writable_folder
from trainer.data import PACK_FORMAT, RawPlane, read_collection
from trainer.reporting import configure_cli_logging, new_folders_removed_on_failure, publish_files

log = logging.getLogger(__name__)

DB_STEP = 0.01


def byte_planes(values: np.ndarray) -> np.ndarray:
    """(H, W) uint16 -> (2, H, W) uint8: high bytes, then low bytes (`trainer.data.read_pack` joins them)."""
    return np.stack([(values >> 8).astype(np.uint8), (values & 0xFF).astype(np.uint8)])


def check_out(out: str | Path) -> Path:
    """`out` once a pack can be written there, its folder created: a folder of that name, a file in its path or
    a read-only place was a traceback after all the planes had been read and packed."""
    out = Path(out)
    if out.is_dir():
        raise OutputPathError(f"{out}: is a folder; --out names the .npz file to write")
    writable_folder(out.parent)
    return out


def pack_planes(planes: list[RawPlane], out: str | Path) -> dict:
    """Write `planes` to `out` (.npz) whole or not at all (publish_files: no partial file is left, whatever
    fails); returns the summary stored in it."""
    out = check_out(out)
    arrays, meta = {}, []
    for i, p in enumerate(planes):
        lo = float(np.floor(p.db[p.valid].min())) if p.valid.any() else 0.0
        q = np.rint((p.db.astype(np.float64) - lo) / DB_STEP)
        if q.max() > np.iinfo(np.uint16).max:
            raise SarCompressError(f"{p.name}: dB range {float(p.db.max()) - lo:.0f} dB does not fit uint16 "
                                   f"at {DB_STEP} dB")
        arrays[f"db_{i}"] = byte_planes(np.clip(q, 0, np.iinfo(np.uint16).max).astype(np.uint16))
        arrays[f"valid_{i}"] = np.packbits(p.valid, axis=None)
        meta.append({"scene": p.scene, "band": p.band, "domain": p.domain, "shape": list(p.db.shape),
                     "db_offset": lo})
    summary = {"format": PACK_FORMAT, "db_step": DB_STEP, "planes": meta}

    def write(path: Path) -> None:
        with open(path, "wb") as f:  # a file object: given a name, numpy would add ".npz" to the partial's
            np.savez_compressed(f, meta=np.frombuffer(json.dumps(summary).encode(), dtype=np.uint8), **arrays)

    try:
        publish_files({out: write})
    except OSError as exc:  # a full disk
        raise OutputPathError(f"{out}: cannot write the pack ({exc.strerror or exc})") from None
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder, file or MANIFEST.json, as for sar-train --data")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--domain", default="intensity", help="value domain of files missing from the manifest")
    p.add_argument("--max-planes", type=int, default=None,
                   help="pack only the first N planes (the codec call's small pack)")
    p.add_argument("--min-side", type=int, default=0, help="leave out planes with a side shorter than this")
    a = p.parse_args(argv)
    if a.max_planes is not None and a.max_planes < 1:
        p.error(f"--max-planes must be >= 1, got {a.max_planes}")
    if a.min_side < 0:
        p.error(f"--min-side must be >= 0, got {a.min_side}")
    configure_cli_logging("%(message)s")
    try:
        with new_folders_removed_on_failure(Path(a.out).parent):
            check_out(a.out)  # before the planes are read, which takes a while
            planes = []
            for _, got in read_collection(a.data, a.domain):  # skips what sar-train skips, so both split alike
                planes += [q for q in got if min(q.db.shape) >= a.min_side]
                if a.max_planes is not None and len(planes) >= a.max_planes:
                    planes = planes[:a.max_planes]
                    break
            if not planes:
                raise SarCompressError(f"{a.data}: no plane to pack (--min-side {a.min_side})")
            summary = pack_planes(planes, a.out)
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    px = sum(int(np.prod(m["shape"])) for m in summary["planes"])
    print(f"{a.out}: {len(summary['planes'])} planes, {px / 1e6:.1f} MP, {Path(a.out).stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
