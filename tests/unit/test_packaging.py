"""The source layout keeps the standard library's ``operator`` module reachable, and the wheel
ships the product alone (no development kits)."""

from __future__ import annotations

import importlib
import operator
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names inside the wheel built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = out.glob("tiergate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_ships_the_product_and_its_cli(wheel_names: list[str]) -> None:
    for name in ("tiergate/cli.py", "tiergate/controller/handlers.py", "tiergate/store/_dialect.py"):
        assert name in wheel_names


def test_the_wheel_ships_no_development_kit(wheel_names: list[str]) -> None:
    kits = [
        n for n in wheel_names if n.startswith(("tiergate_kits/", "tiergate/devcluster/", "tiergate/drill/"))
    ]
    assert kits == []


def test_the_kits_verbs_are_mounted_only_where_the_kits_import(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiergate import cli

    assert {"dev", "drill"} <= set(cli.verb_apps())
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert not {"dev", "drill"} & set(cli.verb_apps())
