"""An exact calculator: arithmetic parsed from a safe AST, computed with fractions.

No ``eval``: only numbers, + - * / // % **, parentheses and unary signs are
accepted. ``12.5%`` means 12.5/100, and ``x% of y`` is understood, because that
is how people write it. A ``%`` followed by an operand (``7 % 3``, ``7%(1+2)``)
is the modulo operator instead; on fractions it is Python's floored modulo,
``a - b * floor(a / b)``, so the result takes the sign of ``b``.

Number literals are read from their source text (``1.00000000000000001`` keeps
every digit), never through ``float``.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

__all__ = ["CalculatorError", "calculate", "format_number"]

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_DIGITS = 5000

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,  # Fraction % Fraction: floored, a - b * floor(a / b)
}

_LOG10_2 = math.log10(2)
# A decimal literal as Python's tokenizer accepts it (underscores allowed between digits).
_LITERAL = re.compile(
    r"(?P<mantissa>(?:\d(?:_?\d)*)?(?:\.(?:\d(?:_?\d)*)?)?)(?:[eE](?P<exponent>[-+]?\d(?:_?\d)*))?"
)


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def calculate(expression: str) -> Fraction:
    """Evaluate ``expression`` exactly."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    source = _normalise(expression)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from exc
    return _evaluate(tree.body, source)


def format_number(value: Fraction, places: int = 10) -> str:
    """Integers exactly; other values as decimals rounded (half to even) to ``places`` digits."""
    if value.denominator == 1:
        return _int_text(value.numerator)
    scaled = round(value * 10**places)  # exact, half to even: no Decimal context can overflow
    digits = _int_text(abs(scaled)).rjust(places + 1, "0")
    whole, fraction = digits[: len(digits) - places], digits[len(digits) - places :]
    text = (whole + "." + fraction).rstrip("0").rstrip(".") if places > 0 else whole
    if scaled < 0 and text != "0":
        text = "-" + text
    if Fraction(text) == value:
        return text
    return f"{text} (≈ {_int_text(value.numerator)}/{_int_text(value.denominator)})"


def _int_text(number: int) -> str:
    """``str(number)`` without Python's 4300-digit limit on int-to-str conversion."""
    try:
        return str(number)
    except ValueError:  # sys.get_int_max_str_digits() exceeded; Decimal converts without it
        return str(Decimal(number))


# A percentage's number. It starts at the first digit of a run: re.sub tries every position, and a
# run of digits without a % after it was otherwise scanned again from each of its digits (quadratic:
# "1" * 499 + "x" took 9 ms). A number found inside a run is found from the run's start as well.
_PERCENT_OF = re.compile(r"(?<!\d)(\d+(?:\.\d+)?)\s*%\s*of\s*", re.IGNORECASE)
# "12.5%" is a percentage only when no operand follows; "7 % 3" and "7%(1+2)" are modulo.
_PERCENT = re.compile(r"(?<!\d)(\d+(?:\.\d+)?)\s*%(?!\s*[\d(.])")


def _normalise(expression: str) -> str:
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # thousands separators: 2,340 → 2340
    text = _PERCENT_OF.sub(r"(\1/100)*", text)
    return _PERCENT.sub(r"(\1/100)", text)


def _evaluate(node: ast.expr, source: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if type(node.value) is int:  # ints are exact already (and may be hex, octal, binary)
            return _bounded(Fraction(node.value))
        return _literal(ast.get_source_segment(source, node) or "")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _evaluate(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not supported")
        if right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            raise CalculatorError("division by zero")
        return _bounded(op(left, right))
    raise CalculatorError(f"only numbers and + - * / // % ** are allowed, not {ast.unparse(node)!r}")


def _literal(text: str) -> Fraction:
    """A float literal, exactly as written: ``Fraction`` from its source text, not from ``float``."""
    match = _LITERAL.fullmatch(text)
    if match is None or not match["mantissa"].strip("."):
        raise CalculatorError(f"not a number: {text!r}")
    exponent = int(match["exponent"] or "0")
    if abs(exponent) > MAX_EXPONENT:  # checked before 10**exponent is ever built
        raise CalculatorError(f"exponent larger than {MAX_EXPONENT} in the number {text!r}")
    return _bounded(Fraction(text.replace("_", "")))


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalculatorError("only whole-number exponents are exact")
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    # Check the size before computing: the result's parts have about bit_length * |exponent| bits.
    largest = max(abs(base.numerator), base.denominator)
    if (largest.bit_length() - 1) * abs(int(exponent)) * _LOG10_2 >= MAX_DIGITS:
        raise CalculatorError(f"result has more than {MAX_DIGITS} digits")
    return _bounded(base ** int(exponent))


def _digits(number: int) -> int:
    """The number of decimal digits of ``abs(number)``, without converting it to a string."""
    number = abs(number)
    if number == 0:
        return 1
    estimate = int((number.bit_length() - 1) * _LOG10_2) + 1  # exact or one too few
    if number >= 10**estimate:
        return estimate + 1
    return estimate - 1 if number < 10 ** (estimate - 1) else estimate  # float rounding, just in case


def _bounded(value: Fraction) -> Fraction:
    if max(_digits(value.numerator), _digits(value.denominator)) > MAX_DIGITS:
        raise CalculatorError(f"result has more than {MAX_DIGITS} digits")
    return value
