"""Result figures as 256-colour palette PNGs.

Why: every tracked file travels in each GPU call, which carries at most 64 MiB (checkout plus packed training
data; `tests/unit/test_gpu_script.py`), and the committed results grow every session. A matplotlib line plot
has a few dozen colours: as a palette PNG it is about a third of the RGBA file (40 against 120 KB for an
rd_plot.png) and looks the same.

Every figure of a model also says how far it trained (`model_caption`): a plot read on its own, years later or
beside another, must tell which weights it shows without the JSON next to it.

A figure is drawn into memory (`palette_png`) and written by `trainer.reporting.publish_files` with the tables
of its run: a plot cut short, or a new plot beside the last run's tables, would look whole.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

from PIL import Image

from results_files import bytes_file


def quantize_png(data: bytes) -> bytes:
    """A PNG's pixels as a 256-colour palette PNG (RGB: the plots have no transparency that matters)."""
    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def palette_png(fig, dpi: int) -> Callable[[Path], None]:
    """`fig` drawn now as a palette PNG, returned as the writer `publish_files` takes for it: the file lands
    with its run's other results or not at all (the caller may close the figure at once)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return bytes_file(quantize_png(buffer.getvalue()))


def model_caption(model: dict) -> str:
    """A bundle's name and the training its weights had, from the `training` record of its manifest (as
    rate_distortion.model_info keeps it): steps and patches in all, across `--init` branches. Bundles exported
    before the totals were recorded carry only their last run's own steps, and are labelled so rather than
    passed off as the whole training."""
    training = model.get("training") or {}
    steps, patches = training.get("steps_total"), training.get("patches_seen_total")
    if steps is None:
        own = training.get("steps")
        seen = ("training not recorded" if own is None
                else f"{own:,} steps of its last run, patches not recorded")
    else:
        seen = f"{steps:,} steps, " + ("patches not recorded" if patches is None else f"{patches:,} patches")
    return f"{model.get('name')} ({seen})"
