"""Settings of the replay service, from CLI flags with environment fallbacks.

Replay is an on-call action, so it has its own bearer tokens, separate from the ingest
API's customer tokens. A token file holds ``token=name`` lines (``token=name:read`` for a
read-only token that may list and count but not start or steer jobs); tokens are kept in
memory only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tiergate.errors import ConfigError


class Role(StrEnum):
    """What a token may do."""

    READ = "read"
    REPLAY = "replay"


@dataclass(frozen=True)
class Caller:
    """Who holds a token, and what it may do."""

    name: str
    role: Role


DEFAULT_MAX_RATE = 200.0
"""Messages/s no replay job passes when no cap is set: a fifth of what a two-core install
drains, so a replay never crowds out live traffic."""


@dataclass(frozen=True)
class ReplaySettings:
    """Everything `tiergate replay serve` needs."""

    store_url: str
    tokens: Mapping[str, Caller] = field(repr=False, default_factory=dict)
    host: str = "0.0.0.0"
    port: int = 8090
    max_rate: float | None = DEFAULT_MAX_RATE
    max_batch: int = 500
    metrics_interval: float = 15.0


def token_digest(token: str) -> str:
    """The form tokens are kept in: a SHA-256 hex digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str) -> dict[str, Caller]:
    """Tokens from ``token=name[:role]`` items, one per line or comma-separated (# comments)."""
    tokens: dict[str, Caller] = {}
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token, sep, rest = line.partition("=")
        name, _, role = rest.partition(":")
        if not sep or not token.strip() or not name.strip():
            raise ConfigError("Replay token entries must be token=name or token=name:read")
        try:
            parsed = Role(role.strip() or Role.REPLAY.value)
        except ValueError:
            raise ConfigError(f"Unknown replay token role {role.strip()!r}: use read or replay") from None
        tokens[token_digest(token.strip())] = Caller(name.strip(), parsed)
    return tokens


def load_tokens(inline: str | None, path: str | None) -> dict[str, Caller]:
    """Merge tokens given inline and in a file."""
    tokens: dict[str, Caller] = {}
    if path:
        try:
            tokens.update(parse_tokens(Path(path).read_text()))
        except OSError as exc:
            raise ConfigError(f"Replay token file unreadable path={path}: {exc.strerror}") from None
    if inline:
        tokens.update(parse_tokens(inline))
    return tokens


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def default_store_url(env: Mapping[str, str]) -> str:
    """``sqlite:///`` + ``$TIERGATE_DATA_DIR/tiergate.db`` (default ./tiergate-data), as the sender."""
    data_dir = Path(env.get("TIERGATE_DATA_DIR") or "tiergate-data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite://{data_dir / 'tiergate.db'}"


def replay_settings(
    *,
    store_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    tokens_file: str | None = None,
    max_rate: float | None = None,
    metrics_interval: float | None = None,
    max_batch: int | None = None,
    env: Mapping[str, str] | None = None,
) -> ReplaySettings:
    """Resolve settings: flag, else environment, else default; validate."""
    env = os.environ if env is None else env
    tokens = load_tokens(
        env.get("TIERGATE_REPLAY_TOKENS"), tokens_file or env.get("TIERGATE_REPLAY_TOKENS_FILE")
    )
    if not tokens:
        raise ConfigError("No replay tokens: pass --tokens-file or set TIERGATE_REPLAY_TOKENS(_FILE)")
    cap = max_rate if max_rate is not None else _number(env, "TIERGATE_REPLAY_MAX_RATE")
    cap = DEFAULT_MAX_RATE if cap is None else cap
    if not 0 < cap < float("inf"):
        raise ConfigError(f"The upstream rate cap must be a positive finite number, got {cap:g}")
    raw_port = env.get("TIERGATE_REPLAY_PORT")
    try:
        resolved_port = port if port is not None else int(raw_port) if raw_port else 8090
    except ValueError:
        raise ConfigError(f"TIERGATE_REPLAY_PORT must be an integer, got {raw_port!r}") from None
    interval = (
        metrics_interval
        if metrics_interval is not None
        else _number(env, "TIERGATE_REPLAY_METRICS_INTERVAL") or 15.0
    )
    batch = max_batch if max_batch is not None else _number(env, "TIERGATE_REPLAY_MAX_BATCH")
    if batch is not None and (batch < 1 or batch != int(batch)):
        raise ConfigError(f"The claim batch must be a positive integer, got {batch:g}")
    return ReplaySettings(
        store_url=store_url or env.get("TIERGATE_STORE_URL") or default_store_url(env),
        tokens=tokens,
        host=host or env.get("TIERGATE_REPLAY_HOST") or env.get("TIERGATE_HTTP_HOST") or "0.0.0.0",
        port=resolved_port,
        max_rate=cap,
        max_batch=int(batch) if batch is not None else ReplaySettings.max_batch,
        metrics_interval=interval,
    )
