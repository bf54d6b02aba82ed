"""Human reports of bench results: ``report.md`` and a self-contained ``report.html``.

Plots: rate–distortion curves (bpp against PSNR, FD, text accuracy, face distance) with
one line per curve (:func:`vistok.bench.points.curve_key`; dashed: a codec at a tokenizer's own bytes, "equal bytes"),
and per-bucket bars for text and faces. Equal-bytes points also get their own table: each
learned point next to the codecs at its per-image bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from vistok.bench.points import curve_key
from vistok.utils.io import atomic_write_text

__all__ = ["columns", "fd_label", "leaderboard", "load_results", "summary_rows", "write_report"]


def load_results(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    try:
        res = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read bench results ({e})") from None
    if not str(res.get("schema", "")).startswith("vistok.bench.results/"):
        raise ValueError(f"{p}: not a vistok bench results file")
    return res


def _get(d: dict[str, Any], *keys: str) -> float:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return math.nan
        cur = cur[k]
    try:
        return float(cur)
    except (TypeError, ValueError):
        return math.nan


COLUMNS: list[tuple[str, tuple[str, ...], str]] = [
    ("bpp", ("rate", "bpp"), "{:.3f}"),
    ("PSNR", ("recon", "psnr"), "{:.2f}"),
    ("SSIM", ("recon", "ssim"), "{:.3f}"),
    ("MS-SSIM", ("recon", "ms_ssim"), "{:.3f}"),
    ("FD-MobileNetV2", ("recon", "fd", "fd"), "{:.2f}"),
    ("DFD", ("recon", "dfd", "dfd"), "{:.4f}"),
    ("T-ACC", ("text", "t_acc"), "{:.3f}"),
    ("T-NED", ("text", "t_ned"), "{:.3f}"),
    ("face dist", ("face", "face_dist"), "{:.3f}"),
    ("face <0.6", ("face", "face_same"), "{:.2f}"),
    ("pPSNR", ("robustness", "psnr"), "{:.2f}"),
    ("pFD", ("robustness", "fd", "fd"), "{:.2f}"),
    ("enc img/s", ("speed", "encode_images_per_s"), "{:.1f}"),
    ("dec img/s", ("speed", "decode_images_per_s"), "{:.1f}"),
]


FD_COLUMN = "FD-MobileNetV2"  # the FD column's header in COLUMNS: replaced by the run's FD label


def fd_label(results: dict[str, Any]) -> str:
    """How this run names its Fréchet distance: the metric's own label from ``results.json``
    (``FD-MobileNetV2``, ``FID-InceptionV3``); older results: from the feature network."""
    label = results.get("metrics", {}).get("fd", {}).get("label")
    if label:
        return str(label)
    return "FID-InceptionV3" if results.get("config", {}).get("fd_features") == "inception" else FD_COLUMN


def columns(results: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """:data:`COLUMNS` with this run's FD label, then one column per other registered recon
    metric the run recorded (``results["metrics"]``), headed by its label."""
    fd = fd_label(results)
    cols = [(fd if name == FD_COLUMN else name, keys, f) for name, keys, f in COLUMNS]
    known = {keys[1] for _, keys, _ in COLUMNS if keys[0] == "recon"}
    for name, info in results.get("metrics", {}).items():
        if info.get("suite") == "recon" and name not in known:
            keys = ("recon", name) if info.get("per_image") else ("recon", name, info.get("primary", name))
            cols.append((info.get("label") or name, keys, "{:.4g}"))
    return cols


def _family(point: dict[str, Any]) -> str:
    """The curve a point belongs to: its record's ``curve`` (:func:`curve_key`; computed
    from the spec for results written before curves were recorded)."""
    if point.get("curve"):
        return str(point["curve"])
    eq = point.get("equal_bytes")
    return curve_key(point["spec"], equal_bytes_reference=eq["reference_spec"] if eq else None)


def _measured(point: dict[str, Any]) -> bool:
    """False for an equal-bytes point that was not run (no codec file fits its budgets)."""
    return not (point.get("equal_bytes", {}).get("not_run") and point.get("images") == 0)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per measured point: label, curve (``family``) and every column of
    :func:`columns`."""
    rows = []
    for p in results["points"]:
        if not _measured(p):
            continue  # listed in the equal-bytes table with the reason
        row: dict[str, Any] = {"point": p["point"], "family": _family(p)}
        for name, keys, _ in columns(results):
            row[name] = _get(p, *keys)
        rows.append(row)
    return rows


