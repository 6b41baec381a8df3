"""A fast recogniser for the common, problem-free subset of spec templates.

Jinja2's lexer and parser cost about 100-300 µs per template; a 1,000-node spec holds a thousand or
more. Most templates are text with `{{ dotted.names }}`, conditions such as
`nodes.a.output.score > 0.5 and inputs.mode == 'x'`, and `{% if %}` … `{% endif %}` blocks around
them. This module recognises exactly that subset with one regular expression and a small recursive
descent, and returns the references a template makes.

It is an optimisation, never a second opinion: it answers only when the template is certainly valid
Jinja2 with no problem to report (all names known, all filters and tests known, no private
attributes). Anything else — other syntax, unknown names, whitespace control, escapes — returns
None and Jinja2 itself analyses the template. Tests check that both paths agree.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z][A-Za-z0-9_]*)
      | (?P<string>'[^'\\{}%#]*'|"[^"\\{}%#]*")
      | (?P<number>(?:[1-9][0-9]*|0)(?:\.[0-9]+)?(?![A-Za-z0-9_.]))
      | (?P<op>==|!=|<=|>=|<|>|\.|\||\(|\))
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_SEGMENT = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_JINJA_MARKERS = ("{{", "{%", "{#")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else", "elif", "endif"})
_COMPARISONS = frozenset({"==", "!=", "<=", ">=", "<", ">"})
_ENDS_AFTER_TEST = frozenset({"and", "or", ")"}) | _COMPARISONS


class _NotInSubset(Exception):
    """The template is outside the subset (or has a problem): let Jinja2 decide."""


@dataclass(frozen=True, slots=True)
class Names:
    """What the recogniser may accept: the template roots, globals, filters and tests."""

    roots: Collection[str]
    globals: Collection[str]
    filters: Collection[str]
    tests: Collection[str]


def references(text: str, kind: str, names: Names) -> list[tuple[str, tuple[str, ...]]] | None:
    """`[(root, path), …]` in source order, or None when Jinja2 must analyse the text."""
    try:
        if kind == "expression":
            return _Expression(_tokens(text), names).parse_all()
        return _template(text, names)
    except (_NotInSubset, RecursionError):
        return None


def _template(text: str, names: Names) -> list[tuple[str, tuple[str, ...]]]:
    found: list[tuple[str, tuple[str, ...]]] = []
    open_blocks: list[str] = []  # "if" or "else" for each open {% if %}
    position = 0
    for match in _SEGMENT.finditer(text):
        _check_text(text[position : match.start()])
        position = match.end()
        hole, block = match.group(1), match.group(2)
        if hole is not None:
            found.extend(_Expression(_tokens(hole), names).parse_all())
            continue
        tokens = _tokens(block)
        keyword = tokens[0][1] if tokens else ""
        if keyword == "if" or (keyword == "elif" and open_blocks[-1:] == ["if"]):
            if keyword == "if":
                open_blocks.append("if")
            found.extend(_Expression(tokens[1:], names).parse_all())
        elif keyword == "else" and len(tokens) == 1 and open_blocks[-1:] == ["if"]:
            open_blocks[-1] = "else"
        elif keyword == "endif" and len(tokens) == 1 and open_blocks:
            open_blocks.pop()
        else:
            raise _NotInSubset
    _check_text(text[position:])
    if open_blocks:
        raise _NotInSubset
    return found


def _check_text(data: str) -> None:
    # Text ending in "{" would join the next "{{" or "{%" into "{{{" or "{{%", which Jinja reads
    # differently; a lone "{" at the very end is harmless but rare enough to leave to Jinja.
    if any(marker in data for marker in _JINJA_MARKERS) or data.endswith("{"):
        raise _NotInSubset


def _tokens(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(source):  # contiguous: any non-space character matches
        kind = match.lastgroup
        if kind is None or kind == "other":
            raise _NotInSubset
        tokens.append((kind, match[kind]))
    return tokens


class _Expression:
    """expr := and ('or' and)* ; and := not ('and' not)* ; not := 'not' not | compare ;
    compare := postfix ((CMP | ['not'] 'in') postfix)* ;
    postfix := primary ('|' FILTER | 'is' ['not'] TEST)* ;
    primary := dotted name | string | number | literal | '(' expr ')'"""

    def __init__(self, tokens: list[tuple[str, str]], names: Names) -> None:
        self._tokens = tokens
        self._position = 0
        self._names = names
        self.found: list[tuple[str, tuple[str, ...]]] = []

    def parse_all(self) -> list[tuple[str, tuple[str, ...]]]:
        self._or()
        if self._position != len(self._tokens):
            raise _NotInSubset
        return self.found

    def _peek(self) -> str | None:
        if self._position < len(self._tokens):
            return self._tokens[self._position][1]
        return None

    def _next(self) -> tuple[str, str]:
        if self._position >= len(self._tokens):
            raise _NotInSubset
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _or(self) -> None:
        self._and()
        while self._peek() == "or":
            self._next()
            self._and()

    def _and(self) -> None:
        self._not()
        while self._peek() == "and":
            self._next()
            self._not()

    def _not(self) -> None:
        if self._peek() == "not":
            self._next()
            self._not()
        else:
            self._compare()

    def _compare(self) -> None:
        self._postfix()
        while True:
            token = self._peek()
            if token in _COMPARISONS or token == "in":
                self._next()
            elif token == "not" and self._lookahead(1) == "in":
                self._next()
                self._next()
            else:
                return
            self._postfix()

    def _lookahead(self, offset: int) -> str | None:
        index = self._position + offset
        return self._tokens[index][1] if index < len(self._tokens) else None

    def _postfix(self) -> None:
        self._primary()
        while True:
            token = self._peek()
            if token == "|":
                self._next()
                self._name_in(self._names.filters)
            elif token == "is":
                self._next()
                if self._peek() == "not":
                    self._next()
                self._name_in(self._names.tests)
                following = self._peek()
                if following is not None and following not in _ENDS_AFTER_TEST:
                    raise _NotInSubset  # a test argument (`is divisibleby 3`) or worse
            else:
                return

    def _name_in(self, allowed: Collection[str]) -> None:
        kind, value = self._next()
        if kind != "name" or value not in allowed or self._peek() in (".", "("):
            raise _NotInSubset

    def _primary(self) -> None:
        kind, value = self._next()
        if kind in ("string", "number"):
            return
        if value == "(":
            self._or()
            if self._next()[1] != ")":
                raise _NotInSubset
            return
        if kind != "name" or value in _KEYWORDS:
            raise _NotInSubset
        path = list(self._dotted_tail())
        if self._peek() == "(":
            raise _NotInSubset  # a call
        if value in self._names.roots:
            self.found.append((value, tuple(path)))
        elif path or (value not in _LITERALS and value not in self._names.globals):
            raise _NotInSubset

    def _dotted_tail(self) -> Iterator[str]:
        while self._peek() == ".":
            self._next()
            kind, value = self._next()
            if kind != "name":
                raise _NotInSubset
            yield value
