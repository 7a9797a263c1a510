"""supplier_class written by update-in-place / insert / delete (reclassify's write path)
holds exactly what a table rebuilt from scratch would hold."""

from analytics import referential, store
from analytics.ingest import import_file
from analytics.ingest.common import undo_import

COLS = ", ".join(c for c in referential.CLASS_COLUMNS if c != "classified_at")


def _snapshot(con):
    return con.execute(f"SELECT {COLS} FROM supplier_class ORDER BY supplier_key").fetchall()


def _from_scratch(con):
    """The rows a full classification computes, without touching supplier_class."""
    referential._prepare(con)
    sql = referential._class_sql(referential._DATA_KEYS)
    return con.execute(f"SELECT {COLS} FROM ({sql}) ORDER BY supplier_key").fetchall()


def _csv(path, rows):
    path.write_text("Date paiement;Tiers;SIRET;Code postal;Montant TTC\n" + "".join(rows), encoding="utf-8")
    return path


def test_update_insert_delete_match_a_rebuild(con, tmp_path):
    first = _csv(
        tmp_path / "m1.csv",
        [
            "05/03/2025;BALUCHON;80746931700018;93230;1 200,00\n",
            "06/03/2025;Boulangerie Martin;;59000;300,00\n",
        ],
    )
    second = _csv(
        tmp_path / "m2.csv",
        [
            # a known supplier seen again (updated in place), with more lines under another
            # spelling: its most frequent name changes
            "07/04/2025;BOULANGERIE MARTIN;;59000;10,00\n",
            "08/04/2025;BOULANGERIE MARTIN;;59000;10,00\n",
            "09/04/2025;BALUCHON;80746931700018;59000;10,00\n",
            # a new supplier (inserted)
            "07/04/2025;LA COLLECTERIE;75187049400026;93100;90,00\n",
        ],
    )
    import_file(con, "mandats", first)
    before = dict((r[0], r) for r in _snapshot(con))
    r2 = import_file(con, "mandats", second)
    after = _snapshot(con)
    assert after == _from_scratch(con)
    by_key = {r[0]: r for r in after}
    assert by_key["NOM:BOULANGERIE MARTIN"][3] == "BOULANGERIE MARTIN"
    assert before["NOM:BOULANGERIE MARTIN"][3] == "Boulangerie Martin"
    assert "75187049400026" in by_key and "NOM:BOULANGERIE MARTIN" in by_key

    # undoing the second import: the new supplier disappears, the other goes back
    undo_import(con, r2.import_id)
    assert _snapshot(con) == _from_scratch(con)
    assert {r[0] for r in _snapshot(con)} == set(before)
    assert dict((r[0], r) for r in _snapshot(con)) == before

    # a full rebuild over an up-to-date table changes nothing
    with store.transaction(con):
        n = referential.reclassify(con)
    assert n == len(before)
    assert dict((r[0], r) for r in _snapshot(con)) == before
