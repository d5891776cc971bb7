"""A safe arithmetic calculator for the built-in ``calculator`` tool.

Expressions are parsed with :mod:`ast` and evaluated by walking a small
whitelist of node types; ``eval`` is never used.  Everything that could be
abused (attribute access, arbitrary names, strings, lambdas, comprehensions)
is rejected, and work is bounded: input length, AST depth, integer size and
exponent size are all capped so a model-supplied expression cannot hang or
exhaust the worker.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

Number = int | float

MAX_EXPRESSION_LENGTH = 500
MAX_DEPTH = 50
# Integer results above ~1,200 decimal digits are refused: nobody needs them in
# a chat answer, and bounding them keeps every operation cheap.
MAX_INT_BITS = 4096
MAX_ROUND_DIGITS = 100


class CalculatorError(ValueError):
    """Raised for any expression the calculator refuses or cannot evaluate."""


def _round(value: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int):
        raise CalculatorError("round() needs a whole number of digits")
    # round(123, -10**9) would build 10**(10**9) internally.
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    return round(value, ndigits)


def _log(value: Number, base: Number | None = None) -> float:
    return math.log(value) if base is None else math.log(value, base)


def _min(*values: Number) -> Number:
    # Builtin min(5) expects an iterable; here min(5) simply means 5.
    return min(values)


def _max(*values: Number) -> Number:
    return max(values)


# name -> (callable, minimum args, maximum args or None for unbounded)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}

# Friendlier messages for syntax people commonly try.
_REFUSED_HINTS: dict[type[ast.AST], str] = {
    ast.BitXor: "'^' is not supported; use ** for powers",
    ast.Attribute: "attribute access is not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.Compare: "comparisons are not supported",
    ast.BoolOp: "boolean operators are not supported",
    ast.Subscript: "indexing is not allowed",
}


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic ``expression`` and return an int or float.

    Raises :class:`CalculatorError` with a human-readable message on any
    refused construct, invalid syntax, math domain error or oversized result.
    """
    if not isinstance(expression, str):
        raise CalculatorError("Expression must be a string")
    expression = expression.strip()
    if not expression:
        raise CalculatorError("Expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(f"Expression is too long (maximum {MAX_EXPRESSION_LENGTH} characters)")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        where = f" at position {exc.offset}" if exc.offset else ""
        raise CalculatorError(f"Invalid expression{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        # ValueError: NUL bytes in the source; the others: pathological nesting.
        raise CalculatorError("Invalid expression") from None
    return _Evaluator().visit(tree.body, depth=0)


class _Evaluator:
    """Recursive evaluator over the whitelisted subset of the Python AST."""

    def visit(self, node: ast.AST, depth: int) -> Number:
        if depth > MAX_DEPTH:
            raise CalculatorError(f"Expression is nested too deeply (maximum depth {MAX_DEPTH})")
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPERATORS:
            return _check(_UNARY_OPERATORS[type(node.op)](self.visit(node.operand, depth + 1)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPERATORS:
            left = self.visit(node.left, depth + 1)
            right = self.visit(node.right, depth + 1)
            return self._binary(node.op, left, right)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise CalculatorError(_describe_refusal(node))

    @staticmethod
    def _constant(node: ast.Constant) -> Number:
        # bool is an int subclass; True + True "working" would be surprising.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            if isinstance(node.value, str | bytes):
                raise CalculatorError("Strings are not allowed")
            raise CalculatorError(f"Unsupported value: {node.value!r}")
        return _check(node.value)

    @staticmethod
    def _name(node: ast.Name) -> Number:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise CalculatorError(f"{node.id} is a function; call it like {node.id}(...)")
        raise CalculatorError(f"Unknown name '{node.id}' (allowed constants: {', '.join(CONSTANTS)})")

    def _binary(self, op: ast.operator, left: Number, right: Number) -> Number:
        if isinstance(op, ast.Pow):
            _check_power(left, right)
        try:
            result = _BINARY_OPERATORS[type(op)](left, right)
        except ZeroDivisionError:
            raise CalculatorError("Division by zero") from None
        except OverflowError:
            raise CalculatorError("Result is too large") from None
        return _check(result)

    def _call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError("Only direct calls to the allowed functions are supported")
        name = node.func.id
        if name not in FUNCTIONS:
            raise CalculatorError(f"Unknown function '{name}' (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise CalculatorError(f"{name}() does not take keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError("Argument unpacking is not allowed")
        function, min_args, max_args = FUNCTIONS[name]
        count = len(node.args)
        if count < min_args or (max_args is not None and count > max_args):
            expected = str(min_args) if min_args == max_args else f"{min_args} or more"
            if max_args is not None and max_args != min_args:
                expected = f"{min_args} to {max_args}"
            raise CalculatorError(f"{name}() takes {expected} argument(s), got {count}")
        args = [self.visit(arg, depth + 1) for arg in node.args]
        try:
            result = function(*args)
        except ZeroDivisionError:
            raise CalculatorError(f"Division by zero in {name}()") from None
        except OverflowError:
            raise CalculatorError(f"Result of {name}() is too large") from None
        except CalculatorError:
            raise
        except (ValueError, TypeError):
            # math functions raise ValueError("math domain error") for sqrt(-1), log(0), ...
            raise CalculatorError(f"{name}() is undefined for {_format_args(args)}") from None
        return _check(result)


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse powers whose result would be a huge integer before computing them."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # log2(|base|) * exponent estimates the result's bit length without computing it.
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise CalculatorError("Exponent is too large")


def _check(value: Any) -> Number:
    """Ensure an intermediate result is a finite real number of bounded size."""
    if isinstance(value, complex):
        raise CalculatorError("Result is not a real number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculatorError("Result is not a number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError("Result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("Result is too large" if math.isinf(value) else "Result is not a number")
    return value


def _format_args(args: list[Number]) -> str:
    return ", ".join(repr(arg) for arg in args)


def _describe_refusal(node: ast.AST) -> str:
    op = getattr(node, "op", None)
    for node_type, message in _REFUSED_HINTS.items():
        if isinstance(node, node_type) or isinstance(op, node_type):
            return message[0].upper() + message[1:]
    if op is not None:
        return f"Unsupported operator: {type(op).__name__}"
    return f"Unsupported syntax: {type(node).__name__}"
