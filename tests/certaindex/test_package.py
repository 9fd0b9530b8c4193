"""The package surface: light import, exported names."""

from __future__ import annotations

import subprocess
import sys

import certaindex


def test_import_is_light() -> None:
    code = (
        "import sys, certaindex; "
        "print(','.join(m for m in ('httpx', 'fastapi', 'torch', 'math_verify', 'sympy', 'scipy.stats') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_exports_exist() -> None:
    assert all(hasattr(certaindex, name) for name in certaindex.__all__)
    assert sorted(certaindex.__all__) == sorted(set(certaindex.__all__))
