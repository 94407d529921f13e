"""Benchmark output: the human table (packs side by side), CSV rows, and a markdown + HTML report
with PNG plots when matplotlib (the `report` extra) is installed."""

from __future__ import annotations

import csv
import html
import importlib.util
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgepack.benchmarks.errors import BenchmarkError

from .harness import BenchResult

CSV_COLUMNS = (
    "pack",
    "name",
    "model_file",
    "precision",
    "backend",
    "threads",
    "label",
    "profile",
    "scenario",
    "count",
    "duration_s",
    "items_per_query",
    "p50_ms",
    "p50_ci_low_ms",
    "p50_ci_high_ms",
    "p90_ms",
    "p90_ci_low_ms",
    "p90_ci_high_ms",
    "p99_ms",
    "p99_ci_low_ms",
    "p99_ci_high_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "server_rate_per_s",
    "max_rate_within_bound_per_s",
    "cold_start_s",
    "peak_rss_mib",
    "model_size_bytes",
    "estimated_ms",
    "warnings",
    "created",
)
QUALITY_KEYS = ("accuracy", "top1", "f1", "exact_match")  # preferred, in this order
REPORT_EXTRA = "pip install 'edgepack[report]' (matplotlib)"
TAIL_ROOM = 1.5  # a latency plot's axis ends at this multiple of the pack's p99


