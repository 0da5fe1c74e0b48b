"""A sender process loads only what it serves with: the ingest API no CRD models, no
connector configuration and no SMPP library; a worker no CRD models.

Each module loaded at start stays resident and is walked by every full garbage collection:
the three issues' imports had taken the ingest API from 32 to 50 MiB before it served a
request (62 to 74 MiB in `bench/sender_bench.py`).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tiergate.api.v1alpha1", "pydantic", "aiosmpplib", "tiergate.sender.connectors.config")


def loaded_by(module: str) -> set[str]:
    """Which of `HEAVY` importing `module` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in out.stdout.strip().split(",") if m}


def test_the_ingest_api_loads_no_crd_models_no_connector_config_and_no_smpp_library() -> None:
    assert loaded_by("tiergate.sender.api") == set()


@pytest.mark.parametrize("module", ["tiergate.sender.service", "tiergate.sender.worker"])
def test_a_worker_loads_no_crd_models(module: str) -> None:
    assert "tiergate.api.v1alpha1" not in loaded_by(module)


def test_the_api_package_still_gives_its_models_on_first_use() -> None:
    import tiergate.api

    assert tiergate.api.SenderTier.__name__ == "SenderTier"
    assert tiergate.api.API_VERSION.endswith("/v1alpha1")
