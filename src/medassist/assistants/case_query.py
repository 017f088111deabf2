"""A small, safe filter language for case frames: ``age > 60 and sex == "F"``.

Nothing is ever evaluated as Python: the text is tokenised, parsed by a recursive-descent parser
into a tree of comparisons, and the tree is applied to the frame's columns with pandas
operations. Anything outside the grammar is an error that says where it went wrong.

Grammar::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" expr ")" | comparison
    comparison := COLUMN OP value
                | COLUMN ["not"] "in" "(" value ("," value)* ")"
                | COLUMN "contains" STRING          (code lists: exact code or its ICD-10 children)
                | COLUMN "is" ["not"] "missing"
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := NUMBER | STRING | "true" | "false"
    COLUMN     := name made of letters, digits, '_' and '.', or any name in `backquotes`

Limits: at most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` levels of parentheses and ``not``
(so a hostile filter cannot exhaust the parser's stack); both are refused with a ConfigError.

Example:
    >>> mask = filter_mask(frame, 'age >= 65 and sex == "F" and not (chf in (1))')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import ConfigError, SchemaError
from medassist.options import unknown_name_error

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[(),])
      | (?P<quoted>`[^`]+`)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains", "is", "missing", "true", "false"}
MAX_LENGTH = 2000
#: Parentheses and 'not's nested deeper than this are refused (the parser recurses once per level).
MAX_DEPTH = 32


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"Filter expression is {len(text)} characters long; at most {MAX_LENGTH} are accepted.")
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos or m.lastgroup is None:  # (every alternative of _TOKEN is a named group)
            raise ConfigError(f"Filter expression: unexpected character {text[pos:].lstrip()[:1]!r} at position "
                              f"{pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1} in {text!r}.")
        kind = m.lastgroup
        value, start = m.group(kind), m.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        elif kind == "quoted":
            kind, value = "name", value[1:-1]
        tokens.append(Token(kind, value, start))
        pos = m.end()
    return tokens


# ---------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # == != < <= > >= in notin contains missing notmissing
    values: tuple[Any, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or, not
    args: tuple[Any, ...]


class _Parser:
    def __init__(self, text: str, columns: list[str]) -> None:
        self.text, self.columns = text, columns
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def nested(self) -> None:
        """Count one more level of '(' or 'not'; refuse one past ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            tok = self.tokens[self.i - 1]
            raise ConfigError(f"Filter expression: nested more than {MAX_DEPTH} levels deep (parentheses and 'not') at "
                              f"'{tok.text}' (position {tok.pos + 1}); at most {MAX_DEPTH} levels are accepted.")

    def error(self, what: str) -> ConfigError:
        tok = self.tokens[self.i] if self.i < len(self.tokens) else None
        where = f"at '{tok.text}' (position {tok.pos + 1})" if tok else "at the end"
        return ConfigError(f"Filter expression {self.text!r}: {what} {where}. "
                           'Expected e.g. age > 60 and sex == "F", stage in ("II", "III"), not chf == 1.')

    def peek(self, kind: str | None = None, text: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        tok = self.tokens[self.i]
        return (kind is None or tok.kind == kind) and (text is None or tok.text == text)

    def take(self, kind: str, text: str | None = None, what: str = "") -> Token:
        if not self.peek(kind, text):
            raise self.error(f"expected {what or text or kind}")
        self.i += 1
        return self.tokens[self.i - 1]

    def parse(self) -> Any:
        if not self.tokens:
            raise ConfigError("Filter expression is empty.")
        node = self.expr()
        if self.i != len(self.tokens):
            raise self.error("unexpected text")
        return node

    def expr(self) -> Any:
        args = [self.and_expr()]
        while self.peek("keyword", "or"):
            self.i += 1
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def and_expr(self) -> Any:
        args = [self.not_expr()]
        while self.peek("keyword", "and"):
            self.i += 1
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def not_expr(self) -> Any:
        if self.peek("keyword", "not"):
            self.i += 1
            self.nested()
            node = BoolOp("not", (self.not_expr(),))
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Any:
        if self.peek("punct", "("):
            self.i += 1
            self.nested()
            node = self.expr()
            self.take("punct", ")", "')'")
            self.depth -= 1
            return node
        return self.comparison()

    def value(self) -> Any:
        if self.peek("number"):
            return float(self.take("number").text)
        if self.peek("string"):
            raw = self.take("string").text[1:-1]
            return re.sub(r"\\(.)", r"\1", raw)
        if self.peek("keyword", "true") or self.peek("keyword", "false"):
            return self.take("keyword").text == "true"
        raise self.error("expected a number or a quoted string")

    def comparison(self) -> Compare:
        col = self.take("name", what="a column name").text
        if col not in self.columns:
            err = unknown_name_error(col, self.columns, kind="column")
            raise SchemaError(f"Filter expression: {err}")
        if self.peek("op"):
            return Compare(col, self.take("op").text, (self.value(),))
        negate = False
        if self.peek("keyword", "not"):
            self.i += 1
            negate = True
            if not self.peek("keyword", "in"):
                raise self.error("expected 'in' after 'not'")
        if self.peek("keyword", "in"):
            self.i += 1
            self.take("punct", "(", "'(' after 'in'")
            values = [self.value()]
            while self.peek("punct", ","):
                self.i += 1
                values.append(self.value())
            self.take("punct", ")", "')'")
            return Compare(col, "notin" if negate else "in", tuple(values))
        if self.peek("keyword", "contains"):
            self.i += 1
            if not self.peek("string"):
                raise self.error("expected a quoted code after 'contains'")
            return Compare(col, "contains", (self.value(),))
        if self.peek("keyword", "is"):
            self.i += 1
            neg = False
            if self.peek("keyword", "not"):
                self.i += 1
                neg = True
            self.take("keyword", "missing", "'missing'")
            return Compare(col, "notmissing" if neg else "missing", ())
        raise self.error(f"expected a comparison after column '{col}'")


def parse_filter(text: str, columns: list[str]) -> Any:
    """Parse ``text`` into a tree of :class:`Compare` / :class:`BoolOp` nodes over ``columns``."""
    return _Parser(str(text), [str(c) for c in columns]).parse()


# ---------------------------------------------------------------------------- evaluation


def _numeric(s: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    num = pd.to_numeric(s, errors="coerce")
    return num if num.notna().sum() >= max(1, 0.9 * s.notna().sum()) else None


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _compare(frame: pd.DataFrame, node: Compare) -> np.ndarray:
    s = frame[node.column]
    present = s.notna().to_numpy()
    if node.op == "missing":
        return ~present
    if node.op == "notmissing":
        return present
    if node.op == "contains":
        code = str(node.values[0]).strip().upper()
        out = np.zeros(len(s), dtype=bool)
        for i, v in enumerate(s.to_numpy()):
            if present[i]:
                out[i] = any(c.strip().upper() == code or c.strip().upper().startswith(code) for c in str(v).split(";"))
        return out
    values = node.values
    num = _numeric(s)
    all_numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if node.op in ("<", "<=", ">", ">="):
        if num is None or not all_numbers:
            raise ConfigError(f"Filter expression: '{node.column} {node.op} {values[0]!r}' compares order, which needs a numeric column "
                              f"and a number ('{node.column}' is {'numeric' if num is not None else 'text'}).")
        x = num.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            res = {"<": x < values[0], "<=": x <= values[0], ">": x > values[0], ">=": x >= values[0]}[node.op]
        return res & ~np.isnan(x)
    if num is not None and all_numbers:
        x = num.to_numpy(dtype=float)
        hit = np.isin(x, np.asarray(values, dtype=float)) & ~np.isnan(x)
    else:
        text = s.map(lambda v: None if pd.isna(v) else _as_text(v).strip().lower()).to_numpy()
        wanted = {_as_text(v).strip().lower() for v in values}
        hit = np.array([t is not None and t in wanted for t in text], dtype=bool)
    if node.op in ("==", "in"):
        return hit
    return ~hit & present  # '!=' / 'not in': a missing value is neither equal nor different


def apply_filter(frame: pd.DataFrame, node: Any) -> np.ndarray:
    if isinstance(node, Compare):
        return _compare(frame, node)
    parts = [apply_filter(frame, a) for a in node.args]
    if node.op == "not":
        return ~parts[0]
    out = parts[0]
    for p in parts[1:]:
        out = (out & p) if node.op == "and" else (out | p)
    return out


def filter_mask(frame: pd.DataFrame, where: str | None) -> np.ndarray:
    """Boolean mask (N,) of the rows ``where`` selects (all rows for ``None`` or blank)."""
    if where is None or not str(where).strip():
        return np.ones(len(frame), dtype=bool)
    return apply_filter(frame, parse_filter(where, list(frame.columns)))
