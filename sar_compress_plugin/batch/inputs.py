"""What a batch works on: command-line INPUTS (files, folders, glob patterns, STAC JSON) -> one Job per scene.

Nothing here raises for a bad input: an input that cannot be resolved becomes a Job carrying its error, so it
is listed in the report like any scene that failed, and the rest of the batch still runs. Nothing found is left
out without a row either: a file reached a second way (a symbolic link to it) and a reconstruction this codec
wrote are skipped Jobs saying why.

A file whose path is not valid UTF-8 (a byte \\xe8 in a name from an old Latin-1 system) is a failed Job asking
for it to be renamed, shown with \\xNN escapes (`shown`), which every Job's text is: such a name crashed the
batch with a traceback, in dask's messages (msgpack takes UTF-8 only) and in the report's CSV. Carrying the
name end to end instead (its bytes, os.fsencode) would have to reach every layer: dask's task keys and
messages, the core and GDAL (whose Python bindings take such a name as bytes only), every error message, the
report's JSON and CSV and the spreadsheets that read them. A rename (`convmv`) is one command, done once, and
leaves no name that the next tool chokes on; "failed", not "skipped", since the scene is not done and the exit
status must say so.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class Job:
    """One scene: its input file, the final output path, and, when it is not run, why (`error`): it cannot even
    be started, or, `skipped`, there is nothing to do. A skipped Job claims no output name."""

    input: str
    output: str = ""
    error: str = ""
    skipped: bool = False


def shown(text: str) -> str:
    """`text` as valid UTF-8: the bytes of a file name that are not UTF-8 (Python holds them as surrogates) as
    \\xNN escapes, as `sc\\xe8ne.tif` for a name written on a Latin-1 system."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: The error of a file whose path is not valid UTF-8 (`add`).
NOT_UTF8 = ("its path is not valid UTF-8 (the bytes that are not shown as \\xNN: a name from a Latin-1 "
            "system?), and a batch carries UTF-8 paths only; rename it, e.g. with convmv -f latin1 -t utf8")


