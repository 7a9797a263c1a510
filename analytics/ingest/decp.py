"""Contracts (DECP) importer: JSON v2 and v1, the official flat CSV, the tabular DECP.

``load(con, import_id, path, options)`` detects the format from the bytes and headers:

- **JSON v2** (schema 2.0.x): ``{"marches": {"marche": [...], "contrat-concession": [...]}}``
  (or ``{"marches": [...]}`` holding v2 records). Concessions are skipped and counted in
  ``details["concessions_ignorees"]``: only public contracts (marchés) feed the
  indicators.
- **JSON v1** (up to 2023): ``{"marches": [...]}`` with nested ``titulaires``
  (``id``, ``typeIdentifiant``, ``denominationSociale``) and ``acheteur`` {id, nom}; items
  whose ``_type`` is a concession are skipped. v1 has no considerations: the
  ``considerations_*`` columns and ``has_social`` / ``has_environmental`` / ``is_reserved``
  stay NULL (unknown, not false); clause rates must exclude (or flag) those rows.
- **Official flat CSV** (``;``, one row per contract, ``titulaire_id_1..n``,
  considerations as ``['Clause sociale', 'Critère social']``, ``CDL`` / ``MQ`` placeholders
  meaning empty, ``INX `` prefix on flagged values stripped).
- **Tabular DECP of decp.info** (58 columns, CSV or Parquet, one row per contract ×
  holder). Rows sharing ``uid``, ``dateNotification`` and ``montant`` are one contract held
  jointly; rows sharing a ``uid`` with another date or amount are distinct contracts.
  Where the file has ``modification_id``, a row with ``modification_id > 0`` whose uid,
  CPV and objet match exactly one initial version (in the file or already stored) is a
  later version of that contract (its ``dateNotification`` / ``montant`` are those of the
  modification), not a new contract. Holder location comes from
  ``titulaire_commune_code`` / ``titulaire_departement_code`` / ``titulaire_region_code``.
  This path is vectorised in DuckDB (no Python loop per row).

Identity of a contract (``contract_key``, see docs/internals.md): ``uid`` (the file's,
else ``acheteur.id + id``). When one uid carries several (initial dateNotification,
initial montant) pairs, across this file and the contracts already stored, those are
distinct contracts (lots under a reused id) keyed ``uid|date|montant``; stored rows of
that uid still keyed by the bare uid are re-keyed the same way, so a later file can never
double count them. A record with neither uid nor id (frequent in v1 files) is kept when
it has an objet, keyed ``SANSID:<acheteur>|<date>|<montant>|<hash of objet>``.

Versions: every version of a contract is stored (``seq`` = order in the file, for the
tabular file initial versions before modification rows); ``contracts_current`` keeps the
latest by date_publication (= the latest of datePublicationDonnees and the modifications'
publication dates). A version identical to one already stored or earlier in the file
(same contract_key, date_publication, amount and holders) is not inserted again and is
counted in ``rows_duplicate``.

JSON modifications are applied in order (by their numeric id, else array order): the
final ``montant``, ``dureeMois`` and ``titulaires`` stand; ``amount_initial`` keeps the
notified amount and ``modification_count`` the number of modifications.
``end_date`` = dateNotification + duration (months, rounded up). ``nature``,
``procedure`` and ``lieu_type`` are brought back to their official spelling (v1 files write
"marché", "Appel d offres ouvert", "Code Postal").

Ledger: ``rows_read`` = marché records (JSON; concessions apart) or data rows (CSV /
Parquet); ``rows_loaded`` / ``rows_duplicate`` count those same records or rows;
``contracts`` = distinct contract_keys inserted; ``amount_total`` = Σ amount of each
contract's latest inserted version (the 1/n split per holder sums back to it). Rejected,
with record or line number, column, raw value and reason: no uid, id nor objet;
dateNotification absent, unreadable or outside 1990 … today + 2 years; montant
unreadable or negative. A missing montant is kept (NULL).
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics import ids
from analytics.ids import clean_siret
from analytics.ingest.common import (
    MAX_REJECTS_STORED,
    ImportRefused,
    LoadCounts,
    Options,
    detect_encoding,
    detect_file_encoding,
    norm_header,
    record_rejects,
    sniff_kind,
    transcode_to_utf8,
)

# --- vocabularies -------------------------------------------------------------------

SOCIAL_LABELS = {
    "clausesociale": "Clause sociale",
    "clausessociales": "Clause sociale",
    "criteresocial": "Critère social",
    "criteressociaux": "Critère social",
    "marchereserve": "Marché réservé",
    "marchesreserves": "Marché réservé",
    "pasdeconsiderationsociale": "Pas de considération sociale",
    "pasdeconsiderationssociales": "Pas de considération sociale",
}
ENV_LABELS = {
    "clauseenvironnementale": "Clause environnementale",
    "clausesenvironnementales": "Clause environnementale",
    "critereenvironnemental": "Critère environnemental",
    "criteresenvironnementaux": "Critère environnemental",
    "pasdeconsiderationenvironnementale": "Pas de considération environnementale",
    "pasdeconsiderationsenvironnementales": "Pas de considération environnementale",
}
# Official labels of a few coded fields (v1 files spell them freely: "marché",
# "Appel d offres ouvert", "Code Postal"); unknown values are kept as read.
NATURE_LABELS = {
    norm_header(x): x
    for x in (
        "Marché", "Marché de partenariat", "Marché de défense ou de sécurité", "Accord-cadre",
        "Marché subséquent",
    )
}  # fmt: skip
PROCEDURE_LABELS = {
    norm_header(x): x
    for x in (
        "Procédure adaptée", "Appel d'offres ouvert", "Appel d'offres restreint",
        "Procédure avec négociation", "Marché passé sans publicité ni mise en concurrence préalable",
        "Dialogue compétitif", "Concours", "Procédure concurrentielle avec négociation",
        "Procédure négociée avec mise en concurrence préalable",
        "Marché négocié sans publicité ni mise en concurrence préalable",
    )
}  # fmt: skip
LIEU_TYPE_LABELS = {
    norm_header(x): x
    for x in (
        "Code postal", "Code commune", "Code arrondissement", "Code canton", "Code département",
        "Code région", "Code pays",
    )
}  # fmt: skip
SOCIAL_ANY = ("Clause sociale", "Critère social", "Marché réservé")
ENV_ANY = ("Clause environnementale", "Critère environnemental")

# Holder identifier types that are not a SIRET (anything else, or none, is tried as one).
NON_SIRET_TYPES = {"TVA", "TAHITI", "RIDET", "FRWF", "IREP", "UE", "HORS-UE", "HORSUE"}

# Values meaning "empty" in the exports (CDL / MQ: the flat CSV's placeholders).
PLACEHOLDERS = ("", "CDL", "MQ", "nan", "NaN", "None", "none", "null", "NULL", "N/A", "n/a")

MIN_YEAR = 1990
MAX_FUTURE_YEARS = 2

FORMAT_LABELS = {
    "decp_json_v2": "DECP JSON v2 (schéma 2.0)",
    "decp_json_v1": "DECP JSON v1 (jusqu'en 2023)",
    "decp_csv_plat": "DECP CSV plat officiel",
    "decp_tabulaire": "DECP tabulaire consolidé (decp.info)",
}

# Staging table of contract versions (one row per version, before keys and duplicates).
STAGE_COLUMNS: list[tuple[str, str, pa.DataType]] = [
    ("line", "BIGINT", pa.int64()),
    ("n_rows", "INTEGER", pa.int32()),
    ("seq", "BIGINT", pa.int64()),
    ("uid", "VARCHAR", pa.string()),
    ("id", "VARCHAR", pa.string()),
    ("buyer_raw", "VARCHAR", pa.string()),
    ("modif_id", "INTEGER", pa.int32()),
    ("ident_date", "DATE", pa.date32()),
    ("ident_amount", "DECIMAL(18, 2)", pa.decimal128(18, 2)),
    ("buyer_siret", "VARCHAR", pa.string()),
    ("buyer_name", "VARCHAR", pa.string()),
    ("nature", "VARCHAR", pa.string()),
    ("objet", "VARCHAR", pa.string()),
    ("cpv", "VARCHAR", pa.string()),
    ("cpv_division", "VARCHAR", pa.string()),
    ("procedure", "VARCHAR", pa.string()),
    ("lieu_code", "VARCHAR", pa.string()),
    ("lieu_type", "VARCHAR", pa.string()),
    ("duration_months", "DOUBLE", pa.float64()),
    ("date_notification", "DATE", pa.date32()),
    ("date_publication", "DATE", pa.date32()),
    ("amount", "DECIMAL(18, 2)", pa.decimal128(18, 2)),
    ("amount_initial", "DECIMAL(18, 2)", pa.decimal128(18, 2)),
    ("modification_count", "INTEGER", pa.int32()),
    ("forme_prix", "VARCHAR", pa.string()),
    ("offers_received", "INTEGER", pa.int32()),
    ("advance_rate", "DOUBLE", pa.float64()),
    ("innovative", "BOOLEAN", pa.bool_()),
    ("subcontracting", "BOOLEAN", pa.bool_()),
    ("groupement", "VARCHAR", pa.string()),
    ("accord_cadre_id", "VARCHAR", pa.string()),
    ("considerations_sociales", "VARCHAR[]", pa.list_(pa.string())),
    ("considerations_environnementales", "VARCHAR[]", pa.list_(pa.string())),
    ("modalites_execution", "VARCHAR[]", pa.list_(pa.string())),
    ("techniques", "VARCHAR[]", pa.list_(pa.string())),
    ("source_format", "VARCHAR", pa.string()),
]
STAGE_EXTRA = "contract_key VARCHAR, holder_count INTEGER, holder_sig VARCHAR, dup BOOLEAN"

HOLDER_COLUMNS: list[tuple[str, str, pa.DataType]] = [
    ("seq", "BIGINT", pa.int64()),
    ("holder_rank", "INTEGER", pa.int32()),
    ("holder_id", "VARCHAR", pa.string()),
    ("holder_id_type", "VARCHAR", pa.string()),
    ("holder_siret", "VARCHAR", pa.string()),
    ("holder_name", "VARCHAR", pa.string()),
    ("commune_code", "VARCHAR", pa.string()),
    ("departement_code", "VARCHAR", pa.string()),
    ("region_code", "VARCHAR", pa.string()),
    ("categorie", "VARCHAR", pa.string()),
]

# Columns of the contracts table filled from the staging table (same names).
CONTRACT_COPY = [c for c, _, _ in STAGE_COLUMNS[9:]]


# --- small parsers (JSON path; the SQL path mirrors them) ---------------------------


def _s(value: object) -> str | None:
    """A clean string: None for placeholders; the flat CSV's 'INX ' flag removed."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    s = str(value).strip()
    if s in PLACEHOLDERS:
        return None
    if s.startswith("INX "):
        s = s[4:].strip() or None
    return s


