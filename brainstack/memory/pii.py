"""Mask personal data before anything is persisted: e-mail addresses, phone numbers, payment cards.

>>> mask_pii("Mail ada@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.")
'Mail [email] or call [phone]; card [card].'
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["mask_pii", "mask_value"]

# Domains in any script ("ada@例え.jp", "x@münchen.de"): labels of letters, digits and hyphens.
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,}\b"
)
# 13-19 digits, optionally grouped by single spaces or hyphens; confirmed with the Luhn checksum.
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
# An optional +country code, then 9-15 digits with common separators: (020) 7946-0958, +1 415 555 2671.
_PHONE = re.compile(
    # Not inside a word or a digit group ("a digit group's middle starts none"); after a colon it
    # may ("phone:+44 …", "tel:415-…", "line1:(415) …"), but bare digits not after a time's ("10:…").
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?|(?=\()|(?<!\d[ .-])(?<!\d:))"
    r"(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){6,13}(?![\w:]|[ .-]\d)"
)
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return "[card]"
    # A card next to other digits ("qty 2 4111 1111 1111 1111"): look for a Luhn-valid run of
    # whole digit groups inside the match and mask just that: the run starting at the earliest
    # group, and of those the longest. Only runs of 13-19 digits are built and checked (joining
    # every pair of groups took 0.2 ms a match: 50 ms for "1 " * 4000, 0.6 s for 64k characters).
    groups = re.findall(r"\d+|[ -]", text)
    numbers = [i for i, g in enumerate(groups) if g.isdigit()]
    for first, start in enumerate(numbers):
        runs, digits = [], ""
        for end in numbers[first:]:
            digits += groups[end]
            if len(digits) > 19:
                break
            if len(digits) >= 13:
                runs.append((end, digits))
        for end, run_digits in reversed(runs):
            if _luhn(run_digits):
                return "".join(groups[:start]) + "[card]" + "".join(groups[end + 1 :])
    return text


_LABEL = re.compile(
    r"\b(?:sku|isbn(?:-1[03])?|ean|upc|gtin|order|invoice|inv|part|item|serial|s/n|ticket|case"
    r"|tracking|po)\s*(?:no\.?|nr\.?|number|#)?\s*[#:.-]?\s*$",
    re.IGNORECASE,
)
"""Just before a number: the label of an identifier ("SKU 4006381-333931", "order #12-345-678").
A word is required ("Phone # 415-555-0100" is a phone number), and never for a number written
the international way ("+1 …") or with an area code in brackets."""
_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)")


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    if len(digits) < 9 or _IPV4.fullmatch(text):
        return text
    # Plain numbers are not phone numbers: 1200000 or 2024-2025 stay. A phone number has a leading
    # '+' or '(', or digit groups separated the way people write phone numbers.
    if text.startswith(("+", "(")):
        return "[phone]"
    # An identifier, not a phone number: labelled as one, or starting with a date.
    if _DATE.match(text) or _LABEL.search(match.string[max(0, match.start() - 24) : match.start()]):
        return text
    if re.search(r"\d[ .-]\d", text):
        if re.fullmatch(r"\d{4}-\d{4}", text):  # a year range
            return text
        # A list of numbers, not a phone number: a one-digit group after the first ("1 800 555
        # 0199" is a phone, "3 4 5 6 7 8 9" is not), or more than five groups ("06 12 34 56 78").
        groups = re.findall(r"\d+", text)
        if len(groups) > 5 or any(len(group) == 1 for group in groups[1:]):
            return text
        return "[phone]"
    return text


def mask_pii(text: str) -> str:
    """``text`` with e-mail addresses, payment-card numbers and phone numbers replaced."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def mask_value(value: Any) -> Any:
    """:func:`mask_pii` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value
