"""Property-based tests of every kernel binding of ``euds._core``: whatever the arrays.

Hypothesis draws CSR offsets and ids, shapes, dtypes (allowed and not), byte order,
contiguity, alignment, read-only inputs, and outputs (``out=``) that are missing, fresh, wrong,
or overlapping an input (aliasing). Every call must either give the numpy reference's result
(``tests/reference.py``) with its inputs untouched, or raise a clean ``ValueError``,
``IndexError`` or ``TypeError`` — exactly when the arguments break the documented rules.

A crash would kill the test run, so each property runs in a child interpreter (one per
property: the start-up cost is paid once for all its examples). The child writes each
example's arguments to a file before the call, so a crash is reported with the example that
caused it. ``EUDS_PROPERTY_EXAMPLES`` sets the number of examples per property.

The explicit aliasing cases (``aliasing_cases``) are the regression tests for overlapping
``out=`` buffers, which crashed ``information_entropy`` and ``row_softmax_entropy``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from euds import _core

sys.path.insert(0, str(Path(__file__).parent))
import reference as ref

CLEAN_ERRORS = (ValueError, TypeError, IndexError)
EXAMPLES = int(os.environ.get("EUDS_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    database=None,
    suppress_health_check=list(HealthCheck),
)
EPS32 = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------------------------------------
# Running a property in a child interpreter


def run_property(python: str, name: str, tmp_path: Path, timeout: float = 600) -> None:
    trace = tmp_path / "last_example.txt"
    env = {**os.environ, "EUDS_PROPERTY_TRACE": str(trace)}
    try:
        proc = subprocess.run(
            [python, "-X", "faulthandler", __file__, name],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        last = trace.read_text() if trace.exists() else "(none)"
        pytest.fail(f"{name} timed out after {timeout} s; last example:\n{last}\n{err.stderr}")
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        last = trace.read_text() if trace.exists() else "(none)"
        pytest.fail(
            f"{name} failed ({how}); last example:\n{last}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}"
        )


def describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        flags = "".join(f for f, on in (("C", x.flags.c_contiguous), ("A", x.flags.aligned)) if on)
        head = f"ndarray(dtype={x.dtype.str}, shape={x.shape}, strides={x.strides}, flags={flags}"
        if x.base is not None:
            head += ", view"
        return head + f", values={x.tolist() if x.size <= 64 else '...'})"
    return repr(x)


def trace(call: str, *args: object, **kwargs: object) -> None:
    """Records the example about to run (read back by run_property after a crash)."""
    path = os.environ.get("EUDS_PROPERTY_TRACE")
    if not path:
        return
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    Path(path).write_text(f"{call}(\n  " + ",\n  ".join(parts) + "\n)\n")


# ---------------------------------------------------------------------------------------------
# Argument variants


def is_ok(x: object, ndim: int, dtypes: tuple) -> bool:
    """What the bindings accept for an input array."""
    return (
        isinstance(x, np.ndarray)
        and x.ndim == ndim
        and x.flags.c_contiguous
        and x.flags.aligned
        and x.dtype.isnative
        and any(x.dtype == np.dtype(d) for d in dtypes)
    )


def out_ok(out: object, shape: tuple, dtype, inputs: list) -> bool:
    """What the bindings accept for an output array (None: allocated by the binding)."""
    if out is None:
        return True
    return (
        is_ok(out, len(shape), (dtype,))
        and out.shape == shape
        and out.flags.writeable
        and not any(isinstance(i, np.ndarray) and np.shares_memory(out, i) for i in inputs)
    )


# "same" repeats: most examples keep a valid argument, so the kernels' results are checked too.
INPUT_VARIANTS = ["same"] * 10 + ["strided", "readonly", "byteswap", "dtype", "ndim", "list"]
INPUT_VARIANTS += ["unaligned", "fortran"]


def variant(a: np.ndarray, kind: str, bad_dtype) -> object:
    """``a`` (C-contiguous, native) changed in one way; the values stay the same except for
    ``dtype``, which casts to a dtype the binding must refuse."""
    if kind == "strided":
        if a.ndim == 0:
            return a
        buf = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
        buf[..., ::2] = a
        return buf[..., ::2]
    if kind == "readonly":
        c = a.copy()
        c.flags.writeable = False
        return c
    if kind == "byteswap":
        return a.astype(a.dtype.newbyteorder())
    if kind == "dtype":
        with np.errstate(all="ignore"):
            return a.astype(bad_dtype)
    if kind == "ndim":
        return a.reshape((1, *a.shape))
    if kind == "list":
        return a.tolist()
    if kind == "unaligned":
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
        v = buf[1 : 1 + a.nbytes].view(a.dtype).reshape(a.shape)
        v[...] = a
        return v
    if kind == "fortran":
        return np.asfortranarray(a)
    return a


def shared(inp: np.ndarray, out_dtype, out_shape: tuple, shift: int):
    """(copy of ``inp``, output view) in one buffer, the output ``shift`` bytes in: they
    overlap when ``shift`` < ``inp.nbytes`` (and neither is empty), else they are adjacent."""
    out_nbytes = math.prod(out_shape) * np.dtype(out_dtype).itemsize
    buf = np.zeros(max(inp.nbytes, shift + out_nbytes) + 64, np.uint8)
    inp2 = buf[: inp.nbytes].view(inp.dtype).reshape(inp.shape)
    inp2[...] = inp
    return inp2, buf[shift : shift + out_nbytes].view(out_dtype).reshape(out_shape)


OUT_VARIANTS = ["none"] * 3 + ["fresh"] * 2 + ["alias"] * 3
OUT_VARIANTS += ["readonly", "strided", "dtype", "shape", "ndim", "list", "unaligned"]


def make_out(kind: str, shape: tuple, dtype, bad_dtype) -> object:
    if kind == "none":
        return None
    fresh = np.full(shape, -7.0, dtype)
    if kind == "shape":
        return np.zeros((shape[0] + 1, *shape[1:]), dtype)
    if kind == "fresh":
        return fresh
    return variant(fresh, kind, bad_dtype)


def make_outputs(draw, inputs: dict, outs: dict):
    """Picks a variant for each output (name -> (shape, dtype)); an ``alias`` output shares a
    buffer with one input (replaced by an equal copy in that buffer) or an earlier output.
    Returns (inputs, outputs)."""
    inputs = dict(inputs)
    made: dict = {}
    for name, (shape, dtype) in outs.items():
        kind = draw(st.sampled_from(OUT_VARIANTS), label=f"{name} variant")
        if kind == "alias":
            pool = [k for k, v in {**inputs, **made}.items() if isinstance(v, np.ndarray)]
            if pool:
                target = draw(st.sampled_from(sorted(pool)), label=f"{name} aliases")
                if target in inputs:
                    base = inputs[target]
                    step = max(np.dtype(dtype).itemsize, base.itemsize)
                    shift = step * draw(st.integers(0, base.nbytes // step + 1))
                    inputs[target], made[name] = shared(base, dtype, shape, shift)
                else:
                    made[name] = made[target] if made[target].shape == shape else None
                continue
            kind = "fresh"
        bad_dtype = np.float32 if dtype == np.float64 else np.float64
        made[name] = make_out(kind, shape, dtype, bad_dtype)
    return inputs, made


def unchanged(before: dict, after: dict) -> None:
    """The kernels never write to their inputs."""
    for name, a in before.items():
        if isinstance(a, np.ndarray):
            b = after[name]
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{name} was modified"


def assert_close(got, expected, atol, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), (what, got, expected)
    inf = np.isinf(expected)
    assert np.array_equal(got[inf], expected[inf]), (what, got, expected)
    fin = np.isfinite(expected)
    err = np.abs(got[fin] - expected[fin])
    tol = np.broadcast_to(atol, expected.shape)[fin]
    assert (err <= tol).all(), (what, got, expected)


# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def csr(draw, id_dtypes=(np.int32, np.uint32, np.int64), id_range=None):
    """(offsets, ids, valid): a CSR batch, sometimes broken (offsets not starting at 0,
    decreasing, past the end of ids, or empty)."""
    lengths = draw(st.lists(st.integers(0, 6), max_size=10), label="lengths")
    offsets = np.zeros(len(lengths) + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    n_ids = int(offsets[-1]) + draw(st.integers(0, 2))
    dtype = draw(st.sampled_from(id_dtypes), label="ids dtype")
    info = np.iinfo(dtype)
    lo, hi = id_range if id_range is not None else (int(info.min), int(info.max))
    elements = st.integers(max(lo, int(info.min)), min(hi, int(info.max)))
    # Small ids repeat (counts above 1); the full range reaches the sorting path.
    elements = st.integers(max(lo, 0), max(lo, 0) + 4) | elements
    ids = draw(hnp.arrays(dtype, n_ids, elements=elements), label="ids")
    broken = draw(st.sampled_from(["no"] * 5 + ["first", "decrease", "past_end", "empty"]))
    valid = True
    if broken == "first":
        offsets[0] = draw(st.sampled_from([-1, 1, 2**40]))
        valid = False
    elif broken == "decrease" and len(offsets) >= 2:
        i = draw(st.integers(1, len(offsets) - 1))
        offsets[i] = offsets[i - 1] - draw(st.integers(1, 3))
        valid = False
    elif broken == "past_end":
        offsets[-1] = n_ids + draw(st.integers(1, 2**40))
        valid = False
    elif broken == "empty":
        offsets = np.zeros(0, np.int64)
        valid = False
    return offsets, ids, valid


def floats_with_specials(draw, shape: tuple, dtype, lo: float, hi: float) -> np.ndarray:
    """Finite values in [lo, hi] with a few NaN and infinities at drawn positions."""
    width = 16 if dtype == np.float16 else 32
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=width)), label="values")
    if x.size:
        flat = x.reshape(-1)
        for i, v in draw(
            st.lists(
                st.tuples(st.integers(0, x.size - 1), st.sampled_from([np.nan, np.inf, -np.inf])),
                max_size=3,
            ),
            label="specials",
        ):
            flat[i] = v
    return x


def mask_arrays(dtypes: tuple, shape) -> st.SearchStrategy:
    """Masks of one of ``dtypes``: any nonzero value marks a row or token as present."""

    def of(dtype):
        elements = st.booleans() if dtype == np.bool_ else st.integers(0, 2)
        return hnp.arrays(dtype, shape, elements=elements)

    return st.sampled_from(dtypes).flatmap(of)


# ---------------------------------------------------------------------------------------------
# Properties (run in the child; see the pytest wrappers at the end)


@PROPERTY
@given(st.data())
def prop_information_entropy(data):
    draw = data.draw
    offsets, ids, valid_csr = draw(csr())
    expected = ref.shannon_entropy(offsets, ids) if valid_csr else None
    args = {
        "offsets": variant(offsets, draw(st.sampled_from(INPUT_VARIANTS)), np.int32),
        "ids": variant(ids, draw(st.sampled_from(INPUT_VARIANTS)), np.float64),
    }
    n = max(len(offsets) - 1, 0)
    args, outs = make_outputs(draw, args, {"out": ((n,), np.float64)})
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    valid = (
        valid_csr
        and is_ok(args["offsets"], 1, (np.int64,))
        and is_ok(args["ids"], 1, (np.int32, np.uint32, np.int64))
        and out_ok(outs["out"], (n,), np.float64, list(args.values()))
    )
    trace("information_entropy", **args, **outs)
    if not valid:
        try:
            _core.information_entropy(args["offsets"], args["ids"], outs["out"])
        except CLEAN_ERRORS:
            unchanged(before, args)
            return
        raise AssertionError("accepted invalid arguments")
    got = _core.information_entropy(args["offsets"], args["ids"], outs["out"])
    if outs["out"] is not None:
        assert got is outs["out"]
    assert_close(got, expected, 1e-12, "information_entropy")
    unchanged(before, args)


@PROPERTY
@given(st.data())
def prop_unigram_counts(data):
    draw = data.draw
    # Ids stay small when valid: a counter's table holds one slot per id up to the largest.
    bad_id = draw(st.sampled_from([None] * 4 + [-1, -(2**40), 2**31, 2**32 - 1]), label="bad id")
    dtypes = (np.int32, np.uint32, np.int64)
    offsets, ids, valid_csr = draw(csr(dtypes, id_range=(0, 3000)))
    if bad_id is not None and ids.size and offsets.size and offsets[-1] > 0 and valid_csr:
        ids = ids.astype(np.int64)
        ids[draw(st.integers(0, int(offsets[-1]) - 1))] = bad_id
    vocab = draw(st.sampled_from([0, 0, 5, 3000, 2**31 + 1]), label="vocab_size")
    trace("UnigramCounts", vocab)
    if vocab > 2**31:
        try:
            _core.UnigramCounts(vocab)
        except CLEAN_ERRORS:
            return
        raise AssertionError("accepted a vocab_size above 2^31")
    counts = _core.UnigramCounts(vocab)
    add_args = {
        "offsets": variant(offsets, draw(st.sampled_from(INPUT_VARIANTS)), np.int32),
        "ids": variant(ids, draw(st.sampled_from(INPUT_VARIANTS)), np.float32),
    }
    valid_add = (
        valid_csr
        and is_ok(add_args["offsets"], 1, (np.int64,))
        and is_ok(add_args["ids"], 1, dtypes)
        and (ids[: offsets[-1]] >= 0).all()
        and (ids[: offsets[-1]] < 2**31).all()
    )
    expected_counts = ref.unigram_counts([], vocab)
    trace("UnigramCounts.add", **add_args)
    if valid_add:
        counts.add(add_args["offsets"], add_args["ids"])
        expected_counts = ref.unigram_counts(ref.csr_rows(offsets, ids), vocab)
    else:
        try:
            counts.add(add_args["offsets"], add_args["ids"])
        except CLEAN_ERRORS:
            pass
        else:
            raise AssertionError("add accepted invalid arguments")
    assert np.array_equal(counts.counts(), expected_counts), "counts"  # unchanged if refused
    assert counts.total == int(expected_counts.sum())

    q_offsets, q_ids, q_valid = draw(csr(dtypes, id_range=(0, 4000)))
    alpha = draw(st.sampled_from([0.0, 0.5, 1.0, -1.0, math.nan, math.inf]), label="alpha")
    args = {
        "offsets": variant(q_offsets, draw(st.sampled_from(INPUT_VARIANTS)), np.float64),
        "ids": variant(q_ids, draw(st.sampled_from(INPUT_VARIANTS)), np.int16),
    }
    n = max(len(q_offsets) - 1, 0)
    args, outs = make_outputs(draw, args, {"out": ((n,), np.float64)})
    denom = float(expected_counts.sum()) + alpha * len(expected_counts)
    valid = (
        q_valid
        and is_ok(args["offsets"], 1, (np.int64,))
        and is_ok(args["ids"], 1, dtypes)
        and out_ok(outs["out"], (n,), np.float64, list(args.values()))
        and alpha >= 0
        and math.isfinite(alpha)
        and denom > 0
    )
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    trace("UnigramCounts.self_information", **args, alpha=alpha, **outs)
    if not valid:
        try:
            counts.self_information(args["offsets"], args["ids"], alpha, outs["out"])
        except CLEAN_ERRORS:
            unchanged(before, args)
        else:
            raise AssertionError("self_information accepted invalid arguments")
    else:
        got = counts.self_information(args["offsets"], args["ids"], alpha, outs["out"])
        expected = ref.self_information(expected_counts, q_offsets, q_ids, alpha)
        assert_close(got, expected, 1e-9 * np.maximum(1, np.abs(expected)), "self_information")
        unchanged(before, args)

    # merge (itself too), from_counts and pickling keep the counts exact.
    other = _core.UnigramCounts.from_counts(expected_counts)
    counts.merge(other)
    counts.merge(counts)
    assert np.array_equal(counts.counts(), expected_counts * np.uint64(4))
    back = _core.UnigramCounts.from_counts(counts.counts())
    assert back.total == counts.total and back.vocab_size == counts.vocab_size


@PROPERTY
@given(st.data())
def prop_row_softmax_entropy(data):
    draw = data.draw
    rows = draw(st.integers(0, 8), label="rows")
    cols = draw(st.sampled_from([0, 1, 2, 3, 7, 16, 17, 33]), label="cols")
    dtype = draw(st.sampled_from([np.float32, np.float16]), label="dtype")
    x = floats_with_specials(draw, (rows, cols), dtype, -60.0, 60.0)
    targets = mask = None
    if draw(st.booleans(), label="has targets"):
        t_dtype = draw(st.sampled_from([np.int32, np.int64]))
        values = st.integers(0, max(cols - 1, 0)) | st.sampled_from([-1, cols, 2**31 - 1])
        targets = draw(hnp.arrays(t_dtype, rows, elements=values), label="targets")
    if draw(st.booleans(), label="has mask"):
        mask = draw(mask_arrays((np.bool_, np.uint8), rows), label="mask")
    scale = draw(
        st.sampled_from([1.0, 1.0, 0.05, 3.7, 0.0, -1.0, math.nan, math.inf]), label="scale"
    )
    args = {"logits": variant(x, draw(st.sampled_from(INPUT_VARIANTS)), np.float64)}
    if targets is not None:
        args["targets"] = variant(targets, draw(st.sampled_from(INPUT_VARIANTS)), np.uint32)
    if mask is not None:
        args["mask"] = variant(mask, draw(st.sampled_from(INPUT_VARIANTS)), np.int64)
    args, outs = make_outputs(
        draw, args, {"entropy_out": ((rows,), np.float32), "nll_out": ((rows,), np.float32)}
    )
    ins = [args.get("logits"), args.get("targets"), args.get("mask")]
    unmasked = np.ones(rows, bool) if mask is None else mask.astype(bool)
    valid = (
        is_ok(args["logits"], 2, (np.float32, np.float16))
        and (targets is None or is_ok(args["targets"], 1, (np.int32, np.int64)))
        and (mask is None or is_ok(args["mask"], 1, (np.bool_, np.uint8)))
        and out_ok(outs["entropy_out"], (rows,), np.float32, ins)
        # nll_out is only used (and checked) with targets
        and (
            targets is None
            or out_ok(outs["nll_out"], (rows,), np.float32, [*ins, outs["entropy_out"]])
        )
        and scale > 0
        and math.isfinite(scale)
        and (targets is None or ((targets >= 0) & (targets < cols))[unmasked].all())
    )
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    call_args = (args["logits"], args.get("targets"), args.get("mask"), scale)
    trace("row_softmax_entropy", *call_args, **outs)
    if not valid:
        try:
            _core.row_softmax_entropy(*call_args, outs["entropy_out"], outs["nll_out"])
        except CLEAN_ERRORS:
            unchanged(before, args)
            return
        raise AssertionError("accepted invalid arguments")
    ent, nll = _core.row_softmax_entropy(*call_args, outs["entropy_out"], outs["nll_out"])
    ent_ref, nll_ref = ref.row_softmax_entropy(x, targets, mask, scale)
    z = np.abs(np.where(np.isfinite(x), x, 0).astype(np.float64)) * scale
    zmax = z.max(axis=1) if cols else np.zeros(rows)
    tol = 2e-6 * max(1.0, math.log(max(cols, 1))) + 4 * EPS32 * zmax
    assert_close(ent, ent_ref, tol + EPS32 * np.abs(np.nan_to_num(ent_ref)), "entropy")
    if targets is None:
        assert nll is None
    else:
        assert_close(nll, nll_ref, tol + EPS32 * np.abs(np.nan_to_num(nll_ref)), "nll")
    unchanged(before, args)


@PROPERTY
@given(st.data())
def prop_mean_pool_normalize(data):
    draw = data.draw
    b, t, d = (draw(st.integers(0, n), label=s) for n, s in ((5, "b"), (6, "t"), (8, "d")))
    hidden = floats_with_specials(draw, (b, t, d), np.float32, -100.0, 100.0)
    mask = draw(mask_arrays((np.int64, np.uint8, np.bool_), (b, t)), label="mask")
    args = {
        "hidden": variant(hidden, draw(st.sampled_from(INPUT_VARIANTS)), np.float64),
        "mask": variant(mask, draw(st.sampled_from(INPUT_VARIANTS)), np.int32),
    }
    if draw(st.booleans(), label="mask shape off") and b:
        args["mask"] = args["mask"][:-1] if isinstance(args["mask"], np.ndarray) else None
    args, outs = make_outputs(draw, args, {"out": ((b, d), np.float32)})
    valid = (
        is_ok(args["hidden"], 3, (np.float32,))
        and is_ok(args["mask"], 2, (np.int64, np.uint8, np.bool_))
        and args["mask"].shape == (b, t)
        and out_ok(outs["out"], (b, d), np.float32, list(args.values()))
    )
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    trace("mean_pool_normalize", **args, **outs)
    if not valid:
        try:
            _core.mean_pool_normalize(args["hidden"], args["mask"], outs["out"])
        except CLEAN_ERRORS:
            unchanged(before, args)
            return
        raise AssertionError("accepted invalid arguments")
    got = _core.mean_pool_normalize(args["hidden"], args["mask"], outs["out"])
    m = mask.astype(bool)
    with np.errstate(all="ignore"):
        acc = np.where(m[:, :, None], hidden.astype(np.float64), 0.0).sum(axis=1)
        norm2 = (acc * acc).sum(axis=1)
        expected = acc / np.sqrt(norm2)[:, None]
    dead = (m.sum(axis=1) == 0) | ~(norm2 > 0) | ~np.isfinite(norm2)
    expected[dead] = np.nan
    assert_close(got, expected, 2e-6, "mean_pool_normalize")
    unchanged(before, args)


@PROPERTY
@given(st.data())
def prop_segment_mean(data):
    draw = data.draw
    n = draw(st.integers(0, 20))
    n_segments = draw(st.integers(-2, 8), label="n_segments")
    values = floats_with_specials(draw, (n,), np.float32, -1e3, 1e3)
    s_dtype = draw(st.sampled_from([np.int32, np.int64]))
    in_range = st.integers(-3, max(n_segments - 1, -1))
    segment = draw(hnp.arrays(s_dtype, n, elements=in_range), label="segment")
    if n and draw(st.integers(0, 3)) == 0:
        segment[draw(st.integers(0, n - 1))] = max(n_segments, 0) + draw(st.integers(0, 2))
    args = {
        "values": variant(values, draw(st.sampled_from(INPUT_VARIANTS)), np.float64),
        "segment": variant(segment, draw(st.sampled_from(INPUT_VARIANTS)), np.uint8),
    }
    valid = (
        is_ok(args["values"], 1, (np.float32,))
        and is_ok(args["segment"], 1, (np.int32, np.int64))
        and n_segments >= 0
        and (segment < n_segments).all()
    )
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}
    trace("segment_mean", **args, n_segments=n_segments)
    if not valid:
        try:
            _core.segment_mean(args["values"], args["segment"], n_segments)
        except CLEAN_ERRORS:
            unchanged(before, args)
            return
        raise AssertionError("accepted invalid arguments")
    mean, count = _core.segment_mean(args["values"], args["segment"], n_segments)
    mean_ref, count_ref = ref.segment_mean(values, segment, n_segments)
    assert np.array_equal(count, count_ref)
    assert_close(mean, mean_ref, 1e-9 * np.maximum(1, np.abs(np.nan_to_num(mean_ref))), "mean")
    unchanged(before, args)


@PROPERTY
@given(st.data())
def prop_selection(data):
    draw = data.draw
    n = draw(st.integers(0, 16))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = floats_with_specials(draw, (n,), dtype, -1e6, 1e6)
    xv = variant(x, draw(st.sampled_from(INPUT_VARIANTS)), np.int64)
    x_ok = is_ok(xv, 1, (np.float32, np.float64))
    before = xv.copy() if isinstance(xv, np.ndarray) else None

    def refused(call, *args):
        trace(call.__name__, *args)
        try:
            call(*args)
        except CLEAN_ERRORS:
            return
        raise AssertionError(f"{call.__name__} accepted invalid arguments")

    q = draw(hnp.arrays(np.float64, draw(st.integers(0, 5)), elements=st.floats(0, 1)))
    q_bad = draw(st.sampled_from([None] * 3 + [-0.1, 1.5, math.nan]))
    if q_bad is not None and q.size:
        q[0] = q_bad
    qv = variant(q, draw(st.sampled_from(INPUT_VARIANTS)), np.float32)
    trace("nan_quantiles", xv, qv)
    if x_ok and is_ok(qv, 1, (np.float64,)) and (q_bad is None or not q.size):
        got = _core.nan_quantiles(xv, qv)
        expected = np.array([ref.exact_quantile(x, v) for v in q])
        defined = ~np.isnan(expected)  # NaN: no data, or between -inf and +inf
        # The interpolation between two order statistics may round differently (1 ulp).
        tol = 1e-12 * np.maximum(1, np.abs(np.nan_to_num(expected[defined])))
        assert_close(got[defined], expected[defined], tol, "nan_quantiles")
    else:
        refused(_core.nan_quantiles, xv, qv)

    lo, hi = sorted(draw(st.lists(st.floats(-2e6, 2e6), min_size=2, max_size=2)))
    trace("interval_mask", xv, lo, hi)
    if x_ok:
        got = _core.interval_mask(xv, lo, hi)
        assert np.array_equal(got, (x.astype(np.float64) >= lo) & (x.astype(np.float64) <= hi))
        trace("percentile_ranks", xv)
        assert_close(_core.percentile_ranks(xv), ref.percentile_ranks(x), 1e-15, "ranks")
    else:
        refused(_core.interval_mask, xv, lo, hi)
        refused(_core.percentile_ranks, xv)
    if before is not None:
        assert np.array_equal(before, xv, equal_nan=True)

    k = draw(st.sampled_from([1, 2, 3, 0]))
    values = st.sampled_from([0.1, 0.5, 0.9, math.nan]) | st.floats(0.001, 0.999)
    ranks = draw(hnp.arrays(np.float64, (k, n), elements=values), label="ranks")
    rv = variant(ranks, draw(st.sampled_from(INPUT_VARIANTS)), np.float32)
    r_ok = is_ok(rv, 2, (np.float64,)) and k >= 1
    trace("mean_rank", rv)
    if r_ok:
        assert_close(_core.mean_rank(rv), ref.mean_rank(ranks), 1e-15, "mean_rank")
    else:
        refused(_core.mean_rank, rv)
    position = draw(st.sampled_from([0.0, 0.5, 0.77, 1.0, 0.3, 0.9, -0.1, 1.1, math.nan]))
    n_valid = int((~np.isnan(ranks).any(axis=0)).sum()) if k else 0
    keep = draw(
        st.one_of(
            st.integers(0, n_valid), st.integers(0, n_valid), st.sampled_from([-1, n_valid + 1])
        ),
        label="keep",
    )
    seed = draw(st.integers(0, 2**64 - 1))
    trace("band_select", rv, position, keep, seed)
    if r_ok and 0 <= position <= 1 and 0 <= keep <= n_valid:
        mask, width = _core.band_select(rv, position, keep, seed)
        ref_mask, ref_width = ref.band_select(ranks, position, keep, seed, key=_core.tie_key)
        assert np.array_equal(mask, ref_mask) and width == ref_width
    else:
        refused(_core.band_select, rv, position, keep, seed)


def aliasing_cases():
    """Every ``out=`` that overlaps an input, or another output, is refused with a ValueError
    naming both; the inputs stay untouched; an adjacent, non-overlapping buffer is fine."""
    rng = np.random.default_rng(0)
    n = 20_000  # several chunks: the pool's threads read the inputs while outputs are written
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 9, n))]).astype(np.int64)
    ids = rng.integers(0, 500, int(offsets[-1]))
    counts = _core.UnigramCounts()
    counts.add(offsets, ids)
    x = rng.standard_normal((n, 1)).astype(np.float32)  # one column: x.reshape(-1) fits
    x_wide = rng.standard_normal((n, 64)).astype(np.float32)
    t32 = rng.integers(0, 64, n).astype(np.int32)
    buf = np.zeros(4 * n, np.uint8)
    mask_in_buf = buf[:n]
    mask_in_buf[:] = 1
    hidden = rng.standard_normal((300, 1, 8)).astype(np.float32)
    one_token = np.ones((300, 1), np.int64)
    pool_mask = np.ones((300, 4), np.int64)
    t_zero = np.zeros(n, np.int32)
    hidden4 = rng.standard_normal((300, 4, 8)).astype(np.float32)
    entropy_out = np.empty(n, np.float32)

    cases = [
        (
            "out overlaps offsets",
            lambda: _core.information_entropy(offsets, ids, offsets[1:].view(np.float64)),
        ),
        (
            "out overlaps ids",
            lambda: _core.information_entropy(offsets, ids, ids[:n].view(np.float64)),
        ),
        (
            "out overlaps offsets",
            lambda: counts.self_information(offsets, ids, 0.5, offsets[:-1].view(np.float64)),
        ),
        (
            "out overlaps ids",
            lambda: counts.self_information(offsets, ids, 0.5, ids[-n:].view(np.float64)),
        ),
        (
            "entropy_out overlaps logits",
            lambda: _core.row_softmax_entropy(x, None, None, 1.0, x.reshape(-1)),
        ),
        (
            "entropy_out overlaps targets",
            lambda: _core.row_softmax_entropy(x_wide, t32, None, 1.0, t32.view(np.float32)),
        ),
        (
            "nll_out overlaps targets",
            lambda: _core.row_softmax_entropy(x_wide, t32, None, 1.0, None, t32.view(np.float32)),
        ),
        (
            "nll_out overlaps logits",
            lambda: _core.row_softmax_entropy(x, t_zero, None, 1.0, None, x.reshape(-1)),
        ),
        (
            "nll_out overlaps entropy_out",
            lambda: _core.row_softmax_entropy(x_wide, t32, None, 1.0, entropy_out, entropy_out),
        ),
        (
            "entropy_out overlaps mask",
            lambda: _core.row_softmax_entropy(x_wide, None, mask_in_buf, 1.0, buf.view(np.float32)),
        ),
        (
            "out overlaps hidden",
            lambda: _core.mean_pool_normalize(hidden, one_token, hidden[:, 0, :]),
        ),
        (
            "out overlaps mask",
            lambda: _core.mean_pool_normalize(hidden4, pool_mask, pool_mask.view(np.float32)),
        ),
    ]
    snapshot = [a.copy() for a in (offsets, ids, x, x_wide, t32, buf, hidden, pool_mask)]
    for message, call in cases:
        trace(message)
        try:
            call()
        except ValueError as err:
            assert message in str(err), (message, str(err))
            assert "separate array" in str(err), str(err)
        else:
            raise AssertionError(f"not refused: {message}")
    after = (offsets, ids, x, x_wide, t32, buf, hidden, pool_mask)
    for a, b in zip(snapshot, after, strict=True):
        assert np.array_equal(a, b), "an input was written to"

    # Adjacent, not overlapping: accepted, and the results are right.
    trace("adjacent buffers")
    whole = np.zeros(2 * n + 1, np.float64)
    off_in = whole[: n + 1].view(np.int64)
    off_in[:] = offsets
    got = _core.information_entropy(off_in, ids, whole[n + 1 :])
    np.testing.assert_allclose(got, ref.shannon_entropy(offsets, ids), rtol=1e-12, atol=1e-12)
    pair = np.zeros(2 * n, np.float32)
    ent, nll = _core.row_softmax_entropy(x_wide, t32, None, 1.0, pair[:n], pair[n:])
    ent_ref, nll_ref = _core.row_softmax_entropy(x_wide, t32)
    assert np.array_equal(ent, ent_ref) and np.array_equal(nll, nll_ref)
    print("ok")


PROPERTIES = {
    f.__name__: f
    for f in (
        prop_information_entropy,
        prop_unigram_counts,
        prop_row_softmax_entropy,
        prop_mean_pool_normalize,
        prop_segment_mean,
        prop_selection,
        aliasing_cases,
    )
}


# ---------------------------------------------------------------------------------------------
# pytest wrappers


def test_out_buffers_overlapping_inputs_are_refused(child_python, tmp_path):
    run_property(child_python, "aliasing_cases", tmp_path)


@pytest.mark.parametrize("name", [n for n in PROPERTIES if n.startswith("prop_")])
def test_property(child_python, name, tmp_path):
    run_property(child_python, name, tmp_path)


if __name__ == "__main__":
    PROPERTIES[sys.argv[1]]()
