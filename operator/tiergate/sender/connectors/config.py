"""The upstream connectors a tier's workers use, read from a file mounted from a ConfigMap.

``TIERGATE_CONNECTORS_FILE`` (or ``--connectors``) names a YAML (or JSON) file::

    connectors:
      - name: carrier-a
        url: smpp://smsc-a.example:2775
        tps: 300              # contracted submits/s, across all of this connector's binds
        binds: 2              # SMPP sessions (HTTP: clients) this worker opens
        window: 64            # submits in flight per bind
        weight: 3             # share of traffic among connectors with spare rate
        prefixes: ["+49"]     # destinations served (E.164 prefixes); empty: every destination
        failover: 0           # lower orders are used first; higher ones only when those cannot send
        systemId: tiergate
        passwordFrom: {env: TIERGATE_CARRIER_A_PASSWORD}   # or {file: /etc/tiergate/a/password}

Credentials never sit in the file: ``systemIdFrom`` and ``passwordFrom`` name an environment
variable or a file (both fed from a Secret); without them the connector uses
``TIERGATE_SMPP_SYSTEM_ID`` / ``TIERGATE_SMPP_PASSWORD``. For HTTP connectors the password is
the bearer token. Without a file, ``TIERGATE_UPSTREAM_URL`` is one connector named
``default`` serving every destination (``TIERGATE_UPSTREAM_RATE`` its tps, if set).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tiergate.sender.errors import ConfigError

PREFIX_CHARS = frozenset("+0123456789")


class SecretRef(BaseModel):
    """Where a credential is read from: an environment variable or a file (one of the two)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, description="Environment variable holding the value")
    file: str | None = Field(default=None, description="File holding the value (trailing newline dropped)")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self, env: Mapping[str, str]) -> str:
        """The credential's value."""
        if self.env is not None:
            if self.env not in env:
                raise ConfigError(f"environment variable {self.env} is not set")
            return env[self.env]
        assert self.file is not None
        try:
            return Path(self.file).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"credential file unreadable path={self.file}: {exc.strerror}") from None


class ConnectorSpec(BaseModel):
    """One upstream connector: where it is, what it may carry, how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    url: str = Field(description="smpp://host:port or http(s)://... of the upstream")
    tps: float | None = Field(default=None, gt=0, description="Contracted submits/s across the binds")
    binds: int = Field(default=1, ge=1, le=64, description="Sessions (SMPP) or clients (HTTP) to open")
    window: int = Field(default=64, ge=1, le=4096, description="Submits in flight per bind")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic among connectors with spare rate")
    prefixes: tuple[str, ...] = Field(default=(), description="Destination prefixes served; empty: all")
    failover: int = Field(default=0, ge=0, description="Order: higher is used only when lower cannot send")
    system_id: str = Field(default="", alias="systemId", description="SMPP system_id")
    system_id_from: SecretRef | None = Field(default=None, alias="systemIdFrom")
    password_from: SecretRef | None = Field(default=None, alias="passwordFrom")
    submit_timeout: float = Field(default=10.0, gt=0, alias="submitTimeout", description="Seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "smpp" and not (parts.hostname and parts.port):
            raise ValueError("an smpp:// URL needs a host and a port")
        if parts.scheme not in {"smpp", "http", "https"}:
            raise ValueError(f"unsupported scheme {parts.scheme!r}: use smpp:// or http(s)://")
        if parts.password:
            raise ValueError("credentials do not belong in the URL: use passwordFrom")
        return value

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not prefix.startswith("+") or len(prefix) < 2 or not set(prefix) <= PREFIX_CHARS:
                raise ValueError(f"{prefix!r} is not an E.164 prefix such as +49 or +4915")
        return value

    def credentials(self, env: Mapping[str, str]) -> tuple[str, str]:
        """The (system_id, password) of this connector; `ConfigError` names the connector."""
        try:
            return self._credentials(env)
        except ConfigError as exc:
            raise ConfigError(f"Connector {self.name}: {exc}") from None

    def _credentials(self, env: Mapping[str, str]) -> tuple[str, str]:
        system_id = (
            self.system_id_from.resolve(env)
            if self.system_id_from
            else self.system_id or env.get("TIERGATE_SMPP_SYSTEM_ID", "")
        )
        password = (
            self.password_from.resolve(env) if self.password_from else env.get("TIERGATE_SMPP_PASSWORD", "")
        )
        return system_id, password


class UpstreamSpec(BaseModel):
    """Every connector of a tier's workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connectors: tuple[ConnectorSpec, ...] = Field(min_length=1)

    @field_validator("connectors")
    @classmethod
    def _unique(cls, value: tuple[ConnectorSpec, ...]) -> tuple[ConnectorSpec, ...]:
        names = [c.name for c in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"connector names must be unique: {', '.join(duplicates)}")
        return value


def _where(loc: tuple[int | str, ...], data: object) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"[{item}]" + (f"({name})" if name else ""))
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def parse_upstream(text: str, source: str = "connectors file") -> UpstreamSpec:
    """Parse a connectors document; a bad one raises `ConfigError` naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not YAML: {exc}") from None
    try:
        return UpstreamSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'], data)}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_upstream(path: str) -> UpstreamSpec:
    """Read and parse the connectors file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"Connectors file unreadable path={path}: {exc.strerror}") from None
    return parse_upstream(text, path)


def single_upstream(url: str, rate: float | None, window: int) -> UpstreamSpec:
    """The one-connector upstream of ``TIERGATE_UPSTREAM_URL`` (the form before connector files)."""
    try:
        return UpstreamSpec(connectors=(ConnectorSpec(name="default", url=url, tps=rate, window=window),))
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ConfigError(f"TIERGATE_UPSTREAM_URL: {problem['msg']}") from None
