"""``drylocal bench`` in-process on the embedded defaults with a short trace: every field of its report."""

from __future__ import annotations

import json

from server.cli import main
from tests.test_ocr import rendered

PER_MODEL = {
    "task", "model", "jobs", "done", "failed", "cold_load_seconds", "first_job_seconds", "latency_p50_seconds",
    "latency_p95_seconds", "throughput_jobs_per_second", "busy_seconds", "service_seconds_per_job", "peak_memory_bytes",
    "dryapi_price_per_job_usd", "energy_cost_per_job_usd",
}


def test_short_bench_reports_every_field_per_model(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["bench", "--short", "--home", str(tmp_path / "home"), "--out", str(out), "--power-watts", "65"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"embeddings", "speech", "ocr", "transcription"}
    for name, values in report["models"].items():
        assert set(values) == PER_MODEL, name
        assert values["done"] == values["jobs"] > 0 and values["failed"] == 0
        assert values["latency_p95_seconds"] >= values["latency_p50_seconds"] > 0
        assert values["cold_load_seconds"] > 0 and values["throughput_jobs_per_second"] >= 0
        assert values["dryapi_price_per_job_usd"] is not None and values["energy_cost_per_job_usd"] >= 0
        assert len(report["latencies"][name]) == values["done"]
        # Each job runs within its own latency, so the mean run is at most the mean latency (not the p95:
        # a short bench under load has too few jobs for that); the margin covers server/client clocks.
        latencies = report["latencies"][name]
        assert 0 < values["service_seconds_per_job"] <= sum(latencies) / len(latencies) + 0.05
        assert 0 < values["peak_memory_bytes"] <= report["peak_memory_bytes"]
    assert report["peak_memory_bytes"] > 0 and report["peak_process_rss_bytes"] > 0
    assert report["model_loads"] >= 3 and report["model_evictions"] >= 0  # Piper loaded before, making the speech
    assert report["memory_over_time"] and report["settings"]["power_watts"] == 65
    assert report["process_rss_over_time"] and all(rss > 0 for _, rss in report["process_rss_over_time"])
    for plot in ("latency.png", "memory.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MiniLM_L6_v2" in printed and "p95 s" in printed
    # The dashboard of that data folder shows this report.
    assert json.loads((tmp_path / "home" / "bench" / "last-report.json").read_text())["models"] == report["models"]


def test_trace_file_sends_uploads_as_multipart(tmp_path):
    (tmp_path / "scan.png").write_bytes(rendered(["TOTAL 318.50"]))
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps([
        {"name": "ocr", "task": "img2txt", "model": "PP_OCRv4", "files": {"image": "scan.png"}, "count": 2, "rate_per_s": 4},
    ]))
    out = tmp_path / "out"
    status = main(["bench", "--trace", str(trace), "--home", str(tmp_path / "home"), "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert status == 0 and report["models"]["ocr"]["done"] == 2
    assert report["models"]["ocr"]["dryapi_price_per_job_usd"] is not None
