"""A small, safe evaluator for arithmetic on integers: + − × ÷, unary minus and parentheses, exact rationals.

Model output is never `eval`-ed or compiled: the string is parsed with `ast.parse(mode="eval")` and the tree is
walked by hand, accepting only `BinOp(Add | Sub | Mult | Div)`, `UnaryOp(USub)` and integer `Constant`s written as
plain decimal digits (no floats, bools, `0x…`, `1_000` or `1e3`). Values are `fractions.Fraction`, so
`(1 + 2) / 3 == 1` exactly; dividing by zero makes the expression invalid.

Bounds (so any input is handled in bounded time and memory): at most `MAX_CHARS` characters, `MAX_DEPTH` levels
of nesting in the tree, `MAX_LITERALS` numbers, `MAX_DIGITS` digits per number.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 256
MAX_DEPTH = 32
MAX_LITERALS = 16
MAX_DIGITS = 9

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Evaluation:
    value: Fraction
    numbers: tuple[int, ...]  # the integer literals, in source order


class _Invalid(Exception):
    pass


def evaluate(expr: str) -> Evaluation | None:
    """The exact value of `expr` and the numbers it uses, or None if it is not a valid bounded expression."""
    if not isinstance(expr, str) or len(expr) > MAX_CHARS:
        return None
    expr = expr.strip()
    try:
        tree = ast.parse(expr, mode="eval")
    except Exception:  # SyntaxError, ValueError (NUL bytes), MemoryError/RecursionError on pathological input
        return None
    numbers: list[int] = []
    try:
        value = _walk(tree.body, expr, numbers, 0)
    except (_Invalid, ZeroDivisionError):
        return None
    return Evaluation(value, tuple(numbers))


def _walk(node: ast.AST, source: str, numbers: list[int], depth: int) -> Fraction:
    if depth > MAX_DEPTH:
        raise _Invalid
    if isinstance(node, ast.Constant):
        # type() rather than isinstance(): bool is an int subclass and must be rejected.
        segment = ast.get_source_segment(source, node)
        if type(node.value) is not int or segment is None or not _DIGITS.fullmatch(segment):
            raise _Invalid
        if len(segment) > MAX_DIGITS or len(numbers) >= MAX_LITERALS:
            raise _Invalid
        numbers.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, source, numbers, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left = _walk(node.left, source, numbers, depth + 1)
        right = _walk(node.right, source, numbers, depth + 1)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return left / right  # Fraction / 0 raises ZeroDivisionError -> invalid
    raise _Invalid
