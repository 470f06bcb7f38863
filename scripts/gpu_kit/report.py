"""The check's report: one JSON document, and the table printed from it.

Every family asked for appears, with PASS, FAIL or SKIP and why; a family whose process died or ran past its
timeout is a FAIL with that reason. The figures the issue asks for sit in each family's entry: the placement,
weights after load against the expected figure, peak against what the worker reserves, free memory after the
unload, time per unit of work, NaN/Inf, and for three families the API against the raw call.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ("failed", "table", "summary")


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _mark(ok: bool | None) -> str:
    return {True: "ok", False: "OVER", None: "n/a"}[ok]


def _placement(entry: dict) -> str:
    placement = entry.get("placement") or {}
    kind = placement.get("kind", "-").replace("_", " ")
    return kind + (" + VAE tiles" if placement.get("vae_tiling") else "")


def _weights(entry: dict) -> str:
    w = entry.get("weights")
    if not w:
        return "-"
    ratio = f"{w['ratio']:.2f}x" if w.get("ratio") is not None else "-"
    return f"{_size(w['measured'])} / {_size(w['expected'])} {ratio} {'ok' if w.get('ok') else 'OFF'}"


def _peak(entry: dict) -> str:
    p = entry.get("peak")
    if not p:
        return "-"
    if p.get("ok") is None:  # the CPU: the process's resident set, libraries and all
        return f"RSS {_size(p.get('bytes'))}, n/a"
    return f"{_size(p.get('bytes'))} / {_size(p.get('declared'))} {_mark(p.get('ok'))}"


def _unload(entry: dict) -> str:
    u = entry.get("unload")
    if not u:
        return "-"
    if u.get("ok") is None:
        return "n/a"
    return f"{_size(max(0, u['missing']))} kept {'ok' if u['ok'] else 'KEPT'}"


def _finite(entry: dict) -> str:
    f = entry.get("finite")
    if not f:
        return "-"
    return "ok" if f.get("ok") else "NaN/Inf in " + ", ".join(f.get("bad") or ["the result"])


def _rows(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def table(report: dict[str, Any]) -> str:
    entries = report["families"]
    lines = [f"drylocal GPU check ({report['mode']}) on {report.get('device') or '?'}"
             f"{', budget ' + _size(report['budget_bytes']) if report.get('budget_bytes') else ''}", ""]
    lines += _rows(
        ["family", "status", "placement", "weights measured / expected", "peak / reserved", "after unload", "finite", "load"],
        ([e["family"], e["status"].upper(), _placement(e), _weights(e), _peak(e), _unload(e), _finite(e),
          f"{e['load_seconds']:.1f} s" if e.get("load_seconds") is not None else "-"] for e in entries),
    )
    jobs = [[e["family"], j["label"], str(len(j.get("seconds", []))),
             f"{j['mean']:.3f} s" if "mean" in j else "-",
             f"{j['per_unit']:.4f} s/{j['per']}" if "per_unit" in j else "-",
             ("extrapolated" if j.get("extrapolated") else "") + (("ERROR: " + j["error"][:120]) if "error" in j else "")]
            for e in entries for j in e.get("jobs", [])]
    if jobs:
        lines += ["", *_rows(["family", "job", "runs", "mean", "per unit", ""], jobs)]
    compared = [e for e in entries if e.get("api_vs_direct")]
    if compared:
        rows = []
        for e in compared:
            c = e["api_vs_direct"]
            ratio = f"{c['ratio']:.3f}x" if c.get("ratio") is not None else "-"
            goal = f"goal <= {c['goal']}x {'met' if c.get('goal_met') else 'MISSED'}" if c.get("ratio") is not None else ""
            rtf = f"RTF {c['api_rtf']:.4f} (direct {c['direct_rtf']:.4f})" if c.get("api_rtf") is not None else ""
            rows.append([e["family"], c["job"], f"{c['api_seconds']:.3f} s" if c.get("api_seconds") else "-",
                         f"{c['direct_seconds']:.3f} s", ratio, goal, rtf])
        lines += ["", *_rows(["family", "through the API vs direct", "API", "direct", "ratio", "", ""], rows)]
    problems = [e for e in entries if e["status"] != "pass"]
    if problems:
        lines += [""] + [f"{e['family']}: {e['status'].upper()}: {e.get('error') or _why(e)}" for e in problems]
    lines += ["", summary(report)]
    return "\n".join(lines)


def _why(entry: dict) -> str:
    reasons = [f"{name} {entry[name]}" for name in ("weights", "peak", "unload", "finite")
               if isinstance(entry.get(name), dict) and entry[name].get("ok") is False]
    reasons += [f"job {j['label']!r}: {j['error']}" for j in entry.get("jobs", []) if "error" in j]
    return "; ".join(reasons) or entry.get("reason", "no figures")


def summary(report: dict[str, Any]) -> str:
    entries = report["families"]
    counts = {s: sum(e["status"] == s for e in entries) for s in ("pass", "fail", "skip")}
    return (f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped of {len(entries)} families "
            f"in {report['wall_seconds']:.0f} s")


def failed(report: dict[str, Any]) -> bool:
    return any(e["status"] == "fail" for e in report["families"])
