"""The ``tiergate`` entry point loads only the layer a verb needs, and still lists every verb."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tiergate.cli import CHANGE_CONTROL_VERBS, ONCALL_VERBS, SUB_APPS, build_app

HEAVY = ("kopf", "kubernetes", "aiohttp")


def loaded_after(verb: str) -> set[str]:
    """The heavy modules imported once the command tree for ``verb`` is built."""
    code = (
        "import sys; from tiergate.cli import build_app; "
        f"build_app({verb!r}); print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in out.stdout.strip().split(",") if m}


@pytest.mark.parametrize("verb", ["sender", "replay", "discards", "crd"])
def test_a_verb_outside_the_operator_does_not_import_kopf_or_the_kubernetes_client(verb: str) -> None:
    assert loaded_after(verb) == set()


def test_the_operator_verb_loads_the_operator() -> None:
    assert "kopf" in loaded_after("operator")


def test_help_lists_every_verb() -> None:
    result = CliRunner().invoke(build_app(), ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for verb in [*SUB_APPS, *ONCALL_VERBS, *CHANGE_CONTROL_VERBS, "crd"]:
        assert f" {verb} " in result.output


def test_crd_alone_is_still_a_sub_command() -> None:
    result = CliRunner().invoke(build_app("crd"), ["crd"])
    assert result.exit_code == 0
    assert "kind: CustomResourceDefinition" in result.output
