"""benchmarks/residual_layer.py: the enhancement layer's code length and correction, checked against their
definitions (the figures it reports for issue 19 rest on these)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import residual_layer as rl  # noqa: E402


def _sequential_kt_bits(symbols, contexts, alphabet) -> float:
    """The adaptive coder spelled out: each symbol costs -log2 (count + 1/2) / (total + A/2) in its context."""
    counts: dict = {}
    bits = 0.0
    for s, c in zip(symbols, contexts):
        seen = counts.setdefault(int(c), {})
        total = sum(seen.values())
        bits -= math.log2((seen.get(int(s), 0) + 0.5) / (total + len(alphabet) / 2))
        seen[int(s)] = seen.get(int(s), 0) + 1
    return bits


def test_code_length_is_the_sequential_adaptive_coders():
    rng = np.random.default_rng(3)
    symbols = rng.choice([-2, -1, 0, 0, 0, 1, 3], size=600)
    contexts = rng.integers(0, 4, size=600)
    want = _sequential_kt_bits(symbols, contexts, np.unique(symbols))
    assert abs(rl.adaptive_code_bits(symbols, contexts, 4) - want) < 1e-6 * want
    # a constant costs nothing; a fair coin about one bit a symbol
    assert rl.adaptive_code_bits(np.zeros(50, int), np.zeros(50, int), 4) == 0.0
    coin = rng.integers(0, 2, size=4000)
    assert 4000 < rl.adaptive_code_bits(coin, np.zeros(4000, int), 1) < 4000 + 20


def test_contexts_are_causal_neighbour_magnitudes():
    sym = np.array([[0, 2, -1], [1, 0, 0]])
    valid = np.array([[True, True, True], [True, True, False]])
    ctx = rl.neighbour_contexts(sym, valid)
    assert ctx.tolist() == [[0, 0, 2], [0, 3, 1]]


def test_layer_corrects_to_within_a_step_and_a_coarse_step_sends_one_value():
    rng = np.random.default_rng(0)
    ref = rng.normal(-12, 2.2, (64, 64))
    rec = ref + rng.normal(0.3, 0.8, ref.shape)
    valid = np.ones(ref.shape, bool)
    valid[:8] = False
    bits, corrected = rl.layer(ref, rec, valid, 0.25)
    err = (corrected - ref)[valid]
    assert np.abs(err).max() <= 0.25 + 0.02  # a residual and its bin's centroid lie in one bin (float16 centroids)
    assert np.sqrt(np.mean(err**2)) <= 0.25 / np.sqrt(12) * 1.05  # the uniform quantiser's error
    assert np.array_equal(corrected[~valid], rec[~valid])
    bits, corrected = rl.layer(ref, rec, valid, 100.0)
    assert bits == rl.CENTROID_BITS  # one symbol value: no code, one centroid
    assert abs(np.mean((corrected - ref)[valid])) < 0.01  # the centroid removed the bias
