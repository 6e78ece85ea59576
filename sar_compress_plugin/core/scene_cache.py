"""On-disk cache of decoded tiles of one .sarc file, as a tiled GeoTIFF that any GDAL reader displays.

Why a GeoTIFF: QGIS 3.22 renders a GDAL raster layer in its own threads with overviews, nodata, styles and
reprojection for free. The cache file has the scene's size, georeferencing and dtype; tiles not decoded yet are
sparse (read back as the nodata value, i.e. transparent); tiles are written once, as whole GeoTIFF blocks, when
the decoder has produced them, so every cached pixel equals the same pixel of a full reconstruction bit for bit
(except pixels a source's GDAL mask marked invalid: the nodata value here, under the reconstruction's mask band).
Three overview levels (factor/4, factor/2, factor of the file's stored overview) are filled from the stored
overview when the cache is created, so the whole scene shows zoomed out before any tile is decoded. A band coded
as its physical values (`CompressedRaster.scaling`: a GDAL scale and offset) holds stored values under the same
scale and offset as its reconstruction, its overview levels too, so that GDAL and QGIS read the physical values
the file's clip range and the layer's dB stretch are in.

The set of decoded tiles is kept beside the GeoTIFF (`tiles.json`, written under a temporary name and renamed),
so a scene opened again reuses what was decoded before. Cache folders are keyed by the .sarc body SHA-256, so a
changed file never shows stale pixels. `evict()` keeps the whole cache under a size limit (least recently used
scene first). No QGIS here: the plugin's layer (scene_layer.py) drives this from a QgsTask.

The cache root also holds the scene registry (`REGISTRY_NAME`), which `evict()` never deletes: each cache folder's
name and the .sarc it is made from (and the bands of its VV/VH composite, when one was written). A project read
after its scene's folder was evicted names only the folder's files; the registry tells which .sarc makes them
again (`registered_scene`), before QGIS opens the layer and finds it unavailable. Two QGIS sessions may share a
cache root: each rewrite of the registry holds an inter-process lock on a file beside it (`REGISTRY_LOCK_NAME`), or
the entry one session added was lost to the copy another had read just before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from contextlib import closing, contextmanager, suppress
from itertools import takewhile
from pathlib import Path

import numpy as np
from osgeo import gdal

from .codec import CompressedRaster, window_from_bbox
from .container import ContainerReader
from .errors import CancelledError, InputRasterError, OutputPathError
from .raster_io import GcpGrid, gdal_band_scaling, geotiff_blocks_stored, set_georeferencing, write_refusal

gdal.UseExceptions()
log = logging.getLogger(__name__)

STATE_NAME = "tiles.json"
TIFF_NAME = "scene.tif"
TMP_TIFF_NAME = TIFF_NAME + ".tmp.tif"
#: In the cache root, beside the scene folders: a name of the plugin's own, for the root may be a folder of the user's.
REGISTRY_NAME = "sar_compress_scenes.json"
#: Beside the registry, and kept: a lock file deleted after use lets a third writer lock a new file while a second
#: still holds the old one.
REGISTRY_LOCK_NAME = REGISTRY_NAME + ".lock"
#: Registry entries kept of .sarc files whose folder is away (a share not mounted, a drive not plugged in): the
#: latest added this many, so that folders which never come back do not grow the registry for good.
MAX_AWAY_ENTRIES = 256

_GDAL_TYPES = {"uint8": gdal.GDT_Byte, "int8": gdal.GDT_Int16, "uint16": gdal.GDT_UInt16,
               "int16": gdal.GDT_Int16, "uint32": gdal.GDT_UInt32, "int32": gdal.GDT_Int32,
               "uint64": gdal.GDT_Float64, "int64": gdal.GDT_Float64, "float32": gdal.GDT_Float32,
               "float64": gdal.GDT_Float64}


def cache_key(path, body_sha256: str) -> str:
    """Folder name: file stem + start of the body SHA-256 from the footer (no full read needed)."""
    return f"{Path(path).stem[:40]}-{body_sha256[:16]}"


def cache_folder(sarc_path, cache_root) -> Path:
    """The folder a SceneCache of `sarc_path` under `cache_root` keeps its tiles in, from the body SHA-256 in
    the file's footer (no model, no tile decoded; the header is read and checked as on any open): the same scene
    at two paths (a copy under the same name elsewhere) has the same one."""
    with ContainerReader(sarc_path) as reader:
        return Path(cache_root) / cache_key(sarc_path, reader.body_sha256.hex())


def raster_cache_folder(raster: CompressedRaster, cache_root) -> Path:
    """`cache_folder` of a file open already: its header is not read again."""
    return Path(cache_root) / cache_key(raster.path, raster.body_sha256)


class SceneCache:
    """The decoded-tile cache of one .sarc file. Not thread-safe: one decode at a time (the layer ensures it)."""

    def __init__(self, sarc_path, cache_root, model_dirs=None, device: str = "auto",
                 raster: CompressedRaster | None = None):
        """`raster`: `sarc_path` open already, taken over (closed with the cache). The plugin opens a file to
        tell whether a layer shows its scene already; opened again here, its header (with the tile index, large
        for a big scene) was parsed twice on QGIS's main thread."""
        self.raster = raster if raster is not None else CompressedRaster(sarc_path, model_dirs=model_dirs,
                                                                         device=device)
        self._source = _identity(self.raster.path)
        self.grid = self.raster.grid
        gcps = self.raster.info["raster"].get("gcps")
        try:  # before the cache is made: a scene its GCPs cannot place leaves no cache folder behind
            self._gcp_grid = GcpGrid(gcps, self.raster.width, self.raster.height, self.raster.path) if gcps else None
        except InputRasterError:
            self.raster.close()
            raise
        self.folder = raster_cache_folder(self.raster, cache_root)
        self.tiff_path = self.folder / TIFF_NAME
        self._state_path = self.folder / STATE_NAME
        ov = self.raster.info.get("overview")
        self.overview_factor = int(ov["factor"]) if isinstance(ov, dict) and "factor" in ov else 0
        self.decoded: set[int] = set()
        #: whether opening made the GeoTIFF (none was there, or it could not serve): a layer QGIS opened on the
        #: folder's files before shows what was there then
        self.created = not (self.tiff_path.is_file() and self._load_state() and self._check_tiff())
        if self.created:
            self._create()
            self._drop_views()
        else:
            os.utime(self._state_path)  # least-recently-used order for evict()
        register_scene(self.folder, self.raster.path)

    @property
    def header(self) -> dict:
        return self.raster.info

    @property
    def fill_values(self) -> list:
        return [self.raster.to_raster_values(np.array([np.nan], np.float32), b)[0].item()
                for b in range(self.raster.bands)]

    def _load_state(self) -> bool:
        try:
            tiles = json.loads(self._state_path.read_text())["decoded"]
            if not all(isinstance(t, int) and 0 <= t < self.grid.count for t in tiles):
                raise ValueError("tile number out of range")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: decoded-tile list unreadable (%s); rebuilding the cache", self._state_path, exc)
            return False
        self.decoded = set(tiles)
        return True

    @property
    def _overview_levels(self) -> list[int]:
        f = self.overview_factor
        return [k for k in (f // 4, f // 2, f) if k >= 2] if f else []

    def _check_tiff(self) -> bool:
        """Whether the GeoTIFF can serve the listed tiles; False (logged) when it must be rebuilt.

        A truncated file (a crash or a full disk) or one that is not the scene's would fail to show tiles for
        good, so it is rebuilt. A listed tile with no block in the file is only decoded again: blocks that are
        all nodata are never written (SPARSE_OK), so an empty tile looks the same as one never written."""
        try:
            stored = self._stored_tiles(self.tiff_path)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("%s: unusable (%s); rebuilding the cache", self.tiff_path, exc)
            return False
        if stored != self.decoded:
            log.warning("%s: %d listed tile(s) not in the file; decoding them again", self.tiff_path,
                        len(self.decoded - stored))
            self.decoded = stored
        return True

    def _stored_tiles(self, path: Path) -> set[int]:
        """The listed tiles that have a block in the GeoTIFF at `path`; raises RuntimeError (GDAL) or
        ValueError when it is not the scene's or any block lies beyond the end of the file (a tile whose
        write was cut off is not listed, but GDAL would fail to read it)."""
        r = self.raster
        size = path.stat().st_size
        ds = gdal.Open(str(path))
        if (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) != (r.width, r.height, r.bands):
            raise ValueError("its size or band count is not the scene's")
        if ds.GetGCPCount() != len((r.info["raster"].get("gcps") or {}).get("points", ())):
            raise ValueError("its georeferencing is not the scene's")  # a cache made before GCPs were kept
        stored = set()
        for b in range(r.bands):
            band = ds.GetRasterBand(b + 1)
            if gdal_band_scaling(band) != r.scaling[b]:
                # a cache made before bands were coded as physical values: its stored values read as dB
                raise ValueError("its scale and offset are not the scene's")
            if band.GetOverviewCount() != len(self._overview_levels):
                raise ValueError("its overviews are missing")
            for level in (band, *(band.GetOverview(i) for i in range(band.GetOverviewCount()))):
                geotiff_blocks_stored(level, (0, 0, level.XSize, level.YSize), size)  # a cut-off block is unlisted
            stored |= {t for t in self.decoded if geotiff_blocks_stored(band, self.grid.core_in_raster(t), size)}
        return stored

    def _save_state(self) -> None:
        tmp = self._state_path.with_name(STATE_NAME + ".tmp")
        tmp.write_text(json.dumps({"decoded": sorted(self.decoded)}))
        os.replace(tmp, self._state_path)

    def _create(self) -> None:
        """Empty sparse GeoTIFF + overviews from the stored overview, built under a temporary name and checked
        before it replaces the old one: GDAL reports a failed write (full disk) only when the file is closed,
        where Python drops the error, so unchecked a cut-off cache would be kept as valid."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{self.folder}: cannot create the tile cache folder ({exc.strerror})") from None
        tmp = self.folder / TMP_TIFF_NAME
        self.decoded = set()
        try:
            self._write_empty(tmp)
            self._stored_tiles(tmp)
            os.replace(tmp, self.tiff_path)
            self._save_state()
        except (OSError, RuntimeError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._write_error(exc) from None

    def _drop_views(self) -> None:
        """Delete the VRTs beside the GeoTIFF (the layer's composite) when opening made it anew: they carry the
        georeferencing of the file they were written for (a cache made before GCPs were kept was at pixel
        coordinates), and a project's layer on one is pointed at the new cache only when it cannot read it."""
        try:
            for view in self.folder.glob("*.vrt"):
                view.unlink(missing_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None

    @property
    def _block(self) -> int:
        """The GeoTIFF's block side: codec tiles are whole blocks."""
        return math.gcd(self.grid.tile_size, 256)

    def _write_empty(self, tmp: Path) -> None:
        """The sparse GeoTIFF at `tmp`: no tile written, overview levels filled from the stored overview."""
        r = self.raster
        h = self.header["raster"]
        block = self._block
        ds = gdal.GetDriverByName("GTiff").Create(
            str(tmp), r.width, r.height, r.bands, _GDAL_TYPES[r.dtype.name],
            ["TILED=YES", f"BLOCKXSIZE={block}", f"BLOCKYSIZE={block}", "SPARSE_OK=TRUE", "BIGTIFF=IF_SAFER",
             "INTERLEAVE=BAND"])
        set_georeferencing(ds, h.get("crs_wkt") or "", h["geotransform"], h.get("gcps"))
        for b, fill in enumerate(self.fill_values):
            band = ds.GetRasterBand(b + 1)
            band.SetNoDataValue(float(fill))  # a stored value, as GDAL compares it before the scale and offset
            if r.scaling[b] is not None:  # the decoded tiles and the overview below are stored values
                band.SetScale(r.scaling[b][0])
                band.SetOffset(r.scaling[b][1])
            names = h.get("band_names") or []
            if b < len(names):
                band.SetDescription(str(names[b]))
        f = self.overview_factor
        levels = self._overview_levels
        if levels:
            ds.BuildOverviews("NONE", levels)  # allocate only; filled from the stored overview below
            for b in range(r.bands):
                db = r.overview(b)
                values = r.to_raster_values(db, b)
                band = ds.GetRasterBand(b + 1)
                for i, k in enumerate(levels):
                    o = band.GetOverview(i)
                    up = np.repeat(np.repeat(values, f // k, axis=0), f // k, axis=1)
                    o.WriteArray(up[:o.YSize, :o.XSize])
        ds.FlushCache()
        ds = None

    def window_for_bbox(self, bbox) -> tuple[int, int, int, int] | None:
        """Pixel window of a map box in the scene's CRS (its GCPs' where it has them: to within the cells of their
        `GcpGrid`, made once per scene rather than once per view), None when it misses the scene."""
        if self._gcp_grid is not None:
            return self._gcp_grid.window(bbox)
        try:
            return window_from_bbox(self.header, bbox, self.raster.path)
        except InputRasterError:
            return None

    @property
    def pixel_size(self) -> float:
        """Map units per pixel, to tell how far the view is zoomed out: the length of a pixel's step along a row,
        which for a rotated geotransform is not its x term alone (that would be cos(angle) too small)."""
        if self._gcp_grid is not None:
            return self._gcp_grid.pixel_size
        g = self.header["raster"]["geotransform"]
        return math.hypot(g[1], g[4])

    def missing_tiles(self, window) -> list[int]:
        """Tiles of `window` not decoded yet, the nearest to the window's centre first."""
        c, r, w, h = window
        cx, cy = c + w / 2, r + h / 2

        def distance(t):
            tc, tr, tw, th = self.grid.core_in_raster(t)
            return (tc + tw / 2 - cx) ** 2 + (tr + th / 2 - cy) ** 2

        return sorted((t for t in self.grid.tiles_overlapping(window) if t not in self.decoded), key=distance)

    def decode(self, tiles, is_cancelled=None, on_tile=None) -> int:
        """Decode `tiles` into the GeoTIFF, each flushed before `on_tile(tile)` is called. Returns the count.

        A cache deleted while its scene is open is built again (its tile list with it), so decoding goes on
        instead of failing at every pan; a cache that cannot be written raises OutputPathError."""
        if not self.tiff_path.is_file():
            log.warning("%s: deleted while in use; rebuilding the cache", self.tiff_path)
            self._create()
        try:
            ds = gdal.Open(str(self.tiff_path), gdal.GA_Update)
        except RuntimeError as exc:
            raise self._write_error(exc) from None
        done = 0
        cancelled = is_cancelled or (lambda: False)
        try:
            # A cancel stops handing tiles to the decoder, and the tiles it has started are written: a pan
            # cancels while tiles decode, and a tile dropped then, decoded or half-way, was decoded again by
            # the next view's task (the decoder works a few tiles ahead, and stopping waits for them anyway).
            missing = (t for t in dict.fromkeys(tiles) if t not in self.decoded)
            wanted = takewhile(lambda _t: not cancelled(), missing)
            with closing(self.raster.decode_tiles(wanted, range(self.raster.bands))) as decoded:
                for t, pixels in decoded:
                    tc, tr, _tw, _th = self.grid.core_in_raster(t)
                    pixels = self._masked(t, pixels)
                    try:
                        for b, px in enumerate(pixels):
                            ds.GetRasterBand(b + 1).WriteArray(px, tc, tr)
                        ds.FlushCache()
                    except RuntimeError as exc:
                        raise self._tile_write_error(exc) from None
                    self.decoded.add(t)
                    try:
                        self._save_state()
                    except OSError as exc:
                        raise self._write_error(exc) from None
                    done += 1
                    if on_tile is not None:
                        on_tile(t)
            if cancelled():
                raise CancelledError(f"{self.raster.path}: tile decoding cancelled")
        finally:
            ds = None
        return done

    def _masked(self, tile: int, pixels: list) -> list:
        """A tile's pixels as the layer shows them. Where the source's GDAL mask (header `raster.gdal_mask`)
        marked pixels invalid, a reconstruction restores their original values under a mask band; this cache has
        only the nodata value to hide them, so they become the fill value here (the only pixels that differ from a
        full reconstruction, and only where it writes 0 in its mask)."""
        if not self.raster.gdal_mask:
            return pixels
        invalid = ~self.raster.dataset_valid(tile)
        if not invalid.any():
            return pixels
        out = []
        for px, fill in zip(pixels, self.fill_values):
            px = px.copy()
            px[invalid] = fill
            out.append(px)
        return out

    def source_changed(self) -> bool:
        """Whether the .sarc at the path is no longer the file opened (replaced, rewritten or deleted): the
        cache and the open file handle would go on showing the old file's pixels."""
        try:
            return _identity(self.raster.path) != self._source
        except OSError:
            return True

    def _write_error(self, exc: Exception) -> OutputPathError:
        return OutputPathError(f"{self.folder}: cannot write the tile cache ({exc}); is the disk full or the "
                               "folder read-only?")

    def _tile_write_error(self, exc: RuntimeError) -> OutputPathError:
        """GDAL's words for a tile it could not write say where, not why ("Write error at scanline 256"), and
        change from tile to tile, while the layer tells one failure from another by its words: one full disk
        would be reported again at every pan. So they go to the log, and the message gives the file system's
        own words when it refuses a block's worth beside the cache (a full disk, a quota, a read-only mount)."""
        log.warning("%s: %s", self.tiff_path, exc)
        why = write_refusal(self.folder, self._block ** 2 * self.raster.dtype.itemsize)
        if why:
            return OutputPathError(f"{self.folder}: cannot write the tile cache ({why})")
        return OutputPathError(f"{self.folder}: cannot write the tile cache; is the disk full or the folder "
                               "read-only?")

    def close(self) -> None:
        self.raster.close()


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def folder_size(folder: Path) -> int:
    """Bytes actually allocated (sparse GeoTIFF tiles that were never written take no room)."""
    total = 0
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        total += min(st.st_size, getattr(st, "st_blocks", st.st_size // 512 + 1) * 512)
    return total


def _read_registry(root: Path) -> dict[str, dict] | None:
    """The registry's scenes, well-formed entries only; None when the file is missing or is no registry."""
    try:
        scenes = json.loads((root / REGISTRY_NAME).read_text(encoding="utf-8"))["scenes"]
        if not isinstance(scenes, dict):
            raise TypeError("not a mapping")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("%s: unreadable scene registry (%s)", root / REGISTRY_NAME, exc)
        return None
    out = {}
    for name, entry in scenes.items():
        if isinstance(entry, dict) and isinstance(entry.get("sarc"), str) and entry["sarc"]:
            bands = entry.get("composite")
            ok = isinstance(bands, list) and len(bands) == 2 and all(type(b) is int and b >= 1 for b in bands)
            out[name] = {"sarc": entry["sarc"], **({"composite": bands} if ok else {})}
    return out


def registered_scene(cache_root, folder_name: str) -> dict | None:
    """The registry's entry of a cache folder: {"sarc": path, "composite": [vv, vh] (where one was written)}; None
    when the folder is not registered, or there is no readable registry (a damaged one is made anew at the next
    register_scene)."""
    return (_read_registry(Path(cache_root)) or {}).get(folder_name)


@contextmanager
def _registry_locked(root: Path):
    """Held by one writer of `root`'s registry at a time, in any process or thread: each call opens the lock file
    anew, and a lock (flock, or LockFile on Windows) on one descriptor excludes the process's others too. Waits for
    the holder; on Windows raises OSError after about 10 s (msvcrt.locking gives up), which register_scene logs."""
    with open(root / REGISTRY_LOCK_NAME, "a+b") as lock:  # "a": made when missing, never truncated
        if os.name == "nt":
            import msvcrt  # noqa: PLC0415 (Windows only)

            lock.seek(0)
            msvcrt.locking(lock.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                lock.seek(0)
                msvcrt.locking(lock.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl  # noqa: PLC0415 (POSIX only)

            fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file is closed
            yield


def _sarc_whereabouts(sarc: str) -> str:
    """"here" (a file), "gone" (not in its folder, which is there: deleted or moved) or "away" (its folder is not
    there either: on a share not mounted or a drive not plugged in, or deleted with it; no way to tell which). A
    .sarc at the very top of an unmounted share counts as gone: the empty folder it is mounted on is there."""
    if os.path.isfile(sarc):
        return "here"
    return "gone" if os.path.isdir(os.path.dirname(sarc)) else "away"


def _kept_entries(scenes: dict[str, dict], name: str, sarc: str) -> dict[str, dict]:
    """The registry's other entries worth keeping beside `name`'s of `sarc`, in their order (the oldest added
    first). Dropped: an entry of `sarc` under another folder (the file is now this scene), of a .sarc that is
    "gone" (`_sarc_whereabouts`), and of "away" ones all but the latest MAX_AWAY_ENTRIES. An away .sarc's entry
    is what rebuilds its evicted cache once the share is back: it was dropped the first time another scene was
    registered while the share was unmounted, for good."""
    others = {k: v for k, v in scenes.items() if k != name and v["sarc"] != sarc}
    where = {k: _sarc_whereabouts(v["sarc"]) for k, v in others.items()}
    away = [k for k in others if where[k] == "away"]
    too_many = set(away[:max(0, len(away) - MAX_AWAY_ENTRIES)])
    return {k: v for k, v in others.items() if where[k] == "here" or (where[k] == "away" and k not in too_many)}


def register_scene(folder, sarc_path, composite: tuple[int, int] | None = None) -> None:
    """Record in the registry of `folder`'s cache root that `folder` is made from `sarc_path` (with `composite`:
    its VV/VH composite's bands too). Other entries are pruned as `_kept_entries` says, so the registry stays
    about as small as the set of scenes. Read, changed and written under `_registry_locked`, so that no other
    session's entry is lost; the new file is written under a temporary name and renamed, so a reader never sees
    half of it. Never raises (a registry that cannot be written only means an evicted cache is rebuilt as the
    project's layers are repaired, as before there was one)."""
    folder = Path(folder)
    root, name, sarc = folder.parent, folder.name, os.path.abspath(sarc_path)
    path = root / REGISTRY_NAME
    tmp = path.with_name(f"{REGISTRY_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with _registry_locked(root):
            scenes = _read_registry(root)
            if scenes is None and path.exists():
                log.warning("%s: unreadable scene registry; making it anew", path)
            old = dict(scenes or {})
            entry = {"sarc": sarc}
            previous = old.get(name)
            if composite is not None:
                entry["composite"] = [int(composite[0]), int(composite[1])]
            elif previous is not None and previous["sarc"] == sarc and "composite" in previous:
                entry["composite"] = previous["composite"]
            kept = {**_kept_entries(old, name, sarc), name: entry}
            if kept == old and scenes is not None:
                return
            tmp.write_text(json.dumps({"scenes": kept}, indent=1), encoding="utf-8")
            os.replace(tmp, path)
    except OSError as exc:
        log.warning("%s: cannot write the scene registry (%s)", path, exc)
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def evict(cache_root, limit_bytes: int, keep=()) -> list[Path]:
    """Delete least recently used scene folders until the cache is under `limit_bytes`; `keep` (open scenes)
    are never deleted, nor is any folder that is not a scene's (the cache folder is a setting: a user may
    point it at a folder of their own), nor the scene registry (a file). Returns the folders removed."""
    root = Path(cache_root)
    if not root.is_dir():
        return []
    keep = {Path(k).resolve() for k in keep}
    scenes = []
    for d in root.iterdir():
        if d.is_dir() and any((d / name).is_file() for name in (STATE_NAME, TIFF_NAME, TMP_TIFF_NAME)):
            try:
                mtime = (d / STATE_NAME).stat().st_mtime
            except OSError:  # never completed, or being built right now
                mtime = 0.0
            scenes.append((mtime, d, folder_size(d)))
    total = sum(s for _, _, s in scenes)
    removed = []
    for _mtime, d, size in sorted(scenes, key=lambda s: s[0]):
        if total <= limit_bytes:
            break
        if d.resolve() in keep:
            continue
        shutil.rmtree(d, ignore_errors=True)
        total -= size
        removed.append(d)
    return removed


__all__ = ["SceneCache", "evict", "folder_size", "cache_key", "cache_folder", "raster_cache_folder", "register_scene",
           "registered_scene", "REGISTRY_NAME", "REGISTRY_LOCK_NAME"]
