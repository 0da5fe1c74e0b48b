"""Reading a pod's container spec the way a kubelet would, without any I/O.

The pod runner turns containers into local processes. What a process gets
(argv, environment, probes) is decided here from plain pod dicts, so the
rules are unit-tested: ``$(VAR)`` expansion, ``env``/``envFrom`` with
``fieldRef``, ``resourceFieldRef``, ``secretKeyRef`` and ``configMapKeyRef``,
and probe defaults. Secrets and ConfigMaps come through a lookup callable
supplied by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Lookup = Callable[[Literal["Secret", "ConfigMap"], str], Mapping[str, str] | None]
"""Returns the decoded data of a Secret or ConfigMap in the pod's namespace, None if absent."""


class ContainerConfigError(Exception):
    """The container cannot be started as specified (kubelet: CreateContainerConfigError)."""


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` references like Kubernetes: unknown names stay, ``$$`` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, value)


def argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The process argv: ``command`` then ``args``, each expanded against env."""
    command = list(container.get("command") or [])
    if not command:
        raise ContainerConfigError(
            f"container {container.get('name')!r} has no command; the pod runner ignores images"
        )
    return [expand(a, env) for a in [*command, *(container.get("args") or [])]]


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Mapping[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a downward-API ``fieldRef`` path for this pod."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple: dict[str, str] = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    m = _LABEL_PATH.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise ContainerConfigError(f"unsupported fieldRef path {path!r}")


_SUFFIX = {
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


def quantity(text: str) -> Decimal:
    """Parse a Kubernetes resource quantity such as ``500m`` or ``64Mi``."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([a-zA-Z]*)", text.strip())
    if not m or (m.group(2) and m.group(2) not in _SUFFIX):
        raise ContainerConfigError(f"bad quantity {text!r}")
    return Decimal(m.group(1)) * _SUFFIX.get(m.group(2), Decimal(1))


_NODE_DEFAULTS = {"cpu": "1000", "memory": "1Ti", "ephemeral-storage": "1Ti"}


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """The value of a ``resourceFieldRef``, falling back to the fake node's capacity."""
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(resource)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(resource)
    if raw is None:
        raw = _NODE_DEFAULTS.get(resource, "0") if kind == "limits" else "0"
    divisor = quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(quantity(str(raw)) / divisor))


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    pod_ip: str,
    host_ip: str,
    lookup: Lookup,
) -> dict[str, str]:
    """The container's environment from ``envFrom`` then ``env``, in Kubernetes order."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = lookup(kind, ref.get("name", ""))  # type: ignore[arg-type]
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f"{kind.lower()} {ref.get('name')!r} not found")
            env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"])
        else:
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = source.get(key)
                if ref is None:
                    continue
                data = lookup(kind, ref.get("name", ""))  # type: ignore[arg-type]
                if data is not None and ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ContainerConfigError(
                        f"{kind.lower()} {ref.get('name')!r} key {ref.get('key')!r} not found"
                    )
                break
            else:
                raise ContainerConfigError(f"env {name!r}: unsupported valueFrom")
    return env


ProbeKind = Literal["http", "tcp", "exec"]


@dataclass(frozen=True)
class ProbeSpec:
    """A container probe with Kubernetes defaults applied."""

    kind: ProbeKind
    port: int = 0
    path: str = "/"
    host: str | None = None
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, probe: Mapping[str, Any] | None, container: Mapping[str, Any]) -> ProbeSpec | None:
        """Parse a probe dict; None when the container has no such probe."""
        if not probe:
            return None
        common: dict[str, Any] = {
            "initial_delay": float(probe.get("initialDelaySeconds") or 0),
            "period": float(probe.get("periodSeconds") or 10),
            "timeout": float(probe.get("timeoutSeconds") or 1),
            "success_threshold": int(probe.get("successThreshold") or 1),
            "failure_threshold": int(probe.get("failureThreshold") or 3),
        }
        if "httpGet" in probe:
            h = probe["httpGet"]
            headers = tuple((x["name"], x["value"]) for x in h.get("httpHeaders") or [])
            return cls(
                kind="http",
                port=container_port(container, h.get("port")),
                path=h.get("path") or "/",
                host=h.get("host") or None,
                scheme=str(h.get("scheme") or "HTTP").lower(),
                headers=headers,
                **common,
            )
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            return cls(
                kind="tcp",
                port=container_port(container, t.get("port")),
                host=t.get("host") or None,
                **common,
            )
        if "exec" in probe:
            return cls(kind="exec", command=tuple(probe["exec"].get("command") or []), **common)
        if "grpc" in probe:
            return cls(kind="tcp", port=int(probe["grpc"]["port"]), **common)
        raise ContainerConfigError("probe has no handler")


def container_port(container: Mapping[str, Any], port: object) -> int:
    """Resolve a probe port given as a number or as a named container port."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ContainerConfigError(f"container has no port named {port!r}")
