"""Notifications to on-call, the pure part: which transitions they are, the outbox, the payloads.

A notification is derived from a status transition (the status before a reconcile and the one it
writes), never from the code path that caused it, so a new phase or reason needs only a line in
`WAITING_KINDS` or `derive`. The reconcile writes each one into ``status.notifications`` in the same
write as the transition; the leader's notifier posts it and marks it sent. A notifier killed between
the post and the mark posts it again with the same ``Tiergate-Notification-Id``: receivers
deduplicate on it. Two formats: a generic JSON webhook signed like the sender's customer webhooks
(``Tiergate-Signature``, see `tiergate.domain.webhooks`), and Slack's incoming-webhook JSON.

Receivers are configured in a Secret (key `SECRET_KEY`)::

    receivers:
      - name: oncall                      # recorded in status.notifications[].sentTo
        url: https://hooks.example/tiergate
        format: webhook                   # or slack
        secrets: [nsec-0123456789abcdef]  # signs webhook posts; two while rotating
        kinds: [Halted, RolledBack]       # default: every kind
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiergate.api.v1alpha1 import (
    HistoryEntry,
    NotificationKind,
    NotificationRecord,
    Phase,
    SenderTierStatus,
)
from tiergate.domain.webhooks import SIGNATURE_HEADER, signature_header

ID_HEADER = "Tiergate-Notification-Id"
SECRET_KEY = "receivers.yaml"
OUTBOX_LIMIT = 20
REPLAY_DONE_STATE = "done"

# A Waiting reason (of any condition) that on-call hears about, by its reason string.
WAITING_KINDS = {
    "AwaitingApproval": NotificationKind.AWAITING_APPROVAL,
    "Frozen": NotificationKind.FROZEN,
}

_HALT_KINDS = {Phase.HALTED: NotificationKind.HALTED, Phase.ROLLED_BACK: NotificationKind.ROLLED_BACK}


class Format(enum.StrEnum):
    """How a receiver wants its posts."""

    WEBHOOK = "webhook"
    SLACK = "slack"


class Receiver(BaseModel):
    """One place notifications go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63)
    url: str = Field(pattern=r"^https?://")
    format: Format = Format.WEBHOOK
    secrets: tuple[str, ...] = ()
    kinds: tuple[NotificationKind, ...] = tuple(NotificationKind)

    def wants(self, kind: NotificationKind) -> bool:
        """Whether this receiver takes notifications of `kind`."""
        return kind in self.kinds


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receivers: tuple[Receiver, ...] = ()


class ReceiverConfigError(ValueError):
    """The receivers Secret does not parse."""


def parse_receivers(text: str) -> tuple[Receiver, ...]:
    """The receivers of a Secret's `SECRET_KEY` (YAML or JSON); names must be unique."""
    try:
        raw = yaml.safe_load(text) or {}
        config = _Config.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ReceiverConfigError(f"{SECRET_KEY}: {exc}") from exc
    names = [r.name for r in config.receivers]
    if len(set(names)) != len(names):
        raise ReceiverConfigError(f"{SECRET_KEY}: receiver names repeat: {names}")
    return config.receivers


def routes(receivers: Sequence[Receiver], record: NotificationRecord) -> list[Receiver]:
    """The receivers `record` still has to reach."""
    return [r for r in receivers if r.wants(record.kind) and r.name not in record.sent_to]


def notification_id(uid: str, kind: NotificationKind, release: str | None, at: datetime) -> str:
    """A stable idempotency key for one transition of one tier."""
    digest = hashlib.sha256(f"{uid}/{kind.value}/{release}/{at.isoformat()}".encode()).hexdigest()
    return f"ntf_{digest[:24]}"


@dataclass(frozen=True)
class _Found:
    kind: NotificationKind
    message: str
    release: str | None
    revision: str | None
    with_halt: bool = False


def _reasons(status: SenderTierStatus) -> set[str]:
    return {c.reason for c in status.conditions}


def _history_moves(old: Sequence[HistoryEntry], new: Sequence[HistoryEntry]) -> list[_Found]:
    before = {(h.release, h.revision, h.started_at): h for h in old}
    found = []
    for entry in new:
        prior = before.get((entry.release, entry.revision, entry.started_at))
        if entry.signed_off_at and not (prior and prior.signed_off_at):
            found.append(
                _Found(
                    NotificationKind.SIGNED_OFF,
                    f"Release {entry.release} signed off",
                    entry.release,
                    entry.revision,
                )
            )
        if entry.watch_passed_at and not (prior and prior.watch_passed_at):
            found.append(
                _Found(
                    NotificationKind.WATCH_PASSED,
                    f"Release {entry.release} passed its watch",
                    entry.release,
                    entry.revision,
                )
            )
    return found


