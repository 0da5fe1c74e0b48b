"""The SenderTier API, version v1alpha1: the one source of truth for the CRD and the operator.

The CRD in ``crds/sendertier.yaml`` is generated from these models (``tiergate crd``), so the schema
the API server enforces and the models the operator parses cannot drift apart; a test regenerates it
and compares. Field descriptions here are what ``kubectl explain`` prints.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tiergate.api.durations import DURATION_PATTERN

GROUP = "tiergate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SenderTier"
PLURAL = "sendertiers"
SINGULAR = "sendertier"
SHORT_NAMES = ["st"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra={"x-tiergate-duration": True},
    ),
]


class _Spec(BaseModel):
    """Base for spec models: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _Status(BaseModel):
    """Base for status models: tolerant of fields written by newer operators."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class OnNoData(enum.StrEnum):
    """What a Prometheus check concludes when its query returns no sample."""

    INCONCLUSIVE = "Inconclusive"
    PASS = "Pass"
    FAIL = "Fail"


class OnFailure(enum.StrEnum):
    """What the operator does with a tier whose health gate fails."""

    ROLLBACK = "Rollback"
    PAUSE = "Pause"


class OnFleetHalt(enum.StrEnum):
    """What a tier does when another tier of its fleet halts on a release this tier runs."""

    ROLLBACK = "Rollback"
    HOLD = "Hold"


class Approval(enum.StrEnum):
    """Whether each new release waits at this tier for a person's approval."""

    REQUIRED = "Required"
    NOT_REQUIRED = "NotRequired"


class Weekday(enum.StrEnum):
    """A day of the week, as deploy windows name it."""

    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


class During(enum.StrEnum):
    """Where a tier was in a release's life when it halted or was rolled back."""

    PROGRESS = "Progress"
    BAKE = "Bake"
    WATCH = "Watch"
    SIGNED_OFF = "SignedOff"


class Phase(enum.StrEnum):
    """Where a tier is in its rollout; ``kubectl get st`` shows it."""

    PENDING = "Pending"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    BAKING = "Baking"
    SIGNED_OFF = "SignedOff"
    HALTED = "Halted"
    ROLLED_BACK = "RolledBack"


# A rollout in progress (the Deployment on its way to the spec's revision), and a halt.
LIVE_PHASES = (Phase.PROGRESSING, Phase.BAKING)
HALTED_PHASES = (Phase.HALTED, Phase.ROLLED_BACK)


class MinEvidence(_Spec):
    """A guard that keeps a check from judging before the tier has done enough work."""

    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one number, e.g. the messages this tier attempted on the new "
            "revision; `{tier}`, `{revision}`, `{fleet}`, `{namespace}` and `{trafficClass}` "
            "are substituted."
        ),
    )
    min: float = Field(
        ge=0,
        description="The check is inconclusive until the query returns at least this value.",
    )


class PrometheusCheck(_Spec):
    """A PromQL query whose single value must stay within bounds."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.max) || has(self.min)",
                    "message": "a prometheus check needs max, min or both",
                },
                {
                    "rule": "!has(self.max) || !has(self.min) || self.min <= self.max",
                    "message": "min must not be greater than max",
                },
            ]
        }
    )

    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one number (a scalar or a one-sample vector). `{tier}`, "
            "`{revision}`, `{fleet}`, `{namespace}` and `{trafficClass}` are substituted."
        ),
    )
    max: float | None = Field(default=None, description="Fail when the value is above this.")
    min: float | None = Field(default=None, description="Fail when the value is below this.")
    on_no_data: OnNoData = Field(
        default=OnNoData.INCONCLUSIVE,
        alias="onNoData",
        description=(
            "What an empty result means. Inconclusive (the default) never counts as a pass: "
            "a tier whose metrics are missing is not signed off."
        ),
    )
    min_evidence: MinEvidence | None = Field(
        default=None,
        alias="minEvidence",
        description="Judge only after this much evidence exists; until then inconclusive.",
    )


class HttpCheck(_Spec):
    """A deep HTTP probe of every pod of the tier, counted against a required ratio."""

    port: int = Field(ge=1, le=65535, description="Container port to probe on each pod's IP.")
    path: str = Field(
        default="/readyz",
        pattern=r"^/",
        max_length=1024,
        description="Path to GET; a 2xx answer is a pass for that pod.",
    )
    scheme: Literal["HTTP", "HTTPS"] = Field(default="HTTP", description="HTTP or HTTPS.")
    timeout: Duration = Field(default="2s", description="Timeout of one probe request.")
    min_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        alias="minRatio",
        description="Share of the tier's pods that must answer 2xx for the check to pass.",
    )


class CompareCheck(_Spec):
    """The new revision's error ratio, live, against the tiers still on the old revision."""

    max_increase: float = Field(
        default=0.02,
        ge=0,
        le=1,
        alias="maxIncrease",
        description=(
            "Fail when the new revision's error ratio exceeds the baseline's by more than this "
            "(absolute, 0.02 = two percentage points)."
        ),
    )
    window: Duration = Field(default="2m", description="Rate window of both ratios.")
    min_attempts: int = Field(
        default=50,
        ge=0,
        alias="minAttempts",
        description="Inconclusive until the new revision has attempted this many submits.",
    )


