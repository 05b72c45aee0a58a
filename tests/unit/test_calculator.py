"""The exact calculator: safe AST arithmetic on Fractions, and its LangChain tool."""

from __future__ import annotations

import builtins
from fractions import Fraction

import pytest

from brainstack.errors import ConfigurationError
from brainstack.tools import TOOL_NAMES, get_tools
from brainstack.tools.calculator import (
    MAX_DIGITS,
    MAX_EXPONENT,
    MAX_EXPRESSION_CHARS,
    CalculatorError,
    calculate,
    format_number,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0.1 + 0.2", Fraction(3, 10)),
        ("0.1+0.2-0.3", Fraction(0)),
        ("0.1 * 3", Fraction(3, 10)),
        ("1/3 + 1/3 + 1/3", Fraction(1)),
        ("17.5% of 2340", Fraction(819, 2)),
        ("17.5 % OF 2340", Fraction(819, 2)),
        ("2,340 * 17.5%", Fraction(819, 2)),
        ("12.5%", Fraction(1, 8)),
        ("1,200,000 / 12", Fraction(100_000)),
        ("1,234.5 + 1", Fraction(2471, 2)),
        ("(1200000 / 85000) * 30", Fraction(7200, 17)),
        ("3 × 4 ÷ 2", Fraction(6)),
        ("2 ^ 10", Fraction(1024)),
        ("1e3", Fraction(1000)),
        ("  42  ", Fraction(42)),
    ],
)
def test_exact_results(expression: str, expected: Fraction) -> None:
    result = calculate(expression)
    assert isinstance(result, Fraction)
    assert result == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),  # left-associative
        ("2 * 3 ** 2", 18),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("100 / 10 / 5", 2),
        ("7 // 2", 3),
        ("-7 // 2", -4),  # floor, not truncation
        ("(7) % 3", 1),
        ("(-7) % 3", 2),
    ],
)
def test_operator_precedence_and_associativity(expression: str, expected: int) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("-5", -5),
        ("+5", 5),
        ("-(-3)", 3),
        ("--3", 3),
        ("-3 ** 2", -9),  # unary minus binds looser than **
        ("(-3) ** 2", 9),
        ("2 * -3", -6),
        ("-(2 + 3) * 4", -20),
    ],
)
def test_unary_signs(expression: str, expected: int) -> None:
    assert calculate(expression) == expected


def test_negative_and_zero_exponents_are_exact() -> None:
    assert calculate("2 ** -1") == Fraction(1, 2)
    assert calculate("(2/3) ** -2") == Fraction(9, 4)
    assert calculate("5 ** 0") == 1


def test_exponent_at_the_limit_is_computed_exactly() -> None:
    assert calculate(f"2 ** {MAX_EXPONENT}") == 2**MAX_EXPONENT


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (f"2 ** {MAX_EXPONENT + 1}", f"exponent larger than {MAX_EXPONENT}"),
        (f"2 ** -{MAX_EXPONENT + 1}", f"exponent larger than {MAX_EXPONENT}"),
        ("2 ** 2 ** 10", f"exponent larger than {MAX_EXPONENT}"),
        ("9 ** 9 ** 9", f"exponent larger than {MAX_EXPONENT}"),
        ("2 ** 0.5", "only whole-number exponents are exact"),
        ("(-8) ** (1/3)", "only whole-number exponents are exact"),
    ],
)
def test_power_limits(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        calculate(expression)


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "(5) % 0", "0 ** -1", "1 / (2 - 2)", "3 / 0.0"])
def test_division_by_zero(expression: str) -> None:
    with pytest.raises(CalculatorError, match="division by zero"):
        calculate(expression)


def test_calculator_error_is_a_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("x", "only numbers and"),
        ("x + 1", "only numbers and"),
        ("(1).real", "only numbers and"),
        ("(1).__class__", "only numbers and"),
        ("abs(-1)", "only numbers and"),
        ("__import__('os').system('true')", "only numbers and"),
        ("lambda: 1", "only numbers and"),
        ("'a' * 3", "only numbers and"),
        ("True + 1", "only numbers and"),
        ("[1, 2]", "only numbers and"),
        ("1 if 1 else 2", "only numbers and"),
        ("1 < 2", "only numbers and"),
        ("~1", "only numbers and"),
        ("not 1", "only numbers and"),
        ("1j * 2", "only numbers and"),
        ("1 & 2", "operator BitAnd is not supported"),
        ("1 << 2", "operator LShift is not supported"),
        ("", "not an arithmetic expression"),
        ("   ", "not an arithmetic expression"),
        ("1 +", "not an arithmetic expression"),
        ("import os", "not an arithmetic expression"),
        ("1; 2", "not an arithmetic expression"),
    ],
)
def test_rejects_everything_that_is_not_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        calculate(expression)


