"""Parity of the fused row kernel (generative / semantic entropy) with the float64 reference.

Covers ``euds._core.row_softmax_entropy``, the wrappers ``euds.kernels.softmax_entropy`` and
``soft_assignment_entropy``, ``segment_mean``, every SIMD variant (each in a subprocess, since
``EUDS_SIMD`` is read once per process), thread-count independence, the argument checks at the
``_core`` boundary and, when a GPU is present, the CUDA kernels against the CPU ones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import euds
from euds import _core, kernels

sys.path.insert(0, str(Path(__file__).parent))
import reference as ref

EPS32 = float(np.finfo(np.float32).eps)
ODD_COLS = [1, 2, 7, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4099, 49152]
ISAS = ["scalar", "avx2", "avx512"]


# ---------------------------------------------------------------------------------------------
# Helpers


def rows_for(cols: int) -> int:
    """An odd row count that keeps every case to ~100k logits."""
    return max(1, min(37, 100_000 // cols)) | 1


def lm_like(rng: np.random.Generator, rows: int, cols: int, dtype=np.float32) -> np.ndarray:
    """Logits with a per-row temperature and offset: entropies from ~0 to ~ln V."""
    spread = rng.uniform(0.3, 6.0, (rows, 1))
    offset = rng.normal(0.0, 20.0, (rows, 1))
    return (rng.standard_normal((rows, cols)) * spread + offset).astype(dtype)


def tolerance(x: np.ndarray, scale: float, expected: np.ndarray) -> np.ndarray:
    """Per-row absolute tolerance, derived from what float32 accumulation can achieve.

    * 2e-6 * max(1, ln V): the per-lane float32 sums of the online log-sum-exp (measured on
      LM-like rows: up to ~0.45 of this for the AVX2 nll at V = 49152, ~0.2 for AVX-512,
      ~0.1 for the float64 scalar kernel);
    * eps32 * max |scale * x| when scale != 1: the vector kernels round scale * x to float32;
    * eps32 * |expected|: rounding of the float32 result itself.
    """
    cols = x.shape[-1]
    base = 2e-6 * max(1.0, math.log(max(cols, 1)))
    z = x.astype(np.float64).reshape(-1, max(cols, 1)) * float(np.float32(scale))
    with np.errstate(invalid="ignore"):
        zmax = np.where(np.isfinite(z), np.abs(z), 0.0).max(axis=1) if cols else 0.0
    zterm = EPS32 * zmax if scale != 1.0 else 0.0
    return base + zterm + EPS32 * np.abs(np.nan_to_num(expected, posinf=0.0, neginf=0.0))


def assert_rows_close(got, expected, tol, what: str) -> float:
    """NaN where the reference has NaN, the same infinities, and |got - expected| <= tol
    elsewhere (the reference rounded to float32 first, so an overflow to inf matches).
    Returns the largest error seen."""
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(over="ignore"):
        exp32 = np.asarray(expected, dtype=np.float64).astype(np.float32).astype(np.float64)
    assert got.shape == exp32.shape, what
    nan_got, nan_exp = np.isnan(got), np.isnan(exp32)
    assert np.array_equal(nan_got, nan_exp), (
        f"{what}: NaN mismatch at rows {np.flatnonzero(nan_got != nan_exp)[:10]}"
    )
    inf_exp = np.isinf(exp32)
    assert np.array_equal(got[inf_exp], exp32[inf_exp]), f"{what}: infinities differ"
    finite = ~nan_exp & ~inf_exp
    err = np.abs(got[finite] - np.asarray(expected, dtype=np.float64)[finite])
    tol = np.broadcast_to(tol, got.shape)[finite]
    bad = np.flatnonzero(err > tol)
    assert bad.size == 0, (
        f"{what}: {bad.size} rows off, worst err {err.max():.3g} (tol {tol[bad[0]]:.3g})"
    )
    return float(err.max()) if err.size else 0.0


def check_parity(x, targets=None, mask=None, scale=1.0, what=""):
    """Runs the kernel and checks entropy and NLL against the reference."""
    ent, nll = _core.row_softmax_entropy(x, targets, mask, scale)
    ent_ref, nll_ref = ref.row_softmax_entropy(x, targets, mask, scale)
    assert ent.dtype == np.float32 and ent.shape == (x.shape[0],)
    err = assert_rows_close(ent, ent_ref, tolerance(x, scale, ent_ref), f"entropy {what}")
    if targets is None:
        assert nll is None
        return err, 0.0
    assert nll.dtype == np.float32 and nll.shape == (x.shape[0],)
    err_nll = assert_rows_close(nll, nll_ref, tolerance(x, scale, nll_ref), f"nll {what}")
    return err, err_nll


@pytest.fixture
def restore_threads():
    before = _core.num_threads()
    yield
    _core.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Parity on random inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", ODD_COLS)
def test_parity_odd_sizes(cols, dtype):
    rng = np.random.default_rng(1000 + cols)
    rows = rows_for(cols)
    x = lm_like(rng, rows, cols, dtype)
    targets = rng.integers(0, cols, rows)
    check_parity(x, targets, what=f"cols={cols}")


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("rows", [0, 1, 2, 3, 5, 33])
def test_row_counts(rows, dtype):
    rng = np.random.default_rng(rows)
    x = lm_like(rng, rows, 67, dtype)
    targets = rng.integers(0, 67, rows)
    check_parity(x, targets, what=f"rows={rows}")
    ent, nll = _core.row_softmax_entropy(x, targets)
    assert ent.shape == nll.shape == (rows,)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_int32_and_int64_targets_agree(dtype):
    rng = np.random.default_rng(5)
    x = lm_like(rng, 21, 300, dtype)
    t64 = rng.integers(0, 300, 21)
    e64, n64 = _core.row_softmax_entropy(x, t64.astype(np.int64))
    e32, n32 = _core.row_softmax_entropy(x, t64.astype(np.int32))
    np.testing.assert_array_equal(e64, e32)
    np.testing.assert_array_equal(n64, n32)
    check_parity(x, t64.astype(np.int32), what="int32 targets")


def test_without_targets_entropy_matches_with_targets():
    rng = np.random.default_rng(6)
    x = lm_like(rng, 9, 129)
    ent, nll = _core.row_softmax_entropy(x)
    assert nll is None
    ent_t, _ = _core.row_softmax_entropy(x, rng.integers(0, 129, 9))
    np.testing.assert_array_equal(ent, ent_t)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("scale", [0.05, 0.37, 3.0, 20.0, 1.0 / 0.07])
def test_scale_is_an_inverse_temperature(scale, dtype):
    rng = np.random.default_rng(7)
    for cols in (5, 16, 33, 1000):
        x = lm_like(rng, 13, cols, dtype) / 4
        check_parity(x, rng.integers(0, cols, 13), scale=scale, what=f"scale={scale}")


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
@pytest.mark.parametrize("m", [1, 8, 16, 32, 33])
def test_soft_assignment_entropy(m, temperature):
    """Top-m cosine similarities, softmax(s / tau): the semantic-entropy use of the kernel."""
    rng = np.random.default_rng(m)
    sims = rng.uniform(-1.0, 1.0, (41, m)).astype(np.float32)
    got = kernels.soft_assignment_entropy(sims, temperature)
    expected, _ = ref.row_softmax_entropy(sims, scale=1.0 / temperature)
    assert_rows_close(got, expected, tolerance(sims, 1.0 / temperature, expected), "semantic")
    direct, _ = _core.row_softmax_entropy(sims, scale=1.0 / temperature)
    np.testing.assert_array_equal(got, direct)


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf"), "0.05"])
def test_soft_assignment_entropy_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        kernels.soft_assignment_entropy(np.zeros((2, 4), np.float32), temperature)


# ---------------------------------------------------------------------------------------------
# Masks


@pytest.mark.parametrize("mask_dtype", [np.bool_, np.uint8])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_mask(mask_dtype, dtype):
    rng = np.random.default_rng(8)
    rows, cols = 31, 70
    x = lm_like(rng, rows, cols, dtype)
    keep = rng.random(rows) < 0.6
    targets = rng.integers(0, cols, rows)
    # Masked rows are not read: poison them (NaN logits, out-of-range targets).
    x[~keep, 3] = np.nan
    targets[~keep] = cols + 5
    mask = keep.astype(mask_dtype)
    if mask_dtype is np.uint8:
        mask[keep] = rng.integers(1, 256, int(keep.sum()))  # any non-zero byte keeps the row
    ent, nll = _core.row_softmax_entropy(x, targets, mask)
    assert np.isnan(ent[~keep]).all() and np.isnan(nll[~keep]).all()
    check_parity(x, targets, mask, what="masked")
    clean_ent, clean_nll = _core.row_softmax_entropy(
        np.ascontiguousarray(x[keep]), np.ascontiguousarray(targets[keep])
    )
    np.testing.assert_array_equal(ent[keep], clean_ent)
    np.testing.assert_array_equal(nll[keep], clean_nll)


def test_all_rows_masked():
    x = np.full((4, 9), np.nan, np.float32)
    ent, nll = _core.row_softmax_entropy(x, np.full(4, 99, np.int64), np.zeros(4, np.bool_))
    assert np.isnan(ent).all() and np.isnan(nll).all()


# ---------------------------------------------------------------------------------------------
# The 3-D wrapper


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_wrapper_3d(dtype):
    rng = np.random.default_rng(9)
    b, t, v = 3, 7, 65
    x = lm_like(rng, b * t, v, dtype).reshape(b, t, v)
    targets = rng.integers(0, v, (b, t))
    mask = rng.random((b, t)) < 0.8
    ent, nll = kernels.softmax_entropy(x, targets, mask)
    assert ent.shape == nll.shape == (b, t)
    assert ent.dtype == nll.dtype == np.float32
    flat_ent, flat_nll = _core.row_softmax_entropy(
        x.reshape(-1, v), targets.reshape(-1), mask.reshape(-1)
    )
    np.testing.assert_array_equal(ent.reshape(-1), flat_ent)
    np.testing.assert_array_equal(nll.reshape(-1), flat_nll)
    ent_ref, nll_ref = ref.row_softmax_entropy(x.reshape(-1, v), targets.reshape(-1), mask.ravel())
    assert_rows_close(ent.reshape(-1), ent_ref, tolerance(x, 1.0, ent_ref), "3-D entropy")
    assert_rows_close(nll.reshape(-1), nll_ref, tolerance(x, 1.0, nll_ref), "3-D nll")
    ent2, nll2 = kernels.softmax_entropy(x)
    assert ent2.shape == (b, t) and nll2 is None


def test_wrapper_2d_and_scale():
    rng = np.random.default_rng(10)
    x = lm_like(rng, 5, 40)
    ent, _ = kernels.softmax_entropy(x, scale=2.5)
    np.testing.assert_array_equal(ent, _core.row_softmax_entropy(x, scale=2.5)[0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, t, m: kernels.softmax_entropy(x[0, 0], None, None), "logits must be"),
        (lambda x, t, m: kernels.softmax_entropy(x[None], None, None), "logits must be"),
        (lambda x, t, m: kernels.softmax_entropy(x.tolist(), None, None), "logits must be"),
        (lambda x, t, m: kernels.softmax_entropy(x[:, ::2], None, None), "C-contiguous"),
        (lambda x, t, m: kernels.softmax_entropy(x, t[:, :-1], None), "targets must have shape"),
        (lambda x, t, m: kernels.softmax_entropy(x, t.T.copy(), None), "targets must have shape"),
        (lambda x, t, m: kernels.softmax_entropy(x, t.tolist(), None), "targets must be"),
        (lambda x, t, m: kernels.softmax_entropy(x, None, m[:1]), "mask must have shape"),
        (lambda x, t, m: kernels.softmax_entropy(x, np.asfortranarray(t), None), "targets"),
        (lambda x, t, m: kernels.softmax_entropy(x, t, None, device="tpu"), "device"),
        (lambda x, t, m: kernels.softmax_entropy(x.astype(np.float64), t, m), "logits"),
    ],
)
def test_wrapper_rejects_bad_arguments(call, message):
    x = np.zeros((2, 3, 4), np.float32)
    t = np.zeros((2, 3), np.int64)
    m = np.ones((2, 3), np.bool_)
    with pytest.raises(ValueError, match=message):
        call(x, t, m)


# ---------------------------------------------------------------------------------------------
# Extreme values

EXTREME_COLS = [1, 7, 16, 17, 64, 1000]


def _extreme_rows(cols: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of extreme logits, each with a target, float32."""
    rows, targets = [], []

    def add(row, target=0):
        rows.append(np.asarray(row, np.float32))
        targets.append(target % cols)

    big = np.float32(3e38)
    add(rng.uniform(-1e4, 1e4, cols), int(rng.integers(cols)))
    add(1e4 + rng.standard_normal(cols), int(rng.integers(cols)))  # 1e4 offset, spread 1
    add(-1e4 + rng.standard_normal(cols), int(rng.integers(cols)))
    r = np.full(cols, -big)
    r[cols // 2] = big
    add(r, cols // 2)  # one-hot at +-3e38: entropy 0, nll 0
    add(r, cols // 2 + 1)  # nll of a -3e38 class overflows float32: +inf
    r = rng.uniform(-1e4, 1e4, cols)
    r[0] = 3e38
    add(r, 0)
    return np.stack(rows), np.array(targets, np.int64)


@pytest.mark.parametrize("cols", EXTREME_COLS)
def test_large_magnitudes(cols):
    x, targets = _extreme_rows(cols, np.random.default_rng(cols))
    check_parity(x, targets, what="large magnitudes")
    ent, nll = _core.row_softmax_entropy(x, targets)
    assert 0.0 <= ent[3] < 1e-30 and nll[3] == 0.0  # one-hot: only e^-80 floor terms remain
    if cols > 1:
        assert nll[4] == np.inf


def _huge_constant_rows(cols: int) -> np.ndarray:
    return np.stack([np.full(cols, 3e38), np.full(cols, -3e38), np.full(cols, 1e20)]).astype(
        np.float32
    )


@pytest.mark.parametrize("cols", EXTREME_COLS)
def test_huge_constant_rows_entropy(cols):
    ent, _ = _core.row_softmax_entropy(_huge_constant_rows(cols))
    np.testing.assert_allclose(ent, math.log(cols), rtol=4 * EPS32, atol=1e-7)


@pytest.mark.parametrize("cols", [7, 1000])
def test_huge_constant_rows_nll(cols):
    x = _huge_constant_rows(cols)
    _, nll = _core.row_softmax_entropy(x, np.arange(3) % cols)
    np.testing.assert_allclose(nll, math.log(cols), rtol=4 * EPS32, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", EXTREME_COLS[1:])
def test_negative_infinity_entries(cols, dtype):
    rng = np.random.default_rng(cols)
    x = lm_like(rng, 6, cols, dtype)
    x[0, ::2] = -np.inf  # half the classes impossible
    x[1, 1:] = -np.inf  # one class left: entropy 0
    x[2, :] = -np.inf  # no class left: NaN
    x[3, -1] = -np.inf  # only the last (tail) entry
    x[4, 0] = -np.inf
    targets = np.array([0, 0, 0, cols - 1, 1, 0])  # rows 0, 3: -inf target, nll +inf
    check_parity(x, targets, what="-inf")
    ent, nll = _core.row_softmax_entropy(x, targets)
    assert nll[0] == np.inf and nll[3] == np.inf
    assert 0.0 <= ent[1] < 1e-30 and nll[1] == 0.0
    assert np.isnan(ent[2]) and np.isnan(nll[2])
    # -inf classes contribute nothing: the same as dropping them from the row.
    kept = np.ascontiguousarray(x[0, 1::2])[None]
    np.testing.assert_allclose(ent[0], _core.row_softmax_entropy(kept)[0][0], atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", EXTREME_COLS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_posinf_gives_nan(bad, cols, dtype):
    rng = np.random.default_rng(cols)
    positions = sorted({0, cols // 2, cols - 1})
    x = lm_like(rng, len(positions) + 1, cols, dtype)
    for r, j in enumerate(positions):
        x[r, j] = bad
    targets = np.zeros(len(x), np.int64)
    ent, nll = _core.row_softmax_entropy(x, targets)
    assert np.isnan(ent[:-1]).all() and np.isnan(nll[:-1]).all()
    assert np.isfinite(ent[-1]) and np.isfinite(nll[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", [*EXTREME_COLS[1:], 4099])
def test_one_hot_rows_never_negative(cols, dtype):
    rng = np.random.default_rng(cols)
    gaps = np.array([10.0, 20.0, 30.0, 60.0, 100.0, 1e4])
    x = np.zeros((len(gaps) * 3, cols), np.float64)
    for r, gap in enumerate(np.repeat(gaps, 3)):
        x[r] = rng.uniform(-1, 0, cols) * min(gap, 10.0) - gap
        x[r, rng.integers(cols)] = 0.0
    x = x.astype(dtype)
    check_parity(x, what="one-hot")
    ent = _core.row_softmax_entropy(x)[0]
    assert (ent >= 0.0).all()
    assert (ent[3 * 3 :] < 1e-6).all()  # gaps >= 60: entropy below 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", ODD_COLS)
def test_constant_rows_give_ln_v(cols, dtype):
    x = np.array([[0.0], [1.5], [-7.25], [60000.0 if dtype is np.float16 else 1e4]])
    x = np.repeat(x, cols, axis=1).astype(dtype)
    targets = np.arange(4) % cols
    ent, nll = _core.row_softmax_entropy(x, targets)
    np.testing.assert_allclose(ent, math.log(cols), rtol=4 * EPS32, atol=1e-7)
    np.testing.assert_allclose(nll, math.log(cols), rtol=4 * EPS32, atol=1e-7)


def test_zero_columns():
    x = np.zeros((3, 0), np.float32)
    ent, nll = _core.row_softmax_entropy(x)
    assert np.isnan(ent).all() and nll is None
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        _core.row_softmax_entropy(x, np.zeros(3, np.int64))
    ent, nll = _core.row_softmax_entropy(x, np.zeros(3, np.int64), np.zeros(3, np.uint8))
    assert np.isnan(ent).all() and np.isnan(nll).all()


# ---------------------------------------------------------------------------------------------
# SIMD variants, each in its own process

_CHILD = r"""
import json, sys
import numpy as np
import euds
from euds import _core

data = np.load(sys.argv[1])
scales = json.loads(str(data["scales"]))
out = {}
for i, scale in enumerate(scales):
    ent, nll = _core.row_softmax_entropy(data[f"x{i}"], data[f"t{i}"], data[f"m{i}"], scale)
    out[f"e{i}"], out[f"n{i}"] = ent, nll
np.savez(sys.argv[2], **out)
info = euds.build_info()
print(json.dumps({"simd": info["simd"], "simd_built": info["simd_built"]}))
"""


def _simd_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]:
    """(name, logits, targets, mask, scale): random odd sizes, scales, masks, extremes."""
    rng = np.random.default_rng(2024)
    cases = []
    for cols in ODD_COLS:
        rows = max(1, min(9, 30_000 // cols))
        for dtype in (np.float32, np.float16):
            for scale in (1.0, 3.7):
                x = lm_like(rng, rows, cols, dtype)
                t = rng.integers(0, cols, rows)
                m = rng.random(rows) < 0.85
                cases.append((f"{cols}-{np.dtype(dtype).name}-{scale}", x, t, m, scale))
    for cols in EXTREME_COLS:
        x, t = _extreme_rows(cols, rng)
        cases.append((f"extreme-{cols}", x, t, np.ones(len(x), bool), 1.0))
        y = lm_like(rng, 5, cols)
        y[0, ::2] = -np.inf
        y[1, :] = -np.inf
        y[2, -1] = np.nan
        y[3, 0] = np.inf
        cases.append((f"specials-{cols}", y, np.zeros(5, np.int64), np.ones(5, bool), 1.0))
    return cases


def _overflow_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]:
    """Finite float32 logits whose scaled values exceed the float32 range (scale = 2)."""
    cases = []
    big = np.float32(3e38)
    for cols in (17, 64, 1000):
        one_hot = np.full(cols, -big)
        one_hot[0] = big
        x = np.stack([one_hot, np.full(cols, big), np.full(cols, -big)])
        cases.append((f"overflow-{cols}", x, np.zeros(3, np.int64), np.ones(3, bool), 2.0))
    return cases


def _cpu_best_isa() -> str | None:
    """The best variant this CPU supports according to /proc/cpuinfo (None if unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        None,
    )
    if flags is None:
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(flags):
        return "avx512"
    if {"avx2", "fma"} <= set(flags):
        return "avx2"
    return "scalar"


@pytest.fixture(scope="module")
def simd_runs(child_python, tmp_path_factory):
    """Runs every case under EUDS_SIMD=scalar|avx2|avx512; returns {isa: (info, outputs)}."""
    folder = tmp_path_factory.mktemp("simd")
    cases = _simd_cases() + _overflow_cases()
    arrays = {"scales": json.dumps([c[4] for c in cases])}
    for i, (_, x, t, m, _) in enumerate(cases):
        arrays[f"x{i}"], arrays[f"t{i}"], arrays[f"m{i}"] = x, t, m
    np.savez(folder / "in.npz", **arrays)
    runs = {}
    for isa in ISAS:
        env = {**os.environ, "EUDS_SIMD": isa}
        dst = folder / f"{isa}.npz"
        proc = subprocess.run(
            [child_python, "-c", _CHILD, str(folder / "in.npz"), str(dst)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(dst) as out:
            runs[isa] = (info, {k: out[k] for k in out.files})
    return cases, runs


@pytest.mark.parametrize("isa", ISAS)
def test_simd_variant_is_selected(isa, simd_runs):
    _, runs = simd_runs
    info = runs[isa][0]
    assert info["simd"] in info["simd_built"].split(",")
    assert ISAS.index(info["simd"]) <= ISAS.index(isa)  # EUDS_SIMD only caps
    best = _cpu_best_isa()
    if best is not None:
        assert info["simd"] == ISAS[min(ISAS.index(isa), ISAS.index(best))]


@pytest.mark.parametrize("isa", ISAS)
def test_simd_variant_parity(isa, simd_runs):
    cases, runs = simd_runs
    out = runs[isa][1]
    n_regular = len(_simd_cases())
    for i, (name, x, t, m, scale) in enumerate(cases[:n_regular]):
        ent_ref, nll_ref = ref.row_softmax_entropy(x, t, m, scale)
        what = f"{isa} {name}"
        assert_rows_close(out[f"e{i}"], ent_ref, tolerance(x, scale, ent_ref), what)
        assert_rows_close(out[f"n{i}"], nll_ref, tolerance(x, scale, nll_ref), what)


def test_simd_variants_agree(simd_runs):
    cases, runs = simd_runs
    scalar = runs["scalar"][1]
    for isa in ISAS[1:]:
        out = runs[isa][1]
        for i, (name, x, _, _, scale) in enumerate(cases[: len(_simd_cases())]):
            for key in (f"e{i}", f"n{i}"):
                assert_rows_close(
                    out[key], scalar[key], tolerance(x, scale, scalar[key]), f"{isa} {name}"
                )


@pytest.mark.parametrize("isa", ISAS)
def test_simd_scaled_logits_beyond_float32_range(isa, simd_runs):
    """softmax(scale * x) is well defined for finite x even when scale * x exceeds FLT_MAX:
    the vector kernels redo such rows in double precision, like the scalar kernel."""
    cases, runs = simd_runs
    _, out = runs[isa]
    start = len(_simd_cases())
    for i, (name, x, t, m, scale) in enumerate(cases[start:], start):
        ent_ref, nll_ref = ref.row_softmax_entropy(x, t, m, scale)
        assert_rows_close(out[f"e{i}"], ent_ref, tolerance(x, 1.0, ent_ref), f"{isa} {name}")
        assert_rows_close(out[f"n{i}"], nll_ref, tolerance(x, 1.0, nll_ref), f"{isa} {name}")


# ---------------------------------------------------------------------------------------------
# Threads


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("cols", [16, 1000, 4099])
def test_threads_give_identical_results(cols, dtype, restore_threads):
    rng = np.random.default_rng(cols)
    rows = max(3, 600_000 // cols)  # several chunks of the 64k-logit grain
    x = lm_like(rng, rows, cols, dtype)
    targets = rng.integers(0, cols, rows)
    mask = rng.random(rows) < 0.9
    results = []
    for n in (1, 2, 3):
        _core.set_num_threads(n)
        assert _core.num_threads() == n
        results.append(_core.row_softmax_entropy(x, targets, mask))
    for ent, nll in results[1:]:
        np.testing.assert_array_equal(ent, results[0][0])
        np.testing.assert_array_equal(nll, results[0][1])


# ---------------------------------------------------------------------------------------------
# segment_mean


@pytest.mark.parametrize("seg_dtype", [np.int32, np.int64])
def test_segment_mean_parity(seg_dtype):
    rng = np.random.default_rng(11)
    rows, n_segments = 1001, 37
    values = rng.standard_normal(rows).astype(np.float32)
    segment = rng.integers(-3, n_segments, rows).astype(seg_dtype)  # negatives: skipped
    segment[segment == 5] = 6  # segment 5 stays empty: NaN, count 0
    values[rng.integers(rows, size=3)] = np.nan
    mean, count = _core.segment_mean(values, segment, n_segments)
    mean_ref, count_ref = ref.segment_mean(values, segment, n_segments)
    assert mean.dtype == np.float64 and count.dtype == np.int64
    np.testing.assert_array_equal(count, count_ref)
    np.testing.assert_array_equal(np.isnan(mean), np.isnan(mean_ref))
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-15)
    assert count[5] == 0 and np.isnan(mean[5])
    w_mean, w_count = kernels.segment_mean(values, segment, n_segments)
    np.testing.assert_array_equal(w_mean, mean)
    np.testing.assert_array_equal(w_count, count)


def test_segment_mean_edges():
    mean, count = _core.segment_mean(np.zeros(0, np.float32), np.zeros(0, np.int64), 3)
    assert np.isnan(mean).all() and (count == 0).all()
    mean, count = _core.segment_mean(np.ones(2, np.float32), np.array([-1, -7]), 0)
    assert mean.shape == count.shape == (0,)
    values = np.array([1.0, 2.0, 4.0], np.float32)
    mean, count = _core.segment_mean(values, np.array([2, 2, -1], np.int32), 3)
    np.testing.assert_array_equal(count, [0, 0, 2])
    assert mean[2] == 1.5


@pytest.mark.parametrize("seg_dtype", [np.int32, np.int64])
def test_segment_mean_out_of_range_raises_index_error(seg_dtype):
    values = np.ones(4, np.float32)
    with pytest.raises(IndexError, match=r"segment\[2\] = 3"):
        _core.segment_mean(values, np.array([0, 1, 3, -1], seg_dtype), 3)


@pytest.mark.parametrize(
    ("values", "segment", "n_segments", "message"),
    [
        (np.ones(3, np.float64), np.zeros(3, np.int64), 2, "values must have dtype"),
        (np.ones(3, np.float32), np.zeros(3, np.int16), 2, "segment must have dtype"),
        (np.ones(3, np.float32), np.zeros(3, np.float32), 2, "segment must have dtype"),
        (np.ones(3, np.float32), np.zeros(4, np.int64), 2, "segment must have length 3"),
        (np.ones((3, 1), np.float32), np.zeros(3, np.int64), 2, "values must be 1-D"),
        (np.ones(6, np.float32)[::2], np.zeros(3, np.int64), 2, "values must be C-contiguous"),
        (np.ones(3, np.float32), np.zeros(6, np.int64)[::2], 2, "segment must be C-contiguous"),
        ([1.0, 2.0, 3.0], np.zeros(3, np.int64), 2, "values must be a numpy.ndarray"),
        (np.ones(3, np.float32), [0, 0, 0], 2, "segment must be a numpy.ndarray"),
        (np.ones(3, np.float32), np.zeros(3, np.int64), -1, "n_segments"),
    ],
)
def test_segment_mean_rejects_bad_arguments(values, segment, n_segments, message):
    with pytest.raises(ValueError, match=message):
        _core.segment_mean(values, segment, n_segments)


# ---------------------------------------------------------------------------------------------
# Argument checks at the _core boundary (never a crash)

X = np.zeros((4, 6), np.float32)
T = np.zeros(4, np.int64)
M = np.ones(4, np.bool_)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"logits": X.astype(np.float64)},
            "logits must have dtype float32 or float16, got float64",
        ),
        ({"logits": X.astype(np.int32)}, "logits must have dtype"),
        ({"logits": X.astype(np.int16)}, "logits must have dtype"),
        ({"logits": X[0]}, "logits must be 2-D"),
        ({"logits": X[None]}, "logits must be 2-D"),
        ({"logits": np.zeros((6, 4), np.float32).T}, "logits must be C-contiguous"),
        ({"logits": np.zeros((4, 12), np.float32)[:, ::2]}, "logits must be C-contiguous"),
        ({"logits": X.tolist()}, "logits must be a numpy.ndarray"),
        ({"logits": None}, "logits must be a numpy.ndarray"),
        ({"targets": T.astype(np.int16)}, "targets must have dtype int32 or int64"),
        ({"targets": T.astype(np.uint32)}, "targets must have dtype"),
        ({"targets": T.astype(np.float32)}, "targets must have dtype"),
        ({"targets": T[:3]}, "targets must have length 4"),
        ({"targets": np.zeros(5, np.int64)}, "targets must have length 4"),
        ({"targets": T[:, None]}, "targets must be 1-D"),
        ({"targets": np.zeros(8, np.int64)[::2]}, "targets must be C-contiguous"),
        ({"targets": [0, 0, 0, 0]}, "targets must be a numpy.ndarray"),
        ({"mask": M.astype(np.float32)}, "mask must have dtype bool or uint8"),
        ({"mask": M.astype(np.int8)}, "mask must have dtype"),
        ({"mask": M.astype(np.int64)}, "mask must have dtype"),
        ({"mask": M[:2]}, "mask must have length 4"),
        ({"mask": M[:, None]}, "mask must be 1-D"),
        ({"mask": np.ones(8, np.bool_)[::2]}, "mask must be C-contiguous"),
        ({"mask": [True] * 4}, "mask must be a numpy.ndarray"),
        ({"targets": np.array([0, 1, 6, 2])}, r"targets\[2\] = 6 is outside \[0, 6\)"),
        ({"targets": np.array([0, -1, 0, 2], np.int32)}, r"targets\[1\] = -1"),
        ({"targets": np.array([0, 0, 0, 2**40])}, r"targets\[3\]"),
        ({"scale": 0.0}, "scale must be a positive finite number"),
        ({"scale": -1.0}, "scale must be a positive finite number"),
        ({"scale": float("nan")}, "scale must be a positive finite number"),
        ({"scale": float("inf")}, "scale must be a positive finite number"),
        ({"scale": 1e39}, "scale must be a positive finite number"),  # inf as a float
        ({"entropy_out": np.zeros(4, np.float64)}, "entropy_out must have dtype float32"),
        ({"entropy_out": np.zeros(3, np.float32)}, "entropy_out must have length 4"),
        ({"entropy_out": np.zeros((4, 1), np.float32)}, "entropy_out must be 1-D"),
        ({"entropy_out": [0.0] * 4}, "entropy_out must be a numpy.ndarray"),
        ({"nll_out": np.zeros(4, np.float16)}, "nll_out must have dtype float32"),
    ],
)
def test_row_entropy_rejects_bad_arguments(kwargs, message):
    args = {"logits": X, "targets": T, "mask": M, **kwargs}
    with pytest.raises(ValueError, match=message):
        _core.row_softmax_entropy(**args)


def test_row_entropy_rejects_read_only_output():
    out = np.zeros(4, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="entropy_out must be writeable"):
        _core.row_softmax_entropy(X, entropy_out=out)


def test_row_entropy_writes_into_given_outputs():
    rng = np.random.default_rng(12)
    x = lm_like(rng, 4, 6)
    ent_out, nll_out = np.full(4, -1, np.float32), np.full(4, -1, np.float32)
    ent, nll = _core.row_softmax_entropy(x, T, None, 1.0, ent_out, nll_out)
    assert ent is ent_out and nll is nll_out
    expected = _core.row_softmax_entropy(x, T)
    np.testing.assert_array_equal(ent_out, expected[0])
    np.testing.assert_array_equal(nll_out, expected[1])


def test_out_of_range_target_is_fine_on_a_masked_row():
    targets = np.array([0, 99, -5, 5])
    mask = np.array([1, 0, 0, 1], np.uint8)
    ent, nll = _core.row_softmax_entropy(X, targets, mask)
    assert np.isnan(ent[1:3]).all() and np.isfinite(ent[[0, 3]]).all()
    assert np.isnan(nll[1:3]).all() and np.isfinite(nll[[0, 3]]).all()


def test_read_only_inputs_are_accepted():
    x, t = X.copy(), T.copy()
    x.flags.writeable = t.flags.writeable = False
    ent, _ = _core.row_softmax_entropy(x, t)
    np.testing.assert_allclose(ent, math.log(6), rtol=4 * EPS32)


def test_byte_swapped_logits_are_rejected_or_read_correctly():
    x = lm_like(np.random.default_rng(13), 3, 20)
    expected = _core.row_softmax_entropy(x)[0]
    swapped = x.astype(">f4")
    try:
        got = _core.row_softmax_entropy(swapped)[0]
    except ValueError as err:
        assert "logits" in str(err)
    else:
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# CUDA


def test_build_info_cuda_fields():
    info = euds.build_info()
    assert isinstance(info["cuda_compiled"], bool)
    assert info["cuda_devices"] == _core.cuda_device_count()
    assert kernels.cuda_available() == (info["cuda_compiled"] and info["cuda_devices"] > 0)
    if info["cuda_compiled"]:
        assert isinstance(info["cuda_version"], str) and info["cuda_version"]
    else:
        assert info["cuda_version"] is None


@pytest.mark.skipif(kernels.cuda_available(), reason="a CUDA device is present")
def test_cuda_device_without_gpu_raises_euds_error():
    with pytest.raises(euds.EudsError):
        kernels.softmax_entropy(X, device="cuda")


CUDA_COLS = [1, 7, 31, 32, 33, 1000, 1023, 1024, 1025, 4099, 49152]


def _cuda_vs_cpu(x, targets=None, mask=None, scale=1.0, atol=1e-4, what=""):
    cpu_ent, cpu_nll = kernels.softmax_entropy(x, targets, mask, scale=scale)
    gpu_ent, gpu_nll = kernels.softmax_entropy(x, targets, mask, scale=scale, device="cuda")
    assert gpu_ent.dtype == np.float32 and gpu_ent.shape == cpu_ent.shape
    assert_rows_close(gpu_ent, cpu_ent, atol, f"cuda entropy {what}")
    if targets is None:
        assert gpu_nll is None
    else:
        tol = atol + 2 * EPS32 * np.abs(np.nan_to_num(cpu_nll, posinf=0.0))
        assert_rows_close(gpu_nll, cpu_nll, tol, f"cuda nll {what}")


@pytest.mark.cuda
@pytest.mark.skipif(not kernels.cuda_available(), reason="needs a CUDA device")
class TestCuda:
    """CUDA kernels against the CPU kernels (warp per row below 1024 columns, block per row
    from 1024 on)."""

    @pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
    @pytest.mark.parametrize("cols", CUDA_COLS)
    def test_parity_with_cpu(self, cols, dtype):
        rng = np.random.default_rng(cols)
        rows = max(1, min(67, 400_000 // cols))
        x = lm_like(rng, rows, cols, dtype)
        targets = rng.integers(0, cols, rows)
        mask = rng.random(rows) < 0.8
        _cuda_vs_cpu(x, targets, mask, what=f"cols={cols}")
        _cuda_vs_cpu(x, what=f"cols={cols} no targets")
        _cuda_vs_cpu(x, targets, scale=3.7, what=f"cols={cols} scale")

    @pytest.mark.parametrize("rows", [0, 1, 9])
    def test_row_counts(self, rows):
        x = lm_like(np.random.default_rng(rows), rows, 40)
        _cuda_vs_cpu(x, np.zeros(rows, np.int64), np.ones(rows, np.uint8))

    @pytest.mark.parametrize("cols", [7, 33, 1024, 4099])
    def test_extreme_values(self, cols):
        rng = np.random.default_rng(cols)
        x, _ = _extreme_rows(cols, rng)
        _cuda_vs_cpu(x, None, what="large magnitudes (entropy)")
        y = lm_like(rng, 6, cols)
        y[0, ::2] = -np.inf
        y[1, :] = -np.inf
        y[2, cols // 2] = np.nan
        y[3, -1] = np.inf
        y[4, :] = 2.5  # constant row: ln V
        y[5, :] = -1e4
        y[5, 1] = 0.0  # one-hot
        _cuda_vs_cpu(y, np.array([0, 0, 0, 0, 3, 1]), what="specials")
        _cuda_vs_cpu(y.astype(np.float16), np.array([0, 0, 0, 0, 3, 1]), what="specials f16")

    @pytest.mark.parametrize("cols", [7, 33, 1024, 4099])
    def test_nll_of_large_logits(self, cols):
        """The CPU keeps full NLL precision for logits near 1e4 (float64 finish); the GPU must
        agree within 1e-4 there too."""
        x, targets = _extreme_rows(cols, np.random.default_rng(cols))
        _cuda_vs_cpu(x, targets, what="large magnitudes (nll)")

    def test_wide_rows_semantic(self):
        sims = np.random.default_rng(3).uniform(-1, 1, (501, 32)).astype(np.float32)
        cpu = kernels.soft_assignment_entropy(sims, 0.05)
        gpu = kernels.soft_assignment_entropy(sims, 0.05, device="cuda")
        assert_rows_close(gpu, cpu, 1e-4, "semantic")

    def test_bad_target_on_unmasked_row_raises(self):
        x = np.zeros((3, 40), np.float32)
        with pytest.raises(ValueError):
            kernels.softmax_entropy(x, np.array([0, 40, 1]), device="cuda")
        ent, nll = kernels.softmax_entropy(
            x, np.array([0, 40, 1]), np.array([1, 0, 1], np.bool_), device="cuda"
        )
        assert np.isnan(ent[1]) and np.isnan(nll[1]) and np.isfinite(nll[[0, 2]]).all()
        # The error flag is cleared: the next call works.
        kernels.softmax_entropy(x, np.zeros(3, np.int64), device="cuda")

    def test_int32_targets_are_rejected(self):
        with pytest.raises(ValueError, match="int64"):
            kernels.softmax_entropy(X, T.astype(np.int32), device="cuda")
