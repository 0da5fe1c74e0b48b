"""Shared pytest plugins: real servers for the integration tiers (order: a plugin after those it imports)."""

pytest_plugins = [
    "tests.plugins.tools",
    "tests.plugins.smsc",
    "tests.plugins.postgres",
    "tests.plugins.cluster",
    "tests.plugins.prometheus",
    "tests.plugins.operator",
    "tests.plugins.replay",
    "tests.plugins.webhooks",
    "tests.plugins.notifications",
    "tests.plugins.openapi",
]
