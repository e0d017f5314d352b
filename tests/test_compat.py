"""The versions ``pyproject.toml`` lets users install, against what the plugin uses from them."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: The oldest version of each library that has what the plugin relies on.
NEEDED_FLOORS = {
    # precision.py: torch.cuda.is_bf16_supported(including_emulation=False); compat.py: the fused AdamW on a CPU
    "torch": Version("2.4"),
    # data.py names the row of a .jsonl file whose values disagree in type or that lacks a column
    # (tests/test_data.py); older json builders fail first (pandas' "Trailing data", KeyError)
    "datasets": Version("4.8"),
}


def declared_floor(name: str) -> Version:
    """The lowest version of ``name`` that ``pyproject.toml``'s dependencies allow (its ``>=``)."""
    for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            return max(Version(spec.version) for spec in requirement.specifier if spec.operator == ">=")
    raise AssertionError(f"{name} is not a dependency in {PYPROJECT}")


@pytest.mark.parametrize("name", sorted(NEEDED_FLOORS))
def test_the_declared_floor_has_what_the_plugin_uses(name: str) -> None:
    assert declared_floor(name) >= NEEDED_FLOORS[name]


def test_torch_tells_native_bf16_from_emulated() -> None:
    """The keyword precision.py passes (absent before torch 2.4: a TypeError at every CUDA fine-tune)."""
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters
