"""detector: mail-account credential-abuse detection with scoped, cost-aware response plans."""

__version__ = "0.1.0"
