"""docs/integrations.md examples run as tests: every ```python block on its own, from the
repository root, as test_readme runs the README's (each block is self-contained)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "integrations.md"
# Frameworks a block may need: without them the block is skipped, not failed.
OPTIONAL = ("datatrove", "datasets", "pandas", "ray", "torch")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def needs(block: str) -> list[str]:
    return [m for m in OPTIONAL if re.search(rf"^(import|from) {m}\b", block, flags=re.M)]


def test_doc_has_an_example_per_framework() -> None:
    blocks = python_blocks()
    for framework in ("datatrove", "datasets", "pandas", "ray"):
        assert any(framework in needs(b) for b in blocks), f"no {framework} example"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_doc_example_runs(
    index: int, monkeypatch: pytest.MonkeyPatch, smollm2: object, embedder: object
) -> None:
    block = python_blocks()[index]
    for module in needs(block):
        pytest.importorskip(module)
    if "datatrove" in needs(block):
        pytest.importorskip("orjson")  # datatrove's JSONL reader and writer
    # The examples use paths relative to the repository root, as a reader would.
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        exec(compile(block, f"docs/integrations.md[{index}]", "exec"), namespace)
    finally:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():  # a failed Ray example leaves no cluster
            ray.shutdown()
    assert os.getcwd() == str(ROOT)
