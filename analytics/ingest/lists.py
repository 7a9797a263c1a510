"""Inclusive-structure lists (SIAE, EA, ESAT…) and ESS / ESUS lists.

``load_structures``: a CSV / XLSX / Parquet with a SIRET and a kind (EI, AI, ACI, ETTI,
EITI, GEIQ, EA, EATT, ESAT; full names accepted), such as the Marché de l'inclusion's
SIAE list; the family (insertion / handicap) follows from the kind; the location columns
are kept when present (commune code, else postcode + city resolved to a commune).
``load_ess``: a list with a SIRET or a SIREN (and optionally a label ESUS / ESS and a
name). Rows with an invalid identifier or an unknown kind are rejected with their reason.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from analytics.ingest.common import ImportRefused, LoadCounts, Options
from analytics.ingest.sirene import (
    _col,
    id_sql,
    insert_rejects,
    match_headers,
    read_tabular,
    siren_valid_sql,
    siret_valid_sql,
)

INSERTION_KINDS = ("EI", "AI", "ACI", "ETTI", "EITI", "GEIQ")
HANDICAP_KINDS = ("EA", "EATT", "ESAT")

# normalised kind label (upper case, no accents, letters/digits only) -> kind
KIND_NAMES: dict[str, str] = {
    **{k: k for k in INSERTION_KINDS + HANDICAP_KINDS},
    "ENTREPRISEDINSERTION": "EI",
    "ENTREPRISEINSERTION": "EI",
    "ASSOCIATIONINTERMEDIAIRE": "AI",
    "ATELIERCHANTIERDINSERTION": "ACI",
    "ATELIERETCHANTIERDINSERTION": "ACI",
    "ATELIERSETCHANTIERSDINSERTION": "ACI",
    "ATELIERSCHANTIERSDINSERTION": "ACI",
    "CHANTIERDINSERTION": "ACI",
    "ENTREPRISEDETRAVAILTEMPORAIREDINSERTION": "ETTI",
    "ENTREPRISEDINSERTIONPARLETRAVAILINDEPENDANT": "EITI",
    "GROUPEMENTDEMPLOYEURSPOURLINSERTIONETLAQUALIFICATION": "GEIQ",
    "ENTREPRISEADAPTEE": "EA",
    "ENTREPRISEADAPTEEDETRAVAILTEMPORAIRE": "EATT",
    "EATEMPORAIRE": "EATT",
    "ETABLISSEMENTETSERVICEDAIDEPARLETRAVAIL": "ESAT",
    "ETABLISSEMENTSETSERVICESDAIDEPARLETRAVAIL": "ESAT",
    "CAT": "ESAT",  # centre d'aide par le travail, the former name of ESAT
    "CENTREDAIDEPARLETRAVAIL": "ESAT",
}

STRUCTURE_FIELDS: dict[str, tuple[str, ...]] = {
    "siret": ("siret", "numerosiret", "nsiret", "siretstructure", "siretdelastructure",
              "siretetablissement"),
    "kind": ("kind", "type", "nature", "categorie", "typestructure", "typedestructure",
             "typesiae", "typedesiae", "categoriestructure", "categoriedestructure",
             "typologie", "dispositif", "typeetablissement"),
    "name": ("name", "nom", "raisonsociale", "denomination", "nomstructure",
             "nomdelastructure", "structure", "enseigne", "brand"),
    "commune_code": ("codecommune", "codeinsee", "insee", "codeinseecommune", "communecode",
                     "depcom", "codegeo"),
    "postcode": ("postcode", "codepostal", "cp", "zipcode"),
    "city": ("city", "ville", "commune", "libellecommune", "localite"),
    "departement": ("department", "departement", "codedepartement", "dept", "dep"),
    "longitude": ("longitude", "lon", "lng", "long"),
    "latitude": ("latitude", "lat"),
    "naf": ("naf", "codenaf", "ape", "codeape", "nafape"),
    "source": ("source",),
}

ESS_FIELDS: dict[str, tuple[str, ...]] = {
    "siret": ("siret", "numerosiret", "nsiret", "siretsiege"),
    "siren": ("siren", "numerosiren", "nsiren"),
    "name": ("name", "nom", "raisonsociale", "denomination", "denominationunitelegale",
             "nomstructure", "structure", "organisme"),
    "label": ("label", "labels", "agrement", "type", "statut", "qualite", "categorie",
              "familleess", "famille"),
    "source": ("source", "sources"),
}


def _norm_text(x: str) -> str:
    return f"regexp_replace(upper(strip_accents(coalesce({x}, ''))), '[^A-Z0-9]', '', 'g')"


def _refuse_missing(what: str, headers: list[str], expected: str) -> None:
    seen = ", ".join(headers[:15]) + ("…" if len(headers) > 15 else "")
    raise ImportRefused(f"Colonne {what} introuvable (colonnes vues : {seen} ; attendu : {expected}).")


def _float(x: str) -> str:
    return f"try_cast(replace(replace({x}, ' ', ''), ',', '.') AS DOUBLE)"


def load_structures(
    con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options
) -> LoadCounts:
    """Import a list of inclusive structures (SIRET + kind). See the module docstring.

    ``options.extra['kind']`` gives the kind of every row of a file without a kind
    column (e.g. a list of ESAT only).
    """
    from analytics.referential import _ensure_ref_views

    _ensure_ref_views(con)
    progress = options.progress or (lambda m, f: None)
    progress("Lecture de la liste", 0.0)
    tab = read_tabular(con, Path(path), "_struct_raw")
    found = match_headers(tab.headers, STRUCTURE_FIELDS, options.mapping)
    default_kind = str(options.extra.get("kind") or "").strip().upper() or None
    try:
        if "siret" not in found:
            _refuse_missing("SIRET", tab.headers, "siret")
        if "kind" not in found and not default_kind:
            _refuse_missing("du type de structure", tab.headers,
                            "type / kind / nature / catégorie (EI, AI, ACI, ETTI, EITI, GEIQ, EA, EATT, ESAT)")
        if default_kind and default_kind not in KIND_NAMES:
            raise ImportRefused(f"Type de structure inconnu « {default_kind} ».")
        if tab.rows == 0:
            raise ImportRefused("La liste ne contient aucune ligne.")
        progress("Contrôle des SIRET et des types", 0.3)
        counts = _load_structures(con, import_id, found, tab, default_kind, Path(path).name)
        progress("Liste chargée", 1.0)
        return counts
    finally:
        for t in ("_struct_raw", "_struct_ok", "_kind_names"):
            con.execute(f"DROP TABLE IF EXISTS {t}")


def _load_structures(con, import_id, found, tab, default_kind, file_name) -> LoadCounts:
    cols = tab.cols(found)  # field -> generated column c<i>: no header text in the SQL
    c = lambda f: _col(cols, f)  # noqa: E731
    con.execute("CREATE OR REPLACE TEMP TABLE _kind_names (label VARCHAR, kind VARCHAR)")
    con.executemany("INSERT INTO _kind_names VALUES (?, ?)", list(KIND_NAMES.items()))
    siret = id_sql(cols, "siret", 14, tab.numeric_fields(found))
    # the default kind (checked against KIND_NAMES) and the file name are parameters
    params = {"file": file_name}
    if default_kind:
        params["default_kind"] = default_kind
    kind_raw = c("kind") if "kind" in found else "$default_kind::VARCHAR"
    kind_raw = f"coalesce({kind_raw}, $default_kind::VARCHAR)" if default_kind and "kind" in found else kind_raw
    family = ("CASE WHEN kn.kind IN ('EI', 'AI', 'ACI', 'ETTI', 'EITI', 'GEIQ') THEN 'insertion' "
              "WHEN kn.kind IN ('EA', 'EATT', 'ESAT') THEN 'handicap' END")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _struct_ok AS
        SELECT r._line, {siret} AS _siret, {kind_raw} AS _kind_raw, kn.kind AS _kind,
               {family} AS _family, {siret_valid_sql('(' + siret + ')')} AS _siret_ok,
               {c('siret')} AS _siret_raw,
               {c('name')} AS name,
               CASE WHEN regexp_full_match({c('commune_code')}, '[0-9]{{4}}') THEN '0' || {c('commune_code')}
                    ELSE upper({c('commune_code')}) END AS commune_code,
               CASE WHEN regexp_full_match({c('postcode')}, '[0-9]{{4}}') THEN '0' || {c('postcode')}
                    ELSE left(regexp_replace({c('postcode')}, '\\s', '', 'g'), 5) END AS postcode,
               {c('city')} AS city,
               CASE WHEN regexp_full_match({c('departement')}, '[0-9]') THEN '0' || {c('departement')}
                    ELSE upper({c('departement')}) END AS departement_code,
               {_float(c('longitude'))} AS longitude,
               {_float(c('latitude'))} AS latitude,
               upper({c('naf')}) AS naf,
               coalesce({c('source')}, $file::VARCHAR) AS source
        FROM _struct_raw r
        LEFT JOIN _kind_names kn ON kn.label = {_norm_text(kind_raw)}""",
        params,
    )
    allowed = "EI, AI, ACI, ETTI, EITI, GEIQ, EA, EATT, ESAT"
    rejected = insert_rejects(
        con, import_id,
        f"""SELECT _line AS line_number,
                   CASE WHEN NOT coalesce(_siret_ok, false) THEN $siret_col::VARCHAR
                        ELSE $kind_col::VARCHAR END AS column_name,
                   CASE WHEN NOT coalesce(_siret_ok, false) THEN _siret_raw ELSE _kind_raw END
                       AS raw_value,
                   CASE WHEN _siret_raw IS NULL THEN 'SIRET manquant'
                        WHEN NOT regexp_full_match(_siret, '[0-9]{{14}}')
                            THEN 'SIRET invalide : 14 chiffres attendus'
                        WHEN NOT _siret_ok THEN 'SIRET invalide : clé de contrôle (Luhn) erronée'
                        WHEN _kind_raw IS NULL THEN 'Type de structure manquant ({allowed})'
                        ELSE 'Type de structure inconnu : {allowed} attendus' END AS reason
            FROM _struct_ok WHERE NOT coalesce(_siret_ok, false) OR _kind IS NULL""",
        {"siret_col": found["siret"], "kind_col": found.get("kind", "type")},
    )
    # commune from postcode + city when the file has no commune code (name match, else the
    # most populated commune of the postcode)
    con.execute(
        f"""INSERT INTO structures (import_id, siret, siren, name, kind, family, commune_code,
            postcode, city, departement_code, longitude, latitude, naf, source)
        SELECT $i, s._siret, left(s._siret, 9), s.name, s._kind, s._family,
               coalesce(s.commune_code, (
                   SELECT first(p.code_commune ORDER BY
                       ({_norm_text('c.nom')} = {_norm_text('s.city')}) DESC,
                       p.population DESC NULLS LAST, p.code_commune)
                   FROM ref_postcodes p JOIN ref_communes c ON c.code_commune = p.code_commune
                   WHERE p.postcode = s.postcode)),
               s.postcode, s.city, s.departement_code, s.longitude, s.latitude, s.naf, s.source
        FROM _struct_ok s
        WHERE s._siret_ok AND s._kind IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY s._siret, s._kind ORDER BY s._line) = 1
        ORDER BY s._line""",
        {"i": import_id},
    )
    loaded = con.execute(
        "SELECT count(*) FROM structures WHERE import_id = $i", {"i": import_id}
    ).fetchone()[0]
    valid = con.execute(
        "SELECT count(*) FROM _struct_ok WHERE _siret_ok AND _kind IS NOT NULL"
    ).fetchone()[0]
    kinds = dict(
        con.execute(
            "SELECT kind, count(*) FROM structures WHERE import_id = $i GROUP BY 1 ORDER BY 2 DESC",
            {"i": import_id},
        ).fetchall()
    )
    return LoadCounts(
        rows_read=tab.rows, rows_loaded=loaded, rows_rejected=rejected,
        rows_duplicate=valid - loaded, details={"kinds": kinds, "columns": sorted(found)},
    )


