"""The kernel thread pool and the shared objects of ``euds._core`` under threads and fork.

Every scenario that could deadlock or crash runs in a child interpreter with a timeout, so a
regression fails its test instead of hanging or killing the test run: a ``fork()``ed child
(``os.fork``, multiprocessing's fork start method) running threaded kernels,
``set_num_threads`` racing running kernels, and one ``UnigramCounts`` hammered by several
Python threads. The bounds of ``set_num_threads`` are checked in process.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import numpy as np
import pytest

import euds
from euds import _core, kernels

# Generous: each child does well under a second of work on an idle machine; the margin covers a
# loaded CI box and the sanitizer build (make test-sanitize), which is several times slower.
CHILD_TIMEOUT = 240


def run_child(
    python: str, code: str, env: dict[str, str] | None = None, timeout: float = CHILD_TIMEOUT
) -> str:
    """Runs ``code`` in a fresh interpreter; fails the test on a non-zero exit, a signal or a
    timeout (a deadlock), and returns its stdout."""
    try:
        proc = subprocess.run(
            [python, "-X", "faulthandler", "-c", textwrap.dedent(code)],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"child timed out after {timeout} s (deadlock?); stderr:\n{err.stderr}")
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        pytest.fail(f"child failed ({how}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def restore_threads():
    before = _core.num_threads()
    yield
    _core.set_num_threads(before)


# Shared by the child scripts: inputs large enough to be cut into many chunks (so the pool's
# workers take part), and the results of a first, threaded run in the parent.
_SETUP = """
import os, signal, sys, threading, time
import numpy as np
from euds import _core

rng = np.random.default_rng(0)
X = rng.standard_normal((3000, 257)).astype(np.float32)  # 255 rows per chunk: 12 chunks
T = rng.integers(0, 257, 3000)
LENGTHS = rng.integers(0, 12, 20_000)  # 4096 samples per chunk: 5 chunks
OFFSETS = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
IDS = rng.integers(0, 300, int(OFFSETS[-1])).astype(np.int32)


def kernels_ok(expected):
    ent, nll = _core.row_softmax_entropy(X, T)
    info = _core.information_entropy(OFFSETS, IDS)
    return (
        np.array_equal(ent, expected[0])
        and np.array_equal(nll, expected[1])
        and np.array_equal(info, expected[2], equal_nan=True)
    )


def results():
    return (*_core.row_softmax_entropy(X, T), _core.information_entropy(OFFSETS, IDS))


def wait_child(pid, timeout=60.0):
    # Polls, so a deadlocked child is killed here rather than left behind.
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "deadlocked"
        time.sleep(0.01)
