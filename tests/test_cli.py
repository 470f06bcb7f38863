"""The drylocal command: keys, accounts, models."""

import re

import pytest

from engine import Settings
from engine.accounts import AccountStore
from engine.database import Database
from server.cli import _ensure_owner, main


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
    _ensure_owner(settings)
    first = capsys.readouterr().out
    assert re.search(r"^dl_\S+$", first, re.M)
    _ensure_owner(settings)
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
    assert capsys.readouterr().out.strip() == f"Bge_M3_INT8: {pulled}"
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
