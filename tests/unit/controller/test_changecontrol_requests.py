"""The change-control annotations as the operator reads them, and the CLI's ``--until`` and release key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer

from tiergate.api.annotations import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_RELEASE,
    ANNOTATION_FREEZE_REASON,
    ANNOTATION_FROZEN_BY,
    ANNOTATION_FROZEN_UNTIL,
)
from tiergate.controller.changecontrol import release_key, until_time
from tiergate.controller.reconcile import requests_from
from tiergate.domain.changecontrol import Freeze
from tiergate.domain.revision import revision_of

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def test_requests_carry_the_approval_and_the_freeze() -> None:
    r = requests_from(
        {
            ANNOTATION_APPROVED_RELEASE: "v2",
            ANNOTATION_APPROVED_BY: "alice",
            ANNOTATION_FROZEN_UNTIL: "2026-12-04T00:00:00Z",
            ANNOTATION_FREEZE_REASON: "incident 42",
            ANNOTATION_FROZEN_BY: "bob",
        }
    )
    assert (r.approved_release, r.approved_by) == ("v2", "alice")
    assert r.freeze == Freeze(datetime(2026, 12, 4, tzinfo=UTC), "incident 42", "bob")
    assert requests_from({}).freeze is None and requests_from({}).approved_release is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW + timedelta(hours=2)),
        ("90m", NOW + timedelta(minutes=90)),
        ("2026-12-07T09:00:00+11:00", datetime(2026, 12, 6, 22, 0, tzinfo=UTC)),
        ("2026-12-04T00:00:00Z", datetime(2026, 12, 4, tzinfo=UTC)),
        ("2026-12-04T00:00:00", datetime(2026, 12, 4, tzinfo=UTC)),
    ],
)
def test_until_is_a_time_or_a_duration_from_now(text: str, expected: datetime) -> None:
    assert until_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-01T00:00:00Z"])
def test_until_refuses_nonsense_and_the_past(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        until_time(text, NOW)


def test_the_approved_release_key_is_the_one_the_operator_gates_on() -> None:
    template = {"spec": {"containers": [{"name": "w", "image": "tiergate:2"}]}}
    spec = {
        "fleet": "f",
        "order": 1,
        "trafficClass": "standard",
        "template": template,
        "healthGate": {"readinessOnly": True},
    }
    assert release_key({"spec": spec}) == revision_of(template)
    assert release_key({"spec": {**spec, "release": "v1.42.0"}}) == "v1.42.0"
