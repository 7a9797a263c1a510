"""An import killed with SIGKILL leaves nothing: no rows, no ledger entry, and the same
file imports afterwards.

The command line runs on a generated 1.5 million-line file and is killed twice: while
it parses, and while it inserts into ``mandats`` (the transaction is open and the rows
are written but not committed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from analytics import store
from analytics.ingest import Options, import_file

ROOT = Path(__file__).resolve().parent.parent
N_LINES = 1_500_000

pytestmark = pytest.mark.slow


def make_big_csv(path: Path, n: int) -> None:
    """A Hélios-like `;` file with decimal commas, written by DuckDB in about a second."""
    c = duckdb.connect()
    c.execute(
        f"""
        COPY (
            SELECT 2025 AS "Exercice", 'Principal' AS "Budget", i // 50 AS "N° bordereau",
                   i AS "N° mandat", 1 AS "N° ligne",
                   strftime(DATE '2025-01-01' + CAST(i % 365 AS INTEGER), '%d/%m/%Y') AS "Date d'émission",
                   'Fournisseur ' || (i % 5000) AS "Tiers",
                   '6068' AS "Imputation", 'Achat n°' || i AS "Objet",
                   printf('%d,%02d', i % 100000, i % 100) AS "Montant TTC"
            FROM range({int(n)}) t(i)
        ) TO '{path}' (HEADER, DELIMITER ';')
        """
    )
    c.close()


def run_and_kill(db: Path, csv: Path, marker: str, delay: float) -> str:
    """Start the CLI import, wait for `marker` in its progress output, SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics", "--db", str(db), "import", "mandats", str(csv)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen = bytearray()

    def pump():
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    try:
        while marker.encode() not in seen:
            assert proc.poll() is None, f"import ended before « {marker} » : {seen.decode(errors='replace')}"
            assert time.monotonic() < deadline, "import never reached " + marker
            time.sleep(0.02)
        time.sleep(delay)
        assert proc.poll() is None, "import finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert proc.returncode == -signal.SIGKILL
    return seen.decode(errors="replace")


def assert_nothing_left(db: Path) -> None:
    con = store.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM mandats").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM supplier_class").fetchall()[0][0] == 0
        # Neither an 'ok' nor a 'running' entry: the ledger row was never committed.
        assert con.execute("SELECT count(*) FROM imports").fetchall()[0][0] == 0
    finally:
        con.close()


def test_killed_import_leaves_nothing_and_the_file_imports_afterwards(tmp_path):
    db = tmp_path / "kill.duckdb"
    csv = tmp_path / "big.csv"
    make_big_csv(csv, N_LINES)
    store.connect(db).close()  # schema in place, as on a real installation

    run_and_kill(db, csv, "Lecture des lignes", 0.3)
    assert_nothing_left(db)

    run_and_kill(db, csv, "Enregistrement des lignes", 0.3)
    assert_nothing_left(db)

    con = store.connect(db)
    try:
        r = import_file(con, "mandats", csv, Options())
        assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (N_LINES, N_LINES, 0)
        assert con.execute("SELECT count(*) FROM mandats").fetchall()[0][0] == N_LINES
        ledger = con.execute("SELECT import_id, status FROM imports").fetchall()
        assert ledger == [(r.import_id, "ok")]
    finally:
        con.close()