def test_rejection_names_the_offending_part() -> None:
    with pytest.raises(CalculatorError) as caught:
        calculate("2 + __import__('os').getcwd()")
    assert "__import__" in str(caught.value)


def test_overlong_input_is_rejected_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("overlong input must be rejected before it is parsed")

    monkeypatch.setattr("brainstack.tools.calculator.ast.parse", no_parse)
    with pytest.raises(CalculatorError, match=f"longer than {MAX_EXPRESSION_CHARS} characters"):
        calculate("1+" * (MAX_EXPRESSION_CHARS // 2) + "1")


def test_input_at_the_length_limit_is_accepted() -> None:
    expression = "1+" * ((MAX_EXPRESSION_CHARS - 1) // 2) + "1"
    assert len(expression) <= MAX_EXPRESSION_CHARS
    assert calculate(expression) == (MAX_EXPRESSION_CHARS - 1) // 2 + 1


def test_never_evaluates_with_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the calculator must not use eval or exec")

    for name in ("eval", "exec"):  # not compile: ast.parse itself compiles to an AST only
        monkeypatch.setattr(builtins, name, forbidden)
    assert calculate("(2 + 3) * 17.5% of 2340") == Fraction(4095, 2)
    with pytest.raises(CalculatorError):
        calculate("__import__('os')")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(100_000), "100000"),
        (Fraction(-42), "-42"),
        (Fraction(0), "0"),
        (Fraction(819, 2), "409.5"),
        (Fraction(3, 10), "0.3"),
        (Fraction(1, 8), "0.125"),
        (Fraction(-5, 4), "-1.25"),
        (Fraction(1, 3), "0.3333333333 (≈ 1/3)"),
        (Fraction(2, 3), "0.6666666667 (≈ 2/3)"),
        (Fraction(-1, 3), "-0.3333333333 (≈ -1/3)"),
        (Fraction(2**200), str(2**200)),
    ],
)
def test_format_number(value: Fraction, text: str) -> None:
    assert format_number(value) == text


def test_format_number_places() -> None:
    assert format_number(Fraction(1, 3), places=3) == "0.333 (≈ 1/3)"
    assert format_number(Fraction(1, 8), places=3) == "0.125"
    assert format_number(Fraction(1, 16), places=3) == "0.062 (≈ 1/16)"  # rounds half to even


# --- Regressions: modulo vs percent, exact literals, size limits ------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("7 % 3", 1),
        ("7%3", 1),
        ("10 % 4 + 1", 3),
        ("7 % (1 + 2)", 1),
        ("-7 % 3", 2),
        ("7.5 % 2", Fraction(3, 2)),
    ],
)
def test_modulo_between_numbers(expression: str, expected: Fraction | int) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("7 % 3", 1), ("7 % (-3)", -2), ("-7 % (-3)", -1), ("(7/2) % (3/4)", Fraction(1, 2))],
)
def test_modulo_on_fractions_is_floored(expression: str, expected: Fraction | int) -> None:
    # a % b == a - b * floor(a / b): the result has the sign of b, as in Python.
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("50% * 2", 1), ("10% - 5", Fraction(-49, 10)), ("(12.5%)", Fraction(1, 8)), ("200 * 5%", 10)],
)
def test_percent_is_still_a_percent_when_no_operand_follows(
    expression: str, expected: Fraction | int
) -> None:
    assert calculate(expression) == expected


def test_literals_keep_all_their_digits() -> None:
    assert calculate("1.00000000000000001 - 1") == Fraction(1, 10**17)
    assert calculate("0.1") == Fraction(1, 10)
    assert calculate("1_000.5") == Fraction(2001, 2)
    assert calculate(".5 + 5.") == Fraction(11, 2)
    assert calculate("0x10 + 0b1") == 17


def test_large_literals_are_exact_and_oversized_ones_are_calculator_errors() -> None:
    assert calculate("1e400") == 10**400  # beyond float range, but exact
    assert calculate("1e-400") == Fraction(1, 10**400)
    for expression in ("1e400000000", "1e-400000000", f"1e{MAX_EXPONENT + 1}"):
        with pytest.raises(CalculatorError, match="exponent larger than"):
            calculate(expression)


@pytest.mark.parametrize(
    "expression", ["(10 ** 1000) ** 5", "(2 ** 1000) ** 17", "(10 ** 999) * (10 ** 999) ** 5"]
)
def test_huge_results_are_calculator_errors(expression: str) -> None:
    with pytest.raises(CalculatorError, match=f"more than {MAX_DIGITS} digits"):
        calculate(expression)


