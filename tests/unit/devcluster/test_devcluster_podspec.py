"""Kubelet-like reading of container specs: env, $(VAR) expansion, probes."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate_kits.devcluster.podspec import (
    ContainerConfigError,
    ProbeSpec,
    argv,
    expand,
    quantity,
    resolve_env,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "w-1",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"tier": "bulk", "app": "w"},
        "annotations": {"a": "b"},
    },
    "spec": {"nodeName": "kwok-node-0", "serviceAccountName": "default"},
}

SOURCES = {
    ("Secret", "creds"): {"password": "s3cret"},
    ("ConfigMap", "settings"): {"MODE": "fast", "LEVEL": "3"},
}


def lookup(kind: str, name: str) -> dict[str, str] | None:
    return SOURCES.get((kind, name))


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(A)-x", {"A": "1"}, "1-x"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(A)", {"A": "1"}, "$(A)"),
        ("a$$b", {}, "a$b"),
        ("$(A)$(B)", {"A": "1", "B": "2"}, "12"),
        ("plain", {"A": "1"}, "plain"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, env: dict[str, str], expected: str) -> None:
    assert expand(text, env) == expected


def test_resolve_env_covers_every_source() -> None:
    container = {
        "name": "c",
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "LITERAL", "value": "v"},
            {"name": "EXPANDED", "value": "$(LITERAL)-$(CFG_MODE)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "TIER",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
            },
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {
                "name": "PW",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
            },
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}},
            },
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}},
            },
        ],
    }
    env = resolve_env(POD, container, pod_ip="127.2.0.5", host_ip="127.0.0.1", lookup=lookup)
    assert env == {
        "CFG_MODE": "fast",
        "CFG_LEVEL": "3",
        "LITERAL": "v",
        "EXPANDED": "v-fast",
        "NAME": "w-1",
        "NS": "ns",
        "TIER": "bulk",
        "IP": "127.2.0.5",
        "NODE": "kwok-node-0",
        "PW": "s3cret",
        "LEVEL": "3",
        "MEM_MI": "64",
        "CPU": "1",
    }


@pytest.mark.parametrize(
    "env_item",
    [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}},
        {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.unknown"}}},
    ],
)
def test_missing_required_source_is_a_config_error(env_item: dict[str, Any]) -> None:
    with pytest.raises(ContainerConfigError):
        resolve_env(POD, {"env": [env_item]}, pod_ip="", host_ip="", lookup=lookup)


def test_argv_joins_command_and_args_with_expansion() -> None:
    container = {"name": "c", "command": ["tiergate", "sender"], "args": ["--tier", "$(TIER)"]}
    assert argv(container, {"TIER": "bulk"}) == ["tiergate", "sender", "--tier", "bulk"]


def test_argv_without_command_is_refused() -> None:
    with pytest.raises(ContainerConfigError, match="no command"):
        argv({"name": "c", "image": "x", "args": ["a"]}, {})


@pytest.mark.parametrize(
    ("text", "value"), [("500m", "0.5"), ("64Mi", str(64 * 2**20)), ("2", "2"), ("1k", "1000")]
)
def test_quantity(text: str, value: str) -> None:
    assert quantity(text) == quantity(value)


def test_probe_defaults_and_named_port() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    spec = ProbeSpec.parse({"httpGet": {"path": "/readyz", "port": "http"}}, container)
    assert spec == ProbeSpec(kind="http", port=8080, path="/readyz")
    assert spec.period == 10
    assert spec.failure_threshold == 3
    assert spec.success_threshold == 1


def test_probe_custom_timings_and_kinds() -> None:
    tcp = ProbeSpec.parse({"tcpSocket": {"port": 9000}, "periodSeconds": 1, "failureThreshold": 2}, {})
    assert tcp is not None
    assert (tcp.kind, tcp.port, tcp.period, tcp.failure_threshold) == (
        "tcp",
        9000,
        1.0,
        2,
    )
    ex = ProbeSpec.parse({"exec": {"command": ["true"]}}, {})
    assert ex is not None
    assert ex.command == ("true",)
    assert ProbeSpec.parse(None, {}) is None
    with pytest.raises(ContainerConfigError):
        ProbeSpec.parse({"httpGet": {"port": "missing"}}, {})
