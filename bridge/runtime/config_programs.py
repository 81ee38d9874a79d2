"""Config sections of the two loyalty programs: ``bonus`` (tiers), ``discount`` (levels), ``cards``.

Owns the models of those sections and the ladder rules shared by tiers and levels (first threshold
0, thresholds strictly ascending, codes unique), which are checked even when some items are invalid.
Must not import anything of the bridge but its sibling ``config_rules``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Protocol

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from bridge.runtime import config_rules as rules
from bridge.runtime.config_rules import Code, Coefficient, Days, Money, Section, Text


class TierConfig(Section):
    code: Code
    name: Text
    threshold: Money
    rate: Annotated[Decimal, AfterValidator(rules.rate)]


class LevelConfig(Section):
    code: Code
    name: Text
    threshold: Money
    percent: Annotated[Decimal, AfterValidator(rules.percent)]
    term_days: Days | None = None

    @field_validator("term_days", mode="before")
    @classmethod
    def _term(cls, value: Any) -> Any:
        if isinstance(value, int | Decimal) and not isinstance(value, bool) and value <= 0:
            rules.fail(
                f"{value} is not a positive number of days; give the term in days, or null for no term"
            )
        return value


class _Ranked(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def threshold(self) -> Decimal: ...


def _check_ladder(info: ValidationInfo, path: str, items: Sequence[_Ranked], noun: str) -> None:
    """First threshold 0, thresholds strictly ascending, codes unique."""
    if items and items[0].threshold != 0:
        report_path = f"{path}[0].threshold"
        rules.report(
            info,
            report_path,
            f"the first {noun} starts at {items[0].threshold}, not 0; "
            f"add a {noun} with threshold 0 (everyone starts there) or set this one to 0",
        )
    for i in range(1, len(items)):
        before, here = items[i - 1].threshold, items[i].threshold
        if here <= before:
            rules.report(
                info,
                f"{path}[{i}].threshold",
                f"thresholds must ascend ({here} after {before}); sort the {noun}s by threshold "
                "and give each a different one",
            )
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.code in seen:
            rules.report(
                info,
                f"{path}[{i}].code",
                f"duplicate code {item.code!r} (also {path}[{seen[item.code]}]); "
                f"give each {noun} its own code",
            )
        seen.setdefault(item.code, i)


class _RawStep(NamedTuple):
    code: str
    threshold: Decimal


def _validate_ladder(
    raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo, path: str, noun: str
) -> Any:
    """Validate a tier/level list and check its ladder — from the raw items if some are invalid,
    so a bad rate in one tier does not hide unsorted thresholds."""
    try:
        value = handler(raw)
    except ValidationError:
        steps: list[_RawStep] = []
        for item in raw if isinstance(raw, list | tuple) else ():
            threshold = item.get("threshold") if isinstance(item, Mapping) else None
            if isinstance(threshold, int | Decimal) and not isinstance(threshold, bool) and threshold >= 0:
                steps.append(_RawStep(str(item.get("code")), Decimal(threshold)))
            else:
                steps = []  # positions would no longer match the file: skip the ladder check
                break
        _check_ladder(info, path, steps, noun)
        raise
    _check_ladder(info, path, value, noun)
    return value


class BonusConfig(Section):
    enabled: bool = True
    point_value: Annotated[Decimal, Field(gt=0)] = Decimal(1)
    hold_days: Annotated[int, Field(ge=0)] = 14
    expiry_days: Days = 365
    expiry_warning_days: Annotated[int, Field(ge=0)] = 7
    max_redeem_share: Annotated[Decimal, AfterValidator(rules.share)] = Decimal("1.0")
    default_coefficient: Coefficient = Decimal("1.0")
    groups: dict[str, Coefficient] = Field(default_factory=dict)
    tiers: tuple[TierConfig, ...] = ()
    point_precision: Annotated[int, Field(ge=0)] = 0
    volume_window_days: Days | None = None

    @field_validator("expiry_days")
    @classmethod
    def _hold_before_expiry(cls, value: int, info: ValidationInfo) -> int:
        hold = info.data.get("hold_days")
        if isinstance(hold, int) and hold >= value:
            rules.report(
                info,
                "bonus.hold_days",
                f"points would expire (after {value} days) before they become available "
                f"(after {hold} days); make hold_days smaller than expiry_days",
            )
        return value

    @field_validator("expiry_warning_days")
    @classmethod
    def _warning_before_expiry(cls, value: int, info: ValidationInfo) -> int:
        expiry = info.data.get("expiry_days")
        if isinstance(expiry, int) and value >= expiry:
            rules.report(
                info,
                "bonus.expiry_warning_days",
                f"the warning ({value} days ahead) would come before the points are even accrued "
                f"(expiry_days {expiry}); make it smaller than expiry_days",
            )
        return value

    @field_validator("tiers", mode="wrap")
    @classmethod
    def _tiers(
        cls, raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[TierConfig, ...]:
        value: tuple[TierConfig, ...] = _validate_ladder(raw, handler, info, "bonus.tiers", "tier")
        if not value and info.data.get("enabled", True):
            rules.report(
                info,
                "bonus.tiers",
                "the bonus program is enabled but has no tiers; list at least one tier "
                "{code, name, threshold: 0, rate} or set bonus.enabled: false",
            )
        return value

    @field_validator("groups", mode="before")
    @classmethod
    def _null_groups(cls, value: Any) -> Any:
        return {} if value is None else value


class DiscountConfig(Section):
    enabled: bool = True
    period_days: Days = 365
    levels: tuple[LevelConfig, ...] = ()

    @field_validator("levels", mode="wrap")
    @classmethod
    def _levels(
        cls, raw: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[LevelConfig, ...]:
        value: tuple[LevelConfig, ...] = _validate_ladder(raw, handler, info, "discount.levels", "level")
        if not value and info.data.get("enabled", True):
            rules.report(
                info,
                "discount.levels",
                "the discount program is enabled but has no levels; list at least one level "
                "{code, name, threshold: 0, percent, term_days: null} or set discount.enabled: false",
            )
        for i, level in enumerate(value[1:], start=1):
            if level.term_days is None:
                rules.report(
                    info,
                    f"discount.levels[{i}].term_days",
                    "only the minimum (first) level may have no term; give this level a term in days",
                )
        return value


class CardsConfig(Section):
    prefix: Annotated[str, AfterValidator(rules.card_prefix)] = "2990"
    kind: Text | None = None
