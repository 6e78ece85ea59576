"""Unit-test fixtures; the helpers behind them live in codec_fixtures.py (importable by name from any test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec_fixtures import SAR_DATA, build_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Folder of a tiny, valid model bundle (encoder.onnx, decoder.onnx, manifest.json)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def sar_data() -> Path:
    if not SAR_DATA.is_dir():
        # the real scenes live beside the repository (../shared/data/sar), never downloaded; CI clones put them there
        pytest.skip(f"shared SAR data not available at {SAR_DATA} (a checkout without ../shared)")
    return SAR_DATA


@pytest.fixture
def drawn_text(monkeypatch) -> list[str]:
    """The text drawn on each figure saved during the test (titles, suptitle, legend, tick labels), read
    back from the matplotlib Figure as it is saved: what a reader of the PNG sees."""
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.text import Text  # noqa: PLC0415

    saved: list[str] = []
    savefig = Figure.savefig

    def recording(fig, *args, **kwargs):
        saved.append("\n".join(t.get_text() for t in fig.findobj(Text)))
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return saved


@pytest.fixture
def disk_full_mid_write(monkeypatch):
    """Call it to make every later Path.write_text write half its text and raise ENOSPC: a full disk (or a
    Ctrl-C) in the middle of writing a results file."""
    real = Path.write_text

    def cut_short(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("No space left on device")

    return lambda: monkeypatch.setattr(Path, "write_text", cut_short)