# --- numbers as text ------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1e3
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _bytes(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def quality(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The pack's headline quality metric ("stage.metric", value): the latest stage's accuracy
    (or top1, f1, exact_match), else its first numeric metric; None when there is none."""
    for stage, values in reversed(list(metrics.items())):
        numeric = {k: v for k, v in values.items() if isinstance(v, int | float)}
        for key in (*[k for k in QUALITY_KEYS if k in numeric], *numeric):
            return f"{stage}.{key}", float(numeric[key])
    return None


# --- the table ------------------------------------------------------------------------------


def column_names(results: Sequence[BenchResult]) -> list[str]:
    """A heading per result: the pack's name, or its file (then its path) where two packs share
    a name, as a pack and its re-quantized copy usually do."""
    names = [r.name for r in results]
    for better in (lambda r: Path(r.pack).name, lambda r: str(r.pack)):
        if len(set(names)) == len(names):
            break
        names = [
            better(r) if names.count(n) > 1 else n for r, n in zip(results, names, strict=True)
        ]
    return names


def table_rows(results: Sequence[BenchResult]) -> list[tuple[str, list[str]]]:
    """(row name, one cell per result): the one layout the terminal, markdown and HTML share."""

    def row(name: str, cell: Any) -> tuple[str, list[str]]:
        return name, [cell(r) for r in results]

    def pct(q: str) -> Any:
        def cell(r: BenchResult) -> str:
            low, high = r.latency["ci_s"][q]
            value = r.latency["percentiles_s"][q]
            return f"{_ms(value)} [{_ms(low)}, {_ms(high)}]"

        return cell

    def headline(r: BenchResult) -> str:
        h = r.headline
        value = _ms(h["value"]) + " ms" if h["unit"] == "s" else f"{_count(h['value'])} {h['unit']}"
        return f"{h['metric']}: {value}"

    rows = [
        ("pack", column_names(results)),
        row("model", lambda r: f"{r.model_file} ({r.precision})"),
        row("backend", lambda r: f"{r.backend}, {r.threads} thread(s), CPUs {_cpus(r.cpus)}"),
        row("inputs", lambda r: "; ".join(f"{k} {v}" for k, v in r.inputs.items()) or "-"),
        row("headline", headline),
        row("queries", lambda r: f"{r.latency['count']:,} in {r.duration_s:.2f} s"),
        row("p50 ms [95% CI]", pct("p50")),
        row("p90 ms [95% CI]", pct("p90")),
        row("p99 ms [95% CI]", pct("p99")),
        row("mean ± std ms", lambda r: f"{_ms(r.latency['mean_s'])} ± {_ms(r.latency['std_s'])}"),
        row("throughput", lambda r: f"{_count(r.throughput_per_s)} items/s"),
    ]
    if any(r.scenario == "offline" for r in results):
        rows.append(row("best batch", _offline_cell))
    if any(r.scenario == "stream" for r in results):
        rows.append(row("real-time factor", _stream_cell))
    if any(r.scenario == "server" for r in results):
        rows += [row("arrivals", _server_cell), row("p99 bound", _search_cell)]
    rows += [
        row("cold start", _cold_cell),
        row(
            "peak RSS", lambda r: f"{r.cold_start['peak_rss_mib']:.1f} MiB" if r.cold_start else "-"
        ),
        row("model size", lambda r: _bytes(r.model_size_bytes)),
    ]
    if any(quality(r.metrics) for r in results):
        rows.append(row("quality", _quality_cell))
    if any(r.estimate for r in results):
        rows.append(row("estimated", _estimate_cell))
    return rows


def _cpus(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus) if len(cpus) <= 8 else f"{len(cpus)} CPUs"


def _offline_cell(r: BenchResult) -> str:
    if r.scenario != "offline":
        return "-"
    tried = ", ".join(str(row["batch_size"]) for row in r.details["sweep"])
    return f"{r.details['batch_size']} (tried {tried})"


def _stream_cell(r: BenchResult) -> str:
    if r.scenario != "stream":
        return "-"
    d = r.details
    fed = ", ".join(f"{i} <- {o}" for i, o in d["feed"].items())
    rtf = d.get("real_time_factor")
    if not rtf:
        return f"feeds {fed}; chunk length {d['chunk_source']}"
    return (
        f"p50 {rtf['p50']:.3g}, p99 {rtf['p99']:.3g} of a {d['chunk_s'] * 1e3:.3g} ms chunk "
        f"({d['chunk_source']}); feeds {fed}"
    )


def _server_cell(r: BenchResult) -> str:
    if r.scenario != "server":
        return "-"
    d = r.details
    text = (
        f"Poisson {_count(d['rate_per_s'])}/s ({d['rate_source']}), {d['utilization']:.0%} of "
        f"capacity {_count(d['capacity_per_s'])}/s"
    )
    return text + (f", {d['unserved']} unserved (overloaded)" if d["overloaded"] else "")


def _search_cell(r: BenchResult) -> str:
    search = r.details.get("search") if r.scenario == "server" else None
    if not search:
        return "-"
    best = search["max_rate_within_bound_per_s"]
    bound = _ms(search["p99_bound_s"])
    if best is None:
        return f"p99 > {bound} ms at every rate tried"
    if search["first_rate_over_bound_per_s"] is None:
        return f"p99 <= {bound} ms up to capacity ({_count(best)}/s)"
    return (
        f"p99 <= {bound} ms up to {_count(best)}/s; "
        f"over it at {_count(search['first_rate_over_bound_per_s'])}/s"
    )


def _cold_cell(r: BenchResult) -> str:
    c = r.cold_start
    if not c:
        return "-"
    return (
        f"{c['total_s']:.3f} s (import {c['import_s']:.3f}, load {c['load_s']:.3f}, "
        f"1st run {c['first_run_s']:.3f})"
    )


def _quality_cell(r: BenchResult) -> str:
    found = quality(r.metrics)
    return f"{found[0]} = {found[1]:g}" if found else "-"


def _estimate_cell(r: BenchResult) -> str:
    p = r.estimate
    if not p:
        return "-"
    if p.get("error"):
        return f"none for {p['profile']}: {p['error']}"
    if p["kind"] == "measured":  # measured on the device: the estimate's error is recorded
        before = p["estimate"]
        return (
            f"was {_ms(before['latency_ms'] / 1e3)} ms ({before['error_pct']:+.0f}% off the "
            f"measured p50; recorded in {p['history_file']})"
        )
    low, high = p["range_ms"]
    text = f"{_ms(p['latency_ms'] / 1e3)} ms (likely {_ms(low / 1e3)}-{_ms(high / 1e3)}), "
    energy = p.get("energy") or {}
    if energy.get("mj") is not None:
        text += f"energy ~{energy['mj']:.3g} mJ (estimate), "
    return text + p["label"]


def format_table(results: Sequence[BenchResult]) -> str:
    """The human table: one column per pack, then the warnings (each once)."""
    rows = table_rows(results)
    first = max(len(name) for name, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(results))]
    lines = [_header(results), ""]
    for name, cells in rows:
        padded = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(f"{name.ljust(first)}  {padded}".rstrip())
    notes = _warnings(results)
    if notes:
        lines += ["", "warnings:", *[f"  - {w}" for w in notes]]
    return "\n".join(lines) + "\n"


def _header(results: Sequence[BenchResult]) -> str:
    labels = sorted({r.label for r in results})
    scenarios = sorted({r.scenario for r in results})
    return f"{'; '.join(labels)} | {', '.join(scenarios)} | {results[0].created}"


def _warnings(results: Sequence[BenchResult]) -> list[str]:
    return list(dict.fromkeys(w for r in results for w in r.warnings))


# --- CSV ------------------------------------------------------------------------------------


def csv_row(result: BenchResult) -> dict[str, Any]:
    """One CSV row (CSV_COLUMNS), latencies in milliseconds."""
    r, lat = result, result.latency
    estimated = (r.estimate or {}).get("latency_ms")
    row: dict[str, Any] = {
        "pack": r.pack,
        "name": r.name,
        "model_file": r.model_file,
        "precision": r.precision,
        "backend": r.backend,
        "threads": r.threads,
        "label": r.label,
        "profile": r.profile or "",
        "scenario": r.scenario,
        "count": lat["count"],
        "duration_s": r.duration_s,
        "items_per_query": r.items_per_query,
        "mean_ms": lat["mean_s"] * 1e3,
        "std_ms": lat["std_s"] * 1e3,
        "throughput_per_s": r.throughput_per_s,
        "server_rate_per_s": r.details.get("rate_per_s", ""),
        "max_rate_within_bound_per_s": (r.details.get("search") or {}).get(
            "max_rate_within_bound_per_s", ""
        ),
        "cold_start_s": r.cold_start["total_s"] if r.cold_start else "",
        "peak_rss_mib": r.cold_start["peak_rss_mib"] if r.cold_start else "",
        "model_size_bytes": r.model_size_bytes,
        "estimated_ms": estimated if estimated is not None else "",
        "warnings": " | ".join(r.warnings),
        "created": r.created,
    }
    for q in ("p50", "p90", "p99"):
        low, high = lat["ci_s"][q]
        row[f"{q}_ms"] = lat["percentiles_s"][q] * 1e3
        row[f"{q}_ci_low_ms"] = low * 1e3
        row[f"{q}_ci_high_ms"] = high * 1e3
    return {column: "" if row[column] is None else row[column] for column in CSV_COLUMNS}


def write_csv(results: Sequence[BenchResult], path: str | os.PathLike[str]) -> Path:
    """Write one row per result; returns the path."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in results)
    return path


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn a failed write (a read-only folder, a full disk) into one clear error."""
    try:
        yield
    except OSError as exc:
        raise BenchmarkError(f"cannot write {target}: {exc.strerror or exc}") from exc


# --- the report -----------------------------------------------------------------------------


def require_matplotlib() -> None:
    """Raise a clear error naming the `report` extra when matplotlib is not importable."""
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchmarkError(f"--report draws its plots with matplotlib; {REPORT_EXTRA}")


def write_report(results: Sequence[BenchResult], directory: str | os.PathLike[str]) -> list[Path]:
    """Write report.md and report.html with latency.png (the latency distribution per pack) and
    tradeoff.png (quality vs p50 latency, marker area ~ model size) into `directory`."""
    require_matplotlib()
    out = Path(directory)
    with _writing(out):
        return _write_report(results, out)


def _write_report(results: Sequence[BenchResult], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "latency.png": ("Latency distribution", _plot_latency(results, out / "latency.png")),
        "tradeoff.png": (
            "Quality, latency and size",
            _plot_tradeoff(results, out / "tradeoff.png"),
        ),
    }
    rows = table_rows(results)
    notes = _warnings(results)
    conditions = results[0].conditions.get("before", {})
    settings = json.dumps(results[0].settings)
    headings = column_names(results)
    title = f"edgepack benchmark: {', '.join(headings)}"

    md = [f"# {title}", "", _header(results), ""]
    md += ["| | " + " | ".join(headings) + " |"]
    md += ["|---" * (len(results) + 1) + "|"]
    md += [
        f"| {name} | " + " | ".join(c.replace("|", "/") for c in cells) + " |"
        for name, cells in rows
    ]
    for file, (heading, note) in plots.items():
        md += ["", f"## {heading}", "", note or f"![{heading}]({file})"]
    md += ["", "## Conditions", "", *[f"- {k}: {v}" for k, v in conditions.items()]]
    if notes:
        md += ["", "## Warnings", "", *[f"- {w}" for w in notes]]
    md += ["", "## Settings", "", f"`{settings}`", ""]

    e = html.escape
    page = [
        f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
        f"<h1>{e(title)}</h1>",
    ]
    page += [f"<p>{e(_header(results))}</p>", "<table border='1' cellpadding='4'>"]
    page += ["<tr><th></th>" + "".join(f"<th>{e(h)}</th>" for h in headings) + "</tr>"]
    for name, cells in rows:
        page += [f"<tr><th>{e(name)}</th>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"]
    page += ["</table>"]
    for file, (heading, note) in plots.items():
        body = f"<p>{e(note)}</p>" if note else f"<img src='{file}' alt='{e(heading)}'>"
        page += [f"<h2>{e(heading)}</h2>", body]
    page += ["<h2>Conditions</h2><ul>"]
    page += [f"<li>{e(k)}: {e(str(v))}</li>" for k, v in conditions.items()] + ["</ul>"]
    if notes:
        page += ["<h2>Warnings</h2><ul>", *[f"<li>{e(w)}</li>" for w in notes], "</ul>"]
    page += [f"<h2>Settings</h2><pre>{e(settings)}</pre>"]

    written = [out / "report.md", out / "report.html"]
    written[0].write_text("\n".join(md), encoding="utf-8")
    written[1].write_text("\n".join(page) + "\n", encoding="utf-8")
    return written + [out / f for f, (_, note) in plots.items() if not note]


def _figure(rows: int = 1) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    return Figure(figsize=(7, 1.2 + 2.0 * rows), layout="constrained")


def _plot_latency(results: Sequence[BenchResult], path: Path) -> str | None:
    figure = _figure(len(results))
    axes = figure.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        # A few stalls of many times the p99 would squash the histogram into one bar: the axis
        # ends a little past the p99 and the legend counts what lies beyond it. Packs of very
        # different speed get their own axes.
        right = TAIL_ROOM * r.latency["percentiles_s"]["p99"] * 1e3
        ms = [x * 1e3 for x in r.samples_s]
        shown = [x for x in ms if x <= right]
        ax.hist(shown, bins=60, range=(0, right), color="tab:blue", alpha=0.8)
        for q, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            value = r.latency["percentiles_s"][q] * 1e3
            ax.axvline(value, color="black", linestyle=style, label=f"{q} {_ms(value / 1e3)} ms")
        if len(shown) < len(ms):
            ax.plot([], [], " ", label=f"{len(ms) - len(shown)} slower, off the axis")
        ax.set_title(f"{r.name} ({r.scenario}, {r.backend}, {r.threads} thread(s))", fontsize=9)
        ax.set_ylabel("queries")
        ax.set_xlabel("latency (ms)")
        ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return None


def _plot_tradeoff(results: Sequence[BenchResult], path: Path) -> str | None:
    found = [quality(r.metrics) for r in results]
    if not any(found):
        return "No pack records a quality metric in its manifest (`metrics`), so there is no plot."
    figure = _figure()
    ax = figure.subplots()
    sizes = [r.model_size_bytes for r in results]
    largest = max(sizes) or 1
    for r, q, size in zip(results, found, sizes, strict=True):
        if q is None:
            continue
        x = r.latency["percentiles_s"]["p50"] * 1e3
        ax.scatter([x], [q[1]], s=40 + 600 * size / largest, alpha=0.6)
        ax.annotate(f"{r.name}\n{_bytes(size)}", (x, q[1]), fontsize=8, ha="center", va="bottom")
    metric_names = sorted({q[0] for q in found if q})
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel(", ".join(metric_names))
    ax.set_title("quality vs latency (marker area ~ model size)", fontsize=9)
    ax.margins(0.25)
    figure.savefig(path, dpi=110)
    return None


# --- the choice report: which model to ship to which device -----------------------------------
#
# `edgepack demo` and `edgepack optimize` end here. `choice` is JSON-ready data they build:
#   title, metric, budget, reference (the source model's metric), stages (one row per model on
#   the way: stage, model, format, precision, size_bytes, metric, host_p50_ms), candidates (the
#   shippable models: key, pack, model, format, precision, backend, size_bytes, metric, drop,
#   host_p50_ms), profiles (name -> {"estimates": {key: estimate or {"error": ...}},
#   "chosen": {...} or None, "closest": {...} or None, "left_out": reason or None}),
#   host (format_table text of the harness run), notes.


def choice_lines(choice: dict[str, Any]) -> list[str]:
    """One line per profile: the pack and format to flash there, its latency (measured or
    estimated, said which) and metric; or why nothing is chosen and what came closest."""
    metric = choice["metric"]
    lines = []
    width = max(len(name) for name in choice["profiles"]) if choice["profiles"] else 0
    for name, row in choice["profiles"].items():
        head = f"{name.ljust(width)}  "
        if row.get("left_out"):
            lines.append(f"{head}left out: {row['left_out']}")
            continue
        pick = row.get("chosen")
        if pick is None:
            near = row.get("closest")
            text = f"{head}nothing meets the {choice['budget']:g}-point budget"
            if near:
                text += f"; closest: {_pick_text(near, metric)}"
            lines.append(text)
            continue
        lines.append(head + _pick_text(pick, metric))
    return lines


def _pick_text(pick: dict[str, Any], metric: str) -> str:
    kind = "measured" if pick["kind"] == "measured" else "estimated"
    return (
        f"{Path(pick['pack']).name} ({pick['format']} {pick['precision']}, {pick['backend']}), "
        f"{kind} {pick['latency_ms']:.3g} ms, {metric} {pick['metric']:.2f}%"
    )


def write_choice_report(choice: dict[str, Any], directory: str | os.PathLike[str]) -> list[Path]:
    """report.json, report.md and report.html in `directory`, with accuracy_latency.png (metric
    against latency per profile, the budget as a line) and stages.png (size and host latency
    per stage) when matplotlib is installed (else the report says why there are no plots)."""
    out = Path(directory)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(choice, indent=1, default=str), "utf-8")
        plots: dict[str, tuple[str, str | None]] = {}
        if importlib.util.find_spec("matplotlib") is None:
            missing = f"No plots: matplotlib is not installed ({REPORT_EXTRA})."
            plots = {
                "accuracy_latency.png": ("Accuracy vs latency per device", missing),
                "stages.png": ("Size and latency per stage", missing),
            }
        else:
            plots = {
                "accuracy_latency.png": (
                    "Accuracy vs latency per device",
                    _plot_choice(choice, out / "accuracy_latency.png"),
                ),
                "stages.png": (
                    "Size and latency per stage",
                    _plot_stages(choice, out / "stages.png"),
                ),
            }
        md, page = _choice_documents(choice, plots)
        (out / "report.md").write_text("\n".join(md) + "\n", "utf-8")
        (out / "report.html").write_text("\n".join(page) + "\n", "utf-8")
    files = [out / "report.md", out / "report.html", out / "report.json"]
    return files + [out / f for f, (_, note) in plots.items() if not note]


def _choice_tables(choice: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of the report's tables, shared by markdown and HTML."""
    metric = choice["metric"]
    stages = [
        [
            s["stage"],
            s["model"],
            f"{s['format']} {s['precision']}",
            _bytes(s["size_bytes"]),
            "-" if s.get("metric") is None else f"{s['metric']:.2f}",
            "-" if s.get("host_p50_ms") is None else f"{s['host_p50_ms']:.3g}",
        ]
        for s in choice["stages"]
    ]
    keys = [c["key"] for c in choice["candidates"]]
    estimates = []
    for name, row in choice["profiles"].items():
        cells = [name]
        for key in keys:
            e = (row.get("estimates") or {}).get(key)
            if not e:
                cells.append("-")
            elif e.get("error"):
                cells.append(f"none: {e['error']}")
            else:
                low, high = e.get("range_ms") or (e["latency_ms"], e["latency_ms"])
                cells.append(
                    f"{e['latency_ms']:.3g} ({low:.3g}-{high:.3g})"
                    if e["kind"] == "estimated"
                    else f"{e['latency_ms']:.3g} measured"
                )
        estimates.append(cells)
    lines = choice_lines(choice)
    picks = [[line.split("  ", 1)[0], line.split("  ", 1)[1].strip()] for line in lines]
    return [
        ("Ship this", ["device", "pack, format, latency, " + metric], picks),
        (
            "Per stage (latency measured on this host)",
            ["stage", "model", "format", "size", metric, "host p50 ms"],
            stages,
        ),
        (
            "Latency per device, ms (estimated, likely range; host: measured)",
            ["device", *keys],
            estimates,
        ),
    ]


def _choice_documents(
    choice: dict[str, Any], plots: dict[str, tuple[str, str | None]]
) -> tuple[list[str], list[str]]:
    intro = (
        f"Budget: {choice['budget']:g} points of {choice['metric']} below the source model "
        f"({choice['reference']:.2f}). Estimates are estimates (edgepack.benchmarks.estimate), "
        "never measurements; the host row is measured on this machine through the harness."
    )
    return _documents(
        choice["title"], intro, _choice_tables(choice), plots, choice.get("host"), choice
    )


def _documents(
    title: str,
    intro: str,
    tables: list[tuple[str, list[str], list[list[str]]]],
    plots: dict[str, tuple[str, str | None]],
    host: str | None,
    data: dict[str, Any],
) -> tuple[list[str], list[str]]:
    """report.md and report.html lines: intro, tables, plots (or why none), host run, notes."""
    e = html.escape
    md = [f"# {title}", "", intro, ""]
    page = [
        f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(intro)}</p>",
    ]
    for heading, header, rows in tables:
        md += [f"## {heading}", "", "| " + " | ".join(header) + " |"]
        md += ["|---" * len(header) + "|"]
        md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
        md.append("")
        page += [f"<h2>{e(heading)}</h2>", "<table border='1' cellpadding='4'>"]
        page.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        page += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        page.append("</table>")
    for file, (heading, note) in plots.items():
        md += [f"## {heading}", "", note or f"![{heading}]({file})", ""]
        body = f"<p>{e(note)}</p>" if note else f"<img src='{file}' alt='{e(heading)}'>"
        page += [f"<h2>{e(heading)}</h2>", body]
    if host:
        md += ["## Measured on this host", "", "```", host.rstrip(), "```", ""]
        page += ["<h2>Measured on this host</h2>", f"<pre>{e(host)}</pre>"]
    if data.get("notes"):
        md += ["## Notes", "", *[f"- {n}" for n in data["notes"]], ""]
        page += ["<h2>Notes</h2><ul>", *[f"<li>{e(n)}</li>" for n in data["notes"]], "</ul>"]
    return md, page


# --- the stage report: what each stage of `edgepack compress` left ---------------------------
#
# rows (compress.stage_report): stage, model, format, precision, parameters, flops, size_bytes,
# metric_name, metric, host_p50_ms (batch 1, one thread, interleaved), seconds (the stage's).


def write_stage_report(
    rows: Sequence[dict[str, Any]],
    directory: str | os.PathLike[str],
    *,
    title: str = "compress stages",
    stopped: str | None = None,
) -> list[Path]:
    """report.json, report.md and report.html in `directory` with accuracy_latency.png (metric
    against host p50 per stage) and stages.png (size and host p50 per stage) when matplotlib
    is installed; a stage that left the model no faster than the one before says so."""
    out = Path(directory)
    notes = _stage_notes(rows, stopped)
    data = {"title": title, "stages": list(rows), "notes": notes}
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(data, indent=1, default=str), "utf-8")
        plots = {
            "accuracy_latency.png": ("Metric vs p50 on this host, per stage", _plot_tradeoff_rows),
            "stages.png": ("Size and p50 on this host, per stage", _plot_stage_rows),
        }
        notes_or_none: dict[str, tuple[str, str | None]] = {}
        for file, (heading, plot) in plots.items():
            missing = f"No plots: matplotlib is not installed ({REPORT_EXTRA})."
            have = importlib.util.find_spec("matplotlib") is not None
            notes_or_none[file] = (heading, plot(rows, out / file) if have else missing)
        intro = (
            "One row per model the source and each stage left. Metric: on the recipe's "
            "evaluation data, through the runtime. p50: batch 1, one thread, on this machine, "
            "every model timed in turn in one loop (edgepack.benchmarks.scenarios.measure)."
        )
        header = ["stage", "model", "format", "parameters", "FLOPs", "size", "metric", "p50 ms"]
        table = [
            [
                r["stage"],
                r["model"],
                f"{r['format']} {r['precision']}",
                "-" if r.get("parameters") is None else f"{r['parameters']:,}",
                "-" if r.get("flops") is None else f"{r['flops']:.3g}",
                _bytes(r["size_bytes"]),
                "-" if r.get("metric") is None else f"{r['metric_name']} {r['metric']:.2f}",
                "-" if r.get("host_p50_ms") is None else f"{r['host_p50_ms']:.3g}",
            ]
            for r in rows
        ]
        seconds = ("Wall time per stage", ["stage", "seconds"], _stage_seconds(rows))
        tables = [("Stages", header, table), seconds]
        md, page = _documents(title, intro, tables, notes_or_none, None, data)
        (out / "report.md").write_text("\n".join(md) + "\n", "utf-8")
        (out / "report.html").write_text("\n".join(page) + "\n", "utf-8")
    files = [out / "report.md", out / "report.html", out / "report.json"]
    return files + [out / f for f, (_, note) in notes_or_none.items() if not note]


