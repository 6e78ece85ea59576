"""Keep an outgoing default model only for decoding the files it wrote.

Why: a `.sarc` names its decoder's SHA-256, and reading looks for that decoder in every bundle the plugin ships
(`sar_compress_plugin/models/`), so a published model must stay in the plugin for its files to stay readable. Its
encoder and hyper-encoder are not needed for that (2.8 of its 11.4 MB), and every byte the plugin ships also
travels in each GPU call, which carries at most 64 MiB. The kept copy has the decoder and the hyperprior file,
both packed with zstd (core/bundle_files.py: 8.6 MB -> 4.4; a part is named by its content's SHA-256, so the
files that name them are unchanged), and a manifest marked `"decode_only": true`; the codec refuses to compress
with it, with one clear line.

    python -m export.retire sar_compress_plugin/models/default sar_compress_plugin/models/<its name>
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from export.onnx_export import ExportError, check_out_dir, swap_in
from sar_compress_plugin.core.bundle_files import PACKED_SUFFIX, is_packed, pack, read_bundle_file
from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.hyperprior import load_hyperprior
from sar_compress_plugin.core.runtime import DECODE_PARTS, MANIFEST_NAME, load_manifest


def retire_bundle(src: Path, dest: Path) -> dict:
    """Write the decode-only copy of bundle `src` to `dest` (replaced if it exists; `src` may be `dest`)."""
    src = Path(src)
    manifest = load_manifest(src, verify=True)
    dest = check_out_dir(dest, replace_decode_only=True)  # a bundle, or nothing: never a folder of other files
    work = Path(tempfile.mkdtemp(prefix=".retire-", dir=dest.parent))
    try:
        files = {}
        for part in DECODE_PARTS:
            entry = manifest["files"][part]
            content, _ = read_bundle_file(src / entry["path"], entry["sha256"], f"the {part}")
            name = entry["path"] if is_packed(entry["path"]) else entry["path"] + PACKED_SUFFIX
            (work / name).write_bytes(pack(content))
            files[part] = dict(entry, path=name)
        kept = dict(manifest, files=files, decode_only=True)
        (work / MANIFEST_NAME).write_text(json.dumps(kept, indent=2) + "\n")
        load_manifest(work, verify=True)
        load_hyperprior(work / files["hyperprior"]["path"], files["hyperprior"]["sha256"])
        swap_in(work, dest)
        return kept
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.retire", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("dest", type=Path)
    a = p.parse_args(argv)
    try:
        kept = retire_bundle(a.bundle, a.dest)
    except (SarCompressError, ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.dest}: {kept.get('name')} kept for decoding ({', '.join(sorted(kept['files']))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
