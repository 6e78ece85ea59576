"""core/bundle_files.py: a bundle part is named by its content's SHA-256, packed or not, and damage is one error."""

from __future__ import annotations

import hashlib

import pytest

from sar_compress_plugin.core.bundle_files import content_sha256, onnx_source, pack, read_bundle_file
from sar_compress_plugin.core.errors import ModelBundleError

CONTENT = b"tables " * 1000
SHA = hashlib.sha256(CONTENT).hexdigest()


def test_bundle_files_are_read_once_and_checked(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(CONTENT)
    raw, sha = read_bundle_file(p, SHA.upper(), "x")
    assert raw == CONTENT and sha == SHA == content_sha256(p)
    with pytest.raises(ModelBundleError, match="damaged"):
        read_bundle_file(p, "0" * 64, "x")
    with pytest.raises(ModelBundleError, match="cannot read x"):
        read_bundle_file(tmp_path / "missing", None, "x")


def test_a_packed_file_is_smaller_and_keeps_its_contents_identity(tmp_path):
    p = tmp_path / "f.bin.zst"
    p.write_bytes(pack(CONTENT))
    assert p.stat().st_size < len(CONTENT) / 10
    assert read_bundle_file(p, SHA, "x") == (CONTENT, SHA)
    assert content_sha256(p) == SHA
    assert onnx_source(p, "x") == CONTENT
    assert onnx_source(tmp_path / "plain.onnx", "x") == str(tmp_path / "plain.onnx")  # onnxruntime maps it


def test_a_damaged_packed_file_is_one_error_naming_it(tmp_path):
    p = tmp_path / "f.bin.zst"
    packed = pack(CONTENT)
    p.write_bytes(packed[: len(packed) // 2] + bytes(8))
    with pytest.raises(ModelBundleError, match=r"f\.bin\.zst: cannot unpack x .*damaged"):
        read_bundle_file(p, SHA, "x")
    with pytest.raises(ModelBundleError, match="cannot unpack"):
        content_sha256(p)
