"""tlr_ray: distributed sweeps of cross-lingual transfer with adapters (MAD-X, BAD-X, TLR) on Ray.

Kept import-light on purpose: `--dry-run` and the results CLI must not import torch or Ray.
"""
__version__ = "0.1.0"
