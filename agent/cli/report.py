"""`recdock report`: the compliance figures for a period, per unit, officer and recorder (rule
clause 15; docs/report.md): as text, JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timedelta
from typing import Any

import click

from agent.cli.common import Ctx, utc_day_start

GROUP_FIGURES = (
    "recordings",
    "hours",
    "with_age",
    "within_24h",
    "share_within_24h",
    "late",
    "checks",
    "checks_failed",
    "dockings_late",
)


@click.command("report")
@click.option(
    "--from",
    "day_from",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="First day of the period (YYYY-MM-DD, station time).",
)
@click.option(
    "--to",
    "day_to",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="Last day of the period, included (YYYY-MM-DD, station time).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print the figures as CSV rows: section, group, figure, value.",
)
@click.pass_obj
def report_command(
    c: Ctx, day_from: datetime, day_to: datetime, as_json: bool, as_csv: bool
) -> None:
    """Compliance figures for a period: recordings and hours offloaded, the share within 24
    hours, late dockings, check failures by reason, faults against the 24-hour limit, holds,
    exports and access requests."""
    from agent.catalog.report import figures

    if day_to < day_from:
        raise click.BadParameter("the period ends before it starts", param_hint="--to")
    since, until = utc_day_start(day_from), utc_day_start(day_to + timedelta(days=1))
    found = figures(c.catalog(create=False), since, until)
    found["period"] = {"from": day_from.date().isoformat(), "to": day_to.date().isoformat()}
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["section", "group", "figure", "value"])
        writer.writerows(csv_rows(found))
    else:
        for line in text_lines(found):
            click.echo(line)


def csv_rows(found: dict[str, Any]) -> list[list[Any]]:
    """Every figure as one row: section, group, figure, value (a dict of counts flattened as
    ``figure.key``)."""
    rows: list[list[Any]] = []
    for section in ("by_unit", "by_officer", "by_recorder"):
        for g in found[section]:
            for k, v in g.items():
                if k == "key":
                    continue
                if isinstance(v, dict):
                    rows.extend([section, g["key"], f"{k}.{kk}", vv] for kk, vv in v.items())
                else:
                    rows.append([section, g["key"], k, v])
    rows.extend(["totals", "all", k, v] for k, v in found["totals"].items() if k != "key")
    for part in ("by_kind", "by_recorder"):
        for f in found["faults"][part]:
            rows.extend([f"faults.{part}", f["key"], k, v] for k, v in f.items() if k != "key")
    rows.extend(["faults", "all", k, v] for k, v in found["faults"]["totals"].items() if k != "key")
    rows.extend(["holds", "by_reason", k, v] for k, v in found["holds"]["by_reason"].items())
    rows.append(["holds", "all", "placed", found["holds"]["placed"]])
    rows.append(["holds", "all", "released", found["holds"]["released"]])
    rows.extend(["exports", "all", k, v] for k, v in found["exports"].items())
    rows.extend(["access_requests", "all", k, v] for k, v in found["access_requests"].items())
    return rows


def text_lines(found: dict[str, Any]) -> list[str]:
    period = found["period"]
    lines = [f"recdock report {period['from']} .. {period['to']}"]
    for section in ("by_unit", "by_officer", "by_recorder"):
        lines.append(f"\n{section.replace('_', ' ')}:")
        for g in found[section]:
            share = g["share_within_24h"]
            share_text = "-" if share is None else f"{share:.0%}"
            lines.append(
                f"  {g['key'] or '(none)':<16} {g['recordings']:>5} rec. {g['hours']:>8.2f} h  "
                f"within 24 h {share_text:>4}  late dockings {g['dockings_late']}  "
                f"checks failed {g['checks_failed']}/{g['checks']} {g['check_failures'] or ''}"
            )
    f = found["faults"]["totals"]
    lines.append(
        f"\nfaults opened {f.get('opened', 0)}, reported within 24 h "
        f"{f.get('reported_within_24h', 0)}, repaired within 24 h "
        f"{f.get('repaired_within_24h', 0)}, open past 24 h {f.get('open_past_24h', 0)}"
    )
    h = found["holds"]
    lines.append(f"holds placed {h['placed']} {h['by_reason'] or ''}, released {h['released']}")
    lines.append(
        f"exports {found['exports'] or 0}; access requests {found['access_requests'] or 0}"
    )
    return lines
