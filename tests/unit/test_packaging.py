"""The source layout keeps the standard library's ``operator`` module reachable, and the wheel
ships the product alone (no development kits)."""

from __future__ import annotations

import importlib
import operator
import os
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
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The product's wheel and the test SMSC's (``kits/smsc``), built from this checkout."""
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
            str(ROOT / "kits" / "smsc"),
        ],
        check=True,
        timeout=300,
    )
    [product] = out.glob("tiergate-*.whl")
    [smsc] = out.glob("tiergate_smsc-*.whl")
    return {"product": product, "smsc": smsc}


@pytest.fixture(scope="module")
def wheel_names(wheels: dict[str, Path]) -> list[str]:
    """The file names inside the product's wheel."""
    with zipfile.ZipFile(wheels["product"]) as archive:
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

    assert {"dev", "drill", "smsc"} <= set(cli.verb_apps())
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert not {"dev", "drill", "smsc"} & set(cli.verb_apps())


def _installed_verbs(wheels: list[Path], target: Path) -> list[str]:
    """The verbs ``tiergate`` mounts where only these wheels are installed (the checkout's
    packages off the path: site is off, the dependencies come from this virtualenv)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            *map(str, wheels),
        ],
        check=True,
        timeout=300,
    )
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "typer").is_dir())
    script = "import sys; from tiergate import cli; cli.build_app(); print(' '.join(sorted(cli.verb_apps())))"
    done = subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-S", "-c", script],
        env={"PYTHONPATH": f"{target}{os.pathsep}{deps}", "PATH": os.environ.get("PATH", "")},
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.split()


def test_an_installed_product_has_no_kit_verb_and_the_smsc_dist_adds_only_smsc(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    product = _installed_verbs([wheels["product"]], tmp_path / "product")
    with_smsc = _installed_verbs([wheels["product"], wheels["smsc"]], tmp_path / "with-smsc")
    assert "sender" in product
    assert not {"dev", "drill", "smsc"} & set(product)
    assert set(with_smsc) - set(product) == {"smsc"}