class DiscardBudgetCheck(_Spec):
    """A blast-radius budget: halt once this rollout has discarded more than N messages."""

    max: int = Field(
        ge=0,
        description="Most discards attributed to the new revision of this tier before halting.",
    )


class Check(_Spec):
    """One check of the health stack; exactly one of its kinds is set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "[has(self.prometheus), has(self.http), has(self.compare), "
                        "has(self.discardBudget)].filter(x, x).size() == 1"
                    ),
                    "message": "set exactly one of prometheus, http, compare, discardBudget",
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the check, unique in the tier; shown in status and Events.",
    )
    prometheus: PrometheusCheck | None = Field(default=None, description="A PromQL threshold.")
    http: HttpCheck | None = Field(default=None, description="A deep HTTP probe of each pod.")
    compare: CompareCheck | None = Field(
        default=None, description="The new revision against the tiers still on the old one."
    )
    discard_budget: DiscardBudgetCheck | None = Field(
        default=None,
        alias="discardBudget",
        description="Halt when this rollout has discarded more messages than allowed.",
    )


class HealthGate(_Spec):
    """How a tier's new revision is signed off before the next tier may move."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "duration(self.bake) >= duration(self.interval)",
                    "message": "bake must be at least one interval",
                    "fieldPath": ".bake",
                },
                {
                    "rule": "self.checks.all(c, self.checks.exists_one(d, d.name == c.name))",
                    "message": "check names must be unique",
                    "fieldPath": ".checks",
                },
                {
                    "rule": "self.checks.size() >= 1 || (has(self.readinessOnly) && self.readinessOnly)",
                    "message": (
                        "name at least one check, or set readinessOnly: true to sign off on readiness alone"
                    ),
                    "fieldPath": ".checks",
                },
            ]
        }
    )

    progress_deadline: Duration = Field(
        default="300s",
        alias="progressDeadline",
        description="The new revision's pods must all be Ready within this time, or the tier halts.",
    )
    bake: Duration = Field(
        default="120s",
        description="Every check must keep passing for this long after the pods are Ready.",
    )
    interval: Duration = Field(default="10s", description="Time between two evaluations.")
    settle: Duration = Field(
        default="10s",
        description=(
            "How long a new revision of a tier above order 0 waits, after the operator first sees "
            "it, before it may start: a release applied to the whole fleet at once (kubectl apply "
            "-f, a GitOps sync) reaches every tier in some order, and this is the time for the "
            "lower tiers' changes to be seen, so that no tier starts ahead of them. Raise it when "
            "one sync applies the tiers further apart."
        ),
    )
    watch: Duration = Field(
        default="300s",
        description=(
            "How long the checks keep running after sign-off (every interval, with the same "
            "failureLimit and inconclusive rules as the bake). A failure in the watch halts the "
            "tier and rolls it back to its previous signed-off release, and the fleet policy "
            "(onFleetHalt) applies to every tier running the release. 0s turns the watch off."
        ),
    )
    readiness_only: bool = Field(
        default=False,
        alias="readinessOnly",
        description=(
            "Sign off on pod readiness alone, with no check. Without it the schema refuses an "
            "empty checks list, so that a tier without a health stack is a decision, not an accident."
        ),
    )
    failure_limit: int = Field(
        default=3,
        ge=1,
        le=100,
        alias="failureLimit",
        description="Consecutive failing evaluations that halt the tier.",
    )
    inconclusive_limit: Duration | None = Field(
        default=None,
        alias="inconclusiveLimit",
        description=(
            "How long the stack may stay inconclusive (no data, Prometheus down) before the "
            "tier halts; defaults to progressDeadline."
        ),
    )
    checks: list[Check] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"default": []},
        description=(
            "The health stack: every check must pass for the whole bake (and the watch). At least "
            "one is required unless readinessOnly is true."
        ),
    )
    canary: Canary | None = Field(
        default=None,
        description=(
            "Run each new release first on a few pods of the tier (a Deployment named "
            "<tier>-canary beside the stable one), judged by the same checks on the canary pods' "
            "own series, before the rest of the tier takes it. Workers pull from a shared queue, "
            "so the canary's share of the tier's traffic is its share of the pods. Skipped for "
            "a tier's first release (nothing signed off to run beside) and when the tier has too "
            "few replicas to keep a stable pod."
        ),
    )

    @model_validator(mode="after")
    def _a_check_or_readiness_only(self) -> HealthGate:
        if not self.checks and not self.readiness_only:
            raise ValueError("name at least one check, or set readinessOnly: true")
        return self


