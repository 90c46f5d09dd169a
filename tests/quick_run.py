"""Runs an experiment's ``--quick`` form in a subprocess, as the tests do.

The quick forms check that a script runs end to end and writes a sensible record; their own
speed does not matter, and most of their time is XLA compiling a few small programs. So they
run with XLA's backend optimization level 0, which roughly halves that compile time on a CPU.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_COMPILE = "--xla_backend_optimization_level=0"


def run_quick(module: str, *extra: str, fast_compile: bool = True) -> str:
    """``python -m experiments.MODULE --quick *extra`` from the repository root; its stdout.

    ``fast_compile=False`` keeps XLA's optimizations, for quick forms whose time goes into
    running rather than compiling (recurrent models: a scan inside a scan).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p),
    }
    flags = " ".join(f for f in flags.split() if f != FAST_COMPILE)
    if fast_compile:
        flags = f"{flags} {FAST_COMPILE}"
    env["XLA_FLAGS"] = flags.strip()
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", "--quick", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
