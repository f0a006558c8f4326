"""The offline demo world: synthetic pseudo-languages, NLI data in native formats and a tiny BERT.

`ensure_demo_world()` builds it once into the cache and returns its folder; see docs/demo-world.md.
Importing this package is cheap (no torch).
"""
from tlr_ray.demo.world import default_root, ensure_demo_world, write_demo_data

__all__ = ["default_root", "ensure_demo_world", "write_demo_data"]
