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
