"""Command line: python -m analytics [--db PATH] COMMAND …

Every command calls the same engine functions as the dashboard. Exit code 0 on
success, 2 on a refused input (reason on stderr), 1 on an unexpected error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys

from analytics import store
from analytics.filters import Filters, Territory, parse_date


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


_PROGRESS = {"open": False}  # a progress line without its end of line on stderr


def _progress(message: str, fraction: float) -> None:
    sys.stderr.write(f"\r{message} {fraction * 100:5.1f} %")
    _PROGRESS["open"] = fraction < 1
    if fraction >= 1:
        sys.stderr.write("\n")
    sys.stderr.flush()


_STAGE = {"last": None}  # the stage last written by _progress_lines


def _progress_lines(message: str, fraction: float) -> None:
    """Progress for --json runs: one plain line per stage on stderr (``[12%] Lecture des
    lignes``), stdout keeping only the JSON document."""
    if message == _STAGE["last"]:
        return  # the same stage advancing (e.g. rows of a workbook): one line is enough
    _STAGE["last"] = message
    pct = max(0, min(100, int(fraction * 100 + 0.5)))
    sys.stderr.write(f"[{pct}%] {message}\n")
    sys.stderr.flush()


def _end_progress() -> None:
    if _PROGRESS["open"]:
        sys.stderr.write("\n")
        _PROGRESS["open"] = False


# argparse's own messages, in French (a refused command line gets a French reason too).
_ARGPARSE_FR = (
    (r"the following arguments are required: (.*)", r"arguments obligatoires manquants : \1"),
    (r"unrecognized arguments: (.*)", r"arguments non reconnus : \1"),
    (
        r"argument (.+?): invalid choice: (.+) \(choose from (.*)\)",
        r"argument \1 : choix invalide \2 (possibles : \3)",
    ),
    (r"argument (.+?): invalid (\w+) value: (.*)", r"argument \1 : valeur invalide \3"),
    (r"argument (.+?): expected one argument", r"argument \1 : une valeur est attendue"),
    (r"argument (.+?): not allowed with argument (.*)", r"argument \1 : incompatible avec \2"),
    (r"one of the arguments (.*) is required", r"l'un des arguments \1 est obligatoire"),
    (r"ambiguous option: (.*) could match (.*)", r"option ambiguë : \1 peut désigner \2"),
)


class _Parser(argparse.ArgumentParser):
    """argparse with French error messages (exit code 2, as before)."""

    def error(self, message: str):
        for pattern, french in _ARGPARSE_FR:
            if re.fullmatch(pattern, message, re.S):
                message = re.sub(pattern, french, message, flags=re.S)
                break
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog} : erreur : {message}\n")


def _filters_from_args(con, args) -> Filters:
    from analytics import referential

    if getattr(args, "from_", None) or getattr(args, "to", None):
        if getattr(args, "year", None):
            raise ValueError("--year ou --from/--to : l'un ou l'autre, pas les deux.")
        if not (args.from_ and args.to):
            raise ValueError("--from et --to vont ensemble.")
        date_from, date_to = parse_date(args.from_), parse_date(args.to)
    else:
        year = getattr(args, "year", None) or dt.date.today().year
        date_from, date_to = dt.date(year, 1, 1), dt.date(year, 12, 31)
    territory = Territory.parse(args.territory) if getattr(args, "territory", None) else None
    if territory is not None:
        referential._check_territory(con, territory)  # an unknown code: refused, not a 0 % share
    else:
        territory = referential.default_territory(con, getattr(args, "buyer", None))
    return Filters(
        date_from=date_from,
        date_to=date_to,
        basis=getattr(args, "basis", None) or "paid",
        buyer_siret=getattr(args, "buyer", None),
        territory=territory,
    )


def cmd_import(con, args) -> int:
    from analytics import ingest
    from analytics.ingest.common import Options, load_mapping

    extra = {}
    if args.exercice:
        extra["exercice"] = args.exercice
    options = Options(
        mapping=load_mapping(args.mapping),
        strict=args.strict,
        who=args.who,
        progress=_progress_lines if args.json else _progress,  # stderr either way
        extra=extra,
    )
    result = ingest.import_file(con, args.kind, args.file, options)
    if args.json:
        _progress_lines("Import terminé", 1.0)  # after the re-classification and the ledger
        _print_json(result.as_json())
    else:
        amount = (
            f", montant {result.amount_total:,.2f} €".replace(",", " ")
            if result.amount_total is not None
            else ""
        )
        print(
            f"Import n° {result.import_id} ({result.kind}) : {result.rows_read} lignes lues, "
            f"{result.rows_loaded} chargées, {result.rows_rejected} rejetées, "
            f"{result.rows_duplicate} déjà présentes{amount}."
        )
        for r in result.rejected_sample[:20]:
            print(f"  ligne {r['line_number']} [{r['column']}] « {r['raw_value']} » : {r['reason']}")
    return 0


def cmd_imports(con, args) -> int:
    from analytics.ingest.common import list_imports

    rows = list_imports(con)
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(
                f"{r['import_id']:>5}  {r['kind']:<10} {r['status']:<7} {r['finished_at'] or '':<20}"
                f" {r['rows_loaded']:>9} lignes  {r['rows_rejected']:>6} rejets  {r['file']}"
            )
    return 0


def cmd_undo(con, args) -> int:
    from analytics.ingest.common import undo_import

    out = undo_import(con, args.id, who=args.who)
    print(
        f"Import n° {out['import_id']} annulé : " + ", ".join(f"{k} {v}" for k, v in out["removed"].items())
    )
    return 0


def cmd_supplier(con, args) -> int:
    from analytics import referential

    info = referential.supplier_info(con, args.siret)
    if info is None:
        raise LookupError(f"SIRET {args.siret} inconnu des référentiels et des données.")
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:>20} : {v}")
    return 0


def cmd_buyer(con, args) -> int:
    from analytics import referential

    if args.action == "set":
        territory = Territory.parse(args.territory) if args.territory else None
        info = referential.set_buyer(con, siret=args.siret, territory=territory, name=args.name, who=args.who)
    else:
        info = referential.get_buyer(con)
    if args.json or args.action == "set":
        _print_json(info)
    else:
        print(
            json.dumps(info, ensure_ascii=False, indent=2, default=str)
            if info
            else "Aucun acheteur configuré."
        )
    return 0


def cmd_indicators(con, args) -> int:
    from analytics import indicators

    result = indicators.headline_json(con, _filters_from_args(con, args))
    if args.json:
        _print_json(result)
    else:
        print(indicators.format_summary(result))
    return 0


def cmd_demo(con, args) -> int:
    from analytics import demo

    con.close()
    summary = demo.build(store.db_path(args.db), force=True, progress=_progress)
    _print_json(summary)
    return 0


def cmd_report(con, args) -> int:
    from analytics import report

    path = report.write_report(con, year=args.year, fmt=args.format, out=args.out)
    print(f"Rapport SPASER {args.year} écrit : {path}")
    return 0


def cmd_snapshot(con, args) -> int:
    from analytics import review

    snap = review.take_snapshot(con, args.month, comment=args.comment, who=args.who)
    _print_json(snap) if args.json else print(
        f"Instantané n° {snap['snapshot_id']} du mois {args.month} enregistré."
    )
    return 0


def cmd_review(con, args) -> int:
    from analytics import review

    result = review.review(con, args.month)
    _print_json(result) if args.json else print(review.format_review(result))
    return 0


def cmd_footprint(con, args) -> int:
    from analytics import footprint

    result = footprint.footprint_json(con, _filters_from_args(con, args))
    _print_json(result) if args.json else print(footprint.format_summary(result))
    return 0


def cmd_opportunities(con, args) -> int:
    from analytics import levers

    result = levers.opportunities(con, _filters_from_args(con, args))
    _print_json(result) if args.json else print(levers.format_summary(result))
    return 0


def cmd_targets(con, args) -> int:
    from analytics import spaser

    if args.action == "set":
        spaser.set_target(con, args.indicator, args.year, args.value, who=args.who)
    rows = spaser.targets(con)
    _print_json(rows.to_dict(orient="records"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m analytics", description="Empreinte : empreinte des achats publics.")
    p.add_argument("--db", help="fichier DuckDB (défaut : $EMPREINTE_DB ou data/empreinte.duckdb)")
    p.add_argument("--who", default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("import", help="importer un fichier")
    s.add_argument("kind", choices=["mandats", "decp", "sirene", "structures", "ess", "insertion"])
    s.add_argument("file")
    s.add_argument("--mapping", help="correspondance en-tête → champ (JSON ou TOML)")
    s.add_argument(
        "--strict", action="store_true", help="refuser le fichier entier à la moindre ligne rejetée"
    )
    s.add_argument(
        "--exercice", type=int, help="exercice des lignes sans date (format Marché de l'inclusion)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("imports", help="journal des imports")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_imports)

    s = sub.add_parser("undo", help="annuler un import")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_undo)

    s = sub.add_parser("supplier", help="classification d'un fournisseur")
    s.add_argument("siret")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_supplier)

    s = sub.add_parser("buyer", help="l'acheteur et son territoire")
    s.add_argument("action", choices=["set", "show"])
    s.add_argument("--siret")
    s.add_argument("--name")
    s.add_argument("--territory")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_buyer)

    def period_args(s, territory=True):
        s.add_argument("--year", type=int)
        s.add_argument("--from", dest="from_", metavar="DATE")
        s.add_argument("--to", metavar="DATE")
        s.add_argument("--buyer")
        if territory:
            s.add_argument("--territory")
        s.add_argument("--basis", choices=["paid", "notified"], default="paid")
        s.add_argument("--json", action="store_true")

    s = sub.add_parser("indicators", help="indicateurs d'une période")
    period_args(s)
    s.set_defaults(func=cmd_indicators)

    s = sub.add_parser("footprint", help="emplois soutenus et empreinte carbone")
    period_args(s)
    s.set_defaults(func=cmd_footprint)

    s = sub.add_parser("opportunities", help="leviers : renouvellements, réservation, < 40 k€, lots")
    period_args(s)
    s.set_defaults(func=cmd_opportunities)

    s = sub.add_parser("demo", help="(re)construire la base de démonstration")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("report", help="rapport annuel SPASER")
    s.add_argument("--year", type=int, required=True)
    s.add_argument("--format", choices=["xlsx", "pdf", "html"], default="pdf")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("snapshot", help="figer les indicateurs d'un mois")
    s.add_argument("--month", required=True)
    s.add_argument("--comment")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_snapshot)

    s = sub.add_parser("review", help="revue mensuelle des indicateurs")
    s.add_argument("--month", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_review)

    s = sub.add_parser("targets", help="cibles SPASER")
    s.add_argument("action", choices=["show", "set"])
    s.add_argument("--indicator")
    s.add_argument("--year", type=int)
    s.add_argument("--value", type=float)
    s.set_defaults(func=cmd_targets)
    return p


def main(argv: list[str] | None = None) -> int:
    from analytics.ingest.common import ImportRefused

    args = build_parser().parse_args(argv)
    try:
        con = store.connect(args.db)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 2
    try:
        return args.func(con, args)
    except (ImportRefused, ValueError, LookupError) as exc:
        _end_progress()
        print(f"Refusé : {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            con.close()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main())
