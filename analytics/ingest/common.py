"""What every importer shares: file checks, encoding detection, the ledger, undo.

An importer is a function ``load(con, import_id, source, options) -> LoadCounts`` that
inserts its rows tagged with ``import_id``. ``run_import`` wraps it: refuses bad files
with one clear French sentence, refuses the same bytes twice, runs the load and the
re-classification in one transaction, and writes the ledger.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from analytics import store

MAX_UPLOAD_BYTES = int(os.environ.get("EMPREINTE_MAX_UPLOAD_MB", "2048")) * 1024 * 1024
MAX_XLSX_UNCOMPRESSED = 1024 * 1024 * 1024  # zip-bomb guard for XLSX
MAX_REJECTS_STORED = 100_000


def _latin1_fallback(err: UnicodeDecodeError):
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error("latin1_fallback", _latin1_fallback)


class ImportRefused(Exception):
    """The file was refused as a whole; the database is unchanged. Message in French."""


@dataclass
class Options:
    mapping: dict[str, str] | None = None  # header -> field, from --mapping
    strict: bool = False
    who: str | None = None
    progress: Callable[[str, float], None] | None = None  # (message, fraction 0..1)
    extra: dict = field(default_factory=dict)  # importer-specific (e.g. exercice)


@dataclass
class LoadCounts:
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    amount_total: float | None = None
    contracts: int | None = None
    details: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    import_id: int
    kind: str
    file_name: str
    sha256: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_duplicate: int
    amount_total: float | None
    contracts: int | None
    details: dict
    rejected_sample: list[dict]

    def as_json(self) -> dict:
        """The keys of the command line's ``--json`` contract."""
        return {
            "import_id": self.import_id,
            "kind": self.kind,
            "file": self.file_name,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "rows_duplicate": self.rows_duplicate,
            "amount_total": self.amount_total,
            "contracts": self.contracts,
            "details": self.details,
            "rejected": self.rejected_sample,
        }


# --- file checks ---------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_size(path: Path, max_bytes: int | None = None) -> int:
    """Refuse an empty file or one above the upload cap (read at call time)."""
    if max_bytes is None:
        max_bytes = MAX_UPLOAD_BYTES
    size = path.stat().st_size
    if size == 0:
        raise ImportRefused("Le fichier est vide.")
    if size > max_bytes:
        raise ImportRefused(
            f"Le fichier dépasse la taille maximale autorisée ({max_bytes // (1024 * 1024)} Mo)."
        )
    return size


# DuckDB expands these in every path it reads: read_csv('m*.csv') reads all matching files.
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")


@contextmanager
def readable_path(path: Path):
    """The path to hand to the loaders: ``path`` itself, or, when it holds a glob character,
    a link (else a copy) under a plain name in a temporary folder, removed afterwards."""
    if not _GLOB_CHARS.search(str(path)):
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="empreinte_src_"))
    try:
        alias = folder / (_GLOB_CHARS.sub("_", path.name) or "source")
        try:
            alias.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sniff_kind(head: bytes) -> str:
    """'xlsx', 'zip', 'parquet', 'json', 'html', 'binary' or 'text' from the first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    text_head = head
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            return "text"
    if b"\x00" in text_head[:4096]:
        # UTF-16 without BOM has NULs on every other byte; anything else is binary.
        sample = text_head[:4096]
        if sample[1::2].count(0) > len(sample) // 4 or sample[0::2].count(0) > len(sample) // 4:
            return "text"
        return "binary"
    stripped = text_head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "html" if b"html" in stripped[:200] else "xml"
    if stripped.startswith((b"{", b"[")):
        return "json"
    return "text"


def detect_encoding(raw: bytes) -> str:
    """Encoding of a text sample: utf-8-sig, utf-16, utf-8 or cp1252 (latin-1 last)."""
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = raw[:4096]
    if sample and (sample[1::2].count(0) > len(sample) // 4):
        return "utf-16-le"
    if sample and (sample[0::2].count(0) > len(sample) // 4):
        return "utf-16-be"
    try:
        # A cut multi-byte sequence at the end of the sample is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        raw.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def detect_file_encoding(path: Path, sample_bytes: int = 4 << 20) -> str:
    """Detect on the head; confirm UTF-8 over the whole file (a late é in cp1252 is common)."""
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    enc = detect_encoding(head)
    if enc != "utf-8":
        return enc
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                dec.decode(chunk)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def transcode_to_utf8(path: Path, encoding: str, workdir: Path | None = None) -> Path:
    """A UTF-8 copy of a text file (DuckDB reads UTF-8; its latin-1 refuses € and œ)."""
    if encoding == "utf-8":
        return path
    out = Path(tempfile.mkstemp(suffix=".csv", dir=workdir)[1])
    # Windows-1252 leaves five bytes undefined; exports carry them as Latin-1 controls.
    errors = "latin1_fallback" if encoding == "cp1252" else "strict"
    dec = codecs.getincrementaldecoder(encoding)(errors=errors)
    with open(path, "rb") as src, open(out, "wb") as dst:
        for chunk in iter(lambda: src.read(1 << 23), b""):
            dst.write(dec.decode(chunk).encode("utf-8"))
        dst.write(dec.decode(b"", final=True).encode("utf-8"))
    return out


def check_xlsx(path: Path) -> None:
    """Refuse truncated or bomb-like XLSX before openpyxl inflates it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
            names = set(z.namelist())
            # The declared sizes are checked before anything is inflated: testzip() would
            # otherwise decompress a bomb in full before its size is looked at.
            if total > MAX_XLSX_UNCOMPRESSED:
                raise ImportRefused(
                    f"Le classeur Excel décompressé dépasserait {MAX_XLSX_UNCOMPRESSED // (1024 * 1024)} Mo :"
                    " refusé par précaution."
                )
            if "xl/workbook.xml" not in names:
                raise ImportRefused("Le fichier ZIP n'est pas un classeur Excel (.xlsx).")
            bad = z.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError):
        raise ImportRefused("Le classeur Excel est illisible ou tronqué.") from None
    if bad is not None:
        raise ImportRefused(f"Le classeur Excel est corrompu (élément illisible : {bad}).")