class ReplaySpec(_Spec):
    """What happens to the messages a halted revision discarded."""

    auto: bool = Field(
        default=False,
        description=(
            "Replay the discards of a halted revision automatically once this tier is healthy "
            "again; the job is recorded in status."
        ),
    )


HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
HHMM_END = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class DeployWindow(_Spec):
    """When a release may start on this tier: days and wall-clock hours in a named time zone."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.start.matches('{HHMM}')",
                    "message": "start must be HH:MM on a 24-hour clock, 00:00 to 23:59",
                    "fieldPath": ".start",
                },
                {
                    "rule": f"self.end.matches('{HHMM_END}')",
                    "message": "end must be HH:MM on a 24-hour clock, 00:00 to 24:00",
                    "fieldPath": ".end",
                },
                {
                    "rule": "self.start != self.end",
                    "message": "start and end must differ (00:00 to 24:00 is a whole day)",
                    "fieldPath": ".end",
                },
                {
                    "rule": "self.timeZone != ''",
                    "message": "timeZone must name an IANA time zone, e.g. Australia/Sydney or UTC",
                    "fieldPath": ".timeZone",
                },
                {
                    "rule": "self.days.all(d, self.days.exists_one(e, e == d))",
                    "message": "name each day at most once",
                    "fieldPath": ".days",
                },
            ]
        }
    )

    days: list[Weekday] = Field(
        min_length=1,
        max_length=7,
        description=(
            "The days the window opens on: Mon, Tue, Wed, Thu, Fri, Sat, Sun (in timeZone). A window "
            "whose end is not after its start runs overnight into the next day."
        ),
    )
    start: str = Field(
        max_length=5,
        description="Opening time, HH:MM on a 24-hour clock, local to timeZone, e.g. 09:00.",
    )
    end: str = Field(
        max_length=5,
        description=(
            "Closing time, HH:MM (24:00 is the end of the day), local to timeZone, e.g. 15:00. Before "
            "start (22:00 to 02:00): the window closes on the next day. A release already started "
            "when the window closes goes on; the window governs starts only."
        ),
    )
    time_zone: str = Field(
        alias="timeZone",
        max_length=64,
        description=(
            "An IANA time zone, e.g. Australia/Sydney or UTC; the window follows its daylight-saving "
            "changes. A zone the operator does not know makes the spec invalid (condition InvalidSpec)."
        ),
    )

    @field_validator("start")
    @classmethod
    def _start_hhmm(cls, value: str) -> str:
        if not re.match(HHMM, value):
            raise ValueError("start must be HH:MM on a 24-hour clock, 00:00 to 23:59")
        return value

    @field_validator("end")
    @classmethod
    def _end_hhmm(cls, value: str) -> str:
        if not re.match(HHMM_END, value):
            raise ValueError("end must be HH:MM on a 24-hour clock, 00:00 to 24:00")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/London") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> DeployWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ (00:00 to 24:00 is a whole day)")
        return self


class PodTemplate(BaseModel):
    """A PodTemplateSpec for the sender workers, passed to the tier's Deployment as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Labels and annotations of the worker pods (tiergate adds its own labels).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    spec: PodSpecShape = Field(description="The worker pods' spec, a core/v1 PodSpec.")