class _Bad(ValueError):
    pass


def _amount(value: object) -> Decimal | None:
    """Decimal(18,2) from 575000 / '30000.00' / '1 234,56'; None when empty; _Bad else."""
    if isinstance(value, bool):
        raise _Bad(str(value))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value != value:
            return None
        s = repr(value)
    else:
        s = _s(value)
        if s is None:
            return None
        s = re.sub(r"[\s\u00a0\u202f€]", "", s)
        if re.fullmatch(r"-?\d+,\d+", s):
            s = s.replace(",", ".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise _Bad(str(value)) from None
    if not d.is_finite() or abs(d) >= Decimal("1e16"):
        raise _Bad(str(value))
    return d.quantize(Decimal("0.01"))


def _date(value: object):
    """date from '2024-05-15' (time zone or time part ignored) or '15/05/2024'."""
    s = _s(value)
    if s is None:
        return None
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", s)
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        m = re.match(r"(\d{2})/(\d{2})/(\d{4})", s)
        if m:
            return dt.date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        pass
    raise _Bad(s)


def _plausible(d) -> bool:
    return MIN_YEAR <= d.year <= dt.date.today().year + MAX_FUTURE_YEARS


def _number(value: object) -> float | None:
    s = _s(value)
    if s is None:
        return None
    try:
        f = float(s.replace(",", "."))
    except ValueError:
        return None
    return f if f == f else None


def _int(value: object) -> int | None:
    f = _number(value)
    return int(f) if f is not None and f.is_integer() else None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    s = _s(value)
    if s is None:
        return None
    s = s.lower()
    if s in ("true", "1", "oui", "vrai", "t", "yes", "o"):
        return True
    if s in ("false", "0", "non", "faux", "f", "no", "n"):
        return False
    return None


def _rate(value: object) -> float | None:
    """tauxAvance as a fraction: 0.3; '30' (a percentage) becomes 0.3."""
    f = _number(value)
    if f is None or f < 0:
        return None
    return f / 100 if 1 < f <= 100 else f


def _cpv(value: object) -> str | None:
    s = _s(value)
    if s is None:
        return None
    m = re.search(r"(\d{8})(-\d)?", s)
    if m:
        return m[0]
    if re.fullmatch(r"\d{7}", s):
        return "0" + s
    return s


def _lieu_code(code: object, type_code: object) -> str | None:
    s = _s(code)
    if s is None:
        return None
    t = norm_header(type_code)
    if s.isdigit():
        if t in ("codepostal", "codecommune") and len(s) == 4:
            s = "0" + s
        elif t in ("codedepartement", "coderegion") and len(s) == 1:
            s = "0" + s
    return s


def _label(value: object, vocab: dict[str, str]) -> str | None:
    s = _s(value)
    return vocab.get(norm_header(s), s) if s else None


def _sql_label(x: str, vocab: dict[str, str]) -> str:
    """The SQL twin of _label: a CASE over the (constant) vocabulary."""
    key = f"regexp_replace(lower(strip_accents({x})), '[^a-z0-9]', '', 'g')"
    whens = " ".join("WHEN '{}' THEN '{}'".format(k, v.replace("'", "''")) for k, v in sorted(vocab.items()))
    return f"CASE {key} {whens} ELSE {x} END"


def _split_labels(value: object) -> list[str] | None:
    """['a', 'b'] / "['a', 'b']" / 'a, b' / {'x': [...]} -> list of stripped strings."""
    if value is None:
        return None
    if isinstance(value, dict):
        inner = list(value.values())
        value = inner[0] if len(inner) == 1 else inner
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            if isinstance(v, (list, dict)):
                out.extend(_split_labels(v) or [])
            else:
                s = _s(v)
                if s is not None:
                    out.append(s)
        return out
    s = _s(value)
    if s is None:
        return None
    quoted = re.findall(r"'([^']*)'|\"([^\"]*)\"", s)
    if quoted and s.lstrip().startswith("["):
        parts = [a or b for a, b in quoted]
    else:
        parts = re.split(r"[,;|]", s.strip().strip("[]"))
    return [p.strip().strip("'\"").strip() for p in parts if p.strip().strip("'\"").strip()]


def _labels(value: object, vocab: dict[str, str], unknown: dict[str, int]) -> list[str] | None:
    """Official labels (accents, case, plural tolerant); None when absent or unreadable."""
    raw = _split_labels(value)
    if not raw:
        return None
    out: list[str] = []
    for r in raw:
        label = vocab.get(norm_header(r))
        if label is None:
            unknown[r] = unknown.get(r, 0) + 1
        elif label not in out:
            out.append(label)
    return out or None


def _plain_list(value: object) -> list[str] | None:
    raw = _split_labels(value)
    if not raw:
        return None
    out: list[str] = []
    for r in raw:
        if r not in out:
            out.append(r)
    return out


_NON_SIRET_NORM = {norm_header(t) for t in NON_SIRET_TYPES}


def _holder_siret(hid: str | None, htype: str | None) -> str | None:
    if hid is None:
        return None
    if htype and norm_header(htype) in _NON_SIRET_NORM:
        return None
    return clean_siret(hid)


def _id_type(value: object) -> str | None:
    s = _s(value)
    return s.upper() if s else None


# --- JSON ----------------------------------------------------------------------------


def _items(value: object, inner: str) -> list:
    """Unwrap DECP lists: [{inner: {...}}], [{...}], {inner: [...]}, {inner: {...}}."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value[inner] if inner in value else [value]
        if isinstance(value, dict):
            value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for v in value:
        if isinstance(v, dict) and len(v) == 1 and inner in v:
            w = v[inner]
            out.extend(w if isinstance(w, list) else [w])
        else:
            out.append(v)
    return [v for v in out if v is not None]


def _sub(rec: dict, name: str, key: str) -> object:
    """rec[name][key], or the flattened rec['name.key'] / rec['name_key']."""
    v = rec.get(name)
    if isinstance(v, dict) and key in v:
        return v[key]
    if key == "id" and isinstance(v, (str, int)) and not isinstance(v, bool):
        return v  # "acheteur": "21590163800019"
    for sep in (".", "_"):
        if f"{name}{sep}{key}" in rec:
            return rec[f"{name}{sep}{key}"]
    return None


def _field(rec: dict, name: str, inner: str) -> object:
    """A list field that may be nested ({inner: [...]}) or flattened (name.inner)."""
    if name in rec:
        return rec[name]
    for sep in (".", "_"):
        if f"{name}{sep}{inner}" in rec:
            return rec[f"{name}{sep}{inner}"]
    return None


def _holders_of(rec: dict, key: str = "titulaires") -> list[dict]:
    """Holder dicts {id, type, name} from nested or flattened layouts."""
    raw = _items(rec.get(key), "titulaire")
    if not raw and key == "titulaires":
        # flattened variants: titulaire_id / titulaire.id, titulaire_id_1..n
        flat = []
        for k in range(0, 10):
            suffix = "" if k == 0 else f"_{k}"
            hid = _s(_sub(rec, "titulaire", "id" + suffix))
            if hid is not None:
                flat.append(
                    {
                        "id": hid,
                        "typeIdentifiant": _sub(rec, "titulaire", "typeIdentifiant" + suffix),
                        "denominationSociale": _sub(rec, "titulaire", "denominationSociale" + suffix)
                        or _sub(rec, "titulaire", "nom" + suffix),
                    }
                )
        raw = flat
    out = []
    for t in raw:
        if not isinstance(t, dict):
            continue
        if "titulaire" in t and isinstance(t["titulaire"], dict):
            t = t["titulaire"]
        hid = _s(t.get("id"))
        name = _s(t.get("denominationSociale") or t.get("nom") or t.get("denomination"))
        if hid is None and name is None:
            continue
        out.append({"id": hid, "type": _id_type(t.get("typeIdentifiant")), "name": name})
    return out


def _is_concession(rec: dict) -> bool:
    t = norm_header(rec.get("_type"))
    return (
        "concession" in t
        or "autoriteConcedante" in rec
        or "concessionnaires" in rec
        or "valeurGlobale" in rec
    )


V2_KEYS = (
    "considerationsSociales",
    "considerationsEnvironnementales",
    "offresRecues",
    "marcheInnovant",
    "tauxAvance",
    "typeGroupementOperateurs",
    "sousTraitanceDeclaree",
    "techniques",
    "modalitesExecution",
    "ccag",
    "attributionAvance",
)


def _read_json(path: Path):
    raw = path.read_bytes()
    enc = detect_encoding(raw[: 4 << 20])
    if enc == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        enc = "utf-8-sig"
    try:
        text = raw.decode(enc)
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportRefused(
            f"Le fichier JSON est illisible (erreur ligne {exc.lineno}, colonne {exc.colno} : "
            f"{exc.msg}) : rien n'a été importé."
        ) from None
    except RecursionError:
        raise ImportRefused("Le fichier JSON est trop profondément imbriqué : refusé.") from None


def _json_shape(data) -> tuple[list, int, bool]:
    """(marché records, concessions skipped, v1 container) or ImportRefused."""
    not_decp = (
        "Ce fichier JSON n'a pas la forme des données essentielles de la commande publique "
        "(DECP) : une clé « marches » contenant des marchés est attendue."
    )
    if isinstance(data, list):
        container, v1 = data, True
    elif isinstance(data, dict):
        body = data.get("marches", data if ("marche" in data or "contrat-concession" in data) else None)
        if isinstance(body, list):
            container, v1 = body, True
        elif isinstance(body, dict) and ("marche" in body or "contrat-concession" in body):
            m = body.get("marche") or []
            if isinstance(m, dict):
                m = [m]
            c = body.get("contrat-concession") or body.get("contrats-concession") or []
            if isinstance(c, dict):
                c = [c]
            if not isinstance(m, list) or not isinstance(c, list):
                raise ImportRefused(not_decp)
            container = list(m) + [{"_type": "Contrat de concession", **x} for x in c if isinstance(x, dict)]
            v1 = False
        else:
            raise ImportRefused(not_decp)
    else:
        raise ImportRefused(not_decp)
    records = [r for r in container if isinstance(r, dict)]
    if not records or len(records) < len(container) / 2:
        raise ImportRefused(not_decp)
    marches = [r for r in records if not _is_concession(r)]
    concessions = len(records) - len(marches)
    looks_like = sum(
        1 for r in marches if ("id" in r or "uid" in r) and ("montant" in r or "dateNotification" in r)
    )
    if not marches:
        if concessions:
            raise ImportRefused(
                f"Le fichier ne contient que des contrats de concession ({concessions}) : "
                "seuls les marchés publics sont importés."
            )
        raise ImportRefused(not_decp)
    if looks_like < len(marches) / 2:
        raise ImportRefused(not_decp)
    return marches, concessions, v1


def _stage_json(con, path: Path, options: Options) -> tuple[int, list[tuple], dict]:
    data = _read_json(path)
    marches, concessions, v1_container = _json_shape(data)
    del data
    versions: list[dict] = []
    holders: list[dict] = []
    rejects: list[tuple] = []
    unknown: dict[str, int] = {}
    stats = {"montants_modification_illisibles": 0, "sans_identifiant": 0, "v1": 0, "v2": 0}
    n = len(marches)
    for idx, rec in enumerate(marches, start=1):
        if options.progress and idx % 5000 == 0:
            options.progress("Lecture des marchés", 0.6 * idx / n)
        row = _json_version(rec, idx, v1_container, rejects, unknown, stats)
        if row is None:
            continue
        version, hs = row
        versions.append(version)
        holders.extend(hs)
    _insert_stage(con, versions, holders)
    details = {
        "concessions_ignorees": concessions,
        "enregistrements_v1": stats["v1"],
        "enregistrements_v2": stats["v2"],
        "sans_identifiant": stats["sans_identifiant"],
    }
    if concessions:
        details["note_concessions"] = (
            "Les contrats de concession ne sont pas importés : seuls les marchés publics "
            "entrent dans les indicateurs."
        )
    if stats["montants_modification_illisibles"]:
        details["montants_modification_illisibles"] = stats["montants_modification_illisibles"]
    if unknown:
        details["considerations_inconnues"] = unknown
    fmt = "decp_json_v1" if stats["v1"] >= stats["v2"] else "decp_json_v2"
    details["format"] = fmt
    return n, rejects, details


def _json_version(rec: dict, idx: int, v1_container: bool, rejects: list, unknown: dict, stats: dict):
    is_v2 = (not v1_container) or any(k in rec for k in V2_KEYS)
    stats["v2" if is_v2 else "v1"] += 1
    rid = _s(rec.get("id"))
    uid = _s(rec.get("uid"))
    buyer_raw = _s(_sub(rec, "acheteur", "id"))
    if buyer_raw is not None:
        buyer_raw = re.sub(r"\.0+$", "", buyer_raw)
    objet = _s(rec.get("objet"))
    if uid is None and rid is not None:
        uid = (buyer_raw or "") + rid
    if uid is None and objet is None:
        rejects.append((idx, "id", None, "identifiant du marché absent (ni uid, ni id, ni objet)"))
        return None
    raw_date = rec.get("dateNotification")
    try:
        date_notif = _date(raw_date)
    except _Bad:
        rejects.append((idx, "dateNotification", str(raw_date), "date de notification illisible"))
        return None
    if date_notif is None:
        rejects.append((idx, "dateNotification", None, "date de notification absente"))
        return None
    if not _plausible(date_notif):
        rejects.append((idx, "dateNotification", str(raw_date), "date de notification invraisemblable"))
        return None
    raw_amount = rec.get("montant")
    try:
        amount0 = _amount(raw_amount)
    except _Bad:
        rejects.append((idx, "montant", str(raw_amount), "montant illisible"))
        return None
    if amount0 is not None and amount0 < 0:
        rejects.append((idx, "montant", str(raw_amount), "montant négatif"))
        return None
    try:
        date_pub = _date(rec.get("datePublicationDonnees"))
    except _Bad:
        date_pub = None
    duration = _number(rec.get("dureeMois"))
    holders = _holders_of(rec)
    amount = amount0
    mods = [m for m in _items(rec.get("modifications"), "modification") if isinstance(m, dict)]
    ids = [_int(m.get("id")) for m in mods]
    if mods and all(i is not None for i in ids):
        mods = [m for _, _, m in sorted(zip(ids, range(len(mods)), mods, strict=True))]
    pubs = [date_pub] if date_pub else []
    for m in mods:
        try:
            a = _amount(m.get("montant"))
        except _Bad:
            stats["montants_modification_illisibles"] += 1
            a = None
        if a is not None:
            amount = a
        d = _number(m.get("dureeMois"))
        if d is not None:
            duration = d
        mh = _holders_of(m)
        if mh:
            holders = mh
        try:
            mp = _date(m.get("datePublicationDonneesModification") or m.get("datePublicationDonnees"))
        except _Bad:
            mp = None
        if mp:
            pubs.append(mp)
    if duration is not None and duration < 0:
        duration = None
    if uid is None:
        stats["sans_identifiant"] += 1
    cpv = _cpv(rec.get("codeCPV"))
    lieu_type = _label(_sub(rec, "lieuExecution", "typeCode"), LIEU_TYPE_LABELS)
    buyer_siret = clean_siret(buyer_raw) if buyer_raw else None
    version = {
        "line": idx,
        "n_rows": 1,
        "seq": idx,
        "uid": uid,
        "id": rid,
        "buyer_raw": buyer_raw,
        "modif_id": None,
        "ident_date": date_notif,
        "ident_amount": amount0,
        "buyer_siret": buyer_siret,
        "buyer_name": _s(_sub(rec, "acheteur", "nom")),
        "nature": _label(rec.get("nature"), NATURE_LABELS),
        "objet": objet,
        "cpv": cpv,
        "cpv_division": cpv[:2] if cpv and cpv[:2].isdigit() else None,
        "procedure": _label(rec.get("procedure"), PROCEDURE_LABELS),
        "lieu_code": _lieu_code(_sub(rec, "lieuExecution", "code"), lieu_type),
        "lieu_type": lieu_type,
        "duration_months": duration,
        "date_notification": date_notif,
        "date_publication": max(pubs) if pubs else None,
        "amount": amount,
        "amount_initial": amount0,
        "modification_count": len(mods),
        "forme_prix": _s(rec.get("formePrix")),
        "offers_received": _int(rec.get("offresRecues")),
        "advance_rate": _rate(rec.get("tauxAvance")),
        "innovative": _bool(rec.get("marcheInnovant")),
        "subcontracting": _bool(rec.get("sousTraitanceDeclaree")),
        "groupement": _s(rec.get("typeGroupementOperateurs")),
        "accord_cadre_id": _s(rec.get("idAccordCadre")),
        "considerations_sociales": _labels(
            _field(rec, "considerationsSociales", "considerationSociale"), SOCIAL_LABELS, unknown
        ),
        "considerations_environnementales": _labels(
            _field(rec, "considerationsEnvironnementales", "considerationEnvironnementale"),
            ENV_LABELS,
            unknown,
        ),
        "modalites_execution": _plain_list(_field(rec, "modalitesExecution", "modaliteExecution")),
        "techniques": _plain_list(_field(rec, "techniques", "technique")),
        "source_format": "decp_json_v2" if is_v2 else "decp_json_v1",
    }
    hrows = []
    seen: set[str] = set()
    for h in holders:
        siret = _holder_siret(h["id"], h["type"])
        hk = siret or (h["id"] or "").upper() or (h["name"] or "").upper()
        if hk in seen:
            continue
        seen.add(hk)
        hrows.append(
            {
                "seq": idx,
                "holder_rank": len(hrows) + 1,
                "holder_id": h["id"],
                "holder_id_type": h["type"],
                "holder_siret": siret,
                "holder_name": h["name"],
            }
        )
    return version, hrows


# --- staging -------------------------------------------------------------------------


def _create_stage(con) -> None:
    cols = ", ".join(f"{n} {t}" for n, t, _ in STAGE_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _decp_v ({cols}, {STAGE_EXTRA})")
    hcols = ", ".join(f"{n} {t}" for n, t, _ in HOLDER_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _decp_h ({hcols})")


def _drop_stage(con) -> None:
    for t in (
        "_decp_v",
        "_decp_h",
        "_decp_raw",
        "_decp_rows",
        "_decp_ok",
        "_decp_hl",
        "_decp_split",
        "_decp_map_siret",
        "_decp_map_lists",
    ):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _insert_stage(con, versions: list[dict], holders: list[dict]) -> None:
    if versions:
        schema = pa.schema([(n, t) for n, _, t in STAGE_COLUMNS])
        tbl = pa.Table.from_pylist(versions, schema=schema)
        con.register("_decp_arrow_v", tbl)
        con.execute("INSERT INTO _decp_v BY NAME SELECT * FROM _decp_arrow_v")
        con.unregister("_decp_arrow_v")
    if holders:
        hschema = pa.schema([(n, t) for n, _, t in HOLDER_COLUMNS])
        htbl = pa.Table.from_pylist(holders, schema=hschema)
        con.register("_decp_arrow_h", htbl)
        con.execute("INSERT INTO _decp_h BY NAME SELECT * FROM _decp_arrow_h")
        con.unregister("_decp_arrow_h")


# --- CSV / Parquet (vectorised) ------------------------------------------------------

# field -> normalised header names accepted (norm_header: lower case, letters and digits)
TAB_FIELDS: dict[str, tuple[str, ...]] = {
    "uid": ("uid",),
    "id": ("id",),
    "buyer": ("acheteurid",),
    "buyer_name": ("acheteurnom",),
    "nature": ("nature",),
    "objet": ("objet",),
    "cpv": ("codecpv",),
    "procedure": ("procedure",),
    "lieu_code": ("lieuexecutioncode",),
    "lieu_type": ("lieuexecutiontypecode",),
    "duree": ("dureemois",),
    "date_notif": ("datenotification",),
    "date_pub": ("datepublicationdonnees",),
    "montant": ("montant",),
    "forme_prix": ("formeprix",),
    "offres": ("offresrecues",),
    "taux_avance": ("tauxavance",),
    "innovant": ("marcheinnovant",),
    "sous_traitance": ("soustraitancedeclaree",),
    "groupement": ("typegroupementoperateurs",),
    "accord_cadre": ("idaccordcadre",),
    "cons_soc": ("considerationssociales", "considerationssocialesconsiderationsociale"),
    "cons_env": (
        "considerationsenvironnementales",
        "considerationsenvironnementalesconsiderationenvironnementale",
    ),
    "modalites": ("modalitesexecution", "modalitesexecutionmodaliteexecution"),
    "techniques": ("techniques", "techniquestechnique"),
    "modif_id": ("modificationid",),
    # tabular: one holder per row
    "t_id": ("titulaireid",),
    "t_type": ("titulairetypeidentifiant",),
    "t_nom": ("titulairenom", "titulairedenominationsociale"),
    "t_cat": ("titulairecategorie",),
    "t_commune": ("titulairecommunecode",),
    "t_dep": ("titulairedepartementcode",),
    "t_reg": ("titulaireregioncode",),
    # flat CSV: one modification per row
    "m_id": ("idmodification",),
    "m_montant": ("montantmodification",),
    "m_duree": ("dureemoismodification",),
    "m_tit": ("idtitulairemodification",),
    "m_tit_type": ("typeidentifianttitulairemodification",),
    "m_date_pub": (
        "datepublicationdonneesmodificationmodification",
        "datepublicationdonneesmodification",
    ),
}
LIST_FIELDS = {"cons_soc": "social", "cons_env": "env", "modalites": "plain", "techniques": "plain"}


def _sql_clean(col: str) -> str:
    ph = ", ".join("'" + p + "'" for p in PLACEHOLDERS)
    t = f"trim({col})"
    return (
        f"CASE WHEN {t} IN ({ph}) THEN NULL "
        f"WHEN starts_with({t}, 'INX ') THEN nullif(trim(substr({t}, 5)), '') ELSE {t} END"
    )


def _sql_date(x: str) -> str:
    """'2024-05-15' (time or zone after it ignored) or '15/05/2024' -> DATE, else NULL."""
    return (
        f"coalesce(TRY_CAST(left({x}, 10) AS DATE), "
        f"TRY_CAST(try_strptime(left({x}, 10), '%d/%m/%Y') AS DATE))"
    )


def _sql_amount(x: str) -> str:
    """'30000.00', '1 234,56 €', '1e5' -> DECIMAL(18,2), else NULL (the fast cast first)."""
    y = f"regexp_replace({x}, '[\\s\\x{{00a0}}\\x{{202f}}€]', '', 'g')"
    y = f"CASE WHEN regexp_full_match({y}, '-?\\d+,\\d+') THEN replace({y}, ',', '.') ELSE {y} END"
    return (
        f"coalesce(TRY_CAST({x} AS DECIMAL(18, 2)), TRY_CAST({y} AS DECIMAL(18, 2)), "
        f"TRY_CAST(TRY_CAST({y} AS DOUBLE) AS DECIMAL(18, 2)))"
    )


def _sql_number(x: str) -> str:
    return f"TRY_CAST(replace({x}, ',', '.') AS DOUBLE)"


def _sql_bool(x: str) -> str:
    return (
        f"CASE WHEN lower({x}) IN ('true', '1', 'oui', 'vrai', 't', 'yes', 'o', '1.0') THEN TRUE "
        f"WHEN lower({x}) IN ('false', '0', 'non', 'faux', 'f', 'no', 'n', '0.0') THEN FALSE END"
    )


def _sql_cpv(x: str) -> str:
    return (
        f"CASE WHEN regexp_matches({x}, '\\d{{8}}') THEN regexp_extract({x}, '\\d{{8}}(-\\d)?') "
        f"WHEN regexp_full_match({x}, '\\d{{7}}') THEN '0' || {x} ELSE {x} END"
    )


def _sql_pad(x: str, width: int, when: int) -> str:
    return f"CASE WHEN regexp_full_match({x}, '\\d{{{when}}}') THEN lpad({x}, {width}, '0') ELSE {x} END"


def _sql_idnum(x: str) -> str:
    """An identifier read as a number by a spreadsheet or Parquet writer: '123.0' -> '123'."""
    return f"regexp_replace({x}, '^(\\d+)\\.0+$', '\\1')"


def _open_table(con, path: Path, kind: str) -> tuple[list[str], str, dict, int, Path | None]:
    """(headers, source SQL with columns c0..cN as text, parameters, line offset, temp file)."""
    if kind == "parquet":
        try:
            desc = con.execute("DESCRIBE SELECT * FROM read_parquet($p)", {"p": str(path)}).fetchall()
        except duckdb.Error as exc:
            raise ImportRefused(f"Le fichier Parquet est illisible : {str(exc).splitlines()[0]}") from None
        headers = [d[0] for d in desc]
        sel = ", ".join(f"CAST(#{i + 1} AS VARCHAR) AS c{i}" for i in range(len(headers)))
        return headers, f"(SELECT {sel} FROM read_parquet($p))", {"p": str(path)}, 0, None
    enc = detect_file_encoding(path)
    src = transcode_to_utf8(path, enc)
    tmp = src if src != path else None
    try:
        with open(src, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
        counts = {d: first.count(d) for d in (";", ",", "\t", "|")}
        delim = max(counts, key=counts.get)
        if counts[delim] == 0:
            raise ImportRefused(
                "Le fichier texte n'a pas d'en-tête de colonnes séparées par ; , tabulation ou | : "
                "ce n'est pas un fichier DECP."
            )
        params = {"p": str(src), "d": delim}
        base = (
            "read_csv($p, delim=$d, quote='\"', escape='\"', header=true, all_varchar=true, null_padding=true"
        )
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM {base})", params).fetchall()
        except duckdb.Error as exc:
            raise ImportRefused(f"Le fichier CSV est illisible : {str(exc).splitlines()[0][:200]}") from None
    except BaseException:
        if tmp:
            tmp.unlink(missing_ok=True)
        raise
    headers = [d[0] for d in desc]
    params["n"] = [f"c{i}" for i in range(len(headers))]
    return headers, f"{base}, names=$n)", params, 1, tmp  # line = data row + 1 (header)


def _resolve(headers: list[str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """field -> c<i> column; flat holders k -> {id,type,name} columns."""
    by_norm: dict[str, int] = {}
    for i, h in enumerate(headers):
        by_norm.setdefault(norm_header(h), i)
    cols: dict[str, str] = {}
    for field, names in TAB_FIELDS.items():
        for n in names:
            if n in by_norm:
                cols[field] = f"c{by_norm[n]}"
                break
    flat: dict[int, dict[str, str]] = {}
    for n, i in by_norm.items():
        m = re.fullmatch(r"titulaire(id|typeidentifiant|denominationsociale|nom)(\d+)", n)
        if m:
            key = {"id": "id", "typeidentifiant": "type", "denominationsociale": "name", "nom": "name"}[m[1]]
            flat.setdefault(int(m[2]), {})[key] = f"c{i}"
    flat = {k: v for k, v in flat.items() if "id" in v}
    return cols, flat


def _stage_tabular(con, path: Path, kind: str, options: Options) -> tuple[int, list[tuple], dict]:
    headers, source, params, offset, tmp = _open_table(con, path, kind)
    try:
        cols, flat = _resolve(headers)
        is_tabular = "t_id" in cols
        missing = [f for f in ("date_notif", "montant") if f not in cols]
        if ("id" not in cols and "uid" not in cols) or missing or not (is_tabular or flat):
            seen = ", ".join(headers[:25]) + (" …" if len(headers) > 25 else "")
            raise ImportRefused(
                "Colonnes DECP introuvables : attendu le CSV plat officiel (id, acheteur.id, "
                "dateNotification, montant, titulaire_id_1…) ou la DECP tabulaire de decp.info (uid, "
                f"dateNotification, montant, titulaire_id…) ; en-têtes lus : {seen}."
            )
        # 1. cleaned text columns (identifiers are c<i> / f_<field>, never header text)
        sel = [f"row_number() OVER () + {offset} AS line"]
        for field, col in cols.items():
            sel.append(f"{_sql_clean(col)} AS f_{field}")
        for k, hc in flat.items():
            for key, col in hc.items():
                sel.append(f"{_sql_clean(col)} AS h{k}_{key}")
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _decp_rows AS SELECT {', '.join(sel)} FROM {source}", params
            )
        except duckdb.Error as exc:
            raise ImportRefused(f"Le fichier est illisible : {str(exc).splitlines()[0][:200]}") from None
    finally:
        if tmp:
            tmp.unlink(missing_ok=True)
    fmt = "decp_tabulaire" if is_tabular else "decp_csv_plat"
    rows_read = con.execute("SELECT count(*) FROM _decp_rows").fetchone()[0]
    if rows_read == 0:
        raise ImportRefused("Le fichier DECP ne contient aucune ligne de données.")
    if options.progress:
        options.progress("Lecture du fichier", 0.2)

    def c(field: str) -> str:
        return f"f_{field}" if field in cols else "NULL::VARCHAR"

    # 2. list columns and SIRETs: distinct raw values mapped in Python (few of them)
    list_fields = [f for f in LIST_FIELDS if f in cols]
    unknown = _map_lists(con, list_fields)
    buyer = _sql_idnum(c("buyer")) if "buyer" in cols else "NULL::VARCHAR"
    siret_sources = [f"SELECT {buyer} FROM _decp_rows"] if "buyer" in cols else []
    if is_tabular:
        siret_sources.append(f"SELECT {_sql_idnum(c('t_id'))} FROM _decp_rows")
    siret_sources += [f"SELECT h{k}_id FROM _decp_rows" for k in flat]
    if "m_tit" in cols:
        siret_sources.append(f"SELECT {c('m_tit')} FROM _decp_rows")
    _map_sirets(con, siret_sources)
    if options.progress:
        options.progress("Contrôle des lignes", 0.35)

    # 3. parsed values, the reason a row is rejected, the version group
    uid_expr = (
        f"coalesce({c('uid')}, CASE WHEN {c('id')} IS NOT NULL THEN coalesce({buyer}, '') || {c('id')} END)"
    )
    max_year = dt.date.today().year + MAX_FUTURE_YEARS
    bad_year = f"(year(d_notif) < {MIN_YEAR} OR year(d_notif) > {max_year})"
    no_ident = f"(uid_eff IS NULL AND {c('objet')} IS NULL)"
    has_mod = " OR ".join(f"{c(f)} IS NOT NULL" for f in ("m_montant", "m_duree", "m_tit") if f in cols)
    noid_grp = f"'SANSID:' || coalesce(buyer_raw, '') || '|' || coalesce({c('objet')}, '')"
    if is_tabular:
        grp = (
            f"coalesce(uid_eff, {noid_grp}) || '|' || coalesce(CAST(d_notif AS VARCHAR), '') || '|' "
            "|| coalesce(CAST(amt AS VARCHAR), '')"
        )
    else:
        grp = "CAST(line AS VARCHAR)"
    joins = [
        f"LEFT JOIN _decp_map_lists l_{f} ON l_{f}.field = '{f}' AND l_{f}.raw = q.f_{f}" for f in list_fields
    ]
    joins.append("LEFT JOIN _decp_map_siret sb ON sb.raw = q.buyer_raw")
    list_cols = [
        f"l_{f}.parsed AS p_{f}" if f in list_fields else f"NULL::VARCHAR[] AS p_{f}" for f in LIST_FIELDS
    ]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _decp_ok AS
        WITH p AS (
            SELECT r.*, {uid_expr} AS uid_eff, {buyer} AS buyer_raw,
                   {_sql_date(c("date_notif"))} AS d_notif,
                   {_sql_amount(c("montant"))} AS amt,
                   {_sql_date(c("date_pub"))} AS d_pub,
                   {_sql_date(c("m_date_pub"))} AS d_mpub,
                   {_sql_amount(c("m_montant"))} AS m_amt,
                   {_sql_number(c("m_duree"))} AS m_dur,
                   {_sql_number(c("duree"))} AS dur,
                   {_sql_number(c("taux_avance"))} AS taux,
                   TRY_CAST({_sql_number(c("modif_id"))} AS INTEGER) AS modif_id,
                   ({has_mod or "FALSE"}) AS has_mod
            FROM _decp_rows r
        ), q AS (
            SELECT *,
                CASE WHEN {no_ident} THEN 'id'
                     WHEN d_notif IS NULL OR {bad_year} THEN 'dateNotification'
                     WHEN amt IS NULL AND {c("montant")} IS NOT NULL OR amt < 0 THEN 'montant'
                END AS rej_col,
                CASE WHEN {no_ident} THEN 'identifiant du marché absent (ni uid, ni id, ni objet)'
                     WHEN {c("date_notif")} IS NULL THEN 'date de notification absente'
                     WHEN d_notif IS NULL THEN 'date de notification illisible'
                     WHEN {bad_year} THEN 'date de notification invraisemblable'
                     WHEN amt IS NULL AND {c("montant")} IS NOT NULL THEN 'montant illisible'
                     WHEN amt < 0 THEN 'montant négatif'
                END AS rej_reason,
                CASE WHEN {no_ident} THEN NULL
                     WHEN d_notif IS NULL OR {bad_year} THEN {c("date_notif")}
                     ELSE {c("montant")}
                END AS rej_raw
            FROM p
        )
        SELECT q.*, {grp} AS grp, sb.siret AS buyer_siret, {", ".join(list_cols)}
        FROM q {" ".join(joins)}
        """
    )
    con.execute("DROP TABLE _decp_rows")
    rejects = con.execute(
        "SELECT line, rej_col, rej_raw, rej_reason FROM _decp_ok WHERE rej_reason IS NOT NULL "
        f"ORDER BY line LIMIT {MAX_REJECTS_STORED}"
    ).fetchall()
    n_rejected = con.execute("SELECT count(*) FROM _decp_ok WHERE rej_reason IS NOT NULL").fetchone()[0]
    con.execute("DELETE FROM _decp_ok WHERE rej_reason IS NOT NULL")

    # 4. versions: tabular rows grouped by (uid, date, amount), values of the group's first
    # row (contract-level columns repeat on each holder row); flat rows one version each.
    cpv = _sql_cpv(c("cpv"))
    lieu_code = _sql_idnum(c("lieu_code"))
    lt = f"lower(strip_accents(coalesce({c('lieu_type')}, '')))"
    amount_final = "amt" if is_tabular else "coalesce(m_amt, amt)"
    dur_final = "dur" if is_tabular else "coalesce(m_dur, dur)"
    con.execute(
        f"""
        INSERT INTO _decp_v BY NAME
        WITH g AS (
            SELECT min(line) AS line, count(*) AS n_rows, max(modif_id) AS gmodif,
                   greatest(max(d_pub), max(d_mpub)) AS date_publication, bool_or(has_mod) AS gmod
            FROM _decp_ok GROUP BY grp
        )
        SELECT
            g.line, g.n_rows,
            row_number() OVER (ORDER BY coalesce(g.gmodif, 0), g.line) AS seq,
            uid_eff AS uid, {c("id")} AS id, buyer_raw, g.gmodif AS modif_id,
            d_notif AS ident_date, amt AS ident_amount, buyer_siret,
            {c("buyer_name")} AS buyer_name, {_sql_label(c("nature"), NATURE_LABELS)} AS nature,
            {c("objet")} AS objet,
            {cpv} AS cpv,
            CASE WHEN regexp_full_match(left({cpv}, 2), '\\d\\d') THEN left({cpv}, 2) END AS cpv_division,
            {_sql_label(c("procedure"), PROCEDURE_LABELS)} AS procedure,
            CASE WHEN {lt} LIKE '%postal%' OR {lt} LIKE '%commune%' THEN {_sql_pad(lieu_code, 5, 4)}
                 WHEN {lt} LIKE '%departement%' OR {lt} LIKE '%region%' THEN {_sql_pad(lieu_code, 2, 1)}
                 ELSE {lieu_code} END AS lieu_code,
            {_sql_label(c("lieu_type"), LIEU_TYPE_LABELS)} AS lieu_type,
            CASE WHEN {dur_final} >= 0 THEN {dur_final} END AS duration_months,
            d_notif AS date_notification, g.date_publication,
            {amount_final} AS amount, amt AS amount_initial,
            CASE WHEN g.gmod THEN coalesce(TRY_CAST({_sql_number(c("m_id"))} AS INTEGER), 1) ELSE 0 END
                AS modification_count,
            {c("forme_prix")} AS forme_prix,
            TRY_CAST({_sql_number(c("offres"))} AS INTEGER) AS offers_received,
            CASE WHEN taux > 1 AND taux <= 100 THEN taux / 100 WHEN taux >= 0 THEN taux END AS advance_rate,
            {_sql_bool(c("innovant"))} AS innovative,
            {_sql_bool(c("sous_traitance"))} AS subcontracting,
            {c("groupement")} AS groupement,
            {c("accord_cadre")} AS accord_cadre_id,
            p_cons_soc AS considerations_sociales,
            p_cons_env AS considerations_environnementales,
            p_modalites AS modalites_execution,
            p_techniques AS techniques,
            '{fmt}' AS source_format
        FROM g JOIN _decp_ok o USING (line)
        """
    )
    if options.progress:
        options.progress("Titulaires", 0.5)

    # 5. holders: one row per holder mention, deduplicated per version
    parts = []
    if is_tabular:
        parts.append(
            f"""SELECT grp, line, 1 AS k, {_sql_idnum(c("t_id"))} AS hid, upper({c("t_type")}) AS htype,
                   {c("t_nom")} AS hname, {c("t_cat")} AS hcat,
                   {_sql_pad(_sql_idnum(c("t_commune")), 5, 4)} AS hcom,
                   {_sql_pad(_sql_idnum(c("t_dep")), 2, 1)} AS hdep,
                   {_sql_pad(_sql_idnum(c("t_reg")), 2, 1)} AS hreg
                FROM _decp_ok WHERE {c("t_id")} IS NOT NULL OR {c("t_nom")} IS NOT NULL"""
        )
    else:
        mod_tit = f"{c('m_tit')} IS NOT NULL" if "m_tit" in cols else "FALSE"
        for k, hc in sorted(flat.items()):
            name = f"h{k}_name" if "name" in hc else "NULL::VARCHAR"
            htype = f"upper(h{k}_type)" if "type" in hc else "NULL::VARCHAR"
            parts.append(
                f"""SELECT grp, line, {k} AS k, h{k}_id AS hid, {htype} AS htype, {name} AS hname,
                       NULL::VARCHAR AS hcat, NULL::VARCHAR AS hcom, NULL::VARCHAR AS hdep,
                       NULL::VARCHAR AS hreg
                    FROM _decp_ok WHERE h{k}_id IS NOT NULL AND NOT ({mod_tit})"""
            )
        if "m_tit" in cols:
            mtype = f"upper({c('m_tit_type')})" if "m_tit_type" in cols else "NULL::VARCHAR"
            parts.append(
                f"""SELECT grp, line, 1 AS k, {c("m_tit")} AS hid, {mtype} AS htype,
                       NULL::VARCHAR AS hname, NULL::VARCHAR AS hcat, NULL::VARCHAR AS hcom,
                       NULL::VARCHAR AS hdep, NULL::VARCHAR AS hreg
                    FROM _decp_ok WHERE {c("m_tit")} IS NOT NULL"""
            )
    non_siret = ", ".join("'" + t + "'" for t in sorted(NON_SIRET_TYPES))
    if parts:
        con.execute(
            f"""
            INSERT INTO _decp_h BY NAME
            WITH l AS (
                SELECT l.*, l.line * 1000 + l.k AS ord,
                       CASE WHEN htype IS NULL OR replace(htype, '-', '') NOT IN ({non_siret})
                            THEN s.siret END AS hsiret
                FROM ({" UNION ALL ".join(parts)}) l LEFT JOIN _decp_map_siret s ON s.raw = l.hid
            ),
            firsts AS (
                SELECT min(ord) AS ord FROM l
                GROUP BY grp, coalesce(hsiret, upper(hid), upper(hname))
            ),
            v AS (SELECT o.grp, v.seq FROM _decp_v v JOIN _decp_ok o ON o.line = v.line)
            SELECT v.seq, row_number() OVER (PARTITION BY v.seq ORDER BY l.ord) AS holder_rank,
                   l.hid AS holder_id, l.htype AS holder_id_type, l.hsiret AS holder_siret,
                   l.hname AS holder_name, l.hcom AS commune_code, l.hdep AS departement_code,
                   l.hreg AS region_code, l.hcat AS categorie
            FROM firsts JOIN l USING (ord) JOIN v USING (grp)
            """
        )

    # 6. tabular modification rows: later versions of an initial contract
    linked = _link_modification_rows(con) if is_tabular and "modif_id" in cols else 0
    con.execute("DROP TABLE IF EXISTS _decp_ok")
    details: dict = {"format": fmt, "rejets": n_rejected}
    if n_rejected > len(rejects):
        details["rejets_non_detailles"] = n_rejected - len(rejects)
    if linked:
        details["lignes_modification_rattachees"] = linked
    if unknown:
        details["considerations_inconnues"] = unknown
    return rows_read, [tuple(r) for r in rejects], details


