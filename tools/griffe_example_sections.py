"""A griffe extension: a Google-style ``Example:`` section is an examples section.

griffe recognises ``Examples:`` (plural) as the section whose ``>>>`` lines
render as code with their output; the singular ``Example:``, which the orrery
docstrings use, would otherwise become an admonition whose code and output run
together as one paragraph. Loaded by mkdocstrings (``extensions:`` in
mkdocs.yml); it changes only the rendered docs, never the code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section titles to ``Examples:`` before parsing."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _SINGULAR.sub(r"\1Examples:", docstring.value)
