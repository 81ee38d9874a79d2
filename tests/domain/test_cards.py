"""EAN-13 card numbers: check digit, building from prefix + serial, parsing what people type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.cards import (
    card_number,
    ean13_check_digit,
    is_valid_ean13,
    normalize_card_number,
    parse_card_number,
    serial_of,
)

# Real barcodes printed on products and books (GS1 examples, ISBN-13s, a UPC-A as EAN-13).
KNOWN_VALID = [
    "4006381333931",
    "5901234123457",
    "9780306406157",
    "9780201633610",
    "0012345678905",
]


def independent_is_valid(number: str) -> bool:
    """GS1's other formulation: weight from the right 1,3,1,3… over all 13 digits, sum ≡ 0 mod 10."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(number)))
    return len(number) == 13 and number.isascii() and number.isdigit() and total % 10 == 0


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_known_barcodes_are_valid(number: str) -> None:
    assert independent_is_valid(number)
    assert ean13_check_digit(number[:12]) == number[12]
    assert is_valid_ean13(number)


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_any_wrong_check_digit_is_rejected(number: str) -> None:
    for d in "0123456789":
        if d != number[12]:
            assert not is_valid_ean13(number[:12] + d)


def test_card_number_prefix_2990_serial_1() -> None:
    # 2·1 + 9·3 + 9·1 + 0 + … + 1·3 = 41 → check digit 9
    assert card_number("2990", 1) == "2990000000019"
    assert independent_is_valid("2990000000019")


def test_card_number_pads_serial_and_uses_whole_width() -> None:
    assert card_number("2990", 12345678)[:12] == "299012345678"
    assert card_number("2", 0) == "2000000000008"
    assert is_valid_ean13(card_number("29900000000", 9))


@pytest.mark.parametrize(
    ("prefix", "serial"),
    [("2990", 100_000_000), ("2990", -1), ("29900000000", 10), ("", 1), ("29a0", 1), ("299000000000", 0)],
)
def test_card_number_refuses_what_does_not_fit(prefix: str, serial: int) -> None:
    with pytest.raises(ValueError):
        card_number(prefix, serial)


@pytest.mark.parametrize("bad", ["", "12345678901", "1234567890123", "12345678901a", "١٢٣٤٥٦٧٨٩٠١٢"])
def test_check_digit_needs_twelve_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        ean13_check_digit(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "400638133393",
        "40063813339310",
        "400638133393a",
        "4006381333932",
        " 4006381333931",
        "²006381333931",
    ],
)
def test_is_valid_rejects(bad: str) -> None:
    assert not is_valid_ean13(bad)


@pytest.mark.parametrize(
    "typed",
    [
        "2990000000019",
        " 2990000000019 ",
        "2 990000 000019",
        "2990-0000-00019",
        "2990\u00a00000\u202f00019",
        "2990–000000019",
    ],
)
def test_parse_normalises_spaces_and_dashes(typed: str) -> None:
    assert parse_card_number(typed) == "2990000000019"


@pytest.mark.parametrize("typed", ["2990000000018", "299000000001", "abc", "", "2990 0000 0001 9 1"])
def test_parse_refuses_invalid(typed: str) -> None:
    with pytest.raises(ValueError):
        parse_card_number(typed)


def test_normalize_keeps_legacy_numbers() -> None:
    assert normalize_card_number(" 000 123-45 ") == "00012345"


def test_serial_of_round_trips_and_ignores_foreign_numbers() -> None:
    assert serial_of("2990", card_number("2990", 4711)) == 4711
    assert serial_of("2990", "4006381333931") is None
    assert serial_of("2990", "2990000000018") is None  # bad check digit
    assert serial_of("", "2990000000019") is None


@given(prefix=st.text("0123456789", min_size=1, max_size=8), data=st.data())
def test_card_numbers_are_valid_and_round_trip(prefix: str, data: st.DataObject) -> None:
    serial = data.draw(st.integers(0, 10 ** (12 - len(prefix)) - 1))
    number = card_number(prefix, serial)
    assert len(number) == 13
    assert number.startswith(prefix)
    assert is_valid_ean13(number)
    assert independent_is_valid(number)
    assert parse_card_number(number) == number
    assert serial_of(prefix, number) == serial


@given(a=st.integers(0, 10**8 - 1), b=st.integers(0, 10**8 - 1))
def test_distinct_serials_give_distinct_numbers(a: int, b: int) -> None:
    assert (card_number("2990", a) == card_number("2990", b)) == (a == b)


@given(body=st.text("0123456789", min_size=12, max_size=12), pos=st.integers(0, 11), delta=st.integers(1, 9))
def test_single_digit_error_is_detected(body: str, pos: int, delta: int) -> None:
    number = body + ean13_check_digit(body)
    wrong = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert not is_valid_ean13(wrong)
