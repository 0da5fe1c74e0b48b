"""The source layout keeps the standard library's ``operator`` module reachable."""

from __future__ import annotations

import importlib
import operator
import sys
from pathlib import Path


def test_import_operator_is_the_standard_library() -> None:
    assert hasattr(operator, "itemgetter")
    origin = Path(operator.__file__ or "")
    assert "site-packages" not in origin.parts
    assert origin.parent == Path(sys.modules["os"].__file__ or "").parent


def test_operator_folder_is_not_a_package() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "operator" / "tiergate" / "__init__.py").exists()
    assert not (root / "operator" / "__init__.py").exists()


def test_tiergate_imports() -> None:
    module = importlib.import_module("tiergate")
    assert module.__version__