"""


# ---------------------------------------------------------------------------------------------
# fork


def test_kernels_run_in_a_forked_child(child_python):
    """The parent's workers do not exist in a fork()ed child: the child gets a fresh pool
    (before the fix it waited forever for the parent's workers)."""
    out = run_child(
        child_python,
        _SETUP
        + """
_core.set_num_threads(4)
expected = results()  # the parent's pool now has 3 workers
for round in range(3):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = kernels_ok(expected)
            _core.set_num_threads(3)  # stops the child's own workers, never the parent's
            ok = ok and kernels_ok(expected) and _core.num_threads() == 3
            _core.set_num_threads(4)
            code = 0 if ok and kernels_ok(expected) else 2
        finally:
            os._exit(code)
    status = wait_child(pid)
    assert status == 0, f"round {round}: child {status}"
    assert _core.num_threads() == 4
    assert kernels_ok(expected), "the parent's pool broke after fork"
print("ok")
""",
    )
    assert out.strip().endswith("ok")


def test_kernels_run_in_multiprocessing_fork_workers(child_python):
    """What ``datasets.map(num_proc=...)`` does: a multiprocessing pool forked from a process
    whose kernel pool is running."""
    out = run_child(
        child_python,
        _SETUP
        + """
import multiprocessing

_core.set_num_threads(3)
expected = results()


def work(i):
    if i % 2:
        _core.set_num_threads(2)
    return kernels_ok(expected) and _core.num_threads() in (2, 3)


with multiprocessing.get_context("fork").Pool(2) as pool:
    got = pool.map_async(work, range(6)).get(timeout=60)  # raises on a deadlock
assert got == [True] * 6, got
print("ok")
""",
    )
    assert out.strip().endswith("ok")


def test_fork_while_another_thread_runs_kernels(child_python):
    """A fork() that lands while another thread holds the pool (its locks copied locked into
    the child) still leaves the child a working pool."""
    out = run_child(
        child_python,
        _SETUP
        + """
_core.set_num_threads(4)
expected = results()
stop = threading.Event()
errors = []


def busy():
    while not stop.is_set():
        if not kernels_ok(expected):
            errors.append("parent kernel result changed")


thread = threading.Thread(target=busy)
thread.start()
try:
    for round in range(6):
        time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if kernels_ok(expected) and kernels_ok(expected) else 2
            finally:
                os._exit(code)
        status = wait_child(pid)
        assert status == 0, f"round {round}: child {status}"
finally:
    stop.set()
    thread.join()
assert not errors, errors
print("ok")
""",
    )
    assert out.strip().endswith("ok")


def test_fork_waits_for_compute_that_holds_a_lock(child_python):
    """fork() waits for every kernel running without the GIL: one that holds a counter's lock
    through the fork would leave the child that lock held by a thread it does not have (before
    ComputeScope the child hung at its first use of the counter, most rounds)."""
    out = run_child(
        child_python,
        _SETUP
        + """
counts = _core.UnigramCounts()
big_offsets = np.array([0, 2_000_000], np.int64)
big_ids = rng.integers(0, 5000, 2_000_000).astype(np.int64)  # add() holds the lock throughout
one = (np.array([0, 1], np.int64), np.array([7], np.int64))
started = threading.Event()
stop = threading.Event()


def busy():
    while not stop.is_set():
        counts.add(big_offsets, big_ids)
        started.set()


thread = threading.Thread(target=busy)
thread.start()
started.wait()
try:
    for round in range(8):
        time.sleep(0.003 * round)  # lands at different points of the busy thread's add()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                before = counts.total
                counts.add(*one)
                code = 0 if counts.total == before + 1 and before % 2_000_000 == 0 else 2
            finally:
                os._exit(code)
        status = wait_child(pid, timeout=30.0)
        assert status == 0, f"round {round}: child {status}"
finally:
    stop.set()
    thread.join()
print("ok")
""",
    )
    assert out.strip().endswith("ok")


# ---------------------------------------------------------------------------------------------
# set_num_threads while kernels run


def test_set_num_threads_races_running_kernels(child_python):
    """Thread counts changed from one thread while others run kernels: every result stays
    exact and nothing deadlocks (before the fix a job could wait for workers that a concurrent
    set_num_threads had just stopped)."""
    out = run_child(
        child_python,
        _SETUP
        + """
_core.set_num_threads(4)
expected = results()
stop = threading.Event()
errors = []
calls = [0]


def busy():
    while not stop.is_set():
        if not kernels_ok(expected):
            errors.append("result changed")
        calls[0] += 1


threads = [threading.Thread(target=busy) for _ in range(3)]
for t in threads:
    t.start()
deadline = time.monotonic() + 2.0
i = 0
while time.monotonic() < deadline:
    _core.set_num_threads((8, 2, 0, 3, 1, 5)[i % 6])
    i += 1
    if i % 50 == 0:
        time.sleep(0.001)
stop.set()
for t in threads:
    t.join()
assert not errors, errors[:3]
assert calls[0] > 0
print("ok", i, calls[0])
""",
    )
    assert out.strip().startswith("ok")


def test_set_num_threads_does_not_wait_for_a_running_kernel(child_python):
    """set_num_threads takes effect for the next job: it neither blocks on a running kernel nor
    holds the GIL meanwhile (before the fix it waited, GIL held, until the kernel finished)."""
    out = run_child(
        child_python,
        _SETUP
        + """
# Ids above the dense-table bound take the sorting path: a slow, threaded kernel.
big_lengths = np.full(8200, 2500)
big_offsets = np.concatenate([[0], np.cumsum(big_lengths)]).astype(np.int64)
big_ids = rng.integers(1 << 21, 1 << 30, int(big_offsets[-1])).astype(np.int32)
_core.set_num_threads(2)
start = time.monotonic()
expected = _core.information_entropy(big_offsets, big_ids)
duration = time.monotonic() - start
result = {}
entered = threading.Event()


def long_kernel():
    entered.set()
    result["info"] = _core.information_entropy(big_offsets, big_ids)


thread = threading.Thread(target=long_kernel)
thread.start()
entered.wait()
time.sleep(0.05 * duration)  # let the job start
t0 = time.monotonic()
_core.set_num_threads(3)
blocked = time.monotonic() - t0
thread.join()
assert np.array_equal(result["info"], expected, equal_nan=True)
assert _core.num_threads() == 3
assert blocked < 0.3 * duration, f"blocked {blocked:.3f} s of a {duration:.3f} s job"
assert np.array_equal(_core.information_entropy(big_offsets, big_ids), expected, equal_nan=True)
print("ok", round(blocked, 4), round(duration, 3))
""",
    )
    assert out.strip().startswith("ok")


# ---------------------------------------------------------------------------------------------
# set_num_threads bounds


@pytest.mark.parametrize("n", [-1, -64, 1025, 100_000, 2**31, 2**63, -(2**63)])
def test_set_num_threads_rejects_absurd_values(n, restore_threads):
    _core.set_num_threads(2)
    for set_threads in (euds.set_num_threads, kernels.set_num_threads, _core.set_num_threads):
        with pytest.raises(ValueError, match="set_num_threads"):
            set_threads(n)
    assert _core.num_threads() == 2


@pytest.mark.parametrize("n", [1.5, "4", None])
def test_set_num_threads_rejects_non_integers(n, restore_threads):
    with pytest.raises(TypeError):
        euds.set_num_threads(n)


def test_set_num_threads_range(restore_threads):
    assert kernels.MAX_THREADS == _core.MAX_THREADS == 1024
    euds.set_num_threads(kernels.MAX_THREADS)  # workers start only when a kernel needs them
    assert euds.num_threads() == kernels.MAX_THREADS
    euds.set_num_threads(np.int64(3))
    assert euds.num_threads() == 3
    euds.set_num_threads(0)  # the default
    assert 1 <= euds.num_threads() <= kernels.MAX_THREADS


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100000", "1024"), ("-3", "default"), ("x", "default"), ("2", "2"), ("3 ", "3")],
)
def test_euds_num_threads_environment_is_bounded(child_python, value, expected):
    out = run_child(
        child_python,
        """
        import os
        from euds import _core
        print(_core.num_threads(), len(os.sched_getaffinity(0)), os.cpu_count())
        """,
        env={"EUDS_NUM_THREADS": value},
        timeout=60,
    )
    got, *_ = (int(v) for v in out.split())
    if expected == "default":
        assert 1 <= got <= max(os.cpu_count() or 1, 1)
    else:
        assert got == int(expected)


