"""``drylocal pull``: checksums verified before first use, resumed downloads, damaged files refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from server.cli import main
from tests.fake_hub import COMMIT, fake_hub, git_blob_sha1

WEIGHTS_BYTES = 12 << 20
"""Over huggingface_hub's 10 MB download chunk: a partial file only ever keeps whole chunks."""
CUT_AT = 11 << 20


@pytest.fixture
def home(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("DRYLOCAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline
    return tmp_path / "home"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Stands in for BAAI/bge-m3: a small git file and an LFS weights file; pull never reads their content."""
    folder = tmp_path_factory.mktemp("bge-m3")
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "Transformer"}]')
    (folder / "model.safetensors").write_bytes(os.urandom(WEIGHTS_BYTES))
    return folder


def pulled_dir(home: Path) -> Path:
    return home / "models" / "BAAI--bge-m3"


def downloads(requests: list[str], filename: str) -> list[str]:
    return [r for r in requests if r.startswith("GET ") and r.split()[1].endswith(f"/resolve/{COMMIT}/{filename}")]


def test_pull_verifies_every_file_and_writes_a_manifest(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"Bge_M3_INT8: {re.escape(str(pulled_dir(home)))} \(2 files, 12.6 MB, verified at commit c0ffee0\)\n", out)
    manifest = json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())
    weights = (repo / "model.safetensors").read_bytes()
    assert manifest["commit"] == COMMIT
    assert manifest["files"]["model.safetensors"] == {"size": WEIGHTS_BYTES, "sha256": hashlib.sha256(weights).hexdigest()}
    modules = (repo / "modules.json").read_bytes()
    assert manifest["files"]["modules.json"] == {"size": len(modules), "git_sha1": git_blob_sha1(modules)}
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == weights
    assert not (home / "models" / ".partial").exists()


def test_a_second_pull_downloads_nothing_already_verified(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        main(["pull", "Bge_M3_INT8", "--endpoint", endpoint])
        requests.clear()
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    assert downloads(requests, "model.safetensors") == [] and downloads(requests, "modules.json") == []
    assert "already there, verified" in capsys.readouterr().out.splitlines()[-1]


def test_a_connection_cut_part_way_resumes_from_where_it_stopped(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}, cut_first={"model.safetensors": CUT_AT}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    first, resumed = downloads(requests, "model.safetensors")
    assert "Range" not in first and resumed.endswith(f"Range: bytes={10 << 20}-")
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def test_an_interrupted_pull_looks_uninstalled_and_the_next_pull_resumes_it(home, repo, capsys, monkeypatch):
    import huggingface_hub.constants

    partials = home / "models" / ".partial" / "BAAI--bge-m3"
    # The hub client gives up on a silent connection after 10 s and reconnects by itself; on a loaded
    # machine that raced the Ctrl-C below. The interruption is what this test is about.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 120)

    def press_ctrl_c() -> None:
        # Once the client has saved what it got, interrupt it as a user would.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(p.stat().st_size for p in partials.glob("*.incomplete")) < 10 << 20:
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Ctrl-C must reach this process as Python's KeyboardInterrupt, whatever handler an earlier test's
    # event loop left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with fake_hub({"BAAI/bge-m3": repo}, cut_first={"model.safetensors": CUT_AT}, while_cut=press_ctrl_c) as (endpoint, requests):
            assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 130
            assert "`drylocal pull Bge_M3_INT8` resumes" in capsys.readouterr().err
            main(["models"])
            assert re.search(r"Bge_M3_INT8 .* not installed", capsys.readouterr().out)
            requests.clear()
            assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert downloads(requests, "model.safetensors") == [
        f"GET /BAAI/bge-m3/resolve/{COMMIT}/model.safetensors Range: bytes={10 << 20}-"
    ]
    assert "resuming model.safetensors at 10485760 of 12582912 bytes" in capsys.readouterr().err
    manifest = json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())
    assert set(manifest["files"]) == {"modules.json", "model.safetensors"}
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


@pytest.mark.parametrize("damaged", ["model.safetensors", "modules.json"])
def test_a_file_that_does_not_match_its_checksum_is_refused_and_deleted(home, repo, capsys, damaged):
    with fake_hub({"BAAI/bge-m3": repo}, corrupt={damaged}) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 1
    err = capsys.readouterr().err
    assert f"{damaged} failed verification" in err
    assert not pulled_dir(home).exists()
    served = (repo / damaged).read_bytes()
    bad = bytes(b ^ 0xFF for b in served[:64]) + served[64:]
    left = [p for p in (home / "models").rglob("*") if p.is_file() and p.stat().st_size == len(bad)]
    assert all(p.read_bytes() != bad for p in left)
    main(["models"])
    assert re.search(r"Bge_M3_INT8 .* not installed", capsys.readouterr().out)


def test_a_refused_file_is_fetched_again_and_the_verified_ones_are_kept(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}, corrupt={"modules.json"}) as (endpoint, _):
        main(["pull", "Bge_M3_INT8", "--endpoint", endpoint])
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    # The weights, listed first, were verified before the damaged file was met and waited in the staging folder.
    assert downloads(requests, "model.safetensors") == [] and len(downloads(requests, "modules.json")) == 1
    assert (pulled_dir(home) / "modules.json").read_bytes() == (repo / "modules.json").read_bytes()


def test_files_placed_by_hand_are_verified_in_place_not_downloaded(home, repo, capsys):
    pulled_dir(home).mkdir(parents=True)
    (pulled_dir(home) / "model.safetensors").write_bytes((repo / "model.safetensors").read_bytes())
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    assert downloads(requests, "model.safetensors") == [] and len(downloads(requests, "modules.json")) == 1
    assert "model.safetensors" in json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())["files"]


# ---------------------------------------------------------------- only what the loader reads


def write_repo(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def installed(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {".drylocal-verified.json"}


def fetched(requests: list[str]) -> set[str]:
    return {r.split(f"/resolve/{COMMIT}/", 1)[1].split(" ")[0] for r in requests if r.startswith("GET ") and "/resolve/" in r}


def nothing_written(home: Path) -> bool:
    return not home.exists() or not any(p.is_file() for p in home.rglob("*"))


FLUX_INDEX = {
    "_class_name": "FluxPipeline",
    "_diffusers_version": "0.36.0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "image_encoder": [None, None],
}
FLUX_READ = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors.index.json",
    "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",  # the only non-variant weights this component has
}
FLUX_NOT_READ = {
    "flux1-schnell.safetensors",  # the publisher's single-file checkpoint
    "ae.safetensors",
    "README.md",
    "schnell_grid.jpeg",
    ".gitattributes",
    "text_encoder/pytorch_model.bin",  # safetensors is there
    "text_encoder/model.fp16.safetensors",  # a variant the loader does not ask for
    "text_encoder/flax_model.msgpack",
    "text_encoder/tf_model.h5",
    "text_encoder_2/model.fp16-00001-of-00001.safetensors",
    "text_encoder_2/model.safetensors.index.fp16.json",
    "transformer/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.fp16.bin",
    "vae/diffusion_flax_model.msgpack",
    "image_encoder/config.json",  # model_index.json names no class for it
    "image_encoder/model.safetensors",
    "onnx/vae_decoder/model.onnx",
}


def test_a_diffusers_repo_pulls_only_its_components_preferred_weights(home, tmp_path, capsys):
    files = {name: os.urandom(64) for name in FLUX_READ | FLUX_NOT_READ}
    files["model_index.json"] = json.dumps(FLUX_INDEX).encode()
    repo = write_repo(tmp_path / "flux", files)
    with fake_hub({"black-forest-labs/FLUX.1-schnell": repo}) as (endpoint, requests):
        assert main(["pull", "Flux1schnell", "--endpoint", endpoint]) == 0
    assert installed(home / "models" / "black-forest-labs--FLUX.1-schnell") == FLUX_READ
    assert fetched(requests) == FLUX_READ
    assert f": {len(FLUX_READ)} files, 1.5 kB; {len(FLUX_NOT_READ)} files (1.1 kB) left on the hub" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ltx2_repo(tmp_path_factory) -> Path:
    """A tiny real LTX-2 diffusers folder beside LTX-2's root single-file checkpoints and latent upsampler."""
    from tests.ltx2_checkpoint import build_tiny_ltx2

    folder = build_tiny_ltx2(tmp_path_factory.mktemp("ltx2") / "LTX-2")
    extras = {
        "ltx-2-19b-dev.safetensors": os.urandom(3 << 20),
        "ltx-2-19b-distilled-fp8.safetensors": os.urandom(2 << 20),
        "ltx-2-spatial-upscaler-x2-1.0.safetensors": os.urandom(1 << 20),
        "latent_upsampler/config.json": b"{}",
        "latent_upsampler/diffusion_pytorch_model.safetensors": os.urandom(1 << 20),
        "README.md": b"# LTX-2",
    }
    return write_repo(folder, extras)


LTX2_ROOT_CHECKPOINTS = {
    "ltx-2-19b-dev.safetensors",
    "ltx-2-19b-distilled-fp8.safetensors",
    "ltx-2-spatial-upscaler-x2-1.0.safetensors",
}


def test_an_ltx2_repo_leaves_the_root_checkpoints_on_the_hub_and_loads(home, ltx2_repo, capsys):
    from model_registry.catalog import builtin_specs
    from model_registry.loaders.diffusers import load

    spec = next(spec for spec in builtin_specs() if spec.slug == "Ltx2_19B_Dist_FP8")
    repo_id = spec.source.repo_id
    with fake_hub({repo_id: ltx2_repo}) as (endpoint, requests):
        assert main(["pull", "Ltx2_19B_Dist_FP8", "--endpoint", endpoint]) == 0
    pulled = home / "models" / repo_id.replace("/", "--")
    assert not LTX2_ROOT_CHECKPOINTS & (fetched(requests) | installed(pulled))
    assert not any(name.startswith("latent_upsampler/") for name in installed(pulled))
    assert "6 files (7.3 MB) left on the hub" in capsys.readouterr().err
    loaded = load(spec, pulled, "cpu")
    assert loaded.extras["pipeline_class"] == "LTX2Pipeline"


def test_the_files_and_the_total_are_printed_before_the_download(home, repo, capsys):
    printed_by_then: list[str] = []
    # The hook runs while model.safetensors, the first file fetched, is on its way.
    with fake_hub(
        {"BAAI/bge-m3": repo}, cut_first={"model.safetensors": CUT_AT}, while_cut=lambda: printed_by_then.append(capsys.readouterr().err)
    ) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    assert re.search(r"12\.6 MB  model\.safetensors\n +\d+ B  modules\.json\n", printed_by_then[0])
    assert "Bge_M3_INT8: 12.6 MB to download" in printed_by_then[0]


def test_a_disk_without_room_is_refused_before_anything_is_written(home, repo, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 40, (1 << 40) - (5 << 20), 5 << 20))
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 1
    assert "needs 12.6 MB" in capsys.readouterr().err
    assert fetched(requests) == set()
    assert nothing_written(home)


def test_a_dry_run_prints_the_plan_and_writes_nothing(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--dry-run", "--endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "Bge_M3_INT8: 12.6 MB to download" in out
    assert fetched(requests) == set()
    assert nothing_written(home)


# Listings as the hub shows them (trimmed): the files the loader reads, then "|" and the ones it does not.
LAYOUT_CASES = [
    pytest.param(
        "kokoro",
        "config.json kokoro-v1_0.pth voices/af_heart.pt voices/am_adam.pt | README.md eval/chart.jpeg samples/HEARME.wav",
        id="kokoro",
    ),
    pytest.param(
        "chatterbox",
        "Cangjie5_TC.json conds.pt grapheme_mtl_merged_expanded_v1.json s3gen.safetensors t3_mtl23ls_v2.safetensors"
        " ve.safetensors | mtl_tokenizer.json tokenizer.json s3gen.pt t3_23lang.safetensors t3_cfg.safetensors ve.pt",
        id="chatterbox",
    ),
    pytest.param(
        "faster-whisper",
        "config.json model.bin preprocessor_config.json tokenizer.json vocabulary.json | README.md",
        id="faster-whisper-ctranslate2",
    ),
    pytest.param(
        "faster-whisper",
        "added_tokens.json config.json generation_config.json merges.txt model.safetensors normalizer.json"
        " preprocessor_config.json special_tokens_map.json tokenizer.json tokenizer_config.json vocab.json"
        " | flax_model.msgpack model.fp32-00001-of-00002.safetensors model.fp32-00002-of-00002.safetensors"
        " model.safetensors.index.fp32.json pytorch_model.bin pytorch_model.fp32-00001-of-00002.bin README.md",
        id="faster-whisper-transformers",
    ),
    pytest.param(
        "sentence-transformers",
        "1_Pooling/config.json config.json config_sentence_transformers.json model.safetensors modules.json"
        " sentence_bert_config.json special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt"
        " | onnx/model.onnx openvino/openvino_model.bin pytorch_model.bin rust_model.ot tf_model.h5 train_script.py",
        id="sentence-transformers",
    ),
    pytest.param(
        "qwen3-tts",
        "config.json generation_config.json merges.txt model.safetensors preprocessor_config.json"
        " speech_tokenizer/config.json speech_tokenizer/model.safetensors tokenizer_config.json vocab.json"
        " | README.md .gitattributes",
        id="qwen3-tts",
    ),
    pytest.param(
        "transformers-vlm",
        "chat_template.jinja config.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors"
        " model.safetensors.index.json preprocessor_config.json tokenizer.json | README.md",
        id="transformers-vlm",
    ),
]


@pytest.mark.parametrize(("backend", "listing"), LAYOUT_CASES)
def test_each_backend_pulls_only_what_its_loader_reads(backend, listing):
    from model_registry.pull_layouts import LAYOUTS, select_files

    read, not_read = (set(part.split()) for part in listing.split("|"))
    assert select_files(LAYOUTS[backend], read | not_read, read_json=lambda path: pytest.fail(path)) == read


def test_a_source_that_names_a_file_pulls_that_file_alone():
    from model_registry.pull_layouts import LAYOUTS, select_files

    listing = {"model.safetensors", "model.pth", "pytorch_model.bin", "onnx/model.onnx", "config.json", "briarmbg.py"}
    assert select_files(LAYOUTS["briarmbg"], listing, read_json=dict, filename="model.safetensors") == {"model.safetensors"}


def test_every_catalog_model_on_the_hub_has_a_pull_layout():
    from model_registry.catalog import builtin_specs
    from model_registry.pull import sources_to_pull
    from model_registry.pull_layouts import LAYOUTS

    assert {s.backend for s in builtin_specs() if sources_to_pull(s)} <= set(LAYOUTS)
