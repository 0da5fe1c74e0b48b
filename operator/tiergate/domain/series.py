"""Names of the sender's counters that the health checks query, in one place.

`tiergate.sender.metrics` registers them and `tiergate.domain.checks` writes its queries over
them. This module imports nothing, so a sender process gets the names without the CRD models
that `checks` needs.
"""

SUBMITS_COUNTER = "tiergate_sender_submits"
DISCARDS_COUNTER = "tiergate_sender_discards"