def _fmt(v: float, f: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f.format(v)


def _table_md(rows: list[dict[str, Any]], cols: list[tuple[str, tuple[str, ...], str]]) -> str:
    head = ["point"] + [c[0] for c in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join([r["point"]] + [_fmt(r.get(c[0], math.nan), c[2]) for c in cols]) + " |")
    return "\n".join(out)


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(results: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: rate–distortion panels and per-bucket bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary_rows(results)
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_family[r["family"]].append(r)
    fd = fd_label(results)
    panels = [
        ("PSNR", "PSNR (dB) ↑"),
        (fd, f"{fd} ↓"),
        ("T-ACC", "text word accuracy ↑"),
        ("face dist", "face identity distance ↓"),
    ]
    panels = [p for p in panels if any(not math.isnan(r[p[0]]) for r in rows)]
    out: dict[str, str] = {}
    if panels:
        ncols = min(2, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.6 * nrows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, (col, title) in zip(axes.flat, panels):
            for fam, rs in sorted(by_family.items()):
                pts = sorted((r["bpp"], r[col]) for r in rs if not math.isnan(r[col]))
                if pts:
                    style = {"ls": "--", "marker": "s"} if " @= " in fam else {"marker": "o"}
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], ms=3, label=fam, **style)
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel (evaluation size)")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        out["rate_distortion"] = _figure_png(fig)
        plt.close(fig)
    for suite, key, label in (("text", "t_acc", "word accuracy"), ("face", "face_dist", "identity distance")):
        pts = [p for p in results["points"] if isinstance(p.get(suite), dict)]
        if not pts:
            continue
        labels = [k[len(key) :] for k in pts[0][suite] if k.startswith(key + "[")]  # "[0.02,0.03)"
        if not labels:
            continue
        if len(pts) > 12:  # keep the chart readable: an even spread over the points
            step = len(pts) / 12
            pts = [pts[int(i * step)] for i in range(12)]
        fig, ax = plt.subplots(figsize=(9, 3.4))
        width = 0.8 / len(pts)
        for i, p in enumerate(pts):
            vals = [p[suite].get(f"{key}{lab}", math.nan) for lab in labels]
            ax.bar([j + i * width for j in range(len(labels))], vals, width=width, label=p["point"])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, fontsize=8)
        ax.set_xlabel("size relative to the image (box height / max(H, W))")
        ax.set_ylabel(label)
        ax.set_title(f"{suite}: {label} by size bucket", fontsize=10)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        out[f"{suite}_buckets"] = _figure_png(fig)
        plt.close(fig)
    return out


EQUAL_COLUMNS = ["bpp", "PSNR", "SSIM", FD_COLUMN, "T-ACC", "face dist"]


def _equal_columns(results: dict[str, Any]) -> list[str]:
    return [fd_label(results) if c == FD_COLUMN else c for c in EQUAL_COLUMNS]


