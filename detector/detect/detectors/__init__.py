"""Built-in detectors, one module per family; importing this package registers them."""

from detector.detect.detectors import access, attacks, benign, guessing

__all__ = ["access", "attacks", "benign", "guessing"]
