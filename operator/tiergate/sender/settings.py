"""Settings of the sender processes, from CLI flags with environment fallbacks.

Pods get their settings from the environment (the operator sets ``TIERGATE_TIER``,
``TIERGATE_REVISION``, ...; SMPP credentials come from a Secret); flags win for local use.
The upstream connectors come from ``TIERGATE_CONNECTORS_FILE`` (see
`tiergate.sender.connectors.config`), else from the same document inline in
``TIERGATE_CONNECTORS`` (a ConfigMap key as an env var), else from the single
``TIERGATE_UPSTREAM_URL``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tiergate.api.durations import parse_duration
from tiergate.domain.messages import Delivery, Rules, callback_url_problem
from tiergate.domain.webhooks import RetrySchedule
from tiergate.sender.errors import ConfigError
from tiergate.sender.faults import ALLOW_ENV, Faults, allowed_from_env, parse_faults

if TYPE_CHECKING:
    from tiergate.sender.connectors.config import UpstreamSpec


def default_store_url(env: Mapping[str, str]) -> str:
    """``sqlite:///`` + a file under ``$TIERGATE_DATA_DIR`` (default ./tiergate-data)."""
    data_dir = Path(env.get("TIERGATE_DATA_DIR") or "tiergate-data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite://{data_dir / 'tiergate.db'}"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything `tiergate sender worker` needs."""

    tier: str
    traffic_class: str
    revision: str
    store_url: str
    upstream: UpstreamSpec
    credentials: Mapping[str, tuple[str, str]] = field(repr=False, default_factory=dict)
    host: str = "0.0.0.0"
    port: int = 8080
    faults: Faults = field(default_factory=Faults)
    window: int = 256
    max_attempts: int = 8
    max_age: float = 6 * 3600.0
    visibility_timeout: float = 60.0


def worker_settings(
    *,
    tier: str | None,
    traffic_class: str | None = None,
    revision: str | None = None,
    store_url: str | None = None,
    upstream_url: str | None = None,
    connectors_file: str | None = None,
    host: str | None = None,
    port: int | None = None,
    faults: str | None = None,
    window: int | None = None,
    rate: float | None = None,
    max_attempts: int | None = None,
    max_age: float | None = None,
    env: Mapping[str, str] | None = None,
) -> WorkerSettings:
    """Resolve worker settings: flag, else environment, else default; validate."""
    # Here, not at the top: the ingest API reads its settings from this module too, and the
    # connector configuration (pydantic models, 12 MiB with pydantic) is the workers' alone.
    from tiergate.sender.connectors.config import load_upstream, parse_upstream, single_upstream

    env = os.environ if env is None else env
    tier = tier or env.get("TIERGATE_TIER", "")
    if not tier:
        raise ConfigError("No tier: pass --tier or set TIERGATE_TIER")
    path = connectors_file or env.get("TIERGATE_CONNECTORS_FILE", "")
    url = upstream_url or env.get("TIERGATE_UPSTREAM_URL", "")
    window = window or _int(env, "TIERGATE_WINDOW", 256)
    rate = rate if rate is not None else _float_or_none(env, "TIERGATE_UPSTREAM_RATE")
    inline = env.get("TIERGATE_CONNECTORS", "")
    if path:
        upstream = load_upstream(path)
    elif inline.strip():
        upstream = parse_upstream(inline, "TIERGATE_CONNECTORS")
    elif url:
        upstream = single_upstream(url, rate, window)
    else:
        raise ConfigError(
            "No upstream: pass --connectors or --upstream,"
            " or set TIERGATE_CONNECTORS_FILE, TIERGATE_CONNECTORS or TIERGATE_UPSTREAM_URL"
        )
    fault_spec = faults if faults is not None else env.get("TIERGATE_FAULTS", "")
    traffic_class = traffic_class or env.get("TIERGATE_TRAFFIC_CLASS") or tier
    switch = parse_faults(fault_spec, allowed=allowed_from_env(env.get(ALLOW_ENV)))
    return WorkerSettings(
        tier=tier,
        traffic_class=traffic_class,
        revision=revision or env.get("TIERGATE_REVISION") or "unknown",
        store_url=store_url or env.get("TIERGATE_STORE_URL") or default_store_url(env),
        upstream=upstream,
        credentials={c.name: c.credentials(env) for c in upstream.connectors},
        host=host or env.get("TIERGATE_HTTP_HOST") or "0.0.0.0",
        port=port if port is not None else _int(env, "TIERGATE_HTTP_PORT", 8080),
        faults=switch.for_traffic_class(traffic_class),
        window=max(window, sum(c.window * c.binds for c in upstream.connectors)),
        max_attempts=max_attempts or _int(env, "TIERGATE_MAX_ATTEMPTS", 8),
        max_age=max_age or float(_float_or_none(env, "TIERGATE_MAX_AGE") or 6 * 3600.0),
        visibility_timeout=float(_float_or_none(env, "TIERGATE_VISIBILITY_TIMEOUT") or 60.0),
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float_or_none(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def api_rules(env: Mapping[str, str]) -> Rules:
    """Validation rules from ``TIERGATE_TRAFFIC_CLASSES`` and the limit variables."""
    classes = frozenset(
        c.strip() for c in (env.get("TIERGATE_TRAFFIC_CLASSES") or "default").split(",") if c.strip()
    )
    default = env.get("TIERGATE_DEFAULT_TRAFFIC_CLASS") or sorted(classes)[0]
    if default not in classes:
        raise ConfigError(f"Default traffic class {default!r} is not in {sorted(classes)}")
    return Rules(
        traffic_classes=classes,
        default_traffic_class=default,
        max_segments=_int(env, "TIERGATE_MAX_SEGMENTS", 6),
        max_batch=_int(env, "TIERGATE_MAX_BATCH", 1000),
        max_validity=_seconds(env, "TIERGATE_MAX_VALIDITY", 72 * 3600.0),
        max_schedule_ahead=_seconds(env, "TIERGATE_MAX_SCHEDULE_AHEAD", 7 * 24 * 3600.0),
        allow_http_loopback_callbacks=env.get(ALLOW_HTTP_CALLBACKS_ENV) == "1",
    )


# A test switch: http callback URLs on loopback (not for production: events would travel in clear).
ALLOW_HTTP_CALLBACKS_ENV = "TIERGATE_WEBHOOK_ALLOW_HTTP_LOOPBACK"


@dataclass(frozen=True)
class CustomerWebhook:
    """A customer's webhook: its default callback URL and signing secrets (first signs)."""

    url: str | None = None
    secrets: tuple[str, ...] = field(repr=False, default=())

    @property
    def delivery(self) -> Delivery:
        """What validation needs to know of it."""
        return Delivery(default_callback_url=self.url, can_sign=bool(self.secrets))


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook dispatcher and the receipt-timeout sweeper of the API processes."""

    customers: Mapping[str, CustomerWebhook] = field(repr=False, default_factory=dict)
    dispatch: bool = True
    concurrency: int = 32
    batch: int = 100
    timeout: float = 10.0
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    receipt_timeout: float = 72 * 3600.0
    sweep_interval: float = 5.0


def parse_webhooks(data: Any, rules: Rules) -> dict[str, CustomerWebhook]:
    """Customers' webhooks from ``{"customers": {id: {"url": ..., "secrets": [...]}}}``."""
    customers = data.get("customers") if isinstance(data, Mapping) else None
    if not isinstance(customers, Mapping):
        raise ConfigError("Webhook configuration needs a 'customers' mapping")
    out: dict[str, CustomerWebhook] = {}
    for customer, entry in customers.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"Webhook entry of customer {customer!r} must be a mapping")
        url = entry.get("url")
        secrets = entry.get("secrets", [entry["secret"]] if "secret" in entry else [])
        if url is not None and (not isinstance(url, str) or callback_url_problem(url, rules)):
            raise ConfigError(f"Webhook URL of customer {customer!r} is not usable: {url!r}")
        if not isinstance(secrets, list) or not all(isinstance(x, str) and len(x) >= 16 for x in secrets):
            raise ConfigError(f"Webhook secrets of customer {customer!r} must be strings of 16+ characters")
        if url is not None and not secrets:
            raise ConfigError(f"Customer {customer!r} has a webhook URL and no secret to sign with")
        out[str(customer)] = CustomerWebhook(url, tuple(secrets))
    return out


