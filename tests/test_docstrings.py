"""Every public function and class of jopt has a docstring in the style guide's shape.

The public API is every function and class named in the ``__all__`` of ``jopt`` or of a
submodule found by ``pkgutil.walk_packages``, and, in ``jopt.train``'s submodules and in the
modules without ``__all__``, every function and class they define whose name does not start
with ``_``. A jitted or cached function counts as the function it wraps; what a module takes
from another library (``optax``'s ``constant_schedule``) is not checked.

Rules (``docstring_problems``; style guide section 1, optax's ``adam``):

* a docstring, whose first line is a one-line summary: text, not a section header, followed
  by a blank line (or nothing);
* sections are headers alone on a line at the docstring's own indentation, each at most
  once: ``Args:``, ``Returns:``/``Yields:``, ``Raises:``, ``Examples:`` (or ``Example:``),
  ``References:``, in that order (``Attributes:``, for a class's fields, is not ranked);
  another spelling of one of them (``Arguments:``, ``Parameters:``, ``Return:``, ...) is
  an error, while other lines such as ``Inputs:`` are prose;
* a function with parameters (``self`` and ``cls`` aside) has an ``Args:`` section, unless
  its docstring is at most 3 lines (a trivial helper);
* wherever there is an ``Args:`` section (in a function's docstring, or in a class's for its
  constructor): every entry is ``name: text``, ``name (type): text`` or ``a, b: text``; every
  parameter is documented (``*args``/``**kwargs`` as ``*args``/``**kwargs`` or bare); every
  name documented is a parameter; none is documented twice.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any

import jopt

RANK = {
    "Args:": 0,
    "Returns:": 1,
    "Yields:": 1,
    "Raises:": 2,
    "Examples:": 3,
    "Example:": 3,
    "References:": 4,
}
UNRANKED = {"Attributes:"}
# Other spellings of the sections above, which docs tools would not read as those sections.
MISSPELT = {
    "Arguments:": "Args:",
    "Argument:": "Args:",
    "Parameters:": "Args:",
    "Params:": "Args:",
    "Return:": "Returns:",
    "Yield:": "Yields:",
    "Raise:": "Raises:",
    "Exceptions:": "Raises:",
    "Usage:": "Examples:",
    "Reference:": "References:",
    "Attribute:": "Attributes:",
}
# One entry of ``Args:``: ``name:``, ``name (type):``, ``a, b:``, ``*args:``, ``**kwargs:``.
ENTRY = re.compile(r"(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?\s*:(?:\s|$)")
MAX_TRIVIAL_LINES = 3


def _unwrap(obj: Any) -> Any:
    """A jitted (``PjitFunction``) or ``lru_cache``-d function as the function it wraps."""
    if callable(obj) and not inspect.isclass(obj) and hasattr(obj, "__wrapped__"):
        return inspect.unwrap(obj)
    return obj


def _is_checked(obj: Any) -> bool:
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(
        obj, "__module__", ""
    ).startswith("jopt")


def public_api() -> list[tuple[str, Any]]:
    """``(module.qualname, object)`` of every public function and class, each once, sorted."""
    found: dict[int, tuple[str, Any]] = {}
    names = ["jopt"] + [m.name for m in pkgutil.walk_packages(jopt.__path__, "jopt.")]
    for name in names:
        module = importlib.import_module(name)
        exported = list(getattr(module, "__all__", []))
        if name.startswith("jopt.train.") or not hasattr(module, "__all__"):
            exported += [
                attr
                for attr, value in vars(module).items()
                if not attr.startswith("_") and getattr(_unwrap(value), "__module__", None) == name
            ]
        for attr in exported:
            obj = _unwrap(getattr(module, attr, None))
            if _is_checked(obj):
                found.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(found.values(), key=lambda item: item[0])


def _sections(lines: list[str]) -> list[tuple[int, str]]:
    """``(line number, header)`` of every section header (a header alone, at column 0)."""
    known = RANK.keys() | UNRANKED | MISSPELT.keys()
    return [(i, line.rstrip()) for i, line in enumerate(lines) if line.rstrip() in known]


def _args_entries(lines: list[str], start: int) -> tuple[list[str], list[str]]:
    """The names documented in the ``Args:`` section at line ``start``, and bad entries."""
    names, malformed = [], []
    indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section, or a paragraph after the section
        indent = depth if indent is None else indent
        if depth != indent:
            continue  # a continuation line of the entry above
        match = ENTRY.match(line.strip())
        if match is None:
            malformed.append(line.strip()[:40])
            continue
        names += [n.strip().lstrip("*") for n in match.group(1).split(",")]
    return names, malformed


def _parameters(obj: Any) -> list[str] | None:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [p for p in signature.parameters if p not in ("self", "cls")]


def docstring_problems(obj: Any) -> list[str]:
    """What is wrong with ``obj``'s docstring, by the rules of the module docstring."""
    doc = inspect.getdoc(obj)
    if not doc or not doc.strip():
        return ["no docstring"]
    lines = doc.splitlines()
    problems = []
    sections = _sections(lines)
    if (sections and sections[0][0] == 0) or (len(lines) > 1 and lines[1].strip()):
        problems.append("the summary is not one line followed by a blank line")
    headers = [header for _, header in sections]
    for header in headers:
        if header in MISSPELT:
            problems.append(f"section {header!r}: write {MISSPELT[header]!r}")
    repeated = sorted({h for h in headers if headers.count(h) > 1})
    if repeated:
        problems.append(f"section(s) {repeated} more than once")
    ranked = [h for h in headers if h in RANK]
    if [RANK[h] for h in ranked] != sorted(RANK[h] for h in ranked):
        problems.append(
            "sections out of order: " + " ".join(ranked) + " (expected Args: < Returns:/"
            "Yields: < Raises: < Examples: < References:)"
        )
    parameters = _parameters(obj)
    args_at = [i for i, header in sections if header == "Args:"]
    if inspect.isfunction(obj) and parameters and not args_at and len(lines) > MAX_TRIVIAL_LINES:
        problems.append(f"no Args: section for parameter(s) {parameters}")
    if args_at and parameters is not None:
        documented, malformed = _args_entries(lines, args_at[0])
        if malformed:
            problems.append(f"Args: entries not of the form 'name: text': {malformed}")
        missing = [p for p in parameters if p not in documented]
        if missing:
            problems.append(f"parameter(s) {missing} not documented under Args:")
        extra = [n for n in documented if n not in parameters]
        if extra:
            problems.append(f"Args: documents {extra}, which are not parameters")
        twice = sorted({n for n in documented if documented.count(n) > 1})
        if twice:
            problems.append(f"Args: documents {twice} more than once")
    return problems


