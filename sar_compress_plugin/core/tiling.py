"""The tile grid: how a raster of any size becomes independently decodable latent chunks with no seams.

Method (latent-space overlap). Think of the latent of the whole raster as one array at 1/16 resolution.
* The raster is virtually extended to a multiple of 16 (reflect padding), giving the *padded* size.
* The padded raster is cut into core tiles of `tile_size` (a multiple of 16; the last row/column is smaller).
* To encode a tile, the encoder sees the core plus `halo` pixels of context on every side (clipped to the padded
  raster), and only the latents under the core are kept: the stored latent grid is therefore what one big
  encoder pass would have produced, up to the receptive field beyond the halo.
* To decode a tile, the latents of the core plus `halo // 16` latent cells around it (taken from the
  neighbouring tiles' chunks; fewer where the decoder network's measured reach is smaller, which gives the
  core the same pixels) are decoded together and only the core pixels are kept. Pixels next to a tile
  boundary are thus decoded with the same context on both sides, which is what removes seams; and since each
  tile is always decoded from exactly the same latent block, any window read gives the same values bit for bit
  as a full reconstruction.

All windows are `(col, row, width, height)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import InputRasterError

Window = tuple[int, int, int, int]

#: Largest tile the writer produces: decoder memory grows with the tile (the retired model needed 0.85 GB at
#: 1024 px and 3.45 GB at 2048); memory must follow the window asked for, not a number in a header. Here, in a
#: module of numpy alone, so that the plugin's forms, which open without the codec's dependencies, offer no more.
MAX_WRITE_TILE = 1024
#: The smallest tile edge, and the step between edges: the encoder's downsampling factor.
TILE_STEP = 16


def tile_size_error(tile_size) -> str:
    """Why `tile_size` cannot be a compression's tile edge ("" when it can): the one rule of the codec's options,
    the CLI, Processing and the plugin's forms, which each had its own (the forms said 64 where the codec says 16).
    Here, beside MAX_WRITE_TILE, for the forms open without the codec's dependencies."""
    if isinstance(tile_size, int) and TILE_STEP <= tile_size <= MAX_WRITE_TILE and tile_size % TILE_STEP == 0:
        return ""
    return (f"tile size {tile_size} must be a multiple of {TILE_STEP} between {TILE_STEP} and {MAX_WRITE_TILE} "
            "(larger tiles need gigabytes of memory to decode)")


