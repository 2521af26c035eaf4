"""Who is eligible: a rule's predicates evaluated over holder columns, all holders at once.

Opening a period for millions of families cannot afford a Python loop per holder, so holders are
columns (numpy arrays, one element per holder) and each predicate is one vectorised comparison.
The same functions serve ``explain`` for a single holder (a population of one), so what explain
says is exactly what opening did.

Members are a ragged structure: ``member_holder[i]`` is the index of the holder that member ``i``
belongs to and ``member_age[i]`` their age in whole years at the period start; counts per holder
are one ``np.bincount``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from quota.domain.rules import FUELS, VEHICLE_KINDS, AgeRange, Eligibility, IntRange

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _ints(values: npt.ArrayLike | None, n: int, fill: int = 0) -> IntArray:
    if values is None:
        return np.full(n, fill, dtype=np.int64)
    return np.asarray(values, dtype=np.int64)


@dataclass(frozen=True)
class HolderColumns:
    """Attributes of ``n`` holders of one type, as parallel arrays (index = holder position).

    Categorical attributes are small-int codes: ``governorate`` indexes ``governorates``;
    ``vehicle_kind`` and ``fuel`` index ``rules.VEHICLE_KINDS`` / ``rules.FUELS`` (-1 = none).
    """

    holder_type: str
    ids: IntArray
    governorates: tuple[str, ...]
    governorate: IntArray
    family_size: IntArray
    excluded: BoolArray
    member_holder: IntArray
    member_age: IntArray
    vehicle_kind: IntArray
    fuel: IntArray
    engine_cc: IntArray
    model_year: IntArray
    licence_valid: BoolArray
    nth_vehicle: IntArray
    _age_counts: dict[tuple[int, int], IntArray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def build(
        cls,
        holder_type: str,
        ids: npt.ArrayLike,
        governorates: tuple[str, ...],
        governorate: npt.ArrayLike,
        *,
        family_size: npt.ArrayLike | None = None,
        excluded: npt.ArrayLike | None = None,
        member_holder: npt.ArrayLike | None = None,
        member_age: npt.ArrayLike | None = None,
        vehicle_kind: npt.ArrayLike | None = None,
        fuel: npt.ArrayLike | None = None,
        engine_cc: npt.ArrayLike | None = None,
        model_year: npt.ArrayLike | None = None,
        licence_valid: npt.ArrayLike | None = None,
        nth_vehicle: npt.ArrayLike | None = None,
    ) -> HolderColumns:
        ids_a = np.asarray(ids, dtype=np.int64)
        n = int(ids_a.shape[0])
        return cls(
            holder_type=holder_type,
            ids=ids_a,
            governorates=governorates,
            governorate=_ints(governorate, n),
            family_size=_ints(family_size, n),
            excluded=np.zeros(n, bool) if excluded is None else np.asarray(excluded, dtype=bool),
            member_holder=_ints(member_holder, 0),
            member_age=_ints(member_age, 0),
            vehicle_kind=_ints(vehicle_kind, n, -1),
            fuel=_ints(fuel, n, -1),
            engine_cc=_ints(engine_cc, n),
            model_year=_ints(model_year, n),
            licence_valid=np.zeros(n, bool) if licence_valid is None else np.asarray(licence_valid, bool),
            nth_vehicle=_ints(nth_vehicle, n, 1),
        )

    def members_aged(self, ages: AgeRange) -> IntArray:
        """Living members per holder whose age is in the range (cached per range)."""
        key = (ages.min_age, ages.max_age)
        if key not in self._age_counts:
            mask = (self.member_age >= ages.min_age) & (self.member_age <= ages.max_age)
            counts = np.bincount(self.member_holder[mask], minlength=self.n)
            self._age_counts[key] = counts.astype(np.int64)
        return self._age_counts[key]

    def take(self, index: int) -> HolderColumns:
        """A population of one: the holder at ``index`` (for explain)."""
        sel = self.member_holder == index
        cols = {
            name: getattr(self, name)[index : index + 1]
            for name in ("ids", "governorate", "family_size", "excluded", "vehicle_kind", "fuel",
                         "engine_cc", "model_year", "licence_valid", "nth_vehicle")
        }
        return HolderColumns(
            holder_type=self.holder_type, governorates=self.governorates,
            member_holder=np.zeros(int(sel.sum()), np.int64), member_age=self.member_age[sel], **cols,
        )


@dataclass(frozen=True)
class PredicateResult:
    """One predicate over all holders: what was required, each holder's value, and the outcome."""

    name: str
    required: str
    values: npt.NDArray[np.generic]
    passed: BoolArray