def test_results_up_to_max_digits_are_exact_and_printable() -> None:
    # 2**15000 has 4516 digits: more than Python's default int-to-str limit (4300), fewer than MAX_DIGITS.
    assert calculate("(2 ** 1000) ** 15") == 2**15000
    assert calculate("(10 ** 1000) ** 4 * 10 ** 999") == 10 ** (MAX_DIGITS - 1)  # exactly MAX_DIGITS digits
    text = format_number(Fraction(2**15000))
    assert len(text) == 4516 and text.startswith("28179") and text.endswith("9376")
    (tool,) = get_tools(["calculator"])
    assert len(tool.invoke({"expression": "(2 ** 1000) ** 15"})) == 4516
    assert tool.invoke({"expression": "(10 ** 1000) ** 5"}).startswith("error: ")


def test_size_is_checked_before_a_power_is_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = Fraction.__pow__

    def spy(self: Fraction, other: object, *args: object) -> object:
        calls.append(other)
        return original(self, other, *args)

    monkeypatch.setattr(Fraction, "__pow__", spy)
    with pytest.raises(CalculatorError, match="digits"):
        calculate("(10 ** 1000) ** 1000")
    assert 1000 in calls  # the inner 10 ** 1000 ...
    assert calls.count(1000) == 1  # ... but never (10 ** 1000) ** 1000


def test_format_number_of_large_non_integer() -> None:
    assert format_number(Fraction(10**20, 3)).startswith("33333333333333333333.3333333333")
    assert format_number(Fraction(10**60 + 1, 2)) == str(10**60 // 2) + ".5"
    assert format_number(Fraction(-(10**40), 7), places=2).startswith(
        "-1428571428571428571428571428571428571428.57 (≈ "
    )


# --- The LangChain tool ------------------------------------------------------------------


def test_tool_names() -> None:
    assert sorted(TOOL_NAMES) == ["calculator", "knowledge_search"]
    assert get_tools([]) == []


def test_calculator_tool_is_invocable() -> None:
    (tool,) = get_tools(["calculator"])
    assert tool.name == "calculator"
    assert "arithmetic" in tool.description.lower()
    assert set(tool.args) == {"expression"}
    assert tool.invoke({"expression": "17.5% of 2340"}) == "409.5"
    assert tool.invoke({"expression": "1,200,000 / 12"}) == "100000"
    assert tool.invoke({"expression": "1/3"}) == "0.3333333333 (≈ 1/3)"


@pytest.mark.parametrize(
    ("expression", "message"),
    [("__import__('os')", "only numbers and"), ("1 / 0", "division by zero"), ("2 ** 5000", "exponent")],
)
def test_calculator_tool_reports_errors_as_text(expression: str, message: str) -> None:
    (tool,) = get_tools(["calculator"])
    result = tool.invoke({"expression": expression})
    assert result.startswith("error: ")
    assert message in result


def test_calculator_tool_as_a_model_tool_call() -> None:
    (tool,) = get_tools(["calculator"])
    message = tool.invoke(
        {"name": "calculator", "args": {"expression": "2 + 3 * 4"}, "id": "call_1", "type": "tool_call"}
    )
    assert message.content == "14"
    assert message.tool_call_id == "call_1"


def test_unknown_tool_name_fails() -> None:
    with pytest.raises(Exception) as caught:  # the type is not part of the contract
        get_tools(["calculator", "web_search"])
    assert "web_search" in str(caught.value)


def test_unknown_tool_name_error_lists_the_available_tools() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_tools(["web_search"])
    assert not isinstance(caught.value, KeyError)
    assert "web_search" in str(caught.value)
    assert "available: ['calculator', 'knowledge_search']" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1234567%", Fraction(1234567, 100)),
        ("99.99% of 10000", Fraction(9999)),
        ("100%of 50", Fraction(50)),
        ("3 % of 1,000", Fraction(30)),
        ("0.5%", Fraction(1, 200)),
        ("2340*17.5%", Fraction(819, 2)),
        ("17 %5", Fraction(2)),  # modulo: an operand follows
    ],
)
def test_percentages_are_whole_numbers(expression: str, expected: Fraction) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1" * 498 + "%", Fraction(int("1" * 498), 100)),
        ("1" * 487 + "% of 1,000", Fraction(int("1" * 487) * 10)),
        ("1." + "1" * 497 + "%", Fraction("1." + "1" * 497) / 100),
        ("7" * 496 + " % 3", Fraction(int("7" * 496) % 3)),
    ],
)
def test_long_digit_runs_at_the_length_limit(expression: str, expected: Fraction) -> None:
    assert len(expression) <= MAX_EXPRESSION_CHARS
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression", ["1" * 499 + "x", "1" * 497 + " %x", "1" * 494 + "% of x", "1" * 495 + "% of"]
)
def test_long_digit_runs_that_are_not_arithmetic(expression: str) -> None:
    assert len(expression) <= MAX_EXPRESSION_CHARS
    with pytest.raises(CalculatorError, match=r"not an arithmetic expression|only numbers"):
        calculate(expression)