def round_up(n: int, m: int) -> int:
    return -(-int(n) // m) * m


@dataclass(frozen=True)
class TileGrid:
    width: int
    height: int
    tile_size: int
    halo: int
    factor: int = 16

    def __post_init__(self) -> None:
        f = self.factor
        if self.width <= 0 or self.height <= 0:
            raise InputRasterError(f"raster size {self.width} x {self.height} is empty")
        if self.tile_size < f or self.tile_size % f:
            raise InputRasterError(f"tile size {self.tile_size} must be a positive multiple of {f}")
        if self.halo < 0 or self.halo % f:
            raise InputRasterError(f"halo {self.halo} must be a non-negative multiple of {f}")

    @property
    def padded_width(self) -> int:
        return round_up(self.width, self.factor)

    @property
    def padded_height(self) -> int:
        return round_up(self.height, self.factor)

    @property
    def cols(self) -> int:
        return -(-self.padded_width // self.tile_size)

    @property
    def rows(self) -> int:
        return -(-self.padded_height // self.tile_size)

    @property
    def count(self) -> int:
        return self.cols * self.rows

    def index(self, tcol: int, trow: int) -> int:
        return trow * self.cols + tcol

    def position(self, index: int) -> tuple[int, int]:
        return index % self.cols, index // self.cols

    def core(self, index: int) -> Window:
        """Core window of a tile in padded-raster pixels (may reach past the real raster by < 16 pixels)."""
        tc, tr = self.position(index)
        c0, r0 = tc * self.tile_size, tr * self.tile_size
        return (c0, r0, min(self.tile_size, self.padded_width - c0), min(self.tile_size, self.padded_height - r0))

    def core_in_raster(self, index: int) -> Window:
        """The part of the core that holds real pixels."""
        c0, r0, w, h = self.core(index)
        return c0, r0, min(w, self.width - c0), min(h, self.height - r0)

    def context(self, index: int) -> Window:
        """Core plus halo, clipped to the padded raster: what the encoder sees and the decoder reproduces."""
        c0, r0, w, h = self.core(index)
        x0, y0 = max(0, c0 - self.halo), max(0, r0 - self.halo)
        x1 = min(self.padded_width, c0 + w + self.halo)
        y1 = min(self.padded_height, r0 + h + self.halo)
        return x0, y0, x1 - x0, y1 - y0

    def latent_shape(self, index: int) -> tuple[int, int]:
        """(rows, cols) of the latent cells a tile stores."""
        _, _, w, h = self.core(index)
        return h // self.factor, w // self.factor

    def tiles_overlapping(self, window: Window) -> list[int]:
        """Tiles whose core intersects a pixel window (in real-raster coordinates), in row-major order."""
        c, r, w, h = window
        t0c, t1c = c // self.tile_size, (c + w - 1) // self.tile_size
        t0r, t1r = r // self.tile_size, (r + h - 1) // self.tile_size
        return [self.index(tc, tr) for tr in range(t0r, t1r + 1) for tc in range(t0c, t1c + 1)]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.count))


def read_context(read_band, grid: TileGrid, index: int) -> tuple[np.ndarray, Window]:
    """Pixels of a tile's context window, reflect-padded where it reaches past the real raster.

    `read_band(col, row, width, height)` reads an in-raster window. Returns (array, context window).
    """
    x0, y0, w, h = grid.context(index)
    rx1, ry1 = min(x0 + w, grid.width), min(y0 + h, grid.height)
    arr = read_band(x0, y0, rx1 - x0, ry1 - y0)
    pad_x, pad_y = x0 + w - rx1, y0 + h - ry1
    if pad_x or pad_y:
        arr = np.pad(arr, ((0, pad_y), (0, pad_x)), mode="reflect" if min(arr.shape) > 1 else "edge")
    return arr, (x0, y0, w, h)


def latent_block(grid: TileGrid, index: int, reach: tuple[int, int] | None = None
                 ) -> tuple[tuple[int, int, int, int], list[int]]:
    """Latent cells to decode for a tile: ((lc0, lr0, lw, lh) in latent cells, tiles whose chunks supply them).

    The margin around the core is the halo's cells, or fewer where the decoder's `reach` (cells before, cells
    after the core that decide its pixels; OnnxCodecModel.decoder_reach) is smaller."""
    f = grid.factor
    c0, r0, w, h = grid.core(index)
    hl = grid.halo // f
    before, after = (hl, hl) if reach is None else (min(hl, reach[0]), min(hl, reach[1]))
    lw_all, lh_all = grid.padded_width // f, grid.padded_height // f
    lc0, lr0 = max(0, c0 // f - before), max(0, r0 // f - before)
    lc1, lr1 = min(lw_all, (c0 + w) // f + after), min(lh_all, (r0 + h) // f + after)
    tiles = grid.tiles_overlapping((lc0 * f, lr0 * f, (lc1 - lc0) * f, (lr1 - lr0) * f))
    return (lc0, lr0, lc1 - lc0, lr1 - lr0), tiles


def iter_tiles(grid: TileGrid) -> Iterator[tuple[int, Window, Window]]:
    """(index, core window in raster, context window) for every tile, row by row (streaming order)."""
    for i in grid:
        yield i, grid.core_in_raster(i), grid.context(i)


def iter_tile_batches(grid: TileGrid, batch: int) -> Iterator[list[int]]:
    """Tile indices in groups of `batch`, row-major, for batched inference."""
    group: list[int] = []
    for i in grid:
        group.append(i)
        if len(group) == batch:
            yield group
            group = []
    if group:
        yield group
