"""The missing-tool rule: under CI=true a missing tool fails naming it, elsewhere it skips naming its command.

The last two tests run pytest itself on a small suite with the rule's plugin, as the real suite does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.plugins.tools import in_ci, require_module, require_tool

ROOT = Path(__file__).resolve().parents[2]
ABSENT = "tiergate-no-such-tool"
SUITE = f'''
import pytest
from tests.plugins.tools import require_tool

def test_needs_a_tool():
    require_tool("{ABSENT}", "scripts/setup.sh (the setup command)")

@pytest.mark.e2e
def test_opt_in():
    pass

def test_plain():
    pass
'''


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("", False), ("false", False)]
)
def test_ci_is_read_from_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def _outcome(call: Callable[[], object]) -> tuple[str, str]:
    """What a call did to the test: failed or skipped (with the message), or returned."""
    try:
        call()
    except pytest.fail.Exception as exc:
        return "failed", str(exc)
    except pytest.skip.Exception as exc:
        return "skipped", str(exc)
    return "returned", ""


def test_under_ci_a_missing_tool_fails_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    helm = _outcome(lambda: require_tool("helm", "scripts/setup.sh", path=tmp_path / "helm"))
    assert helm == (
        "failed",
        "helm is missing (CI=true makes that a failure, not a skip); provides it: scripts/setup.sh",
    )
    assert _outcome(lambda: require_tool(ABSENT))[0] == "failed"
    module = _outcome(lambda: require_module("tiergate_absent_module"))
    assert module[0] == "failed"
    assert module[1].startswith("Python module tiergate_absent_module is missing")


def test_outside_ci_a_missing_tool_skips_with_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    helm = _outcome(lambda: require_tool("helm", "tiergate dev build --group test", path=tmp_path / "helm"))
    assert helm == ("skipped", "helm is missing; provides it: tiergate dev build --group test")


def test_a_present_tool_is_returned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    tool = tmp_path / "helm"
    tool.write_text("#!/bin/sh\n")
    assert require_tool("helm", path=tool) == str(tool)
    assert (
        require_tool("sh")
        == subprocess.run(["sh", "-c", "command -v sh"], capture_output=True, text=True).stdout.strip()
    )
    assert require_module("json").__name__ == "json"


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n    e2e: opt-in\n"
    )
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.plugins.tools",
            "-p",
            "no:cacheprovider",
            "-rs",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_ci_run_fails_the_test_missing_a_tool_and_leaves_e2e_out(tmp_path: Path) -> None:
    done = _pytest(tmp_path, CI="true")
    assert "1 failed, 1 passed, 1 deselected" in done.stdout, done.stdout
    assert f"{ABSENT} is missing (CI=true makes that a failure, not a skip)" in done.stdout


def test_elsewhere_it_skips_naming_the_command_and_e2e_runs_only_when_asked(tmp_path: Path) -> None:
    done = _pytest(tmp_path)
    assert "1 passed, 1 skipped, 1 deselected" in done.stdout, done.stdout
    assert f"{ABSENT} is missing; provides it: scripts/setup.sh (the setup command)" in done.stdout
    asked = _pytest(tmp_path, TIERGATE_E2E="1")
    assert "2 passed, 1 skipped" in asked.stdout, asked.stdout
