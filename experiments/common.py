"""The plumbing every experiment shares: arguments, output folder, the JSON record, figures.

Each experiment keeps its science in one file, top to bottom, inside ``main(argv=None)``:

    def main(argv=None):
        args = common.parse_args(__doc__, "lion_vs_adamw", argv)
        ...                                   # config, data, trial, sweep, report
        common.write_record(args, {"paper": ..., "claim": ..., "pass_criterion": ...,
                                   "measured": ..., "verdict": ...})
        plt = common.pyplot()
        if plt is not None:
            ...                               # the figure
            common.save_figure(args, fig)

    if __name__ == "__main__":
        main()

so a test can call ``main(["--quick", "--out-dir", tmp])`` in its own process. A record
gets the command that produced it and the wall time measured at run time; pilot numbers (what
a criterion was fixed from) live in ``paper_figures/pilots/<name>.json``, never in source.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jopt.checkpoint import atomic_write

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "paper_figures"
PILOTS = FIGURES / "pilots"
VERDICTS = ("reproduced", "partly", "not reproduced")


def parse_args(
    doc: str | None,
    name: str,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    pilot: str | None = None,
) -> argparse.Namespace:
    """An experiment's command line: ``--quick``, ``--out-dir``, ``--pilot`` and its own
    arguments.

    Args:
      doc: the script's docstring (its first line describes the command).
      name: the experiment's name: its module, and the stem of its output files.
      argv: the arguments (``None``: the command line).
      add_arguments: adds the experiment's own arguments to the parser.
      pilot: what the experiment's ``--pilot`` run is (its help text); ``None``: no
        ``--pilot``. A pilot run fixes a criterion before the full run; it writes to
        ``runs/<name>_pilot`` unless ``--out-dir`` says otherwise.

    Returns:
      The parsed arguments, with ``quick``, ``pilot`` (``False`` without ``pilot``),
      ``out_dir`` (a ``Path``: ``paper_figures``, ``runs/<name>`` with ``--quick``,
      ``runs/<name>_pilot`` with ``--pilot``), ``name``, ``command`` (the command line that
      reproduces this run) and ``started`` (``time.perf_counter()`` at parse time).
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}", description=(doc or name).strip().splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny run, for the tests")
    parser.add_argument(
        "--out-dir", default=None, help=f"default: paper_figures (runs/{name} if --quick)"
    )
    if pilot is not None:
        parser.add_argument("--pilot", action="store_true", help=pilot)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.name = name
    args.pilot = bool(getattr(args, "pilot", False))
    default_dir = FIGURES
    if args.pilot:
        default_dir = ROOT / "runs" / f"{name}_pilot"
    elif args.quick:
        default_dir = ROOT / "runs" / name
    args.out_dir = Path(args.out_dir or default_dir)
    args.command = f"python -m experiments.{name}" + (" --quick" if args.quick else "")
    args.command += " --pilot" if args.pilot else ""
    args.started = time.perf_counter()
    return args


def overall(checks: Mapping[str, bool]) -> str:
    """The verdict of a set of pass/fail checks fixed before the run: all pass
    ``"reproduced"``, some ``"partly"``, none ``"not reproduced"``."""
    passed = sum(bool(ok) for ok in checks.values())
    if passed == len(checks):
        return "reproduced"
    return "partly" if passed else "not reproduced"


def read_pilot(name: str) -> dict[str, Any]:
    """The pilot run that fixed an experiment's criterion: ``paper_figures/pilots/<name>.json``."""
    path = PILOTS / f"{name}.json"
    return json.loads(path.read_text())


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, non-finite floats
    as ``None`` (strict JSON has no NaN), tuples as lists and keys as strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_record(args: argparse.Namespace, record: Mapping[str, Any], suffix: str = "") -> Path:
    """Writes ``<out_dir>/<name><suffix>.json`` atomically, adding ``command`` and
    ``wall_time_s`` (seconds since :func:`parse_args`, unless the record gives its own).

    Returns:
      The path written.
    """
    record = {"command": args.command, **record}
    record.setdefault("wall_time_s", time.perf_counter() - args.started)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{args.name}{suffix}.json"
    atomic_write(path, json.dumps(jsonable(record), indent=1).encode())
    print(f"wrote {path}")
    return path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or ``None`` (with a note) when
    matplotlib is not installed: the record is written either way."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: pip install 'jopt[plot]' for it")
        return None
    return plt


def save_figure(args: argparse.Namespace, fig: Any, suffix: str = "", dpi: int = 110) -> Path:
    """Saves ``fig`` as ``<out_dir>/<name><suffix>.png`` and closes it.

    Returns:
      The path written.
    """
    import matplotlib.pyplot as plt

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{args.name}{suffix}.png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    print(f"wrote {path}")
    return path