def _in_range(values: IntArray, bounds: IntRange) -> BoolArray:
    ok = np.ones(values.shape[0], dtype=bool)
    if bounds.min is not None:
        ok &= values >= bounds.min
    if bounds.max is not None:
        ok &= values <= bounds.max
    return ok


def _range_text(bounds: IntRange) -> str:
    return f"{'-inf' if bounds.min is None else bounds.min}..{'inf' if bounds.max is None else bounds.max}"


def _codes(names: tuple[str, ...], vocab: tuple[str, ...]) -> IntArray:
    return np.asarray([vocab.index(x) for x in names if x in vocab], dtype=np.int64)


def _labels(codes: IntArray, vocab: tuple[str, ...]) -> npt.NDArray[np.generic]:
    table = np.asarray([*vocab, ""], dtype=object)
    return table[np.where(codes < 0, len(vocab), codes)]


def evaluate(elig: Eligibility, cols: HolderColumns) -> list[PredicateResult]:
    """Every predicate the rule states, evaluated for every holder."""
    out: list[PredicateResult] = []
    if elig.governorate_in is not None:
        wanted = _codes(elig.governorate_in, cols.governorates)
        out.append(PredicateResult("governorate_in", ", ".join(elig.governorate_in),
                                   _labels(cols.governorate, cols.governorates),
                                   np.isin(cols.governorate, wanted)))
    if elig.family_size is not None:
        out.append(PredicateResult("family_size", _range_text(elig.family_size), cols.family_size,
                                   _in_range(cols.family_size, elig.family_size)))
    if elig.members_aged is not None:
        m = elig.members_aged
        counts = cols.members_aged(m)
        out.append(PredicateResult("members_aged", f">= {m.at_least} aged {m.min_age}..{m.max_age}",
                                   counts, counts >= m.at_least))
    if elig.vehicle_kind_in is not None:
        out.append(PredicateResult("vehicle_kind_in", ", ".join(elig.vehicle_kind_in),
                                   _labels(cols.vehicle_kind, VEHICLE_KINDS),
                                   np.isin(cols.vehicle_kind, _codes(elig.vehicle_kind_in, VEHICLE_KINDS))))
    if elig.fuel_in is not None:
        out.append(PredicateResult("fuel_in", ", ".join(elig.fuel_in), _labels(cols.fuel, FUELS),
                                   np.isin(cols.fuel, _codes(elig.fuel_in, FUELS))))
    for name in ("engine_cc", "model_year", "nth_vehicle"):
        bounds: IntRange | None = getattr(elig, name)
        if bounds is not None:
            values: IntArray = getattr(cols, name)
            out.append(PredicateResult(name, _range_text(bounds), values, _in_range(values, bounds)))
    for flag in ("licence_valid", "excluded"):
        want: bool | None = getattr(elig, flag)
        if want is not None:
            values_b: BoolArray = getattr(cols, flag)
            out.append(PredicateResult(flag, str(want).lower(), values_b, values_b == want))
    return out


def eligible_mask(results: list[PredicateResult], n: int) -> BoolArray:
    mask = np.ones(n, dtype=bool)
    for r in results:
        mask &= r.passed
    return mask


def ages_at(birth_dates: npt.NDArray[np.datetime64], on: date) -> IntArray:
    """Whole years of age on ``on`` for each birth date (vectorised; 29 Feb ages on 1 Mar)."""
    days = birth_dates.astype("datetime64[D]")
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month_day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    months = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    had_birthday = (months < on.month) | ((months == on.month) & (month_day <= on.day))
    return (on.year - years - np.where(had_birthday, 0, 1)).astype(np.int64)
