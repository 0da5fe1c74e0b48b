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
