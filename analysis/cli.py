"""What the command-line tools over results (`python -m analysis.report`, `python -m tlr_ray.results`) do
with a user's mistake: one `error:` line and exit status 2, and warnings about the data (duplicate runs,
missing seeds) as one `warning:` line each, never a traceback or a source line."""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

EXIT_USAGE = 2


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def run_command(body: Callable[[], int], errors: tuple[type[BaseException], ...]) -> int:
    """`body()`'s exit status; any of `errors` (the user's: a bad path, URI or option) -> exit 2."""
    saved, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return body()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = saved
