"""The revision of a tier: a stable hash of its pod template.

Two templates that serialise to the same canonical JSON are one revision, whatever the key order
in the YAML a user applied; any change to the template is a new revision that must be gated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

REVISION_LENGTH = 10


def revision_of(template: Mapping[str, Any]) -> str:
    """Return the revision (10 hex characters) of a pod template."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