class PodSpecShape(BaseModel):
    """The part of a PodSpec the schema checks; the rest is kept as written."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    containers: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=16,
        description="The worker containers (core/v1 Container); the first runs the sender worker.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )


PodTemplate.model_rebuild()


class SenderTierSpec(_Spec):
    """The desired state of one tier of sender workers."""

    fleet: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Tiers of one fleet roll out together, one order after another.",
    )
    order: int = Field(
        ge=0,
        le=1000,
        description=(
            "Position in the fleet: lower orders move first (put the least critical traffic "
            "there); tiers with the same order move together."
        ),
    )
    traffic_class: str = Field(
        alias="trafficClass",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="The queue partition this tier's workers serve, e.g. bulk or priority.",
    )
    release: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.:+/@]*$",
        description=(
            "The release key (an image tag, a commit): a tier above the lowest order takes a "
            "release only once every lower-order tier has signed it off. Default: the pod "
            "template's hash, which is the same on every tier only when their templates are. Set "
            "it (the same value on every tier) when the tiers' templates differ on purpose; a "
            "change that keeps it (this tier's own resources or env) rolls out under this tier's "
            "own gate without a new sign-off below."
        ),
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of worker pods.")
    template: PodTemplate = Field(description="Pod template of the tier's sender workers.")
    health_gate: HealthGate = Field(
        alias="healthGate",
        description=(
            "The health stack and timings that sign a new revision off. Required: a tier names its "
            "checks, or says readinessOnly: true."
        ),
    )
    on_failure: OnFailure = Field(
        default=OnFailure.ROLLBACK,
        alias="onFailure",
        description=(
            "Rollback returns the tier to its last signed-off template; Pause leaves it for a "
            "person. Either way the tier is Halted and the fleet stops."
        ),
    )
    on_fleet_halt: OnFleetHalt = Field(
        default=OnFleetHalt.ROLLBACK,
        alias="onFleetHalt",
        description=(
            "What this tier does when another tier of its fleet halts on a release this tier runs "
            "or is rolling out: Rollback (the default) returns it to its last signed-off release "
            "before that one, highest order first; Hold keeps it where it is and only stops the fleet."
        ),
    )
    replay: ReplaySpec = Field(
        default_factory=ReplaySpec,
        description="Replay of the messages a halted revision discarded.",
        json_schema_extra={"default": {}},
    )
    approval: Approval = Field(
        default=Approval.NOT_REQUIRED,
        description=(
            "Required: each new release waits at this tier (phase Waiting, reason AwaitingApproval) "
            "until `tiergate approve` approves that release; an approval is for one release only. "
            "Default NotRequired."
        ),
    )
    deploy_windows: list[DeployWindow] = Field(
        default_factory=list,
        alias="deployWindows",
        max_length=16,
        json_schema_extra={"default": []},
        description=(
            "When a new release may start on this tier; empty (the default) means any time. Outside "
            "every window a release waits (reason OutsideWindow) and the message says when the next "
            "window opens. Rollbacks, aborts and the fleet policy act at any time. Give every tier of "
            "a fleet the same windows to set them for the fleet."
        ),
    )


class Condition(_Status):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        description="Ready, Reconciling, Stalled, SignedOff, Halted, Watching, InvalidSpec or "
        "RollbackTargetMissing (the signed-off template to hold has no ControllerRevision)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase reason from tiergate's Reason list.")
    message: str = Field(default="", description="A human sentence about the transition.")
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The generation this was set for."
    )
    last_transition_time: datetime = Field(
        alias="lastTransitionTime", description="When status last changed."
    )


class CheckStatus(_Status):
    """The last evaluation of one check."""

    name: str = Field(description="The check's name.")
    result: Literal["Pass", "Fail", "Inconclusive"] | None = Field(
        default=None, description="Result of the last evaluation."
    )
    value: float | None = Field(default=None, description="Last observed value.")
    threshold: str | None = Field(default=None, description="The bound it was judged against.")
    passes: int = Field(default=0, description="Evaluations passed during this revision.")
    failures: int = Field(default=0, description="Evaluations failed during this revision.")
    consecutive_failures: int = Field(
        default=0, alias="consecutiveFailures", description="Failures since the last pass."
    )
    last_error: str | None = Field(
        default=None,
        alias="lastError",
        description="Why the last evaluation failed or was inconclusive.",
    )
    last_evaluated: datetime | None = Field(
        default=None, alias="lastEvaluated", description="When it was last evaluated."
    )


class HaltStatus(_Status):
    """Why and when a tier was halted; the replay service targets the window it names."""

    check: str = Field(description="The check that failed, or `progressDeadline`.")
    query: str | None = Field(default=None, description="The query or probe it ran.")
    value: float | None = Field(default=None, description="The value observed.")
    threshold: str | None = Field(default=None, description="The bound it broke.")
    revision: str = Field(description="The bad revision.")
    release: str | None = Field(default=None, description="The bad release key.")
    during: During | None = Field(
        default=None,
        description="Where this tier was with the release: Progress, Bake, Watch or SignedOff.",
    )
    cause: str | None = Field(
        default=None,
        description=(
            "Set when the fleet policy acted: which tier halted which release, e.g. "
            "`tier bulk halted release R`."
        ),
    )
    halted_by: str | None = Field(
        default=None,
        alias="haltedBy",
        description="The tier whose own halt made the fleet policy act on this one; unset on that tier.",
    )
    message: str = Field(default="", description="A sentence for on-call.")
    window_start: datetime = Field(
        alias="windowStart", description="When the bad revision started running in this tier."
    )
    window_end: datetime | None = Field(
        default=None, alias="windowEnd", description="When it stopped (rolled back), if it has."
    )
    at: datetime = Field(description="When the tier was halted.")


class RolloutStatus(_Status):
    """Timestamps of the current revision's rollout in this tier."""

    revision: str = Field(description="The revision being rolled out.")
    started_at: datetime | None = Field(
        default=None, alias="startedAt", description="When the Deployment got this revision."
    )
    ready_at: datetime | None = Field(
        default=None, alias="readyAt", description="When all its pods were Ready."
    )
    signed_off_at: datetime | None = Field(
        default=None,
        alias="signedOffAt",
        description="When the bake ended with every check passing.",
    )
    promoted_by: str | None = Field(
        default=None, alias="promotedBy", description="Who skipped the rest of the bake, if anyone."
    )
    first_inconclusive_at: datetime | None = Field(
        default=None,
        alias="firstInconclusiveAt",
        description="Start of the current run of inconclusive evaluations.",
    )
    bake_since: datetime | None = Field(
        default=None,
        alias="bakeSince",
        description="Start of the current unbroken run of passing evaluations.",
    )
    watch_until: datetime | None = Field(
        default=None,
        alias="watchUntil",
        description="When the watch after sign-off ends (unset with no watch).",
    )
    last_evaluated_at: datetime | None = Field(
        default=None, alias="lastEvaluatedAt", description="When the stack was last evaluated."
    )
    consecutive_failures: int = Field(
        default=0,
        alias="consecutiveFailures",
        description="Failing evaluations of the stack in a row.",
    )

    def became_ready(self, now: datetime) -> RolloutStatus:
        """This rollout with every pod Ready at ``now``; the bake starts on the next pass."""
        return self.model_copy(update={"ready_at": now, "bake_since": None})

    def promoted(self, who: str) -> RolloutStatus:
        """This rollout, its bake skipped on request of ``who``."""
        return self.model_copy(update={"promoted_by": who})

    def passed(self, now: datetime) -> RolloutStatus:
        """This rollout after a passing evaluation: the unbroken run of passes goes on (or starts)."""
        return self.model_copy(
            update={
                "last_evaluated_at": now,
                "consecutive_failures": 0,
                "first_inconclusive_at": None,
                "bake_since": self.bake_since or now,
            }
        )

    def failed(self, now: datetime) -> RolloutStatus:
        """This rollout after a failing evaluation: one more failure in a row, the bake restarts."""
        return self.model_copy(
            update={
                "last_evaluated_at": now,
                "consecutive_failures": self.consecutive_failures + 1,
                "first_inconclusive_at": None,
                "bake_since": None,
            }
        )

    def inconclusive(self, now: datetime) -> RolloutStatus:
        """This rollout after an inconclusive evaluation: never a pass, the inconclusive run goes on."""
        return self.model_copy(
            update={
                "last_evaluated_at": now,
                "first_inconclusive_at": self.first_inconclusive_at or now,
                "bake_since": None,
            }
        )

    def signed_off(self, now: datetime, watch_seconds: float) -> RolloutStatus:
        """This rollout signed off at ``now``, its watch (if any) running from then on."""
        until = now + timedelta(seconds=watch_seconds) if watch_seconds > 0 else None
        return self.model_copy(update={"signed_off_at": now, "watch_until": until, "consecutive_failures": 0})


