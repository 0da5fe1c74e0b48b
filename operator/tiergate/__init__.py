"""tiergate: tiered, health-gated rollouts of SMS sender workers, a durable sender and discard replay.

The package lives under ``operator/`` (a source folder, not a package) so that ``import operator``
stays the standard library.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
