"""``$filter``: the evaluator's table, then the quirks over real HTTP (``in`` → 400, GUID ordering → 500)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from bridge.simulator import build_schema
from bridge.simulator.filters import FilterError, compile_filter

SCHEMA = build_schema()
ORDER = SCHEMA["Document_ЗаказКлиента"]
RETURN = SCHEMA["Document_ВозвратТоваровОтКлиента"]
K1 = "11111111-1111-1111-1111-111111111111"
K2 = "22222222-2222-2222-2222-222222222222"
SALE = "33333333-3333-3333-3333-333333333333"

ROW = {
    "Ref_Key": K1,
    "Number": "УТ-00000101",
    "Date": datetime(2026, 3, 2, 12, 15),
    "Posted": True,
    "DeletionMark": False,
    "Статус": "КОтгрузке",
    "Партнер_Key": K2,
    "СуммаДокумента": Decimal("14200"),
    "Комментарий": "Заказ с сайта, д'Артаньян",
}
RET = {
    "Ref_Key": K1,
    "ДокументРеализации": SALE,
    "ДокументРеализации_Type": "StandardODATA.Document_РеализацияТоваровУслуг",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Статус eq 'КОтгрузке'", True),
        ("Статус ne 'КОтгрузке'", False),
        ("Статус eq 'Закрыт' or Статус eq 'КОтгрузке'", True),
        ("Posted eq true and DeletionMark eq false", True),
        ("not (Posted eq true)", False),
        ("not Posted eq false", True),
        (f"Ref_Key eq guid'{K1}'", True),
        (f"Ref_Key eq guid'{K1.upper()}'", True),
        (f"Ref_Key eq guid'{K2}' or Партнер_Key eq guid'{K2}'", True),
        (f"Ref_Key ne guid'{K1}'", False),
        ("Date ge datetime'2026-03-01T00:00:00'", True),
        ("Date lt datetime'2026-03-02T12:15:00'", False),
        ("Date le datetime'2026-03-02T12:15:00'", True),
        ("Date gt datetime'2026-03-01T00:00:00' and Date lt datetime'2026-03-03T00:00:00'", True),
        ("СуммаДокумента gt 14199.99", True),
        ("СуммаДокумента eq 14200", True),
        ("СуммаДокумента lt 100", False),
        ("substringof('сайта', Комментарий)", True),
        ("substringof('САЙТА', Комментарий)", False),
        ("startswith(Number, 'УТ-')", True),
        ("startswith(Number, 'ЗК')", False),
        ("Комментарий eq 'Заказ с сайта, д''Артаньян'", True),
        ("(Статус eq 'Закрыт' or Posted eq true) and not (DeletionMark eq true)", True),
        ("Статус eq 'Закрыт' or (Posted eq true and СуммаДокумента ge 20000)", False),
    ],
)
def test_filter_table(expression: str, expected: bool) -> None:
    assert compile_filter(expression, ORDER)(ROW) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f"ДокументРеализации eq cast(guid'{SALE}','Document_РеализацияТоваровУслуг')", True),
        (f"ДокументРеализации eq cast(guid'{SALE}','StandardODATA.Document_РеализацияТоваровУслуг')", True),
        (f"ДокументРеализации eq cast(guid'{SALE}','Document_ЗаказКлиента')", False),
        (f"ДокументРеализации eq guid'{SALE}'", False),  # a bare GUID against a composite: nothing
        (f"ДокументРеализации ne guid'{SALE}'", False),
        ("ДокументРеализации_Type eq 'StandardODATA.Document_РеализацияТоваровУслуг'", True),
    ],
)
def test_composite_fields(expression: str, expected: bool) -> None:
    assert compile_filter(expression, RETURN)(RET) is expected


@pytest.mark.parametrize(
    ("expression", "status"),
    [
        (f"Ref_Key in (guid'{K1}', guid'{K2}')", 400),
        ("tolower(Комментарий) eq 'x'", 400),
        ("indexof(Комментарий, 'x') eq 1", 400),
        ("НетТакогоПоля eq 1", 400),
        ("Статус eq", 400),
        ("Статус eq 'x' and", 400),
        ("(Статус eq 'x'", 400),
        ("Date eq 'вчера'", 400),
        ("СуммаДокумента", 400),
        (f"Ref_Key gt guid'{K1}'", 500),
        (f"Партнер_Key le guid'{K1}'", 500),
    ],
)
def test_refused_filters(expression: str, status: int) -> None:
    with pytest.raises(FilterError) as err:
        compile_filter(expression, ORDER)
    assert err.value.status == status


def test_filters_over_http(odata) -> None:
    closed = odata.values("Document_ЗаказКлиента", **{"$filter": "Статус eq 'Закрыт'", "$top": 50})
    assert {o["Number"] for o in closed} == {"УТ-00000102", "УТ-00000103", "УТ-00000106", "УТ-00000107"}
    window = odata.values(
        "Document_ЗаказКлиента",
        **{
            "$filter": "Date ge datetime'2026-03-01T00:00:00' and Date lt datetime'2026-03-04T00:00:00'",
            "$top": 50,
        },
    )
    assert {o["Number"] for o in window} == {"УТ-00000101", "УТ-00000102", "УТ-00000104", "УТ-00000105"}
    sale = odata.values(
        "Document_РеализацияТоваровУслуг",
        **{"$top": 1, "$filter": "Партнер_Key ne guid'00000000-0000-0000-0000-000000000000'"},
    )[0]
    ret = odata.values("Document_ВозвратТоваровОтКлиента", **{"$top": 5})[0]
    by_cast = odata.values(
        "Document_ВозвратТоваровОтКлиента",
        **{
            "$filter": f"ДокументРеализации eq cast(guid'{ret['ДокументРеализации']}',"
            "'Document_РеализацияТоваровУслуг')",
            "$top": 5,
        },
    )
    assert [r["Ref_Key"] for r in by_cast] == [ret["Ref_Key"]]
    bare = odata.values(
        "Document_ВозвратТоваровОтКлиента",
        **{"$filter": f"ДокументРеализации eq guid'{ret['ДокументРеализации']}'", "$top": 5},
    )
    assert bare == []
    assert sale["Ref_Key"]


def test_in_operator_is_a_400_odata_error(odata) -> None:
    response = odata.get(
        "Document_ЗаказКлиента", **{"$filter": "Статус in ('Закрыт','КОтгрузке')", "$top": 5}
    )
    assert response.status_code == 400
    error = response.json()["odata.error"]
    assert error["message"]["lang"] == "ru"
    assert "in" in error["message"]["value"]


def test_ref_key_greater_than_is_a_500(odata) -> None:
    response = odata.get("Document_ЗаказКлиента", **{"$filter": f"Ref_Key gt guid'{K1}'", "$top": 5})
    assert response.status_code == 500
    assert response.json()["odata.error"]["code"] == "-1"