def _map_lists(con, fields: list[str]) -> dict[str, int]:
    """_decp_map_lists(field, raw, parsed) for the distinct raw values of list columns.

    Returns the unknown consideration labels met, with their row counts."""
    con.execute("CREATE OR REPLACE TEMP TABLE _decp_map_lists (field VARCHAR, raw VARCHAR, parsed VARCHAR[])")
    rows = []
    unknown_total: dict[str, int] = {}
    for field in fields:
        kind = LIST_FIELDS[field]
        distinct = con.execute(
            f"SELECT f_{field}, count(*) FROM _decp_rows WHERE f_{field} IS NOT NULL GROUP BY 1"
        ).fetchall()
        for raw, n in distinct:
            unknown: dict[str, int] = {}
            if kind == "social":
                parsed = _labels(raw, SOCIAL_LABELS, unknown)
            elif kind == "env":
                parsed = _labels(raw, ENV_LABELS, unknown)
            else:
                parsed = _plain_list(raw)
            for label in unknown:
                unknown_total[label] = unknown_total.get(label, 0) + n
            rows.append({"field": field, "raw": raw, "parsed": parsed})
    if rows:
        schema = pa.schema([("field", pa.string()), ("raw", pa.string()), ("parsed", pa.list_(pa.string()))])
        con.register("_decp_arrow_l", pa.Table.from_pylist(rows, schema=schema))
        con.execute("INSERT INTO _decp_map_lists SELECT * FROM _decp_arrow_l")
        con.unregister("_decp_arrow_l")
    return unknown_total


