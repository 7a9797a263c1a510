"""An import of payments or contracts reclassifies only its suppliers, with the same
result as a full rebuild."""

from analytics import referential, store
from analytics.ingest import import_file


def _snapshot(con):
    return con.execute(
        "SELECT * EXCLUDE (classified_at) FROM supplier_class ORDER BY supplier_key"
    ).fetchall()


def test_incremental_equals_full(con, tmp_path, shared):
    import_file(con, "structures", shared / "inclusion" / "le-marche__fixtures_siaes.csv")
    import_file(con, "decp", shared / "decp" / "megalis-bretagne__decp-59920013600241-2024-07-09-01.json")
    first = tmp_path / "m1.csv"
    first.write_text(
        "Date paiement;Tiers;SIRET;Code postal;Montant TTC\n"
        "05/03/2025;BALUCHON;80746931700018;93230;1 200,00\n"
        "06/03/2025;Boulangerie Martin;;59000;300,00\n",
        encoding="utf-8",
    )
    second = tmp_path / "m2.csv"
    # the same name-only supplier again, now with another postcode; and a new supplier
    second.write_text(
        "Date paiement;Tiers;SIRET;Code postal;Montant TTC\n"
        "07/04/2025;Boulangerie Martin;;59000;150,00\n"
        "07/04/2025;LA COLLECTERIE;75187049400026;93100;90,00\n",
        encoding="utf-8",
    )
    import_file(con, "mandats", first)
    import_file(con, "mandats", second)
    incremental = _snapshot(con)
    with store.transaction(con):
        referential.reclassify(con)
    assert _snapshot(con) == incremental
    keys = {r[0] for r in incremental}
    assert {"80746931700018", "75187049400026", "NOM:BOULANGERIE MARTIN"} <= keys