# --- header matching -----------------------------------------------------------------


def norm_header(text: object) -> str:
    """Lower case, no accents, letters and digits only: 'N° Mandat ' -> 'nmandat'."""
    s = unicodedata.normalize("NFKD", str(text or "")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", s.lower())


def norm_name(text: object) -> str:
    """Normalised supplier name for grouping name-only suppliers."""
    s = unicodedata.normalize("NFKD", str(text or "")).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Z0-9]+", " ", s.upper()).strip()
    s = re.sub(r"\b(SARL|SAS|SASU|SA|EURL|SCI|SNC|STE|SOCIETE|ETS|ETABLISSEMENTS)\b", "", s)
    return re.sub(r"\s+", " ", s).strip()


def load_mapping(path: str | os.PathLike | None) -> dict[str, str] | None:
    """A header -> field map from a small JSON or TOML file."""
    if not path:
        return None
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportRefused(f"Fichier de correspondance introuvable : {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"Fichier de correspondance illisible ({p}) : {exc}") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ImportRefused(
            f"Fichier de correspondance invalide ({p.name}) : JSON ou TOML attendu ({exc})."
        ) from None
    if isinstance(data, dict):
        data = data.get("mapping", data)
    if not isinstance(data, dict):
        raise ImportRefused("Le fichier de correspondance doit être un objet en-tête → champ.")
    return {str(k): str(v) for k, v in data.items()}


# --- ledger --------------------------------------------------------------------------


def previous_import_of(con: duckdb.DuckDBPyConnection, sha: str) -> tuple | None:
    return con.execute(
        "SELECT import_id, finished_at, kind FROM imports WHERE sha256 = $s AND status = 'ok' "
        "ORDER BY import_id LIMIT 1",
        {"s": sha},
    ).fetchone()


def record_rejects(con: duckdb.DuckDBPyConnection, import_id: int, rows: list[tuple]) -> None:
    """rows: (line_number, column, raw_value, reason)."""
    if not rows:
        return
    con.executemany(
        "INSERT INTO rejected_rows VALUES (?, ?, ?, ?, ?)",
        [(import_id, *r) for r in rows[:MAX_REJECTS_STORED]],
    )