def _found(old: SenderTierStatus, new: SenderTierStatus) -> list[_Found]:
    found: list[_Found] = []
    halt_kind = _HALT_KINDS.get(new.phase) if new.phase else None
    if halt_kind is not None and old.phase != new.phase:
        halt = new.halt
        found.append(
            _Found(
                halt_kind,
                new.message or halt_kind.value,
                halt.release if halt else new.release,
                halt.revision if halt else new.revision,
                with_halt=True,
            )
        )
    found += _history_moves(old.history, new.history)
    if new.phase is Phase.WAITING:
        was = _reasons(old) if old.phase is Phase.WAITING else set()
        for reason, kind in WAITING_KINDS.items():
            if reason in _reasons(new) and reason not in was:
                found.append(_Found(kind, new.message or reason, new.release, new.revision))
    override = new.untested_release
    if override is not None and override != old.untested_release:
        found.append(
            _Found(
                NotificationKind.OVERRIDE_USED,
                f"{override.by} let untested release {override.release} through",
                override.release,
                new.revision,
            )
        )
    job = new.replay_job
    before = old.replay_job
    if (
        job is not None
        and job.state == REPLAY_DONE_STATE
        and (before is None or before.id != job.id or before.state != REPLAY_DONE_STATE)
    ):
        found.append(
            _Found(
                NotificationKind.REPLAY_DONE,
                f"Replay job {job.id} of revision {job.revision} done: "
                f"{job.replayed or 0} replayed, {job.skipped or 0} skipped",
                None,
                job.revision,
            )
        )
    return found


def derive(old: SenderTierStatus, new: SenderTierStatus, uid: str, now: datetime) -> list[NotificationRecord]:
    """The notifications the transition from `old` to `new` makes, in a stable order."""
    out = []
    for f in _found(old, new):
        out.append(
            NotificationRecord(
                id=notification_id(uid, f.kind, f.release or f.revision, now),
                kind=f.kind,
                at=now,
                release=f.release,
                revision=f.revision,
                message=f.message,
                halt=new.halt if f.with_halt else None,
            )
        )
    return out


def bounded(records: Sequence[NotificationRecord]) -> list[NotificationRecord]:
    """The outbox trimmed to `OUTBOX_LIMIT`, dropping delivered records before pending ones."""
    records = list(records)
    extra = len(records) - OUTBOX_LIMIT
    if extra <= 0:
        return records
    done = [r.id for r in records if not r.pending][:extra]
    kept = [r for r in records if r.id not in set(done)]
    return kept[-OUTBOX_LIMIT:]


def recorded(old: SenderTierStatus, new: SenderTierStatus, uid: str, now: datetime) -> SenderTierStatus:
    """`new` with the outbox of `old` plus the notifications of the transition."""
    return new.with_notifications(bounded([*old.notifications, *derive(old, new, uid, now)]))


@dataclass(frozen=True)
class TierRef:
    """Which tier a notification is about."""

    namespace: str
    name: str
    fleet: str


def document(record: NotificationRecord, tier: TierRef) -> dict[str, Any]:
    """The generic webhook's JSON object for one notification."""
    halt = record.halt
    return {
        "id": record.id,
        "kind": record.kind.value,
        "at": record.at.isoformat(),
        "namespace": tier.namespace,
        "tier": tier.name,
        "fleet": tier.fleet,
        "release": record.release,
        "revision": record.revision,
        "message": record.message,
        "halt": halt.model_dump(by_alias=True, exclude_none=True, mode="json") if halt else None,
    }


def slack_text(record: NotificationRecord, tier: TierRef) -> str:
    """The Slack message: kind and tier on the first line, then the sentence and the halt record."""
    lines = [
        f"*{record.kind.value}*: SenderTier `{tier.namespace}/{tier.name}` (fleet `{tier.fleet}`)",
        record.message,
    ]
    halt = record.halt
    if halt is not None:
        value = "no data" if halt.value is None else f"{halt.value:.4g}"
        lines.append(f"check `{halt.check}`: {value} against `{halt.threshold or '-'}`")
        if halt.query:
            lines.append(f"query: `{halt.query}`")
    return "\n".join(lines)


@dataclass(frozen=True)
class Post:
    """One HTTP request to a receiver."""

    url: str
    headers: Mapping[str, str]
    body: bytes


def post_for(receiver: Receiver, record: NotificationRecord, tier: TierRef, timestamp: int) -> Post:
    """The request that delivers `record` to `receiver`, signed when it has secrets."""
    match receiver.format:
        case Format.WEBHOOK:
            body = orjson.dumps(document(record, tier))
        case Format.SLACK:
            body = orjson.dumps({"text": slack_text(record, tier)})
        case _:
            assert_never(receiver.format)
    headers = {"Content-Type": "application/json", ID_HEADER: record.id}
    if receiver.secrets:
        headers[SIGNATURE_HEADER] = signature_header(receiver.secrets, timestamp, body)
    return Post(receiver.url, headers, body)
