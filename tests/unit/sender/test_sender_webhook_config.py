"""Webhook and receipt-timeout settings: the customers' file, durations, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.sender.errors import ConfigError
from tiergate.sender.settings import api_settings

TOKENS = {"TIERGATE_API_TOKENS": "tok=acme"}
SECRET = "whsec-0123456789abcdef"


def test_customers_from_a_yaml_file_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    path.write_text(
        "customers:\n"
        "  acme:\n"
        "    url: https://hooks.acme.example/sms\n"
        f"    secrets: [{SECRET}, the-next-secret-0001]\n"
        "  globex:\n"
        f"    secret: {SECRET}\n"
    )
    env = {
        **TOKENS,
        "TIERGATE_WEBHOOKS_FILE": str(path),
        "TIERGATE_RECEIPT_TIMEOUT": "48h",
        "TIERGATE_WEBHOOK_RETRY_FOR": "3600",
        "TIERGATE_MAX_VALIDITY": "24h",
    }
    settings = api_settings(env=env)
    hooks = settings.webhooks
    assert hooks.customers["acme"].url == "https://hooks.acme.example/sms"
    assert hooks.customers["acme"].secrets == (SECRET, "the-next-secret-0001")
    assert hooks.customers["globex"].delivery.can_sign
    assert hooks.customers["globex"].delivery.default_callback_url is None
    assert (hooks.receipt_timeout, hooks.schedule.retry_for) == (48 * 3600, 3600)
    assert settings.rules.max_validity == 24 * 3600
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            '{"customers": {"acme": {"url": "http://hooks.example/x", "secret": "' + SECRET + '"}}}',
            "not usable",
        ),
        ('{"customers": {"acme": {"url": "https://hooks.example/x"}}}', "no secret"),
        ('{"customers": {"acme": {"secret": "short"}}}', "16+"),
        ('{"clients": {}}', "'customers'"),
        ("customers: [", "not YAML"),
    ],
)
def test_unusable_webhook_configuration_is_refused(config: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        api_settings(env={**TOKENS, "TIERGATE_WEBHOOKS": config})


def test_http_loopback_callbacks_only_with_the_test_switch() -> None:
    config = '{"customers": {"acme": {"url": "http://127.0.0.1:9/x", "secret": "' + SECRET + '"}}}'
    with pytest.raises(ConfigError):
        api_settings(env={**TOKENS, "TIERGATE_WEBHOOKS": config})
    env = {**TOKENS, "TIERGATE_WEBHOOKS": config, "TIERGATE_WEBHOOK_ALLOW_HTTP_LOOPBACK": "1"}
    assert api_settings(env=env).webhooks.customers["acme"].url == "http://127.0.0.1:9/x"


def test_a_bad_duration_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="TIERGATE_RECEIPT_TIMEOUT"):
        api_settings(env={**TOKENS, "TIERGATE_RECEIPT_TIMEOUT": "a while"})
