"""README examples run as tests: every ```python block, in order, in one namespace."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_examples() -> None:
    assert python_blocks(), "README.md lost its Python examples"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(
    index: int, monkeypatch: pytest.MonkeyPatch, smollm2: object, embedder: object
) -> None:
    """(The models prepared once by the fixtures: the examples score with them.)"""
    # The examples use paths relative to the repository root, as a reader would.
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in python_blocks()[: index + 1]:
        exec(compile(block, f"README.md[{index}]", "exec"), namespace)
    assert os.getcwd() == str(ROOT)