def run_import(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: str | os.PathLike,
    load: Callable[[duckdb.DuckDBPyConnection, int, Path, Options], LoadCounts],
    options: Options | None = None,
    *,
    file_name: str | None = None,
    reclassify: bool = True,
) -> ImportResult:
    """Check, load and record one file in one transaction (see module docstring)."""
    options = options or Options()
    path = Path(path)
    if not path.exists():
        raise ImportRefused(f"Fichier introuvable : {path}")
    size = check_size(path)
    sha = sha256_file(path)
    name = file_name or path.name
    prev = previous_import_of(con, sha)
    if prev is not None:
        when = prev[1].strftime("%d/%m/%Y %H:%M") if prev[1] else "?"
        raise ImportRefused(
            f"Ce fichier a déjà été importé (import n° {prev[0]} du {when}) : rien n'a été ajouté."
        )
    started = dt.datetime.now()
    with readable_path(path) as source, store.transaction(con):
        import_id = con.execute("SELECT nextval('import_id_seq')").fetchone()[0]
        con.execute(
            "INSERT INTO imports (import_id, kind, file_name, sha256, size_bytes, started_at,"
            " who, status) VALUES ($i, $k, $f, $s, $b, $t, $w, 'running')",
            {"i": import_id, "k": kind, "f": name, "s": sha, "b": size, "t": started, "w": options.who},
        )
        counts = load(con, import_id, source, options)
        if options.strict and counts.rows_rejected:
            first = con.execute(
                "SELECT line_number, column_name, raw_value, reason FROM rejected_rows "
                "WHERE import_id = $i ORDER BY line_number LIMIT 1",
                {"i": import_id},
            ).fetchone()
            detail = f" (ligne {first[0]}, {first[1]} : {first[3]})" if first else ""
            raise ImportRefused(
                f"Mode strict : {counts.rows_rejected} ligne(s) rejetée(s){detail} ; "
                "le fichier entier est refusé."
            )
        if kind == "mandats":
            from analytics import aggregates

            aggregates.add_import(con, import_id)  # the month × supplier sums, same transaction
        if reclassify:
            from analytics import referential

            # payments, contracts and insertion hours change no referential: only the
            # suppliers they touch are classified again (same result as a full rebuild)
            incremental = kind in ("mandats", "decp", "insertion")
            referential.reclassify(con, import_id=import_id if incremental else None)
        con.execute(
            "UPDATE imports SET rows_read = $r, rows_loaded = $l, rows_rejected = $j,"
            " rows_duplicate = $d, amount_total = $a, contracts = $c, finished_at = $t,"
            " status = 'ok', details = $x WHERE import_id = $i",
            {
                "r": counts.rows_read,
                "l": counts.rows_loaded,
                "j": counts.rows_rejected,
                "d": counts.rows_duplicate,
                "a": counts.amount_total,
                "c": counts.contracts,
                "t": dt.datetime.now(),
                "x": json.dumps(counts.details, default=str),
                "i": import_id,
            },
        )
    sample = [
        dict(zip(("line_number", "column", "raw_value", "reason"), r))
        for r in con.execute(
            "SELECT line_number, column_name, raw_value, reason FROM rejected_rows "
            "WHERE import_id = $i ORDER BY line_number LIMIT 50",
            {"i": import_id},
        ).fetchall()
    ]
    return ImportResult(
        import_id=import_id,
        kind=kind,
        file_name=name,
        sha256=sha,
        rows_read=counts.rows_read,
        rows_loaded=counts.rows_loaded,
        rows_rejected=counts.rows_rejected,
        rows_duplicate=counts.rows_duplicate,
        amount_total=counts.amount_total,
        contracts=counts.contracts,
        details=counts.details,
        rejected_sample=sample,
    )


def undo_import(con: duckdb.DuckDBPyConnection, import_id: int, who: str | None = None) -> dict:
    """Remove an import's rows; the ledger keeps the record with status 'undone'."""
    row = con.execute("SELECT status, kind FROM imports WHERE import_id = $i", {"i": import_id}).fetchone()
    if row is None:
        raise ImportRefused(f"Import n° {import_id} inconnu.")
    if row[0] != "ok":
        raise ImportRefused(f"L'import n° {import_id} est déjà annulé.")
    removed = {}
    with store.transaction(con):
        from analytics import aggregates

        aggregates.remove_import(con, import_id)
        for table in store.IMPORT_TABLES:
            if table == "rejected_rows":
                continue  # the report of what was refused stays with the ledger
            n = con.execute(
                f"SELECT count(*) FROM {table} WHERE import_id = $i", {"i": import_id}
            ).fetchone()[0]
            if n:
                con.execute(f"DELETE FROM {table} WHERE import_id = $i", {"i": import_id})
                removed[table] = n
        con.execute(
            "UPDATE imports SET status = 'undone', undone_at = now(), undone_by = $w WHERE import_id = $i",
            {"i": import_id, "w": who},
        )
        from analytics import referential

        referential.reclassify(con)
    return {"import_id": import_id, "kind": row[1], "removed": removed}


def list_imports(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The ledger, newest first, with the keys of ``imports --json``."""
    cur = con.execute(
        "SELECT import_id, kind, file_name AS file, sha256, status, rows_read, rows_loaded,"
        " rows_rejected, rows_duplicate, amount_total::DOUBLE AS amount_total, contracts,"
        " started_at, finished_at, who, undone_at FROM imports"
        " WHERE status IN ('ok', 'undone') ORDER BY import_id DESC"
    )
    cols = [d[0] for d in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(cols, r))
        for k in ("started_at", "finished_at", "undone_at"):
            d[k] = d[k].isoformat(timespec="seconds") if d[k] else None
        out.append(d)
    return out