def _stage_seconds(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    seconds = {(r["number"], r["stage"]): r["seconds"] for r in rows if r["number"]}
    return [[f"{number} {stage}", f"{value:.1f}"] for (number, stage), value in seconds.items()]


def _stage_notes(rows: Sequence[dict[str, Any]], stopped: str | None) -> list[str]:
    """What a reader should not miss: a weight-changing stage that gave no measured gain."""
    notes = [f"The run stopped at {stopped}; the rows end with the last good stage."]
    notes = notes if stopped else []
    fp32 = [r for r in rows if r["format"] == "onnx" and r["precision"] == "fp32"]
    for before, after in itertools.pairwise(fp32):
        if after["host_p50_ms"] >= before["host_p50_ms"] * 0.97:
            notes.append(
                f"{after['stage']}: no measured gain: p50 {after['host_p50_ms']:.3g} ms "
                f"after, {before['host_p50_ms']:.3g} ms before (within 3% or slower)"
            )
    if any(r.get("timed_with_other_feeds") for r in rows):
        notes.append(
            "Models that read different inputs (a trimmed vocabulary) were timed in separate "
            "loops, one after the other."
        )
    return notes


def _plot_stage_rows(rows: Sequence[dict[str, Any]], path: Path) -> str | None:
    return _plot_stages({"stages": list(rows)}, path) if rows else "No rows, so no plot."


def _plot_tradeoff_rows(rows: Sequence[dict[str, Any]], path: Path) -> str | None:
    points = [r for r in rows if r.get("metric") is not None and r.get("host_p50_ms")]
    if not points:
        return "No stage has both a metric and a p50 (no labelled evaluation data), so no plot."
    figure = _figure()
    ax = figure.subplots()
    for r in points:
        ax.scatter([r["host_p50_ms"]], [r["metric"]], s=40)
        label = f"{r['stage']}\n{r['format']} {r['precision']}"
        ax.annotate(label, (r["host_p50_ms"], r["metric"]), fontsize=7, ha="center", va="bottom")
    ax.set_xlabel("p50 on this host (ms, batch 1, 1 thread)")
    ax.set_ylabel(points[0]["metric_name"])
    ax.margins(0.25)
    figure.savefig(path, dpi=110)
    return None


def _plot_choice(choice: dict[str, Any], path: Path) -> str | None:
    rows = [(n, r) for n, r in choice["profiles"].items() if not r.get("left_out")]
    if not rows:
        return "No device has a latency figure, so there is no plot."
    columns = min(3, len(rows))
    lines = -(-len(rows) // columns)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.4 * columns, 2.8 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    floor = choice["reference"] - choice["budget"]
    by_key = {c["key"]: c for c in choice["candidates"]}
    colours = {key: f"C{i}" for i, key in enumerate(by_key)}
    for ax, (name, row) in zip(axes, rows, strict=False):
        for key, e in (row.get("estimates") or {}).items():
            if not e or e.get("error") or key not in by_key:
                continue
            y = by_key[key]["metric"]
            chosen = (row.get("chosen") or {}).get("key") == key
            if e.get("range_ms"):
                low, high = e["range_ms"]
                ax.plot([low, high], [y, y], color=colours[key], linewidth=0.8, alpha=0.5)
            ax.scatter(
                [e["latency_ms"]],
                [y],
                s=90 if chosen else 30,
                marker="*" if chosen else "o",
                color=colours[key],
                label=key + (" (chosen)" if chosen else ""),
                zorder=3,
            )
        ax.axhline(floor, color="red", linestyle="--", linewidth=0.8, label="budget")
        kind = "measured" if name == "host" else "estimated"
        ax.set_title(f"{name} ({kind})", fontsize=8)
        ax.set_xlabel("latency (ms)", fontsize=7)
        ax.set_ylabel(choice["metric"], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="lower right")
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    figure.savefig(path, dpi=110)
    return None


def _plot_stages(choice: dict[str, Any], path: Path) -> str | None:
    stages = choice["stages"]
    if not stages:
        return "No stage recorded a model, so there is no plot."
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2), layout="constrained")
    size_ax, latency_ax = figure.subplots(1, 2)
    names = [f"{s['stage']}\n{s['format']} {s['precision']}" for s in stages]
    size_ax.bar(names, [s["size_bytes"] / 1e3 for s in stages], color="tab:blue")
    size_ax.set_ylabel("model file (kB)")
    timed = [
        (n, s["host_p50_ms"]) for n, s in zip(names, stages, strict=True) if s.get("host_p50_ms")
    ]
    latency_ax.bar([n for n, _ in timed], [v for _, v in timed], color="tab:orange")
    latency_ax.set_ylabel("p50 on this host (ms, measured)")
    for ax in (size_ax, latency_ax):
        ax.tick_params(labelsize=6)
    figure.savefig(path, dpi=110)
    return None
