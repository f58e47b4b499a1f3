"""The front-end files of the notebook widgets, joined into one ES module each.

anywidget loads a widget's ES module from a blob, where relative imports do
not resolve, so the pieces the explorer and the compare view share
(``static/flowtable.js``: the virtualized flow table, the keyboard, the body
and error blocks) are put ahead of each widget's own file here, with no build
step.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
"""The folder of the widgets' ES modules and stylesheets."""
SHARED_JS = "flowtable.js"
"""The script every widget module starts with."""


def esm(name: str) -> str:
    """The ES module of widget file ``name``: the shared script, then the file."""
    return "\n".join(
        (STATIC / part).read_text(encoding="utf-8") for part in (SHARED_JS, name)
    )


def css(*names: str) -> str:
    """The stylesheets ``names``, in order, as one."""
    return "\n".join((STATIC / name).read_text(encoding="utf-8") for name in names)
