"""The SQL SIRET/SIREN checks used by the importers equal python-stdnum's answers."""

import random

import duckdb
import pytest

from analytics import ids


def _luhn_complete(body: str) -> str:
    for d in "0123456789":
        if ids._siret.is_valid(body + d) if len(body) == 13 else ids._siren.is_valid(body + d):
            return body + d
    raise AssertionError


def _corpus() -> list[str]:
    rng = random.Random(20261125)
    values = []
    for _ in range(6000):
        body = "".join(rng.choice("0123456789") for _ in range(13))
        values.append(body + rng.choice("0123456789"))  # mostly invalid
    for _ in range(3000):
        siren = _luhn_complete("".join(rng.choice("0123456789") for _ in range(8)))
        nic = "".join(rng.choice("0123456789") for _ in range(4))
        for d in "0123456789":  # one of these is valid
            values.append(siren + nic + d)
    # La Poste: digit sum multiple of 5, and its head office 35600000000048
    values += [f"356000000{n:05d}" for n in range(0, 3000, 7)] + ["35600000000048"]
    values += [
        "807 469 317 00018",
        "807.469.317.00018",
        "807469317-00018",
        "8074693170001",
        "80746931700018",
        "807469317",
        "07469317",
        "80746931",
        "",
        "  ",
        "ABC",
        "1" * 15,
        "807\u00a0469\u00a0317\u00a000018",
        "807\u202f469\u202f317\u202f00018",
    ]
    return values


def test_sql_twin_equals_stdnum():
    values = _corpus()
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest($v::VARCHAR[]) AS raw", {"v": values})
    got = {r[0]: (r[1], r[2]) for r in con.execute(ids.clean_siret_table_sql("SELECT raw FROM v")).fetchall()}
    mismatches = []
    for raw in set(values):
        siret = ids.clean_siret(raw)
        siren = siret[:9] if siret else ids.clean_siren(raw)
        if got[raw] != (siret, siren):
            mismatches.append((raw, got[raw], (siret, siren)))
    assert not mismatches, mismatches[:10]
    # the corpus really exercises both outcomes and La Poste's exception
    valid = [v for v in values if ids.clean_siret(v)]
    assert len(valid) > 3000
    assert any(v.startswith("356000000") and v != "35600000000048" for v in valid)


@pytest.mark.parametrize("raw,expected", [("35600000000048", "35600000000048"), ("80746931700019", None)])
def test_clean_siret_examples(raw, expected):
    assert ids.clean_siret(raw) == expected