class HistoryEntry(_Status):
    """One release this tier started, and what became of it."""

    release: str = Field(description="The release key.")
    revision: str = Field(description="The pod-template hash it ran as.")
    started_at: datetime = Field(alias="startedAt", description="When this tier started it.")
    signed_off_at: datetime | None = Field(
        default=None, alias="signedOffAt", description="When its bake ended with every check passing."
    )
    halted_at: datetime | None = Field(default=None, alias="haltedAt", description="When it halted here.")
    rolled_back_at: datetime | None = Field(
        default=None, alias="rolledBackAt", description="When this tier went back from it."
    )
    watch_passed_at: datetime | None = Field(
        default=None, alias="watchPassedAt", description="When its watch after sign-off ended passing."
    )

    def signed_off(self, now: datetime) -> HistoryEntry:
        """This run, signed off at ``now``."""
        return self.model_copy(update={"signed_off_at": now})

    def halted(self, now: datetime) -> HistoryEntry:
        """This run, halted here at ``now``."""
        return self.model_copy(update={"halted_at": now})

    def rolled_back(self, now: datetime) -> HistoryEntry:
        """This run, left for an older release at ``now``."""
        return self.model_copy(update={"rolled_back_at": now})

    def watch_passed(self, now: datetime) -> HistoryEntry:
        """This run, through its watch at ``now``."""
        return self.model_copy(update={"watch_passed_at": now})


