"""Shared pytest plugins: real servers for the integration tiers."""

pytest_plugins = [
    "tests.plugins.cluster",
    "tests.plugins.operator",
    "tests.plugins.postgres",
    "tests.plugins.prometheus",
    "tests.plugins.smsc",
]
