"""The layer contracts (``[tool.importlinter]`` in the root pyproject.toml) hold.

``crm_lib`` imports no service, not the gateway and not the dev package ``crm_dev``; services
never import each other, the gateway or ``crm_dev``; the gateway imports no service; no runtime
package imports the embedded servers or pytest. ``make lint`` runs the same check
(``lint-imports``); this test makes CI (``make test``) enforce it too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))\n"
)


def test_layer_contracts_are_kept() -> None:
    # A fresh interpreter: the check imports every package of the workspace.
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", CHECK, str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
