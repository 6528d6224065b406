"""Helpers that emit Python source exactly as `ruff format` and ruff's isort would lay it out.

Generated files have to pass `ruff check` and `ruff format --check` as they are written, without
running ruff (whose presence and version are not ours to rely on), so this module reproduces the
few layouts the generated code needs: wrapping a bracketed list at the line limit, wrapping a
`from` import, quoting strings, and the sort orders of imports and `__all__`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Sequence
from typing import Literal

LINE_LENGTH = 100  # [tool.ruff] line-length
INDENT = "    "

BracketMode = Literal["call", "collection", "def"]

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def py_str(value: str) -> str:
    """A string literal for `value`, quoted the way `ruff format` prefers."""
    # ruff format keeps double quotes unless that would escape more quotes than single ones.
    quote = "'" if value.count('"') > value.count("'") else '"'
    out: list[str] = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == quote:
            out.append("\\" + char)
        elif not char.isprintable():
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    return quote + "".join(out) + quote


def identifier(text: str) -> str:
    """`text` made into a Python identifier: other characters become `_`."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name):
        name += "_"
    return name


class Namer:
    """Hands out unique identifiers; a taken one gets the first free `_2`, `_3`... suffix."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken = set(reserved)

    def claim(self, base: str) -> str:
        name, suffix = base, 2
        while name in self._taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self._taken.add(name)
        return name


def bracketed(
    head: str, items: Sequence[str], tail: str, indent: str = "", mode: BracketMode = "call"
) -> list[str]:
    """`head` + comma-separated `items` + `tail` as lines, wrapped like `ruff format` does.

    `head` ends with the opening bracket and `tail` starts with the closing one. Over the limit,
    a call first tries all its arguments on one indented line; a collection with several items
    and a `def` with one parameter always go one item per line, with a trailing comma.
    """
    one_line = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one_line) <= LINE_LENGTH or not items:
        return [one_line]
    inner = indent + INDENT
    hugged = inner + ", ".join(items)
    single = len(items) == 1
    if mode == "collection":
        explode = not single
    elif mode == "def":
        explode = single or len(hugged) > LINE_LENGTH
    else:
        explode = not single and len(hugged) > LINE_LENGTH
    if explode:
        return [indent + head, *(f"{inner}{item}," for item in items), indent + tail]
    return [indent + head, hugged, indent + tail]


def from_import(module: str, name: str, alias: str | None = None, comment: str = "") -> list[str]:
    """`from module import name [as alias]`, wrapped in parentheses past the line limit."""
    member = f"{name} as {alias}" if alias else name
    suffix = f"  # {comment}" if comment else ""
    line = f"from {module} import {member}"
    # isort measures the import without its trailing comment.
    if len(line) <= LINE_LENGTH:
        return [line + suffix]
    return [f"from {module} import (", f"{INDENT}{member},{suffix}", ")"]


def natural_key(text: str) -> tuple[tuple[int, int], ...]:
    """Natural order (`a9` < `a10`), comparing other characters by code point, as ruff does."""
    return tuple(
        (ord("0"), int(chunk)) if chunk.isdigit() else (ord(chunk), 0)
        for chunk in re.findall(r"\d+|\D", text)
    )


def _member_type(name: str) -> int:
    # isort's order-by-type: CONSTANTS, then Classes, then everything else.
    if len(name) > 1 and name.isupper():
        return 0
    if name[:1].isupper():
        return 1
    return 2


def from_import_key(module: str, name: str) -> tuple[object, ...]:
    """Sort key of a single-name `from module import name` among ruff-isorted statements."""
    return (
        natural_key(module.lower()),
        natural_key(module),
        _member_type(name),
        natural_key(name.lower()),
        natural_key(name),
    )


def dunder_all_key(name: str) -> tuple[object, ...]:
    """Sort key of RUF022's isort-style `__all__` order."""
    return (_member_type(name), natural_key(name))