def load_webhooks(env: Mapping[str, str], rules: Rules) -> dict[str, CustomerWebhook]:
    """Customers' webhooks from ``TIERGATE_WEBHOOKS_FILE`` (YAML or JSON), else ``TIERGATE_WEBHOOKS``."""
    path = env.get("TIERGATE_WEBHOOKS_FILE")
    text = env.get("TIERGATE_WEBHOOKS", "")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"Webhook file unreadable path={path}: {exc.strerror}") from None
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Webhook configuration is not YAML: {exc}") from None
    return parse_webhooks(data, rules)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_duration(raw)
    except ValueError:
        raise ConfigError(f"{name} must be seconds or a duration such as 90s or 2h, got {raw!r}") from None


def webhook_settings(env: Mapping[str, str], rules: Rules) -> WebhookSettings:
    """Webhook and receipt-timeout settings from the environment."""
    return WebhookSettings(
        customers=load_webhooks(env, rules),
        dispatch=env.get("TIERGATE_WEBHOOK_DISPATCH", "1") not in ("0", "false", "no"),
        concurrency=_int(env, "TIERGATE_WEBHOOK_CONCURRENCY", 32),
        batch=_int(env, "TIERGATE_WEBHOOK_BATCH", 100),
        timeout=_seconds(env, "TIERGATE_WEBHOOK_TIMEOUT", 10.0),
        schedule=RetrySchedule(
            base_delay=_seconds(env, "TIERGATE_WEBHOOK_RETRY_BASE", 1.0),
            max_delay=_seconds(env, "TIERGATE_WEBHOOK_RETRY_MAX_DELAY", 600.0),
            retry_for=_seconds(env, "TIERGATE_WEBHOOK_RETRY_FOR", 24 * 3600.0),
        ),
        receipt_timeout=_seconds(env, "TIERGATE_RECEIPT_TIMEOUT", 72 * 3600.0),
        sweep_interval=_seconds(env, "TIERGATE_SWEEP_INTERVAL", 5.0),
    )