def equal_bytes_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the equal-bytes table: each learned point that has equal-bytes points, then
    those codec points. Columns: point, bytes/image, :data:`EQUAL_COLUMNS`, images, over budget."""
    by_label = {p["point"]: p for p in results["points"]}
    cols = columns(results)
    keys = {name: k for name, k, _ in cols}
    fmt = {name: f for name, _, f in cols}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in results["points"]:
        if p.get("equal_bytes"):
            groups[p["equal_bytes"]["reference"]].append(p)
    out: list[list[str]] = []
    for ref_label, eq_points in groups.items():
        for p in [by_label.get(ref_label), *eq_points]:
            if p is None:
                continue
            eq = p.get("equal_bytes", {})
            bits = _get(p, "rate", "bits_per_image")
            nbytes = f"{bits / 8:.0f}" if not math.isnan(bits) else "–"
            if not _measured(p):
                budget = eq.get("budget_bytes", {}).get("mean", math.nan)
                out.append(
                    [p["point"], f"≤ {budget:.0f}"] + ["–"] * len(EQUAL_COLUMNS) + ["0", eq["not_run"]]
                )
                continue
            cells = [_fmt(_get(p, *keys[n]), fmt[n]) for n in _equal_columns(results)]
            over = f"{eq.get('over_budget', 0)} of {p.get('images', 0)}" if eq else ""
            out.append([p["point"], nbytes, *cells, str(p.get("images", "")), over])
    return out


def _equal_head(results: dict[str, Any]) -> list[str]:
    return ["point", "bytes/image", *_equal_columns(results), "images", "files over budget"]


def _equal_bytes_md(rows: list[list[str]], head: list[str]) -> list[str]:
    if not rows:
        return []
    return [
        "## Equal bytes",
        "",
        "Each learned point, then codecs given each image's own byte count of that point as their "
        "budget (thumbnail: never over; full-size codecs: lowest quality when nothing fits, counted "
        "as over budget, with their true rate).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
    ]


def _notes(results: dict[str, Any]) -> list[str]:
    notes = []
    seen: set[str] = set()
    for p in results["points"]:
        if p.get("equal_bytes"):  # suites: as for the codec's own points; images: one line per point
            if p.get("skipped_images"):
                path, reason = p["skipped_images"][0]
                n = len(p["skipped_images"])
                notes.append(f"{p['point']}: {n} image{'s' * (n > 1)} skipped, e.g. {path}: {reason}")
            continue
        for suite, reason in p.get("skipped_suites", {}).items():
            if p.get("tokenizer", {}).get("kind") == "codec" and suite in ("codebook", "robustness"):
                continue  # not applicable to codecs: recorded in the JSON, not worth a note
            line = f"{suite} skipped for {_family(p)}: {reason}"
            if line not in seen:
                seen.add(line)
                notes.append(line)
        for path, reason in p.get("skipped_images", []):
            line = f"image skipped: {path}: {reason}"
            if line not in seen:
                seen.add(line)
                notes.append(line)
    return notes


def write_report(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    rows = summary_rows(results)
    env, data, proto = results["environment"], results["data"], results["protocol"]
    md = [
        "# vistok bench report",
        "",
        f"Data: **{data['name']}** ({data['count']} images, {data.get('words', 0)} words, "
        f"{data.get('faces', 0)} faces; sha256 `{data['sha256'][:16]}`). "
        f"Protocol {proto['version']}: size {proto['size']}, {proto['pad_mode']} padding. "
        f"vistok {env['vistok']}, torch {env['libraries']['torch']}, {env['threads']} threads on {env['device']}. "
        f"Wall time {results['wall_s']:.0f} s, peak RSS {results['peak_rss_mb']:.0f} MB.",
        "",
        _fd_sentence(fd_label(results))
        + "Text: OCR word accuracy (T-ACC) and 1 − normalized edit distance (T-NED), unweighted mean over "
        "size buckets. Faces: dlib identity distance (lower is better) and the share under 0.6.",
        "",
        _table_md(rows, columns(results)),
        "",
    ]
    eq_rows = equal_bytes_rows(results)
    eq_head = _equal_head(results)
    md += _equal_bytes_md(eq_rows, eq_head)
    notes = _notes(results)
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Protocol", ""] + [f"- {k}: {v}" for k, v in proto.items()] + [""]
    md_path = out / "report.md"
    atomic_write_text(md_path, "\n".join(md))

    plots = _plots(results)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vistok bench</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child{text-align:left}</style></head><body>",
        "<h1>vistok bench report</h1>",
        f"<p>{html.escape(md[2].replace('**', ''))}</p>",
        f"<p>{html.escape(md[4])}</p>",
    ]
    cols = columns(results)
    head = ["point"] + [c[0] for c in cols]
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
    for r in rows:
        cells = [html.escape(r["point"])] + [_fmt(r[c[0]], c[2]) for c in cols]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    if eq_rows:
        parts.append(
            f"<h2>Equal bytes</h2><p>{html.escape(_equal_bytes_md(eq_rows, eq_head)[2])}</p><table><tr>"
        )
        parts.append("".join(f"<th>{html.escape(h)}</th>" for h in eq_head) + "</tr>")
        for r in eq_rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    for name, b64 in plots.items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img src='data:image/png;base64,{b64}'>")
    parts += _strips_html(results)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(
        "<h2>Protocol</h2><ul>"
        + "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in proto.items())
        + "</ul></body></html>"
    )
    html_path = out / "report.html"
    atomic_write_text(html_path, "\n".join(parts))
    return md_path, html_path


def _strips_html(results: dict[str, Any]) -> list[str]:
    """Worst text and face cases (original next to reconstruction), when crops were recorded."""
    parts = []
    for suite in ("text", "face"):
        cases = []
        for p in results["points"]:
            for rec in p.get(f"{suite}_worst", []):
                cases.append((p["point"], rec))
        if not cases:
            continue
        parts.append(f"<h2>Worst {suite} cases</h2><table>")
        for label, rec in cases[:24]:
            parts.append(
                f"<tr><td>{html.escape(label)}</td><td>{html.escape(rec.get('caption', ''))}</td>"
                f"<td><img src='data:image/png;base64,{rec['original_png']}'></td>"
                f"<td><img src='data:image/png;base64,{rec['reconstruction_png']}'></td></tr>"
            )
        parts.append("</table>")
    return parts


def _fd_sentence(label: str) -> str:
    if label == FD_COLUMN:
        return "FD is computed on ImageNet MobileNetV2 features (labelled FD-MobileNetV2; it is not rFID). "
    return f"FD is the Fréchet distance of deep features, labelled {label} (the metric's own name). "


def leaderboard(paths: list[str | Path]) -> str:
    """Merge several runs into one markdown leaderboard (rows sorted by curve, then bpp).

    Columns are the union of the runs' columns (runs with different FD networks get one FD
    column each, never one column mixing them)."""
    rows: list[dict[str, Any]] = []
    cols: list[tuple[str, tuple[str, ...], str]] = []
    for p in paths:
        res = load_results(p)
        cols += [c for c in columns(res) if c[0] not in {x[0] for x in cols}]
        for r in summary_rows(res):
            r["point"] = f"{r['point']} ({Path(p).name})"
            rows.append(r)
    rows.sort(key=lambda r: (r["family"], r["bpp"]))
    return "# vistok leaderboard\n\n" + _table_md(rows, cols) + "\n"
