"""Quality metrics: the project's only implementation, used by sar-eval, the benchmarks and the QGIS maps.

Pure numpy (no scipy) so the QGIS plugin can use them without extra dependencies. Conventions:
* PSNR and SSIM are computed on the normalised [0,1] dB image (data range 1); they depend on the clip bounds,
  which callers must report next to them.
* dB RMSE is the normalisation-free headline figure.
* ENL is computed on linear intensity only (never dB); the ENL ratio compares reconstruction and original over
  the original's most homogeneous windows. 1 is ideal, >1 means the reconstruction smoothed the speckle.
* EPI (Sattar et al. 1997) is the correlation of the Laplacian-filtered images; 1 is perfect.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if mask is not None:
        return a[mask], b[mask]
    return a.ravel(), b.ravel()


def mse(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    a, b = _masked(ref, test, mask)
    if a.size == 0:
        return float("nan")
    return float(np.mean((a - b) ** 2))


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0, mask: np.ndarray | None = None) -> float:
    err = mse(ref, test, mask)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / err))


def db_rmse(ref_db: np.ndarray, test_db: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(np.sqrt(mse(ref_db, test_db, mask)))


# --- local filters ---------------------------------------------------------------------------------------

def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


def _filter_1d(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """'valid' correlation along one axis, as a sum of shifted slices (vectorised, no scipy)."""
    n = x.shape[axis] - kernel.size + 1
    out = np.zeros(x.shape[:axis] + (n,) + x.shape[axis + 1:], dtype=np.float64)
    for i, w in enumerate(kernel):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(i, i + n)
        out += w * x[tuple(sl)]
    return out


def _gaussian_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return _filter_1d(_filter_1d(x, kernel, 0), kernel, 1)


def box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window centred on each pixel ('same' shape, reflected edges), via an integral image."""
    if size < 1:
        raise ValueError("window size must be >= 1")
    x = np.asarray(x, dtype=np.float64)
    before = size // 2
    after = size - 1 - before
    p = np.pad(x, ((before, after), (before, after)), mode="reflect" if min(x.shape) > max(before, after) else "edge")
    c = np.zeros((p.shape[0] + 1, p.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(p, axis=0), axis=1, out=c[1:, 1:])
    h, w = x.shape
    s = c[size:size + h, size:size + w] - c[:h, size:size + w] - c[size:size + h, :w] + c[:h, :w]
    return s / (size * size)


def laplacian(x: np.ndarray) -> np.ndarray:
    """3x3 Laplacian (4-neighbour), edge-replicated, same shape."""
    p = np.pad(np.asarray(x, dtype=np.float64), 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * p[1:-1, 1:-1]


# --- SSIM ---------------------------------------------------------------------------------------------

def ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0, mask: np.ndarray | None = None,
         win_size: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian 11x11 window, K1=0.01, K2=0.03) over the windows inside the image.

    With a mask, only windows whose centre pixel is valid count.
    """
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(test, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if min(a.shape) < win_size:
        win_size = max(1, min(a.shape) - (1 - min(a.shape) % 2))  # largest odd size that fits
    k = _gaussian_kernel(win_size, sigma)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a = _gaussian_valid(a, k)
    mu_b = _gaussian_valid(b, k)
    saa = _gaussian_valid(a * a, k) - mu_a**2
    sbb = _gaussian_valid(b * b, k) - mu_b**2
    sab = _gaussian_valid(a * b, k) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    if mask is not None:
        r = win_size // 2
        centre = np.asarray(mask)[r:r + smap.shape[0], r:r + smap.shape[1]]
        if not centre.any():
            return float("nan")
        return float(smap[centre].mean())
    return float(smap.mean())


# --- ENL ----------------------------------------------------------------------------------------------

def enl(intensity: np.ndarray) -> float:
    """Equivalent number of looks of a homogeneous area of linear intensity: mean^2 / variance."""
    x = np.asarray(intensity, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    var = x.var()
    return float(x.mean() ** 2 / var) if var > 0 else float("inf")


def homogeneous_windows(intensity: np.ndarray, window: int = 16, fraction: float = 0.1,
                        mask: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping windows with the lowest coefficient of variation.

    These stand in for the "homogeneous areas" an analyst would pick by hand; windows with any invalid pixel
    are skipped. At least one window is returned when any window is fully valid.
    """
    x = np.asarray(intensity, dtype=np.float64)
    h, w = x.shape
    rows, cols = h // window, w // window
    if rows == 0 or cols == 0:
        return []
    blocks = x[:rows * window, :cols * window].reshape(rows, window, cols, window).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(rows, cols, -1)
    ok = np.all(np.isfinite(blocks), axis=-1) & np.all(blocks > 0, axis=-1)
    if mask is not None:
        m = np.asarray(mask)[:rows * window, :cols * window].reshape(rows, window, cols, window)
        ok &= m.transpose(0, 2, 1, 3).reshape(rows, cols, -1).all(axis=-1)
    mean = blocks.mean(axis=-1)
    cv = np.where(ok, blocks.std(axis=-1) / np.maximum(mean, _EPS), np.inf)
    order = np.argsort(cv, axis=None)
    n_ok = int(ok.sum())
    if n_ok == 0:
        return []
    n = max(1, int(round(fraction * n_ok)))
    return [(int(i // cols) * window, int(i % cols) * window) for i in order[:n]]


def enl_ratio(ref_intensity: np.ndarray, test_intensity: np.ndarray, window: int = 16, fraction: float = 0.1,
              mask: np.ndarray | None = None) -> float:
    """ENL(reconstruction) / ENL(original), averaged over the original's most homogeneous windows."""
    corners = homogeneous_windows(ref_intensity, window, fraction, mask)
    if not corners:
        return float("nan")
    e_ref = np.mean([enl(ref_intensity[r:r + window, c:c + window]) for r, c in corners])
    e_test = np.mean([enl(test_intensity[r:r + window, c:c + window]) for r, c in corners])
    return float(e_test / e_ref)


# --- EPI ----------------------------------------------------------------------------------------------

def epi(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Edge preservation index: correlation of the Laplacians of original and reconstruction.

    With a mask, only pixels whose Laplacian reads valid pixels alone count: at the border of a nodata area
    (filled with the noise floor, -100 dB) the Laplacian of both images is that step, identical in both, and
    those few pixels made the index of a scene with nodata 0.8-0.9 whatever the codec did to its edges."""
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        p = np.pad(m, 1, mode="edge")  # as laplacian() pads
        mask = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    la, lb = _masked(laplacian(ref), laplacian(test), mask)
    if la.size == 0:
        return float("nan")
    la = la - la.mean()
    lb = lb - lb.mean()
    den = np.sqrt(np.sum(la * la) * np.sum(lb * lb))
    return float(np.sum(la * lb) / den) if den > 0 else float("nan")


# --- maps for the QGIS overlays -------------------------------------------------------------------------
# Local statistics use a Gaussian window, not a box: with a box, a bright point target enters and leaves the
# window abruptly, so the maps showed window-sized squares with hard edges around every scatterer. A Gaussian
# weight fades it in smoothly. `window` keeps its meaning as the size of the equivalent box (same effective
# number of pixels: sigma = window / (2 sqrt(pi))). The kernel is cut at 8 sigma, where a weight is 1e-14 of the
# centre's: variances of intensity span up to 1e12 (a point target 60 dB above clutter, squared), so a cut at
# 3-4 sigma still showed as a ring-shaped step around strong targets; at 8 sigma they fade out smoothly.

def local_map_radius(window: int) -> int:
    """Pixels on each side of a pixel that its local-map value depends on (the Gaussian's cut-off)."""
    return int(np.ceil(8.0 * window / (2.0 * np.sqrt(np.pi))))


def gaussian_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Gaussian-weighted local mean, equivalent to a window x window box ('same' shape, reflected edges)."""
    sigma = window / (2.0 * np.sqrt(np.pi))
    r = local_map_radius(window)
    k = np.exp(-(np.arange(-r, r + 1, dtype=np.float64) ** 2) / (2.0 * sigma**2))
    x = np.asarray(x, dtype=np.float64)
    p = np.pad(x, r, mode="reflect" if min(x.shape) > r else "edge")
    return _gaussian_valid(p, k / k.sum())


def _local_means(window: int, weight: np.ndarray | None, *xs: np.ndarray) -> list[np.ndarray]:
    """Gaussian local means of each x, over the pixels of weight 1 only when a weight is given (normalised
    convolution): a nodata fill (-100 dB, 0 intensity) inside the window would otherwise enter every statistic
    near a scene's nodata margin, and the same fill in both rasters reads as perfectly kept speckle and edges
    there. NaN where the window holds no weight."""
    if weight is None:
        return [gaussian_mean(x, window) for x in xs]
    norm = gaussian_mean(weight, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(norm > _EPS, 1.0 / norm, np.nan)
    return [gaussian_mean(np.where(weight > 0, x, 0.0), window) * scale for x in xs]


def local_enl_ratio_map(ref_intensity: np.ndarray, test_intensity: np.ndarray, window: int = 15,
                        mask: np.ndarray | None = None) -> np.ndarray:
    """Windowed ENL(test)/ENL(ref) per pixel (float32, NaN where invalid). Around 1 is good, >1 is smoothing.
    With a mask, only valid pixels enter each window."""
    weight = None if mask is None else np.asarray(mask, dtype=np.float64)

    def local_enl(x: np.ndarray) -> np.ndarray:
        m, m2 = _local_means(window, weight, x, x * x)
        v = np.maximum(m2 - m * m, _EPS)
        return m * m / v

    ref = np.asarray(ref_intensity, dtype=np.float64)
    test = np.asarray(test_intensity, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ratio = local_enl(test) / np.maximum(local_enl(ref), _EPS)
    out = ratio.astype(np.float32)
    if mask is not None:
        out[~np.asarray(mask)] = np.nan
    return out


def local_epi_map(ref: np.ndarray, test: np.ndarray, window: int = 15,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Windowed EPI per pixel: local correlation of the Laplacians (float32, NaN where invalid or flat). With a
    mask, only Laplacians whose five pixels are all valid enter each window: one taken across a nodata margin is
    the fill's step, not an edge of the scene."""
    la = laplacian(ref)
    lb = laplacian(test)
    weight = None
    if mask is not None:
        m = np.pad(np.asarray(mask, dtype=bool), 1, mode="edge")
        weight = (m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]).astype(np.float64)
    ma, mb, mab, maa, mbb = _local_means(window, weight, la, lb, la * lb, la * la, lb * lb)
    cov = mab - ma * mb
    va = maa - ma * ma
    vb = mbb - mb * mb
    den = np.sqrt(np.maximum(va, 0) * np.maximum(vb, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > _EPS, cov / den, np.nan).astype(np.float32)
    if mask is not None:
        out[~np.asarray(mask)] = np.nan
    return np.clip(out, -1.0, 1.0)


# --- tiling artefacts -------------------------------------------------------------------------------------

def seam_ratio(img: np.ndarray, tile: int, cell: int = 16) -> float:
    """Mean |difference| between neighbours across tile boundaries / across the other `cell`-px boundaries.

    Comparing with other latent-cell boundaries (not with all pixel pairs) isolates what tiling adds from what
    the decoder's 16-px structure does anyway: 1 means no visible tile grid.
    """
    x = np.asarray(img, dtype=np.float64)
    dc = np.abs(np.diff(x, axis=1))  # dc[:, c-1] = |x[:, c] - x[:, c-1]|
    dr = np.abs(np.diff(x, axis=0))
    cols = np.arange(cell, x.shape[1], cell)
    rows = np.arange(cell, x.shape[0], cell)
    seam = np.concatenate([dc[:, cols[cols % tile == 0] - 1].ravel(), dr[rows[rows % tile == 0] - 1].ravel()])
    other = np.concatenate([dc[:, cols[cols % tile != 0] - 1].ravel(), dr[rows[rows % tile != 0] - 1].ravel()])
    if seam.size == 0 or other.size == 0:
        raise ValueError(f"a {x.shape} image has no {tile}-px tile boundary to compare")
    return float(np.nanmean(seam) / np.nanmean(other))