DEFAULT_CUSTOMER_RATE = 1000.0
"""Messages/s one customer may send by default (0 switches the limit off)."""
DEFAULT_MAX_QUEUE_DEPTH = 100_000
"""Queued messages per traffic class above which ingest answers 429 (0: no limit)."""


@dataclass(frozen=True)
class ApiSettings:
    """Everything `tiergate sender api` needs."""

    store_url: str
    tokens: Mapping[str, str] = field(repr=False, default_factory=dict)
    rules: Rules = field(default_factory=Rules)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    host: str = "0.0.0.0"
    port: int = 8080
    max_queue_depth: int | None = DEFAULT_MAX_QUEUE_DEPTH
    customer_rate: float | None = DEFAULT_CUSTOMER_RATE
    stats_interval: float = 0.5
    processes: int = 1


MAX_API_PROCESSES = 64


def token_digest(token: str) -> str:
    """The form tokens are kept in memory: a SHA-256 hex digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str) -> dict[str, str]:
    """Tokens from ``token=customer`` items, separated by commas or newlines (# comments)."""
    tokens: dict[str, str] = {}
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token, sep, customer = line.partition("=")
        if not sep or not token.strip() or not customer.strip():
            raise ConfigError("Token entries must be token=customer_id")
        tokens[token_digest(token.strip())] = customer.strip()
    return tokens


def load_tokens(inline: str | None, path: str | None) -> dict[str, str]:
    """Merge tokens given inline and in a file."""
    tokens: dict[str, str] = {}
    if path:
        try:
            tokens.update(parse_tokens(Path(path).read_text()))
        except OSError as exc:
            raise ConfigError(f"Token file unreadable path={path}: {exc.strerror}") from None
    if inline:
        tokens.update(parse_tokens(inline))
    return tokens


def api_settings(
    *,
    store_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    tokens_file: str | None = None,
    max_queue_depth: int | None = None,
    customer_rate: float | None = None,
    processes: int | None = None,
    env: Mapping[str, str] | None = None,
) -> ApiSettings:
    """Resolve ingest API settings: flag, else environment, else default; validate.

    The overload limits are on unless set to 0: `DEFAULT_CUSTOMER_RATE` and
    `DEFAULT_MAX_QUEUE_DEPTH`.
    """
    env = os.environ if env is None else env
    tokens = load_tokens(env.get("TIERGATE_API_TOKENS"), tokens_file or env.get("TIERGATE_API_TOKENS_FILE"))
    if not tokens:
        raise ConfigError("No API tokens: set TIERGATE_API_TOKENS or TIERGATE_API_TOKENS_FILE")
    depth = (
        max_queue_depth
        if max_queue_depth is not None
        else _int(env, "TIERGATE_MAX_QUEUE_DEPTH", DEFAULT_MAX_QUEUE_DEPTH)
    )
    if depth < 0:
        raise ConfigError(f"The maximum queue depth must not be negative, got {depth}")
    rate = customer_rate if customer_rate is not None else _float_or_none(env, "TIERGATE_CUSTOMER_RATE")
    rate = DEFAULT_CUSTOMER_RATE if rate is None else rate
    if not 0 <= rate < float("inf"):
        raise ConfigError(f"The customer rate must be a finite number of messages/s >= 0, got {rate:g}")
    count = processes if processes is not None else _int(env, "TIERGATE_API_PROCESSES", 1)
    if not 1 <= count <= MAX_API_PROCESSES:
        raise ConfigError(f"TIERGATE_API_PROCESSES must be 1 to {MAX_API_PROCESSES}, got {count}")
    rules = api_rules(env)
    return ApiSettings(
        store_url=store_url or env.get("TIERGATE_STORE_URL") or default_store_url(env),
        tokens=tokens,
        rules=rules,
        webhooks=webhook_settings(env, rules),
        host=host or env.get("TIERGATE_HTTP_HOST") or "0.0.0.0",
        port=port if port is not None else _int(env, "TIERGATE_HTTP_PORT", 8080),
        max_queue_depth=depth or None,
        customer_rate=rate or None,
        processes=count,
    )
