"""python -m tlr_ray.demo [ROOT]: build the demo world if needed and print its folder."""
import logging
import sys

from tlr_ray.demo import ensure_demo_world

logging.basicConfig(level=logging.INFO, format="%(message)s")
print(ensure_demo_world(sys.argv[1] if len(sys.argv) > 1 else None))
