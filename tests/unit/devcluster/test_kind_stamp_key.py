"""The kind steps' stamp keys depend on their inputs' contents, not on where the cache or checkout is.

A cache copied to another machine's ``~/.cache/tiergate``, or the same cache used from another
checkout, must find its images up to date.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[3] / "scripts" / "kind" / "lib.sh"


def stamp_key(cache: Path, *items: str) -> str:
    """lib.sh's stamp_key of the items, with TIERGATE_CACHE at ``cache``."""
    done = subprocess.run(
        ["bash", "-c", 'source "$0"; stamp_key "$@"', str(LIB), *items],
        env={"PATH": "/usr/bin:/bin", "HOME": str(cache), "TIERGATE_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_the_same_contents_elsewhere_give_the_same_key(tmp_path: Path) -> None:
    keys = []
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        (tmp_path / where / ".kubelet.stamp").write_text(
            "k8s.io/kubernetes@v1.35.8 k8s.io/kubernetes/cmd/kubelet\n"
        )
        keys.append(stamp_key(tmp_path / where, str(tmp_path / where / ".kubelet.stamp"), "3.10.1"))
    assert keys[0] == keys[1]
    assert len(keys[0]) == 16


def test_other_contents_give_another_key(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("one\n")
    before = stamp_key(tmp_path, str(tmp_path / "f"))
    (tmp_path / "f").write_text("two\n")
    assert stamp_key(tmp_path, str(tmp_path / "f")) != before
    assert stamp_key(tmp_path, "literal-a") != stamp_key(tmp_path, "literal-b")
