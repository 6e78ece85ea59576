"""Result figures as 256-colour palette PNGs.

Why: every tracked file travels in each GPU call, which carries at most 64 MiB (checkout plus packed training
data; `tests/unit/test_gpu_script.py`), and the committed results grow every session. A matplotlib line plot
has a few dozen colours: as a palette PNG it is about a third of the RGBA file (40 against 120 KB for an
rd_plot.png) and looks the same.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image


def quantize_png(data: bytes) -> bytes:
    """A PNG's pixels as a 256-colour palette PNG (RGB: the plots have no transparency that matters)."""
    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def save_figure(fig, path: str | os.PathLike, dpi: int) -> None:
    """fig.savefig, written as a palette PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    Path(path).write_bytes(quantize_png(buffer.getvalue()))
