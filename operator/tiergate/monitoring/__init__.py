"""Monitoring glue: Prometheus configuration and pod discovery for tiergate's own Prometheus."""
