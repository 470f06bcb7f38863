"""Shared fixtures: an app on a temp data directory, API keys, tiny checkpoints built once per session."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Inference stays in the server's process in tests (they patch pipelines and inject loaders there, and
# the servers they start keep testing the supervisor's restart); tests/test_isolated_executor.py runs
# the inference process itself.
os.environ.setdefault("DRYLOCAL_ISOLATE_EXECUTOR", "0")
# The servers tests start in fresh homes would each convert the packaged SmolLM2 (~40 s); the booster
# tests convert it once themselves.
os.environ.setdefault("DRYLOCAL_EMBEDDED_SKIP", '["SmolLM2_135M_Instruct"]')

from litestar.testing import TestClient  # noqa: E402

from engine import Engine, Settings  # noqa: E402
from server.app import create_app  # noqa: E402
from server.harness import ServerThread  # noqa: E402
from tests.checkpoints import build_tiny_xlmr_sentence_transformer, place_in_hf_cache  # noqa: E402

def _gpu_tests_skipped_because() -> str | None:
    """Why tests marked ``gpu`` cannot run here, or None when they can: they run only when asked
    (DRYLOCAL_TEST_GPU=1) and CUDA is there. torch is imported only when asked."""
    if os.environ.get("DRYLOCAL_TEST_GPU") != "1":
        return "needs a CUDA device: set DRYLOCAL_TEST_GPU=1 on a machine with one"
    import torch

    if not torch.cuda.is_available():
        return "DRYLOCAL_TEST_GPU=1, but torch sees no CUDA device"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("gpu")]
    reason = _gpu_tests_skipped_because() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))


API = "/api/v1/client"
PUBLIC_STATUSES = ("pending", "processing", "done", "error")


@dataclass
class Api:
    client: TestClient
    key: str

    @property
    def engine(self) -> Engine:
        return self.client.app.state.engine

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}

    def post(self, route: str, **kwargs: Any):
        return self.client.post(f"{API}/{route}", headers=self.headers, **kwargs)

    def get(self, route: str, **kwargs: Any):
        return self.client.get(f"{API}/{route}", headers=self.headers, **kwargs)

    def new_key(self, name: str, tier: str = "unlimited", balance: float = 0.0) -> str:
        account = self.engine.accounts.create_account(name, tier=tier, balance=balance)
        return self.engine.accounts.create_key(account, name)

    def wait(self, request_id: str, timeout: float = 60.0, key: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        deadline = time.time() + timeout
        delay = 0.05
        while time.time() < deadline:
            data = self.client.get(f"{API}/request-status/{request_id}", headers=headers).json()["data"]
            # The real clients validate against exactly these four (in_progress is a WebSocket status).
            assert data["status"] in PUBLIC_STATUSES, data
            if data["status"] in ("done", "error"):
                return data
            # Backing off as the real clients do keeps a Basic key within its 50 status polls a minute
            # however slow a job runs on a busy machine.
            time.sleep(delay)
            delay = min(1.0, delay * 1.25)
        raise AssertionError(f"job {request_id} did not finish in {timeout} s: {data}")


def removed_background(api: Api, png: bytes, model: str, timeout: float = 120):
    """One img-rmbg job through the API: the PNG it gave back, opened."""
    import io

    from PIL import Image

    response = api.post("img-rmbg", files={"image": ("in.png", png, "image/png")}, data={"model": model})
    assert response.status_code == 200, response.json()
    status = api.wait(response.json()["data"]["request_id"], timeout=timeout)
    assert status["status"] == "done", status
    result = api.client.get(status["result_url"].split("127.0.0.1:8000", 1)[1])
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(result.content))


def first_messages(response) -> list[str]:
    """The messages of the first field in a 422's ``errors`` object."""
    return next(iter(response.json()["errors"].values()))


def first_message(response) -> str:
    return first_messages(response)[0]


def eventually(condition, timeout: float = 10.0) -> None:
    """Events reach subscribers on the engine's loop a moment after the status is persisted."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@contextlib.contextmanager
def running_api(settings: Settings, tier: str = "unlimited", balance: float = 0.0, **engine_options: Any) -> Iterator[Api]:
    with TestClient(create_app(settings, **engine_options), base_url="http://localhost") as client:
        engine: Engine = client.app.state.engine
        account = engine.accounts.create_account("tester", tier=tier, balance=balance)
        yield Api(client, engine.accounts.create_key(account, "tester"))


@contextlib.contextmanager
def live_server(settings: Settings, **engine_options: Any) -> Iterator[ServerThread]:
    """drylocal served by uvicorn on a free 127.0.0.1 port, for clients that need a real socket: ``.url``,
    ``.port``, ``.app``, ``.engine`` and ``.new_key(name, tier, balance)`` (the key and its account)."""
    with ServerThread(settings, **engine_options) as server:
        yield server


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: the golden files were computed so (summation order, and so the
    last bits, can depend on the thread count), and tiny networks run quicker so on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path / "home", port=8000)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with running_api(settings) as api:
        yield api


@pytest.fixture(scope="session")
def tiny_bge_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding a tiny random XLM-R sentence-transformer under BAAI/bge-m3."""
    root = tmp_path_factory.mktemp("tiny-bge")
    folder = build_tiny_xlmr_sentence_transformer(root / "bge-m3")
    hub = root / "hub"
    place_in_hf_cache(folder, hub, "BAAI/bge-m3")
    return hub


@pytest.fixture
def with_tiny_bge(tiny_bge_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_bge_hub))
    return tiny_bge_hub
