"""The annotations on a SenderTier that on-call writes and the operator obeys.

They are user-facing API, like the CRD's fields: `tiergate oncall` writes them, the reconcile
loop reads them, the runbook and the Argo CD health check name them.
"""

from __future__ import annotations

from tiergate.api.v1alpha1 import GROUP

ANNOTATION_PAUSED = f"{GROUP}/paused"
ANNOTATION_RETRY = f"{GROUP}/retry"
ANNOTATION_PROMOTE = f"{GROUP}/promote"
ANNOTATION_ABORT = f"{GROUP}/abort"
ANNOTATION_UNTESTED_RELEASE = f"{GROUP}/untested-release"
ANNOTATION_APPROVED_RELEASE = f"{GROUP}/approved-release"
ANNOTATION_APPROVED_BY = f"{GROUP}/approved-by"
ANNOTATION_FROZEN_UNTIL = f"{GROUP}/frozen-until"
ANNOTATION_FREEZE_REASON = f"{GROUP}/freeze-reason"
ANNOTATION_FROZEN_BY = f"{GROUP}/frozen-by"