def _safe(name: str) -> str:
    """A path component from a STAC id or asset key: no separators, and never hidden (temporaries are)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"


def _visible(stem: str) -> str:
    """An input file's stem as its output's: as it is (spaces, accents and case kept), only never hidden: a
    folder batch leaves hidden files out, so a hidden .sarc would never be reconstructed. `_safe` rewrote every
    stem: `scène 1.tif` and `scène_1.tif` both wanted `sc_ne_1.sarc`, and one of them always failed."""
    return stem.lstrip(".") or "_"


def _real(path: str) -> str:
    """The file or folder `path` names, whatever links lead to it; a GDAL virtual path as given."""
    return path if path.startswith("/vsi") else os.path.realpath(path)


def _reconstruction_of(path: str) -> str | None:
    """The .sarc the raster `path` was reconstructed from, as its tags name it, or None when it is no
    reconstruction of this codec's (or no raster: its task says why). A nightly `sar-reconstruct-batch DIR --out
    DIR` wrote scene.tif beside scene.tiff, and the next `sar-compress-batch DIR --out DIR` compressed that lossy
    copy into scene.sarc in place of the original's. Read here, before any output name is claimed: scene.tif,
    sorted first, took scene.sarc from scene.tiff."""
    from ..core.errors import SarCompressError  # noqa: PLC0415  (GDAL, numpy: not before the CLI's signal handlers)
    from ..core.raster_io import RECONSTRUCTION_SHA256_TAG, RECONSTRUCTION_TAG, read_raster_info  # noqa: PLC0415

    try:
        tags = read_raster_info(path).metadata
    except SarCompressError:
        return None
    if RECONSTRUCTION_TAG in tags or RECONSTRUCTION_SHA256_TAG in tags:
        return tags.get(RECONSTRUCTION_TAG) or f"the .sarc of body SHA-256 {tags[RECONSTRUCTION_SHA256_TAG]}"
    return None


def _local_path(href: str, base: Path) -> Path | None:
    """The file a STAC href names, or None when it is not on this machine's filesystem (http, s3, ...)."""
    u = urlparse(href)
    if u.scheme == "file":
        return Path(unquote(u.path))
    if u.scheme and len(u.scheme) > 1:  # one letter: a Windows drive, still a path
        return None
    p = Path(href)
    return p if p.is_absolute() else (base / p).resolve()


def _link_problem(path: str, is_link: bool | None = None) -> str | None:
    """Why the symbolic link `path` cannot be followed, or None when it can or is no link; never raises."""
    try:
        if not (os.path.islink(path) if is_link is None else is_link):
            return None
        os.stat(path)
        return None
    except OSError as exc:
        why = exc.strerror or str(exc)
    try:
        target = f" to {os.readlink(path)}"
    except OSError:
        target = ""
    return f"symbolic link{target} cannot be followed ({why})"


class _Expander:
    def __init__(self, out_dir: Path, suffixes: tuple[str, ...], out_suffix: str):
        self.out_dir = out_dir.resolve()
        self.suffixes = suffixes
        self.out_suffix = out_suffix
        self.jobs: list[Job] = []
        self._named: set[str] = set()  # every path a file or folder was reached by
        self._first_path: dict[str, str] = {}  # each file's and folder's real path: the first path that reached it
        self._by_output: dict[str, str] = {}
        self.found = 0  # files given to add(), for a pattern to tell whether it found any
        self._broken: dict[str, str] = {}  # links files_below found whose target cannot be read: why

    def first_time(self, path: str, what: str) -> bool:
        """Whether `path` is the first way the batch reaches its file or folder (`what`). The same path again (a
        folder and a pattern over it) is the same input, once; another path to it (a symbolic link, the folder
        spelled another way) gets one skipped row naming the first: real_copy.tif -> real.tif, and a link to a
        folder of scenes given beside it, vanished without a word."""
        if path in self._named:
            return False
        self._named.add(path)
        first = self._first_path.setdefault(_real(path), path)
        if first != path:
            self.skip(path, f"the same {what} as {first}")
        return first == path

    def add(self, src: Path | str, out_rel: Path) -> None:
        """`src` a local file, or (a str) a GDAL virtual path, kept as given: Path() folds its "//"."""
        self.found += 1  # duplicates too: a pattern over files another input named has still found them
        if not self.first_time(str(src), "file"):
            return
        if shown(str(src)) != str(src):
            self.fail(str(src), NOT_UTF8)
            return
        out = self.out_dir / out_rel.with_name(_visible(out_rel.stem) + self.out_suffix)
        if _real(str(src)) == str(out):  # a.sarc given to sar-compress-batch with --out its folder: not a scene,
            # and it took the output name of a.tif beside it, which then failed as a duplicate
            self.fail(str(src), f"is itself the output this batch would write for it ({self.out_suffix}), not "
                                "an input; leave it out")
            return
        if self.out_suffix == ".sarc" and (sarc := _reconstruction_of(str(src))):  # the compress batch
            self.skip(str(src), f"a reconstruction of {sarc}: this codec's lossy output is not compressed again")
            return
        other = self._by_output.get(str(out))
        if other is not None:
            self.fail(str(src), f"its output {out} is also the output of {other}; rename one, or run them in "
                                "separate batches with different --out folders (with the same one, each would "
                                "replace the other's output)")
            return
        self._by_output[str(out)] = str(src)
        self.jobs.append(Job(input=str(src), output=str(out)))

    def fail(self, what: str, error: str) -> None:
        self.jobs.append(Job(input=shown(what), error=shown(error)))

    def skip(self, what: str, why: str) -> None:
        self.jobs.append(Job(input=shown(what), error=shown(why), skipped=True))

    def wanted(self, p: Path, skip: Path | None) -> bool:
        return (p.suffix.lower() in self.suffixes and not p.name.startswith(".")
                and (skip is None or skip not in p.resolve().parents))

    def files_below(self, d: Path) -> Iterator[Path]:
        """The files below `d`, following symbolic links to folders (rglob did not: a link to a folder of scenes
        left them out without a word) once the folders really below `d` are searched, so a scene reached both
        ways keeps its own path; a folder reached a second way (a link to one already searched, a loop) is
        searched once (`first_time`)."""
        links: list[Path] = []
        yield from self._walk(d, links)
        while links:
            link = links.pop(0)
            if self.first_time(str(link), "folder"):
                yield from self._walk(link, links)

    def _walk(self, d: Path, links: list[Path]) -> Iterator[Path]:
        """The files below `d` without following links to folders, which are added to `links`.

        An archive changes while a batch lists it: a sub-folder deleted while it was searched was rglob's
        FileNotFoundError traceback, and is skipped (what is gone is nothing to do); one that cannot be read
        was skipped by rglob without a word, its scenes silently left out, and fails as an input of its own,
        so the report and the exit status say so. A file is known from its folder entry, not looked at
        again: a folder that can be listed but not entered (mode r--) made `is_file()` a PermissionError
        traceback."""
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            why = exc.strerror or exc
            self.fail(str(d), f"folder cannot be read ({why}); its files are not in this batch")
            return
        for entry in entries:
            try:
                folder, file, link = entry.is_dir(), entry.is_file(), entry.is_symlink()
            except OSError:  # a link whose target cannot be looked at (in a folder that cannot be entered)
                folder = file = link = False
            if folder and link:
                links.append(Path(entry.path))
            elif folder:
                if self.first_time(entry.path, "folder"):
                    yield from self._walk(Path(entry.path), links)
            elif file or self._broken_link(entry):
                yield Path(entry.path)

    def _broken_link(self, entry: os.DirEntry) -> bool:
        """A symbolic link whose target is gone or cannot be read (a moved scene, an unmounted volume): noted
        with the reason, so `folder` fails it as an input. It used to be left out without a word, the batch
        exiting 0 with the scene neither done nor reported."""
        try:
            is_link = entry.is_symlink()
        except OSError:
            return False
        why = _link_problem(entry.path, is_link)
        if why:
            self._broken[entry.path] = why
        return why is not None

    def folder(self, d: Path, empty_fails: bool = True) -> None:
        """Every matching file below `d`; outputs mirror the sub-folders so equal names in two folders differ.

        An output folder inside `d` is not searched (earlier outputs are not inputs). One that is `d` itself or
        above it (.sarc files beside their rasters, `--out` the archive's root) does not hide `d`'s files: that
        used to fail the folder as having none. A folder a pattern matched (`empty_fails` False) is not a failure
        of its own when empty: the pattern fails when none of its matches had any.

        Of two paths to one scene, the one without a symbolic link in it below `d` takes the scene, whatever
        their order: a link named a_link.tif, sorted first, took real.tif's output name."""
        failed = len(self.jobs)
        if not self.first_time(str(d), "folder"):
            return
        inside = d.resolve() in self.out_dir.parents
        real_d = os.path.realpath(d)
        found = sorted((p for p in self.files_below(d) if self.wanted(p, self.out_dir if inside else None)),
                       key=lambda p: (os.path.realpath(p) != os.path.join(real_d, os.path.relpath(p, d)), p))
        if not found and len(self.jobs) == failed and empty_fails:  # one that cannot be read has failed already
            self.fail(str(d), f"folder has no {'/'.join(self.suffixes)} files")
        for p in found:
            if str(p) not in self._broken:
                self.add(p, p.relative_to(d))
            elif self.first_time(str(p), "file"):  # once, when a pattern's folders overlap (`archive/**`)
                self.fail(str(p), f"{self._broken[str(p)]}; this scene is not in the batch")

    def stac(self, path: Path, seen: set | None = None) -> None:
        """Local-file assets of a STAC item, item collection, or catalog / collection (following item and
        child links); outputs go to <item id>/<asset key> so the usual one-folder-per-item layout stays apart."""
        seen = set() if seen is None else seen
        if path.resolve() in seen:
            return
        seen.add(path.resolve())
        try:
            doc = json.loads(path.read_text())
            kind = doc.get("type")
        except (OSError, ValueError, AttributeError) as exc:
            self.fail(str(path), f"not a readable STAC JSON file ({exc})")
            return
        if kind == "Feature":
            self._stac_item(doc, path)
        elif kind == "FeatureCollection":
            self._stac_items(doc.get("features") or [], path)
        elif kind in ("Collection", "Catalog"):
            self._stac_links([link for link in doc.get("links") or [] if link.get("rel") in ("item", "child")],
                             path, kind, seen)
        else:
            self.fail(str(path), f"JSON of type {kind!r} is not a STAC item, item collection, catalog or collection")

    def _stac_items(self, items: list, path: Path) -> None:
        """An empty item collection fails like an empty folder: it used to give "0 inputs" and exit 0."""
        if not items:
            self.fail(str(path), "STAC item collection has no items")
        for item in items:
            self._stac_item(item, path)

    def _stac_links(self, links: list, path: Path, kind: str, seen: set) -> None:
        """The item and child links of a catalog or collection; one without any fails like an empty folder."""
        if not links:
            self.fail(str(path), f"STAC {kind.lower()} has no item or child links")
        for link in links:
            target = _local_path(str(link.get("href", "")), path.parent)
            if target is None or not target.is_file():
                self.fail(str(path), f"STAC link {link.get('href')!r} is not a local JSON file")
            else:
                self.stac(target, seen)

    def _stac_item(self, item: dict, path: Path) -> None:
        item_id = str(item.get("id") or path.stem)
        assets = item.get("assets") or {}
        n = 0
        for key, asset in assets.items():
            href = str(asset.get("href", ""))
            if Path(urlparse(href).path).suffix.lower() not in self.suffixes:
                continue  # metadata, thumbnails, other formats
            n += 1
            local = _local_path(href, path.parent)
            where = f"{path} item {item_id} asset {key}"
            if local is None:
                self.fail(href, f"{where}: not a local file (only local assets are processed)")
            elif not local.is_file():
                self.fail(str(local), f"{where}: file does not exist")
            else:
                self.add(local, Path(_safe(item_id)) / _safe(key))
        if not n:
            self.fail(str(path), f"STAC item {item_id} has no {'/'.join(self.suffixes)} asset")

    def virtual(self, spec: str) -> None:
        """A file inside a local archive (`/vsizip/archive.zip/scene.tif`), which GDAL reads in place: one file
        input, its output named after its last component under --out. Other GDAL virtual paths fail: a rerun
        can tell a scene in a local archive unchanged (raster_io.source_stamp: the archive's size and date), not
        one behind a URL or in one process's memory (/vsimem/: the workers are other processes)."""
        if ".sarc" in self.suffixes:  # the batch reconstructs a .sarc read as a plain file, not through GDAL
            self.fail(spec, "a .sarc inside an archive or behind a GDAL virtual path cannot be read in place; "
                            "unpack it first")
            return
        from ..core.raster_io import local_archive, vsi_stat  # noqa: PLC0415  (numpy: not before the CLI's signal handlers)

        if local_archive(spec) is None:
            self.fail(spec, "only GDAL virtual paths to a file inside a local archive (/vsizip/, /vsitar/, "
                            "/vsigzip/, /vsi7z/, /vsirar/) are batch inputs: a rerun could not tell whether this "
                            "one changed; copy or unpack it to a local file first")
            return
        st = vsi_stat(spec)
        if st is None:
            self.fail(spec, "not found in its archive (check the archive and the path inside it, e.g. "
                            "/vsizip/archive.zip/scene.tif)")
        elif st.IsDirectory():
            self.fail(spec, "is a folder inside an archive; name each scene in it "
                            "(e.g. /vsizip/archive.zip/scene.tif), or unpack it and give the folder")
        else:
            self.add(spec, Path(PurePosixPath(spec).name))

    def spec(self, spec: str) -> None:
        if spec.startswith("/vsi"):  # raster_io.is_gdal_virtual_path, whose module would import numpy here
            self.virtual(spec)
            return
        p = Path(spec)
        if p.is_file() and p.suffix.lower() == ".json":
            self.stac(p)
        elif p.is_dir():
            self.folder(p)
        elif p.is_file():
            self.add(p, Path(p.name))
        elif glob.has_magic(spec):
            self.pattern(spec)
        else:
            self.fail(spec, _link_problem(spec) or "no such file or folder")

    def pattern(self, spec: str) -> None:
        """The files and folders a glob pattern matches, each as if given on its own, as the shell would
        expand it unquoted: a pattern naming folders (`'archive/2024-*'`) found nothing, and the batch ran no
        scene and exited 0. A pattern that yields no scene and no failure fails as an input of its own.

        Files are taken as a folder search takes them (.tif/.tiff, or .sarc) unless the pattern names their
        suffix itself (`'*.img'`, `'catalogs/*.json'`): `'scenes/*'` over rasters with their .sarc files beside
        them (`--out scenes`) took every .aux.xml sidecar, .sarc and report as a failed input on every run, and
        a.sarc, sorted first, took a.tif's output name, so a replaced a.tif was never compressed again."""
        matches = [m for m in sorted(glob.glob(spec, recursive=True)) if not Path(m).name.startswith(".")]
        if not matches:
            self.fail(spec, "pattern matches no file")
            return
        found, failed = self.found, len(self.jobs)
        chosen = _names_a_suffix(spec)
        for m in matches:
            if Path(m).is_dir():
                self.folder(Path(m), empty_fails=False)
            elif Path(m).is_file():
                if chosen or self.wanted(Path(m), None):
                    self.spec(m)
            elif Path(m).suffix.lower() in self.suffixes and (why := _link_problem(m)) and self.first_time(m, "file"):
                self.fail(m, f"{why}; this scene is not in the batch")
        if self.found == found and len(self.jobs) == failed:
            self.fail(spec, f"pattern matches no {'/'.join(self.suffixes)} file")


def _names_a_suffix(spec: str) -> bool:
    """Whether a pattern's last part ends in a literal suffix (`*.img`), not a wildcard (`*`, `2024-*`, `*.ti?`)."""
    suffix = PurePosixPath(spec).suffix
    return bool(suffix) and not glob.has_magic(suffix)


def expand_inputs(specs, out_dir, suffixes: tuple[str, ...], out_suffix: str) -> list[Job]:
    """Jobs for `specs` in the order given; folders are searched recursively for files ending in `suffixes`."""
    e = _Expander(Path(out_dir), tuple(s.lower() for s in suffixes), out_suffix)
    for s in specs:
        e.spec(str(s))
    return e.jobs
