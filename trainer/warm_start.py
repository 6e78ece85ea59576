"""`python -m trainer.warm_start CHECKPOINT OUT`: write the small fp16 warm-start copy of a checkpoint
(trainer.checkpoint.save_warm_start), e.g. to commit at the end of a session or to bring back from a GPU."""

from __future__ import annotations

import argparse
import sys

from sar_compress_plugin.core.errors import SarCompressError
from trainer.checkpoint import load_checkpoint, save_warm_start, totals_text


def main(argv: list[str] | None = None) -> int:
    # argparse: --help gave the usage line as an error (exit 2), never this module's description
    p = argparse.ArgumentParser(prog="python -m trainer.warm_start", description=__doc__)
    p.add_argument("checkpoint", help="a sar-train checkpoint (a run folder's last.pth or best.pth)")
    p.add_argument("out", help="the warm-start file to write; `sar-train --resume OUT` continues from it")
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        save_warm_start(ckpt, args.out)
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: step {ckpt['step']}, {ckpt['data_summary'].get('patches_seen')} patches seen "
          f"({totals_text(ckpt)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
