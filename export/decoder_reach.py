"""How many latent cells around a tile's core decide its pixels: the decoder's reach, measured.

Why: the codec decodes each tile from its core's latents plus a margin taken from its neighbours, so that both
sides of a tile boundary are decoded with the same context. The file's halo (32 px, 2 cells) is sized for the
encoder, whose GDN stack reaches about 30 px. The decoder reaches less, and not evenly: a stride-2 5x5
transposed convolution (padding 2, output padding 1) makes output 2m from inputs m-1..m+1 and output 2m+1
from m..m+1, so through the baseline's four of them a core pixel depends on 1 cell before it and 2 after it.
Decoding 35 x 35 cells instead of 36 x 36 per 512-px tile gave 4.56 against 4.27 MP/s for the decoder
network (two tiles at once, one onnxruntime thread each), with the same core pixels.

Measured, not derived, so that every variant gets its own answer: a transform that pools over the whole tile
(CBAM's channel attention) depends on every cell, and keeps the full halo.
"""

from __future__ import annotations

import torch
from torch import nn

#: core cells of the probe block: its core pixels must not change when the margin shrinks to the reach
PROBE_CORE = 4
#: relative tolerance: float reordering only (the same products, summed over a differently sized image)
TOLERANCE = 1e-5


@torch.no_grad()
def decoder_reach(g_s: nn.Module, latent_channels: int, halo_cells: int, factor: int = 16) -> dict:
    """{"before": cells, "after": cells}, each at most `halo_cells`: the smallest margins (on the top/left and on
    the bottom/right of a core) with which g_s gives the core the same pixels as with the full halo."""
    g = torch.Generator().manual_seed(0)
    n = PROBE_CORE + 2 * halo_cells
    y = torch.randn(1, latent_channels, n, n, generator=g) * 4.0
    lo, hi = halo_cells * factor, (halo_cells + PROBE_CORE) * factor
    want = g_s(y)[..., lo:hi, lo:hi]
    scale = max(1.0, float(want.abs().max()))

    def same(before: int, after: int) -> bool:
        part = g_s(y[..., halo_cells - before:halo_cells + PROBE_CORE + after,
                     halo_cells - before:halo_cells + PROBE_CORE + after])
        core = part[..., before * factor:(before + PROBE_CORE) * factor, before * factor:(before + PROBE_CORE) * factor]
        return float((core - want).abs().max()) <= TOLERANCE * scale

    before = next(b for b in range(halo_cells + 1) if same(b, halo_cells))
    after = next(a for a in range(halo_cells + 1) if same(halo_cells, a))
    if not same(before, after):
        before = after = halo_cells
    return {"before": before, "after": after}