class UntestedRelease(_Status):
    """An on-call override that let this tier take a release the lower tiers have not signed off."""

    release: str = Field(description="The release the override let through.")
    by: str = Field(description="Who asked (the request token).")
    at: datetime = Field(description="When the operator acted on it.")


class ApprovalStatus(_Status):
    """The approval that let a release start on a tier with ``approval: Required``."""

    release: str = Field(description="The release approved (one release only).")
    by: str = Field(description="Who approved it.")
    at: datetime = Field(description="When the operator acted on the approval.")


class ReplayJobStatus(_Status):
    """The replay job started for a halted revision's discards."""

    id: str = Field(description="Replay job id in the replay service.")
    state: str = Field(description="The job's state when last seen.")
    revision: str = Field(description="The halted revision whose discards it replays.")
    created_at: datetime = Field(alias="createdAt", description="When the job was created.")
    replayed: int | None = Field(default=None, description="Messages re-queued so far.")
    skipped: int | None = Field(default=None, description="Messages skipped (delivered, replayed, too old).")


class SenderTierStatus(_Status):
    """What the operator observed and decided; the lasting record of a rollout."""

    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation this status describes.",
    )
    phase: Phase | None = Field(default=None, description="Where the tier is in its rollout.")
    message: str | None = Field(default=None, description="A human summary of the phase.")
    revision: str | None = Field(
        default=None, description="Hash of the spec's pod template: the revision asked for."
    )
    release: str | None = Field(
        default=None, description="The release key the spec asks for (spec.release, else the revision)."
    )
    revision_seen_at: datetime | None = Field(
        default=None,
        alias="revisionSeenAt",
        description="When the operator first saw the spec's current revision (its settle time starts).",
    )
    current_revision: str | None = Field(
        default=None, alias="currentRevision", description="The revision the Deployment runs now."
    )
    signed_off_revision: str | None = Field(
        default=None, alias="signedOffRevision", description="The last revision signed off."
    )
    waiting_for: str | None = Field(
        default=None, alias="waitingFor", description="The lower-order tier this one waits for."
    )
    ready_replicas: int | None = Field(
        default=None, alias="readyReplicas", description="Ready worker pods of the revision."
    )
    rollout: RolloutStatus | None = Field(default=None, description="The current rollout.")
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description="The last 10 releases this tier started, newest last: the gate reads it.",
    )
    untested_release: UntestedRelease | None = Field(
        default=None,
        alias="untestedRelease",
        description="The last on-call override that let an untested release through.",
    )
    checks: list[CheckStatus] = Field(default_factory=list, description="Last evaluation of each check.")
    halt: HaltStatus | None = Field(default=None, description="Set while the tier is halted.")
    replay_job: ReplayJobStatus | None = Field(
        default=None, alias="replayJob", description="The automatic replay of a halt's discards."
    )
    handled_requests: dict[str, str] = Field(
        default_factory=dict,
        alias="handledRequests",
        description=(
            "The last retry, promote and abort request (annotation value) acted on, so each "
            "request is acted on once."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Standard conditions: Ready, Reconciling, Stalled, ..."
    )
    canary: CanaryStatus | None = Field(
        default=None,
        description=(
            "The canary step of the release being rolled out (healthGate.canary), while and after it runs."
        ),
    )
    approval: ApprovalStatus | None = Field(
        default=None,
        description="The last approval acted on (spec.approval: Required): which release, who, when.",
    )
    notifications: list[NotificationRecord] = Field(
        default_factory=list,
        description=(
            "The notification outbox, newest last: each transition on-call is told about, written "
            "with the transition and marked once every receiver has it (the last 20 are kept)."
        ),
    )

    def with_rollout(
        self, rollout: RolloutStatus | None, checks: list[CheckStatus] | None = None
    ) -> SenderTierStatus:
        """This status with the rollout (and, when given, the per-check results) replaced."""
        if checks is None:
            return self.model_copy(update={"rollout": rollout})
        return self.model_copy(update={"rollout": rollout, "checks": checks})

    def with_history(self, history: list[HistoryEntry]) -> SenderTierStatus:
        """This status with its history replaced."""
        return self.model_copy(update={"history": history})

    def with_conditions(self, conditions: list[Condition]) -> SenderTierStatus:
        """This status with its conditions replaced."""
        return self.model_copy(update={"conditions": conditions})

    def with_replay_job(self, job: ReplayJobStatus) -> SenderTierStatus:
        """This status with the automatic replay job recorded."""
        return self.model_copy(update={"replay_job": job})

    def with_notifications(self, records: list[NotificationRecord]) -> SenderTierStatus:
        """This status with its notification outbox replaced."""
        return self.model_copy(update={"notifications": records})

    def with_canary(self, canary: CanaryStatus | None) -> SenderTierStatus:
        """This status with its canary step replaced (None: no canary)."""
        return self.model_copy(update={"canary": canary})

    def with_message(self, message: str) -> SenderTierStatus:
        """This status with its message replaced."""
        return self.model_copy(update={"message": message})

    def in_phase(self, phase: Phase) -> SenderTierStatus:
        """This status as it would read in ``phase`` (nothing else changed)."""
        return self.model_copy(update={"phase": phase})

    def observed(self, generation: int) -> SenderTierStatus:
        """This status with ``generation`` as the spec generation it reflects."""
        return self.model_copy(update={"observed_generation": generation})

    def handled(self, kind: str, token: str) -> SenderTierStatus:
        """This status with the on-call request ``kind`` marked as acted on."""
        return self.model_copy(update={"handled_requests": {**self.handled_requests, kind: token}})

    def seen(self, now: datetime) -> SenderTierStatus:
        """This status with its spec's revision first seen at ``now``."""
        return self.model_copy(update={"revision_seen_at": now})

    def approved(self, approval: ApprovalStatus) -> SenderTierStatus:
        """This status with an approval of a release recorded."""
        return self.model_copy(update={"approval": approval})

    def overridden(self, override: UntestedRelease) -> SenderTierStatus:
        """This status with an on-call override of the release gate recorded."""
        return self.model_copy(update={"untested_release": override})

    def waiting(self, for_tier: str | None) -> SenderTierStatus:
        """This status holding its signed-off template, waiting for ``for_tier``: no rollout, no halt."""
        return self.model_copy(update={"waiting_for": for_tier, "rollout": None, "halt": None})

    def rolling(
        self, rollout: RolloutStatus, checks: list[CheckStatus], history: list[HistoryEntry]
    ) -> SenderTierStatus:
        """This status with a new rollout started: the Deployment gets its revision now."""
        return self.model_copy(
            update={
                "rollout": rollout,
                "checks": checks,
                "halt": None,
                "waiting_for": None,
                "current_revision": rollout.revision,
                "history": history,
            }
        )

    def stopped(self, back_on: str | None) -> SenderTierStatus:
        """This status with its rollout stopped and the Deployment back on ``back_on``."""
        return self.model_copy(update={"checks": [], "current_revision": back_on})

    def cleared(self) -> SenderTierStatus:
        """This status back at the gate: no rollout, no halt, no check results."""
        return self.model_copy(update={"phase": Phase.WAITING, "halt": None, "rollout": None, "checks": []})

    def moved(
        self, phase: Phase, message: str, revision: str, release: str, generation: int
    ) -> SenderTierStatus:
        """This status in ``phase``, describing the spec's ``revision`` at ``generation``."""
        return self.model_copy(
            update={
                "phase": phase,
                "message": message,
                "revision": revision,
                "release": release,
                "observed_generation": generation,
            }
        )


class NotificationKind(enum.StrEnum):
    """A rollout transition that on-call is told about."""

    HALTED = "Halted"
    ROLLED_BACK = "RolledBack"
    SIGNED_OFF = "SignedOff"
    WATCH_PASSED = "WatchPassed"
    AWAITING_APPROVAL = "AwaitingApproval"
    FROZEN = "Frozen"
    OVERRIDE_USED = "OverrideUsed"
    REPLAY_DONE = "ReplayDone"


class NotificationRecord(_Status):
    """One notification in the tier's outbox: recorded with its transition, marked once delivered."""

    id: str = Field(description="Idempotency key, sent as the Tiergate-Notification-Id header.")
    kind: NotificationKind = Field(
        description=(
            "Halted, RolledBack, SignedOff, WatchPassed, AwaitingApproval, Frozen, OverrideUsed "
            "or ReplayDone."
        )
    )
    at: datetime = Field(description="When the transition happened.")
    release: str | None = Field(default=None, description="The release key it concerns.")
    revision: str | None = Field(default=None, description="The pod-template hash it concerns.")
    message: str = Field(default="", description="A sentence for on-call.")
    halt: HaltStatus | None = Field(
        default=None, description="The halt record (check, query, value, threshold) of a halt or rollback."
    )
    sent_to: list[str] = Field(
        default_factory=list,
        alias="sentTo",
        description="Receivers (by name) that answered 2xx to it.",
    )
    sent_at: datetime | None = Field(
        default=None,
        alias="sentAt",
        description="When every receiver it is routed to had it; unset while any is pending.",
    )
    gave_up_at: datetime | None = Field(
        default=None,
        alias="gaveUpAt",
        description="When the operator stopped retrying it (the retry window ended).",
    )

    @property
    def pending(self) -> bool:
        """Whether it still has to be delivered."""
        return self.sent_at is None and self.gave_up_at is None

    def delivered(self, receivers: list[str], done: bool, now: datetime) -> NotificationRecord:
        """This record with more receivers served; ``done`` when none it is routed to is left."""
        sent = list(dict.fromkeys([*self.sent_to, *receivers]))
        return self.model_copy(update={"sent_to": sent, "sent_at": now if done else None})

    def given_up(self, now: datetime) -> NotificationRecord:
        """This record, no longer retried."""
        return self.model_copy(update={"gave_up_at": now})


class ObjectMeta(_Status):
    """The few metadata fields the operator reads."""

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    resource_version: str = Field(default="", alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")


class SenderTier(BaseModel):
    """A SenderTier object as the operator reads it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_version: Literal["tiergate.io/v1alpha1"] = Field(default="tiergate.io/v1alpha1", alias="apiVersion")
    kind: Literal["SenderTier"] = "SenderTier"
    metadata: ObjectMeta
    spec: SenderTierSpec
    status: SenderTierStatus = Field(default_factory=SenderTierStatus)

    def with_status(self, status: SenderTierStatus) -> SenderTier:
        """This tier with its status replaced."""
        return self.model_copy(update={"status": status})

    def as_canary_step(self, replicas: int, bake: str) -> SenderTier:
        """This tier as its canary step is judged: ``replicas`` pods and the canary's own bake."""
        gate = self.spec.health_gate.model_copy(update={"bake": bake})
        spec = self.spec.model_copy(update={"replicas": replicas, "health_gate": gate})
        return self.model_copy(update={"spec": spec})


class Canary(_Spec):
    """The canary step of a tier: how many pods run a new release first, and for how long."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.replicas) != has(self.percent)",
                    "message": (
                        "set exactly one of canary.replicas (a pod count) or canary.percent "
                        "(a share of the tier's replicas)"
                    ),
                },
            ]
        }
    )

    replicas: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Canary pods, taken out of the tier's replicas (the tier keeps at least one stable pod)."
        ),
    )
    percent: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description=(
            "Canary pods as a percentage of the tier's replicas, rounded up (at least one pod, "
            "and the tier keeps at least one stable pod)."
        ),
    )
    bake: Duration | None = Field(
        default=None,
        description=(
            "How long every check must keep passing on the canary pods before the rest of the "
            "tier takes the release; defaults to healthGate.bake. The tier's own bake runs after."
        ),
    )

    @model_validator(mode="after")
    def _replicas_or_percent(self) -> Canary:
        if (self.replicas is None) == (self.percent is None):
            raise ValueError("set exactly one of canary.replicas or canary.percent")
        return self


class CanaryPhase(enum.StrEnum):
    """Where a release's canary step is."""

    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"


class CanaryStatus(_Status):
    """The canary step of one release on this tier."""

    revision: str = Field(description="The revision the canary pods run.")
    replicas: int = Field(
        description="Canary pods; the stable Deployment runs the tier's replicas less these."
    )
    phase: CanaryPhase = Field(description="Running, Passed (the whole tier follows) or Failed (halted).")
    started_at: datetime = Field(alias="startedAt", description="When the canary step started.")
    ended_at: datetime | None = Field(
        default=None, alias="endedAt", description="When the canary passed or failed."
    )

    def ended(self, phase: CanaryPhase, now: datetime) -> CanaryStatus:
        """This canary step, passed or failed at ``now``."""
        return self.model_copy(update={"phase": phase, "ended_at": now})
