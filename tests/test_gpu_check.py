"""scripts/gpu_check.py, the GPU verification kit: its tiny run on the CPU (what keeps the script from rotting),
its verdicts on planted failures, and its full-size folders; the full-size run itself needs a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gpu_kit.families import FAMILIES, family_named

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
DIRECT = {"flux1-schnell", "whisper-large-v3", "bge-m3"}


def gpu_check(tmp: Path, *args: str, timeout: float = 280) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp / "work"), "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    return gpu_check(tmp_path_factory.mktemp("gpu-check"), "--tiny", "--all")


def test_tiny_run_passes_every_family(tiny_run):
    done, report = tiny_run
    entries = {e["family"]: e for e in report["families"]}
    assert list(entries) == [f.name for f in FAMILIES]
    failures = {name: e.get("error") or e for name, e in entries.items() if e["status"] != "pass"}
    assert not failures and done.returncode == 0, failures


def test_tiny_report_holds_the_figures_of_each_family(tiny_run):
    _, report = tiny_run
    for entry in report["families"]:
        assert entry["placement"]["kind"] == "resident", entry["family"]
        weights = entry["weights"]
        assert weights["ok"] and 0.85 <= weights["measured"] / weights["expected"] <= 1.15, entry["family"]
        # Whisper runs on CTranslate2: its transcript is what is checked.
        assert entry["finite"]["ok"] and (entry["finite"]["calls"] > 0 or entry["slug"] == "WhisperLargeV3"), entry["family"]
        assert entry["load_seconds"] > 0 and "peak" in entry and "unload" in entry
        assert entry["jobs"] and all(job["per_unit"] > 0 for job in entry["jobs"]), entry["family"]


def test_tiny_report_compares_the_api_with_the_raw_call(tiny_run):
    _, report = tiny_run
    compared = {e["family"]: e["api_vs_direct"] for e in report["families"] if e.get("api_vs_direct")}
    assert set(compared) == DIRECT
    assert all(c["ratio"] > 0 and c["direct_seconds"] > 0 for c in compared.values())
    assert compared["whisper-large-v3"]["api_rtf"] > 0


def test_printed_table_names_every_family_with_its_verdict(tiny_run):
    done, _ = tiny_run
    lines = done.stdout.splitlines()
    for family in FAMILIES:
        assert any(line.startswith(family.name) and " PASS " in line for line in lines), family.name
    assert f"{len(FAMILIES)} passed, 0 failed" in done.stdout


def test_planted_failures_fail_the_check_and_spare_the_others(tmp_path):
    done, report = gpu_check(tmp_path, "--tiny", "--families", "realesrgan,ben2,bge-m3",
                             "--plant", "realesrgan:raise,ben2:nan")
    entries = {e["family"]: e for e in report["families"]}
    assert done.returncode == 1
    assert entries["realesrgan"]["status"] == "fail" and "planted failure" in entries["realesrgan"]["error"]
    assert entries["ben2"]["status"] == "fail" and entries["ben2"]["finite"]["ok"] is False
    assert entries["bge-m3"]["status"] == "pass"
    assert "realesrgan: FAIL" in done.stdout and "ben2: FAIL" in done.stdout


def test_full_size_folders_stand_for_the_catalog_weights_in_kilobytes(tmp_path):
    """Every core family's full-size folder builds from the committed configs; a bf16 family's placeholders stand
    for exactly its catalog figure, and the whole set takes a few megabytes of disk."""
    from model_registry.catalog import builtin_specs
    from scripts.gpu_kit.folders import stored_weight_bytes

    specs = {spec.slug: spec for spec in builtin_specs()}
    for name in ("flux1-schnell", "flux2-klein-4b", "qwen-image-edit-nf4", "whisper-large-v3"):
        family = family_named(name)
        prepared = family.folder.prepare(tmp_path / family.slug, full=True)
        stands_for = stored_weight_bytes(prepared.path, 2)
        spec = specs[family.slug]
        if spec.quantization == "bf16" or spec.backend == "faster-whisper":
            assert abs(stands_for - sum(spec.memory.values())) < 10_000, name  # non-persistent buffers aside
        else:  # the cut transformer: 4 of 60 blocks, scaled back by its computed ratio
            assert prepared.cut_layers == {"transformer": (4, 60)}
            assert 14 < prepared.scale["transformer"] < 15
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < 20_000_000


@pytest.mark.gpu
def test_full_size_families_pass_on_the_gpu(tmp_path):
    done, report = gpu_check(tmp_path, "--families", "realesrgan,bge-m3,flux1-schnell", timeout=900)
    assert done.returncode == 0, done.stdout[-4000:]
    assert all(e["status"] == "pass" for e in report["families"])
