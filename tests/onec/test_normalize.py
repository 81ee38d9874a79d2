"""bridge.onec.normalize: 1C's wire quirks fixed at the edge."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import FatalHTTPError, OneCError, TransientError
from bridge.net import OutcomeUnknownError
from bridge.onec.normalize import (
    EMPTY_GUID,
    check_answer,
    clean_text,
    decode_json,
    encode_json,
    is_html,
    normalize_row,
    parse_json,
    parse_odata_error,
    parse_onec_datetime,
    strip_bom,
    text_excerpt,
    to_aware,
)

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
JSON = {"Content-Type": "application/json;charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
IIS_404 = (
    b"<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.0 Strict//EN'><html><head><title>404 - File or directory"
    b" not found.</title><style>body{margin:0}</style></head><body><h2>404 - File or directory not found."
    b"</h2></body></html>"
)
ERR_RU = "Ошибка при выполнении операции над данными: Период закрыт"


def odata_error(message: str = ERR_RU, code: str = "-1") -> bytes:
    return json.dumps({"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}}).encode()


def test_strip_bom_and_parse_json_with_bom() -> None:
    body = b"\xef\xbb\xbf" + b'{"value": []}'
    assert strip_bom(body) == b'{"value": []}'
    assert parse_json(body) == {"value": []}


def test_numbers_parse_as_decimal_exactly() -> None:
    data = parse_json(b'{"a": 0.1, "b": 14200, "c": 1e2, "d": 12345678901234567890.123456789}')
    assert data == {
        "a": Decimal("0.1"),
        "b": Decimal(14200),
        "c": Decimal("1E+2"),
        "d": Decimal("12345678901234567890.123456789"),
    }
    assert all(isinstance(v, Decimal) for v in data.values())


@pytest.mark.parametrize("body", [b'{"value": [{"Ref_Key": "abc', b'{"value": [1, 2', b"[", b'{"a": 1'])
def test_truncated_json_is_transient(body: bytes) -> None:
    with pytest.raises(TransientError, match="truncated JSON"):
        parse_json(body, url="http://1c/x")


def test_utf8_cut_in_half_is_transient() -> None:
    body = '{"Description": "Ж'.encode()[:-1]
    with pytest.raises(TransientError, match="truncated"):
        parse_json(body)


def test_garbage_is_fatal() -> None:
    with pytest.raises(FatalHTTPError):
        parse_json(b"Service Unavailable")


@pytest.mark.parametrize(
    ("content_type", "body", "expect", "html"),
    [
        ("text/html", b"{}", "json", True),
        (None, b"  <!DOCTYPE html><html></html>", "json", True),
        (None, b"\xef\xbb\xbf<HTML><body>login</body></HTML>", "xml", True),
        ("application/json", b"<p>oops</p>", "json", True),
        ("application/xml", b"<?xml version='1.0'?><edmx:Edmx/>", "xml", False),
        ("application/json", b'{"value": []}', "json", False),
    ],
)
def test_is_html(content_type: str | None, body: bytes, expect: str, html: bool) -> None:
    assert is_html(content_type, body, expect=expect) is html  # type: ignore[arg-type]


def test_text_excerpt_strips_tags_styles_and_control_chars() -> None:
    assert text_excerpt(IIS_404) == "404 - File or directory not found. 404 - File or directory not found."
    assert text_excerpt(b"a" * 500, limit=10) == "a" * 9 + "…"


def test_parse_odata_error_json_and_xml() -> None:
    assert parse_odata_error(b"\xef\xbb\xbf" + odata_error()) == ("-1", ERR_RU)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<m:error xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">'
        f'<m:code>-1</m:code><m:message xml:lang="ru">{ERR_RU}</m:message></m:error>'
    ).encode()
    assert parse_odata_error(xml) == ("-1", ERR_RU)
    assert parse_odata_error(b'{"value": []}') is None
    assert parse_odata_error(IIS_404) is None
    assert parse_odata_error(b"") is None


@pytest.mark.parametrize(
    ("status", "headers", "body", "write", "idempotent", "kind"),
    [
        (200, JSON, b'{"value": []}', False, True, None),
        (200, JSON, b"\xef\xbb\xbf{}", False, True, None),
        (201, JSON, b"{}", True, False, None),
        (204, {}, b"", True, True, None),
        (200, HTML, b"<html>login</html>", False, True, FatalHTTPError),
        (200, JSON, b"<!DOCTYPE html><html/>", False, True, FatalHTTPError),
        (400, JSON, odata_error("Неверный запрос"), False, True, OneCError),
        (400, HTML, b"<html>Bad Request</html>", False, True, FatalHTTPError),
        (401, {}, b"", False, True, FatalHTTPError),
        (403, JSON, odata_error("Недостаточно прав"), True, True, OneCError),
        (404, JSON, odata_error("Не найдено"), False, True, OneCError),
        (404, HTML, IIS_404, False, True, FatalHTTPError),
        (405, {}, b"", False, True, FatalHTTPError),
        (408, {}, b"", False, True, TransientError),
        (409, {}, b"", True, True, FatalHTTPError),
        (412, JSON, odata_error("Версия изменилась"), True, True, OneCError),
        (429, {"Retry-After": "5"}, b"", False, True, TransientError),
        (500, JSON, odata_error(), False, True, TransientError),  # read: retried (locks pass)
        (500, JSON, odata_error(), True, True, OneCError),  # write: business logic, not retried
        (500, HTML, b"<html>500</html>", True, True, TransientError),
        (500, HTML, b"<html>500</html>", True, False, OutcomeUnknownError),
        (502, HTML, b"<html>Bad Gateway</html>", False, True, TransientError),
        (503, {"Retry-After": "2"}, b"", True, False, TransientError),
        (504, {}, b"", False, True, TransientError),
        (504, {}, b"", True, False, OutcomeUnknownError),
        (302, {"Location": "/login"}, b"", True, True, FatalHTTPError),
    ],
)
def test_check_answer_table(
    status: int, headers: dict[str, str], body: bytes, write: bool, idempotent: bool, kind: type | None
) -> None:
    if kind is None:
        check_answer(status, headers, body, url="http://1c/x", write=write, idempotent=idempotent)
        return
    with pytest.raises(kind) as info:
        check_answer(
            status, headers, body, url="http://1c/x", what="GET x", write=write, idempotent=idempotent
        )
    assert type(info.value) is kind
    assert info.value.fields.get("status") == status
    assert "GET x" in str(info.value)


def test_check_answer_carries_russian_message_and_retry_after() -> None:
    with pytest.raises(OneCError) as info:
        check_answer(500, JSON, odata_error(), url="u", what="PATCH Document_ЗаказКлиента", write=True)
    assert info.value.code == "-1" and info.value.status == 500
    assert info.value.onec_message == ERR_RU
    assert ERR_RU in str(info.value)
    with pytest.raises(TransientError) as transient:
        check_answer(429, {"Retry-After": "17"}, b"", url="u")
    assert transient.value.retry_after == 17.0
    with pytest.raises(TransientError) as read_fail:
        check_answer(500, JSON, odata_error("Конфликт блокировок"), url="u")
    assert read_fail.value.fields["onec_message"] == "Конфликт блокировок"


def test_html_404_hints_at_url_length() -> None:
    with pytest.raises(FatalHTTPError, match="2048") as info:
        check_answer(404, HTML, IIS_404, url="u")
    assert "File or directory not found" in info.value.body


def test_decode_json_empty_body_is_none() -> None:
    assert decode_json(204, {}, b"", url="u") is None
    assert decode_json(200, JSON, b"\xef\xbb\xbf[1]", url="u") == [Decimal(1)]


def test_empty_values_become_none_and_types_are_fixed() -> None:
    row = {
        "odata.metadata": "http://1c/$metadata#Document_ЗаказКлиента/@Element",
        "Ref_Key": "9b3d6a7e-0000-11ee-8000-000c29aabbcc",
        "Партнер_Key": EMPTY_GUID,
        "Партнер@navigationLinkUrl": "Document_ЗаказКлиента(guid'…')/Партнер",
        "Склад": None,
        "Date": "2026-03-01T10:15:00",
        "ДатаОтгрузки": "0001-01-01T00:00:00",
        "Number": "00000000123",
        "Комментарий": "строка\x00 с\x07 мусором\r\nи\tтабом\x1b",
        "СуммаДокумента": Decimal("14200.00"),
        "Posted": True,
        "Статус": "",
        "Товары": [{"LineNumber": "1", "Количество": Decimal(2), "Номенклатура_Key": EMPTY_GUID}],
        "ДополнительныеРеквизиты": [
            {"LineNumber": "2", "Значение": "2026-03-01T00:00:00", "Значение_Type": "Edm.String"},
            {"LineNumber": "3", "Значение": "2026-03-05T00:00:00", "Значение_Type": "Edm.DateTime"},
        ],
    }
    out = normalize_row(row, MSK)
    assert "odata.metadata" not in out and "Партнер@navigationLinkUrl" not in out
    assert out["Партнер_Key"] is None and out["Склад"] is None
    assert out["Date"] == datetime(2026, 3, 1, 10, 15, tzinfo=MSK)
    assert out["Date"].utcoffset() == timedelta(hours=3)
    assert out["ДатаОтгрузки"] is None
    assert out["Number"] == "00000000123"  # not an Int64 field: stays text
    assert out["Комментарий"] == "строка с мусором\nи\tтабом"
    assert out["СуммаДокумента"] == Decimal("14200.00") and out["Posted"] is True
    assert out["Статус"] == ""
    assert out["Товары"] == [{"LineNumber": 1, "Количество": Decimal(2), "Номенклатура_Key": None}]
    attrs = out["ДополнительныеРеквизиты"]
    assert attrs[0]["Значение"] == "2026-03-01T00:00:00"  # Edm.String stays a string
    assert attrs[1]["Значение"] == datetime(2026, 3, 5, tzinfo=MSK)


def test_dst_ambiguous_and_missing_local_times_are_deterministic() -> None:
    # Berlin 2026-10-25 02:30 happens twice: fold=0 picks the first (summer time, +02:00)
    ambiguous = parse_onec_datetime("2026-10-25T02:30:00", BERLIN)
    assert ambiguous is not None and ambiguous.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # Berlin 2026-03-29 02:30 does not exist: read with the pre-gap offset (+01:00) → 03:30 summer time
    missing = parse_onec_datetime("2026-03-29T02:30:00", BERLIN)
    assert missing is not None and missing.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (missing.hour, missing.minute) == (3, 30)
    assert parse_onec_datetime("0001-01-01T00:00:00", BERLIN) is None
    assert to_aware(datetime(2026, 3, 1, tzinfo=UTC), MSK).hour == 3


def test_clean_text_keeps_newline_and_tab() -> None:
    assert clean_text("a\x00b\x1fc\x7fd\x85e\nf\tg") == "abcde\nf\tg"


def test_encode_json_round_trip_rules() -> None:
    body = {
        "СуммаДокумента": Decimal("14200.10"),
        "Количество": 3,
        "Posted": False,
        "Date": datetime(2026, 2, 28, 21, 0, tzinfo=UTC),
        "ДатаДоступности": date(2026, 3, 15),
        "Партнер_Key": None,
        "Комментарий": "O'Brien — «ок»",
        "Пусто": None,
        "Товары": [{"LineNumber": 1, "Сумма": Decimal("1E+3")}],
    }
    raw = encode_json(body, MSK)
    assert raw.decode() == (
        '{"СуммаДокумента":14200.10,"Количество":3,"Posted":false,"Date":"2026-03-01T00:00:00",'
        '"ДатаДоступности":"2026-03-15T00:00:00","Партнер_Key":"00000000-0000-0000-0000-000000000000",'
        '"Комментарий":"O\'Brien — «ок»","Пусто":null,"Товары":[{"LineNumber":"1","Сумма":1000}]}'
    )
    assert json.loads(raw, parse_float=Decimal)["СуммаДокумента"] == Decimal("14200.10")
    with pytest.raises(TypeError, match="float"):
        encode_json({"Сумма": 0.1}, MSK)
    with pytest.raises(TypeError):
        encode_json({"x": object()}, MSK)
    with pytest.raises(ValueError):
        encode_json({"Date": datetime(2026, 3, 1)}, MSK)
