"""Pure state of pods run as local processes: pod IPs, probe results, pod status.

Kept apart from the runner's I/O so that the kubelet-like rules (threshold
counting, restart backoff, which conditions a pod gets, when a condition's
transition time moves) are unit-tested with plain values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


class PoolExhaustedError(Exception):
    """No free address is left in the pod IP range."""


@dataclass
class IpPool:
    """Hands out unique loopback pod IPs from a CIDR, one per pod uid."""

    cidr: str
    _by_key: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.cidr)
        if not net.is_loopback or net.version != 4:
            raise ValueError(f"pod IP range must be IPv4 loopback, got {self.cidr}")
        self._net = net

    def _usable(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        last = int(ip) & 0xFF
        return ip in self._net and last not in (0, 255) and ip != self._net.network_address

    def allocate(self, key: str, preferred: str | None = None) -> str:
        """Return key's IP, allocating one (preferred if free and in range)."""
        if key in self._by_key:
            return self._by_key[key]
        taken = set(self._by_key.values())
        if preferred:
            try:
                ip = ipaddress.ip_address(preferred)
            except ValueError:
                ip = None
            if ip is not None and self._usable(ip) and preferred not in taken:
                self._by_key[key] = preferred
                return preferred
        size = self._net.num_addresses
        for _ in range(size):
            self._next = (self._next + 1) % size
            candidate = self._net.network_address + self._next
            text = str(candidate)
            if self._usable(candidate) and text not in taken:
                self._by_key[key] = text
                return text
        raise PoolExhaustedError(self.cidr)

    def release(self, key: str) -> None:
        """Free key's IP, if it had one."""
        self._by_key.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass(frozen=True)
class ProbeState:
    """Consecutive probe outcomes and the current verdict, like the kubelet's prober."""

    ok: bool
    successes: int = 0
    failures: int = 0

    def observe(self, passed: bool, success_threshold: int, failure_threshold: int) -> ProbeState:
        """Return the state after one probe outcome."""
        if passed:
            n = self.successes + 1
            return ProbeState(ok=self.ok or n >= success_threshold, successes=n, failures=0)
        n = self.failures + 1
        return ProbeState(ok=self.ok and n < failure_threshold, successes=0, failures=n)


def restart_delay(restarts: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait before the next restart, doubling per restart up to cap."""
    if restarts <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (restarts - 1)))


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited is started again under the pod's restartPolicy."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


@dataclass(frozen=True)
class ContainerView:
    """What the runner knows about one container, as reported in containerStatuses."""

    name: str
    image: str
    started: bool = False
    ready: bool = False
    restart_count: int = 0
    state: Mapping[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Mapping[str, Any] = field(default_factory=dict)
    terminal: bool = False
    exit_code: int | None = None

    def with_(self, **changes: Any) -> ContainerView:
        """Return a copy with changes."""
        return replace(self, **changes)

    def as_status(self, pid: int | None = None) -> dict[str, Any]:
        """The containerStatuses entry."""
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": f"process://{pid}" if pid else "",
            "started": self.started,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": dict(self.state),
            "lastState": dict(self.last_state),
        }


def pod_phase(containers: Sequence[ContainerView]) -> str:
    """The pod phase from its containers' states."""
    if containers and all(c.terminal for c in containers):
        return "Succeeded" if all(c.exit_code == 0 for c in containers) else "Failed"
    if any(c.started or "running" in c.state or c.restart_count for c in containers):
        return "Running"
    return "Pending"


def _condition(
    ctype: str, value: bool, now: str, previous: Mapping[str, Mapping[str, Any]], reason: str = ""
) -> dict[str, Any]:
    status = "True" if value else "False"
    old = previous.get(ctype)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastTransitionTime": since}
    if reason and not value:
        cond["reason"] = reason
    return cond


def pod_status(
    *,
    previous: Mapping[str, Any] | None,
    host_ip: str,
    pod_ip: str,
    start_time: str,
    now: str,
    containers: Sequence[ContainerView],
    pids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The full pod status a kubelet would write for these containers."""
    prev = {c["type"]: c for c in (previous or {}).get("conditions") or [] if "type" in c}
    all_ready = bool(containers) and all(c.ready for c in containers)
    phase = pod_phase(containers)
    pids = pids or {}
    return {
        "phase": phase,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "conditions": [
            _condition("PodReadyToStartContainers", True, now, prev),
            _condition("Initialized", True, now, prev),
            _condition("Ready", all_ready, now, prev, "ContainersNotReady"),
            _condition("ContainersReady", all_ready, now, prev, "ContainersNotReady"),
            _condition("PodScheduled", True, now, prev),
        ],
        "containerStatuses": [c.as_status(pids.get(c.name)) for c in containers],
    }
