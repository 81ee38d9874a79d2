"""Loyalty card numbers: EAN-13 with the store's prefix and a check digit.

Owns the arithmetic of card numbers: the EAN-13 check digit, building a number from
``cards.prefix`` and a serial, validating and normalising what an operator typed. Which serial
comes next (numbers are never reused) is the store's business: it keeps the counter, this module
only turns a serial into a number and back. Pure: must not import anything outside
``bridge.domain``.
"""

from __future__ import annotations

EAN13_LENGTH = 13
_DIGITS = frozenset("0123456789")
# Separators people type or printers put between digit groups: spaces (incl. no-break and thin
# spaces), hyphen and the dashes a word processor substitutes for it.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u2009\u202f-\u2010\u2011\u2012\u2013\u2014")


def _is_digits(s: str) -> bool:
    # str.isdigit() accepts "²" and Arabic-Indic digits; card numbers are ASCII only.
    return bool(s) and set(s) <= _DIGITS


def ean13_check_digit(twelve_digits: str) -> str:
    """The EAN-13 check digit for the first twelve digits of a number.

    Digits at odd positions (1st, 3rd, …, counting from the left) weigh 1, at even positions 3;
    the check digit brings the weighted sum up to a multiple of ten.

    Args:
        twelve_digits: exactly twelve ASCII digits.

    Returns:
        One digit, as a string.

    Raises:
        ValueError: the argument is not twelve ASCII digits.
    """
    if len(twelve_digits) != EAN13_LENGTH - 1 or not _is_digits(twelve_digits):
        raise ValueError(f"expected 12 digits, got {twelve_digits!r}")
    weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(twelve_digits))
    return str((10 - weighted % 10) % 10)


def is_valid_ean13(s: str) -> bool:
    """Whether ``s`` is exactly thirteen ASCII digits with a correct check digit.

    No normalisation: use :func:`parse_card_number` for what a person typed.
    """
    if len(s) != EAN13_LENGTH or not _is_digits(s):
        return False
    return ean13_check_digit(s[:-1]) == s[-1]


def card_number(prefix: str, serial: int) -> str:
    """Build a card number: the prefix, the zero-padded serial (twelve digits in all), the check digit.

    Args:
        prefix: the store's ``cards.prefix``, 1 to 11 ASCII digits (e.g. ``"2990"``; the
            GS1 ranges 20–29 are reserved for in-store use).
        serial: the card's serial, ``0 ≤ serial < 10 ** (12 − len(prefix))``.

    Returns:
        The thirteen-digit number, e.g. ``card_number("2990", 1) == "2990000000019"``.

    Raises:
        ValueError: the prefix is not 1–11 digits, or the serial is negative or does not fit.
    """
    if not _is_digits(prefix) or len(prefix) > EAN13_LENGTH - 2:
        raise ValueError(f"card prefix must be 1 to 11 digits, got {prefix!r}")
    width = EAN13_LENGTH - 1 - len(prefix)
    if serial < 0 or serial >= 10**width:
        raise ValueError(f"serial {serial} does not fit in {width} digits after prefix {prefix!r}")
    body = prefix + str(serial).zfill(width)
    return body + ean13_check_digit(body)


def serial_of(prefix: str, number: str) -> int | None:
    """The serial of a valid card number built with ``prefix``, or None if it is not one of ours.

    Lets the store seed its never-reused counter from the numbers 1C already holds.
    """
    if not prefix or not number.startswith(prefix) or not is_valid_ean13(number):
        return None
    if len(prefix) > EAN13_LENGTH - 2:
        return None
    return int(number[len(prefix) : -1])


def normalize_card_number(s: str) -> str:
    """Strip the separators people type (spaces, dashes) and surrounding whitespace.

    Does not validate: 1C may hold older cards whose numbers are not EAN-13, and those are kept
    as they are (SPEC §3). Use :func:`parse_card_number` to insist on EAN-13.
    """
    return s.strip().translate(_SEPARATORS)


def parse_card_number(s: str) -> str:
    """Normalise a typed card number and check it is a valid EAN-13.

    Args:
        s: what the operator or the site sent, e.g. ``"2 990000 000019"`` or ``"2990-0000-00019"``.

    Returns:
        The thirteen digits.

    Raises:
        ValueError: not thirteen digits after normalisation, or the check digit is wrong.
    """
    number = normalize_card_number(s)
    if not is_valid_ean13(number):
        raise ValueError(f"not a valid EAN-13 card number: {s!r}")
    return number
