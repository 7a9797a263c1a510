"""The filters every indicator, page and command takes: period, basis, scope, territory."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace

BASES = ("paid", "notified")
TERRITORY_KINDS = {"dep": "département", "reg": "région", "epci": "EPCI", "com": "commune"}


@dataclass(frozen=True)
class Territory:
    """The buyer's territory of reference: one kind and one or more codes."""

    kind: str  # dep | reg | epci | com
    codes: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Territory:
        """'dep:59', 'dep:59,62', 'reg:32', 'epci:200093201', 'com:59350,59009'."""
        m = re.fullmatch(r"\s*(dep|reg|epci|com)\s*:\s*([0-9AB,\s]+)\s*", text or "", re.I)
        if not m:
            raise ValueError(
                f"Territoire invalide « {text} » : attendu dep:59, reg:32, epci:SIREN ou com:CODE[,…]"
            )
        kind = m.group(1).lower()
        codes = tuple(c.strip().upper() for c in m.group(2).split(",") if c.strip())
        if kind == "dep":
            codes = tuple(c.zfill(2) if c.isdigit() and len(c) < 2 else c for c in codes)
        if kind == "reg":
            codes = tuple(c.zfill(2) for c in codes)
        if not codes:
            raise ValueError(f"Territoire invalide « {text} » : aucun code.")
        return cls(kind, codes)

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(self.codes)}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "codes": list(self.codes)}

    @property
    def column(self) -> str:
        """The supplier_class column this territory is tested on (a whitelisted name)."""
        return {
            "dep": "departement_code",
            "reg": "region_code",
            "epci": "epci_siren",
            "com": "commune_code",
        }[self.kind]


@dataclass(frozen=True)
class Filters:
    """A period, a basis and optional restrictions; hashable so caches can key on it."""

    date_from: dt.date
    date_to: dt.date  # inclusive
    basis: str = "paid"
    buyer_siret: str | None = None
    territory: Territory | None = None
    services: tuple[str, ...] = ()
    cpv_divisions: tuple[str, ...] = ()
    natures: tuple[str, ...] = ()  # accounting nature prefixes, e.g. '611', '2313'
    procedures: tuple[str, ...] = ()
    amount_min: float | None = None
    amount_max: float | None = None
    supplier_classes: tuple[str, ...] = ()  # ess, inclusive, insertion, handicap, pme, local
    extra: tuple = field(default=())

    def __post_init__(self):
        if self.basis not in BASES:
            raise ValueError(f"Base inconnue « {self.basis} » : paid ou notified.")
        if self.date_to < self.date_from:
            raise ValueError("La fin de période précède son début.")

    @classmethod
    def year(cls, year: int, **kw) -> Filters:
        return cls(dt.date(year, 1, 1), dt.date(year, 12, 31), **kw)

    def previous_year(self) -> Filters:
        """The same period one year earlier (29 February falls back to the 28th)."""
        return replace(self, date_from=_minus_year(self.date_from), date_to=_minus_year(self.date_to))

    def with_(self, **kw) -> Filters:
        return replace(self, **kw)

    def period_dict(self) -> dict:
        return {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}


def _minus_year(d: dt.date) -> dt.date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:
        return d.replace(year=d.year - 1, day=28)


def parse_date(text: str) -> dt.date:
    """ISO (2026-11-25) or French (25/11/2026) date from the command line."""
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"Date invalide « {text} » : attendu AAAA-MM-JJ ou JJ/MM/AAAA.")


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """'2026-10' -> (2026-10-01, 2026-10-31)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"Mois invalide « {month} » : attendu AAAA-MM.")
    y, mo = int(m.group(1)), int(m.group(2))
    start = dt.date(y, mo, 1)
    end = (dt.date(y + (mo == 12), mo % 12 + 1, 1)) - dt.timedelta(days=1)
    return start, end