def test_public_docstrings_follow_the_style_guide():
    api = public_api()
    assert len(api) > 150, f"found only {len(api)} public functions and classes"
    offenders = [f"{name}: {problem}" for name, obj in api for problem in docstring_problems(obj)]
    assert not offenders, f"{len(offenders)} docstring problem(s):\n" + "\n".join(offenders)


def test_the_audit_finds_each_kind_of_problem():
    def no_docstring(x):
        pass

    def wrong_order(x):
        """Summary.

        Returns:
          x.

        Args:
          x: a value.
        """

    def undocumented_and_unknown(x, *args, y=1, **kwargs):
        """Summary.

        Args:
          x: a value.
          z: not a parameter.
          **kwargs: documented.
        """

    def misspelt(x):
        """Summary.

        Arguments:
          x: a value.
        """

    def long_without_args(x):
        """Summary.

        A paragraph
        of three lines.
        """

    def summary_over_two_lines(x):
        """A summary that goes on
        to a second line."""

    def trivial(x):
        """A one-line helper."""

    def good(x, *args, y=1, **kwargs):
        """Summary.

        Args:
          x: a value.
          *args: more values.
          y (int): a keyword.
          **kwargs: passed on.

        Returns:
          Nothing.

        Examples:
          >>> good(1)
        """

    assert docstring_problems(no_docstring) == ["no docstring"]
    assert any("out of order" in p for p in docstring_problems(wrong_order))
    found = docstring_problems(undocumented_and_unknown)
    assert any("['args', 'y'] not documented" in p for p in found), found
    assert any("['z'], which are not parameters" in p for p in found), found
    assert any("write 'Args:'" in p for p in docstring_problems(misspelt))
    assert any("no Args:" in p for p in docstring_problems(long_without_args))
    assert any("summary" in p for p in docstring_problems(summary_over_two_lines))
    assert docstring_problems(trivial) == []
    assert docstring_problems(good) == []
