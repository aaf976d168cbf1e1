"""Build ``notebooks/06_click_to_segment.ipynb`` from ``notebooks/src/06_click_to_segment.py``.

A thin wrapper over ``build_notebooks.py`` (same rules, same output cleaning)::

    python notebooks/build_06.py              # the notebook without outputs
    python notebooks/build_06.py --execute    # with the outputs of the small configuration
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_notebooks  # noqa: E402

if __name__ == "__main__":
    sys.exit(build_notebooks.main(["--only", "06"] + sys.argv[1:]))
