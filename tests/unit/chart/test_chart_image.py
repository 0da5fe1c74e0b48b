"""The chart's image fields and pod user match the image the project builds, online and offline."""

from __future__ import annotations

import re

import yaml
from tests.unit.chart.chart_helm import CHART, ROOT


def instructions(path: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", (ROOT / path).read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_default_image_is_the_one_the_project_builds() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (values["image"]["repository"], values["image"]["tag"]) == ("tiergate", "dev")
    tiergate_image = (ROOT / "scripts" / "kind" / "lib.sh").read_text()
    assert 'TIERGATE_IMAGE="${TIERGATE_IMAGE:-tiergate:dev}"' in tiergate_image


def test_images_run_as_the_chart_user_from_a_multi_stage_pinned_build() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    for path in ("images/Dockerfile", "images/tiergate/Dockerfile.offline"):
        steps = instructions(path)
        froms = [rest for word, rest in steps if word == "FROM"]
        assert len(froms) == 2 and froms[0].endswith(" AS build"), path
        (user,) = [rest for word, rest in steps if word == "USER"]
        assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}", path
        (entry,) = [rest for word, rest in steps if word == "ENTRYPOINT"]
        assert entry.endswith('"tiergate"]'), path
    args = dict(rest.split("=", 1) for word, rest in instructions("images/Dockerfile") if word == "ARG")
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