# ---------------------------------------------------------------------------------------------
# UnigramCounts shared between threads


def test_unigram_counts_shared_between_threads(child_python):
    """add (which grows the table with the GIL released), self_information, merge and the
    readers from several threads on one counter: no crash, exact final counts."""
    out = run_child(
        child_python,
        """
        import threading
        import numpy as np
        from euds import _core

        N_THREADS, ROUNDS = 4, 12
        rng = np.random.default_rng(1)
        batches = {}
        for k in range(N_THREADS):
            for r in range(ROUNDS):
                # The vocabulary grows with every batch: each add() reallocates the table.
                top = 1000 + (r * N_THREADS + k) * 4000
                ids = rng.integers(0, top, 150_000).astype((np.int32, np.int64)[k % 2])
                ids[-1] = top - 1
                offsets = np.array([0, 50_000, 100_000, len(ids)], np.int64)
                batches[k, r] = (offsets, ids)
        extra = _core.UnigramCounts()
        extra.add(np.array([0, 3], np.int64), np.array([5, 5, 70_000], np.int64))
        query = (np.array([0, 2, 5], np.int64), np.array([1, 5, 7, 7, 900], np.int64))

        shared = _core.UnigramCounts()
        shared.add(np.array([0, 1], np.int64), np.array([1], np.int64))
        errors = []
        start = threading.Barrier(N_THREADS)

        def worker(k):
            try:
                start.wait()
                for r in range(ROUNDS):
                    shared.add(*batches[k, r])
                    si = shared.self_information(*query, 0.5)
                    if not np.isfinite(si).all():
                        errors.append(f"non-finite self-information {si}")
                    if r % 4 == k % 4:
                        shared.merge(extra)
                    shared.counts()
                    shared.total
            except Exception as err:
                errors.append(repr(err))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(N_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]

        merges = sum(1 for k in range(N_THREADS) for r in range(ROUNDS) if r % 4 == k % 4)
        all_ids = np.concatenate([b[1].astype(np.int64) for b in batches.values()] + [[1]])
        expected = np.bincount(all_ids).astype(np.uint64)
        expected_extra = np.bincount([5, 5, 70_000], minlength=len(expected)).astype(np.uint64)
        expected = expected + np.uint64(merges) * expected_extra
        got = shared.counts()
        assert len(got) == len(expected), (len(got), len(expected))
        assert np.array_equal(got, expected), "counts differ"
        assert shared.total == int(expected.sum())
        assert shared.vocab_size == len(expected)
        print("ok")
        """,
    )
    assert out.strip().endswith("ok")


def test_unigram_counts_cross_merges_do_not_deadlock(child_python):
    """a.merge(b) and b.merge(a) at the same time, and a.merge(a): no deadlock, and every
    counter stays consistent (total == sum of counts)."""
    out = run_child(
        child_python,
        """
        import threading
        import numpy as np
        from euds import _core

        a, b = _core.UnigramCounts(), _core.UnigramCounts()
        a.add(np.array([0, 3], np.int64), np.array([1, 2, 2], np.int64))
        b.add(np.array([0, 2], np.int64), np.array([3, 9], np.int64))

        def cross(x, y):
            for _ in range(300):
                x.merge(y)
                if x.total > 10**12:  # the totals grow like Fibonacci numbers
                    break

        threads = [threading.Thread(target=cross, args=p) for p in ((a, b), (b, a))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in (a, b):
            assert int(c.counts().sum()) == c.total
        before = a.counts()
        a.merge(a)
        assert np.array_equal(a.counts(), before * np.uint64(2))
        print("ok")
        """,
        timeout=120,
    )
    assert out.strip().endswith("ok")
