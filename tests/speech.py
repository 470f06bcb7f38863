"""What the speech-model tests share: an API serving tiny checkpoints, speaking through it, and a
reference voice to clone."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile

from engine import Settings
from tests.conftest import Api, running_api

__all__ = ("finish", "reference_wav", "serving_models", "speak")


@contextlib.contextmanager
def serving_models(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Iterator[Api]:
    """The API with each ``{slug: checkpoint folder}`` installed as that model."""
    settings = Settings.load(home=tmp_path_factory.mktemp("speech-home") / "home", port=8000)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    for slug, folder in checkpoints.items():
        (settings.models_dir / slug).symlink_to(folder, target_is_directory=True)
    with running_api(settings) as api:
        yield api


def reference_wav(seconds: float = 3.5, rate: int = 16000) -> bytes:
    """A voiced-sounding tone: 220 Hz, its loudness swinging three times a second."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    soundfile.write(buffer, tone.astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def finish(api: Api, response, timeout: float = 180) -> tuple[dict[str, Any], np.ndarray, int]:
    """The finished job's status, and its audio as samples and rate."""
    assert response.status_code == 200, response.json()
    status = api.wait(response.json()["data"]["request_id"], timeout=timeout)
    assert status["status"] == "done", status
    download = api.client.get(status["result_url"].split("127.0.0.1:8000", 1)[1])
    assert download.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(download.content))
    return status, samples, rate


def speak(api: Api, body: dict[str, Any], **overrides: Any) -> tuple[dict[str, Any], np.ndarray, int]:
    return finish(api, api.post("txt2audio", json={**body, **overrides}))