def sql_clean_siret_table(values_sql: str) -> str:
    """SELECT raw, siret over the distinct non-null values of values_sql (see analytics.ids)."""
    return f"SELECT raw, siret FROM ({ids.clean_siret_table_sql(values_sql)}) WHERE siret IS NOT NULL"


def _map_sirets(con, sources: list[str]) -> None:
    """_decp_map_siret(raw, siret): valid SIRETs among the distinct identifiers read."""
    if not sources:
        con.execute("CREATE OR REPLACE TEMP TABLE _decp_map_siret (raw VARCHAR, siret VARCHAR)")
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _decp_map_siret AS "
        + sql_clean_siret_table(" UNION ALL ".join(sources))
    )


OBJET_NORM = "lower(strip_accents(regexp_replace(trim(coalesce({x}, '')), '\\s+', ' ', 'g')))"


def _link_modification_rows(con) -> int:
    """Tabular rows with modification_id > 0: attach them to their initial contract.

    The initial contract is the version of the same uid, CPV and objet with
    modification_id 0 in this file, or a stored contract with that uid, CPV and objet
    (its initial date and amount). Ambiguous or unmatched rows stay distinct contracts.
    """
    on = OBJET_NORM.format(x="objet")
    row = con.execute(
        f"""
        UPDATE _decp_v v SET
            ident_date = b.bdate, ident_amount = b.bamt, date_notification = b.bdate,
            amount_initial = b.bamt, modification_count = v.modif_id,
            date_publication = greatest(v.date_publication, b.bpub)
        FROM (
            SELECT uid, cpv, o, min(bdate) AS bdate, min(bamt) AS bamt, max(bpub) AS bpub,
                   count(DISTINCT (bdate, bamt)) AS nb
            FROM (
                SELECT uid, cpv, {on} AS o, ident_date AS bdate, ident_amount AS bamt,
                       date_publication AS bpub
                FROM _decp_v WHERE coalesce(modif_id, 0) = 0 AND uid IS NOT NULL
                UNION ALL
                SELECT uid, cpv, {on}, date_notification, amount_initial, date_publication
                FROM contracts WHERE uid IN (SELECT uid FROM _decp_v WHERE modif_id > 0)
            ) GROUP BY uid, cpv, o
        ) b
        WHERE v.modif_id > 0 AND b.nb = 1 AND v.uid = b.uid
          AND v.cpv IS NOT DISTINCT FROM b.cpv AND {OBJET_NORM.format(x="v.objet")} = b.o
        """
    ).fetchone()
    return int(row[0]) if row else 0