def load_ess(con: duckdb.DuckDBPyConnection, import_id: int, path: Path, options: Options) -> LoadCounts:
    """Import an ESS / ESUS list (SIRET or SIREN per row). See the module docstring."""
    progress = options.progress or (lambda m, f: None)
    progress("Lecture de la liste", 0.0)
    tab = read_tabular(con, Path(path), "_ess_raw")
    found = match_headers(tab.headers, ESS_FIELDS, options.mapping)
    try:
        if "siret" not in found and "siren" not in found:
            _refuse_missing("SIRET ou SIREN", tab.headers, "siret ou siren")
        if tab.rows == 0:
            raise ImportRefused("La liste ne contient aucune ligne.")
        progress("Contrôle des identifiants", 0.3)
        cols = tab.cols(found)  # field -> generated column c<i>: no header text in the SQL
        c = lambda f: _col(cols, f)  # noqa: E731
        numeric = tab.numeric_fields(found)
        siret = id_sql(cols, "siret", 14, numeric)
        siren = id_sql(cols, "siren", 9, numeric)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ess_ok AS
            SELECT r._line, {c('siret')} AS _siret_raw, {c('siren')} AS _siren_raw,
                   CASE WHEN {siret_valid_sql('(' + siret + ')')} THEN {siret} END AS _siret,
                   CASE WHEN {siren_valid_sql('(' + siren + ')')} THEN {siren} END AS _siren,
                   {c('name')} AS name, upper({c('label')}) AS label,
                   coalesce({c('source')}, $file::VARCHAR) AS source
            FROM _ess_raw r""",
            {"file": Path(path).name},
        )
        rejected = insert_rejects(
            con, import_id,
            """SELECT _line AS line_number, $col::VARCHAR AS column_name,
                       coalesce(_siret_raw, _siren_raw) AS raw_value,
                       CASE WHEN _siret_raw IS NULL AND _siren_raw IS NULL
                                THEN 'SIRET et SIREN manquants'
                            WHEN _siret_raw IS NOT NULL THEN 'SIRET invalide'
                            ELSE 'SIREN invalide' END AS reason
                FROM _ess_ok WHERE _siret IS NULL AND _siren IS NULL""",
            {"col": found.get("siret") or found.get("siren")},
        )
        con.execute(
            """INSERT INTO ess_list (import_id, siret, siren, name, label, source)
            SELECT $i, _siret, coalesce(left(_siret, 9), _siren), name, label, source
            FROM _ess_ok WHERE _siret IS NOT NULL OR _siren IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY coalesce(_siret, ''), coalesce(left(_siret, 9), _siren)
                ORDER BY _line) = 1
            ORDER BY _line""",
            {"i": import_id},
        )
        loaded = con.execute(
            "SELECT count(*) FROM ess_list WHERE import_id = $i", {"i": import_id}
        ).fetchone()[0]
        valid = con.execute(
            "SELECT count(*) FROM _ess_ok WHERE _siret IS NOT NULL OR _siren IS NOT NULL"
        ).fetchone()[0]
        progress("Liste chargée", 1.0)
        return LoadCounts(
            rows_read=tab.rows, rows_loaded=loaded, rows_rejected=rejected,
            rows_duplicate=valid - loaded, details={"columns": sorted(found)},
        )
    finally:
        for t in ("_ess_raw", "_ess_ok"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
