"""Peak memory of a piece of code, measured in a fresh Python process (so nothing else the tests did counts)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MEASURE = """
import json

def _status(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))

{setup}
import gc; gc.collect()
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) restarts from the current RSS: the setup's own peak does not count
_before = _status("VmRSS")
try:
    {measured}
    _outcome = "ok"
except Exception as _err:
    _outcome = f"{{type(_err).__name__}}: {{_err}}"
print(json.dumps({{"growth": _status("VmHWM") - _before, "outcome": _outcome}}))
"""


def peak_growth(setup: str, measured: str, timeout: float = 300) -> tuple[int, str]:
    """(bytes the process's peak RSS grew by while `measured` ran, after `setup`; "ok" or the exception it
    raised as "Type: message"). Both are Python source; `measured` is one statement."""
    code = _MEASURE.format(setup=textwrap.dedent(setup), measured=measured)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["growth"], result["outcome"]
