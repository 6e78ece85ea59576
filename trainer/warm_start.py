"""`python -m trainer.warm_start CHECKPOINT OUT`: write the small fp16 warm-start copy of a checkpoint
(trainer.checkpoint.save_warm_start), e.g. to commit at the end of a session or to bring back from a GPU."""

from __future__ import annotations

import sys

from sar_compress_plugin.core.errors import SarCompressError
from trainer.checkpoint import load_checkpoint, save_warm_start, totals_text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m trainer.warm_start CHECKPOINT OUT", file=sys.stderr)
        return 2
    try:
        ckpt = load_checkpoint(args[0])
        save_warm_start(ckpt, args[1])
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args[1]}: step {ckpt['step']}, {ckpt['data_summary'].get('patches_seen')} patches seen "
          f"({totals_text(ckpt)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