# --- keys, duplicates, insertion ------------------------------------------------------


def _key_sql(uid: str, d: str, a: str) -> str:
    return (
        f"{uid} || '|' || coalesce(strftime({d}, '%Y-%m-%d'), '') || '|' || "
        f"coalesce(CAST({a} AS VARCHAR), '')"
    )


def _finalise(con, import_id: int) -> dict:
    """Keys, re-keying of stored split uids, duplicates, insertion; returns counts."""
    # holder count and signature
    con.execute(
        """
        UPDATE _decp_v v SET holder_count = coalesce(s.n, 0), holder_sig = coalesce(s.sig, '')
        FROM (SELECT v2.seq, h.n, h.sig FROM _decp_v v2 LEFT JOIN (
                SELECT seq, count(*) AS n,
                       string_agg(coalesce(holder_siret, upper(holder_id), upper(holder_name), '?'), '|'
                                  ORDER BY coalesce(holder_siret, upper(holder_id), upper(holder_name), '?')) AS sig
                FROM _decp_h GROUP BY seq) h USING (seq)) s
        WHERE v.seq = s.seq
        """
    )
    # uids carrying several (initial date, initial amount) pairs, here or in the store
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _decp_split AS
        SELECT uid FROM (
            SELECT uid, ident_date AS d, ident_amount AS a FROM _decp_v WHERE uid IS NOT NULL
            UNION ALL
            SELECT uid, date_notification, amount_initial FROM contracts
            WHERE uid IN (SELECT uid FROM _decp_v)
        ) GROUP BY uid HAVING count(DISTINCT (d, a)) > 1
        """
    )
    noid = (
        "'SANSID:' || coalesce(buyer_raw, '') || '|' || coalesce(strftime(ident_date, '%Y-%m-%d'), '') "
        "|| '|' || coalesce(CAST(ident_amount AS VARCHAR), '') || '|' || "
        f"left(md5({OBJET_NORM.format(x='objet')}), 12)"
    )
    con.execute(
        f"""
        UPDATE _decp_v SET contract_key = CASE
            WHEN uid IS NULL THEN {noid}
            WHEN uid IN (SELECT uid FROM _decp_split) THEN {_key_sql("uid", "ident_date", "ident_amount")}
            ELSE uid END
        """
    )
    rekeyed = con.execute(
        f"""
        UPDATE contracts SET contract_key = {_key_sql("uid", "date_notification", "amount_initial")}
        WHERE contract_key = uid AND uid IN (SELECT uid FROM _decp_split)
        """
    ).fetchone()[0]
    if rekeyed:
        con.execute(
            """
            UPDATE contract_holders h SET contract_key = c.contract_key
            FROM contracts c
            WHERE h.import_id = c.import_id AND h.seq = c.seq AND h.contract_key <> c.contract_key
              AND c.uid IN (SELECT uid FROM _decp_split)
            """
        )
    # duplicates: same key, publication date, amount and holders as a stored version or an
    # earlier version of this file
    con.execute(
        """
        UPDATE _decp_v v SET dup = TRUE
        FROM (
            SELECT c.contract_key, c.date_publication, c.amount, coalesce(h.sig, '') AS sig
            FROM contracts c LEFT JOIN (
                SELECT import_id, seq,
                       string_agg(coalesce(holder_siret, upper(holder_id), upper(holder_name), '?'), '|'
                                  ORDER BY coalesce(holder_siret, upper(holder_id), upper(holder_name), '?')) AS sig
                FROM contract_holders
                WHERE contract_key IN (SELECT contract_key FROM _decp_v)
                GROUP BY import_id, seq) h USING (import_id, seq)
            WHERE c.contract_key IN (SELECT contract_key FROM _decp_v)
        ) s
        WHERE v.contract_key = s.contract_key
          AND v.date_publication IS NOT DISTINCT FROM s.date_publication
          AND v.amount IS NOT DISTINCT FROM s.amount AND v.holder_sig = s.sig
        """
    )
    con.execute(
        """
        UPDATE _decp_v v SET dup = TRUE FROM (
            SELECT seq, row_number() OVER (
                PARTITION BY contract_key, date_publication, amount, holder_sig ORDER BY seq) AS rn
            FROM _decp_v) d
        WHERE v.seq = d.seq AND d.rn > 1
        """
    )
    copy = ", ".join(CONTRACT_COPY)
    social = ", ".join("'" + x + "'" for x in SOCIAL_ANY)
    env = ", ".join("'" + x + "'" for x in ENV_ANY)
    con.execute(
        f"""
        INSERT INTO contracts (import_id, seq, contract_key, uid, id, {copy}, end_date,
                               has_social, has_environmental, is_reserved, holder_count)
        SELECT $i, seq, contract_key, uid, id, {copy},
               CASE WHEN duration_months IS NOT NULL AND duration_months < 1200
                    THEN CAST(date_notification + to_months(CAST(ceil(duration_months) AS INTEGER)) AS DATE)
               END,
               CASE WHEN considerations_sociales IS NOT NULL
                    THEN list_has_any(considerations_sociales, [{social}]) END,
               CASE WHEN considerations_environnementales IS NOT NULL
                    THEN list_has_any(considerations_environnementales, [{env}]) END,
               CASE WHEN considerations_sociales IS NOT NULL
                    THEN list_contains(considerations_sociales, 'Marché réservé') END,
               holder_count
        FROM _decp_v WHERE dup IS NOT TRUE ORDER BY seq
        """,
        {"i": import_id},
    )
    con.execute(
        """
        INSERT INTO contract_holders (import_id, seq, contract_key, holder_rank, holder_id,
            holder_id_type, holder_siret, holder_name, commune_code, departement_code,
            region_code, categorie)
        SELECT $i, h.seq, v.contract_key, h.holder_rank, h.holder_id, h.holder_id_type,
               h.holder_siret, h.holder_name, h.commune_code, h.departement_code, h.region_code,
               h.categorie
        FROM _decp_h h JOIN _decp_v v USING (seq) WHERE v.dup IS NOT TRUE
        """,
        {"i": import_id},
    )
    row = con.execute(
        """
        SELECT coalesce(sum(n_rows) FILTER (WHERE dup IS NOT TRUE), 0),
               coalesce(sum(n_rows) FILTER (WHERE dup), 0),
               count(DISTINCT contract_key) FILTER (WHERE dup IS NOT TRUE),
               count(*) FILTER (WHERE dup IS NOT TRUE),
               count(*) FILTER (WHERE dup IS NOT TRUE AND considerations_sociales IS NULL),
               count(DISTINCT uid) FILTER (WHERE uid IN (SELECT uid FROM _decp_split))
        FROM _decp_v
        """
    ).fetchone()
    amount = con.execute(
        """
        SELECT sum(amount) FROM (
            SELECT amount, row_number() OVER (PARTITION BY contract_key
                ORDER BY date_publication DESC NULLS LAST, seq DESC) AS rn
            FROM _decp_v WHERE dup IS NOT TRUE) WHERE rn = 1
        """
    ).fetchone()[0]
    return {
        "rows_loaded": int(row[0]),
        "rows_duplicate": int(row[1]),
        "contracts": int(row[2]),
        "versions": int(row[3]),
        "unknown_considerations": int(row[4]),
        "split_uids": int(row[5]),
        "rekeyed": int(rekeyed or 0),
        "amount_total": float(amount) if amount is not None else 0.0,
    }


# --- entry point ---------------------------------------------------------------------


def load(con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options) -> LoadCounts:
    """Load one DECP file (format detected) into contracts / contract_holders."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(65536)
    kind = sniff_kind(head)
    if kind in ("zip", "xls"):
        raise ImportRefused(
            "Les classeurs Excel ne sont pas acceptés pour les DECP : fournissez le JSON, "
            "le CSV ou le Parquet publié."
        )
    if kind in ("html", "xml"):
        raise ImportRefused("Le fichier est du HTML ou du XML, pas des DECP au format JSON, CSV ou Parquet.")
    if kind == "binary":
        raise ImportRefused("Le fichier n'est ni du texte, ni du JSON, ni du Parquet : refusé.")
    if kind == "text":
        # a JSON file with a byte-order mark, or in UTF-16, is still JSON
        text = head.decode(detect_encoding(head), errors="ignore").lstrip("\ufeff \t\r\n")
        if text.startswith(("{", "[")):
            kind = "json"
    _drop_stage(con)
    _create_stage(con)
    try:
        if kind == "json":
            rows_read, rejects, details = _stage_json(con, path, options)
        else:
            rows_read, rejects, details = _stage_tabular(con, path, kind, options)
        if options.progress:
            options.progress("Enregistrement des contrats", 0.8)
        if con.execute("SELECT count(*) FROM _decp_v").fetchone()[0] == 0 and not rejects:
            raise ImportRefused("Le fichier DECP ne contient aucun marché.")
        res = _finalise(con, import_id)
    finally:
        try:
            _drop_stage(con)
        except duckdb.Error:
            pass  # the transaction failed: run_import rolls it back, temp tables included
    record_rejects(con, import_id, rejects)
    n_rejected = details.pop("rejets", len(rejects))
    details.update(
        {
            "format_libelle": FORMAT_LABELS.get(details.get("format", ""), ""),
            "versions": res["versions"],
            "identifiants_reutilises": res["split_uids"],
        }
    )
    if res["rekeyed"]:
        details["versions_anterieures_recles"] = res["rekeyed"]
    if res["unknown_considerations"]:
        details["sans_considerations"] = res["unknown_considerations"]
        details["note_considerations"] = (
            "Versions sans considérations sociales ni environnementales renseignées (format v1 "
            "ou champ vide) : inconnues (NULL), exclues des taux de clauses."
        )
    if options.progress:
        options.progress("Terminé", 1.0)
    return LoadCounts(
        rows_read=rows_read,
        rows_loaded=res["rows_loaded"],
        rows_rejected=n_rejected,
        rows_duplicate=res["rows_duplicate"],
        amount_total=round(res["amount_total"], 2),
        contracts=res["contracts"],
        details=details,
    )
