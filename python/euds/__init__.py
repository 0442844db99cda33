"""euds: entropy-based unsupervised data selection, with a compiled scoring core."""

from euds._core import EudsError
from euds._version import __version__
from euds.kernels import build_info, num_threads, set_num_threads

__all__ = ["EudsError", "__version__", "build_info", "num_threads", "set_num_threads"]
