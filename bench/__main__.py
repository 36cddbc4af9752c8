"""Run every benchmark module (``bench/<name>.py`` with a ``main()``), or the ones named.

    python -m bench                 # all
    python -m bench executor        # one
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from flowfront.settings import prepare_environment


def main(argv: list[str]) -> int:
    prepare_environment()
    here = Path(__file__).parent
    names = argv or sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "main"):
            continue
        print(f"== bench {name}", flush=True)
        started = time.perf_counter()
        try:
            module.main()
        except Exception as exc:  # one failing benchmark must not hide the others' results
            print(f"bench {name} failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
        print(f"== bench {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
