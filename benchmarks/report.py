"""Benchmark output: the human table (packs side by side), CSV rows, and a markdown + HTML report
with PNG plots when matplotlib (the `report` extra) is installed."""

from __future__ import annotations

import csv
import html
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgepack.runtime import BenchmarkError

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
