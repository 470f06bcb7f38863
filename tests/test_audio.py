"""Speech end to end, offline: the embedded Piper voice speaks, the embedded Whisper base transcribes.

Also: file, video and URL transcription (yt-dlp against a local HTTP server), timestamps, progress,
and the 422s of each route.
"""

from __future__ import annotations

import functools
import json
import http.server
import io
import re
import threading
from pathlib import Path

import pytest
import soundfile

from model_registry.embedded import provision_embedded
from tests.conftest import eventually, first_message, running_api
from tests.media_files import SENTENCE, mp4_with_audio, piper_speech, wav_bytes

WORDS = ("quick", "brown", "fox", "lazy", "dog")


@pytest.fixture(scope="session")
def embedded_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedded-models")
    assert "WhisperBase" in provision_embedded(root, only=("WhisperBase",))
    return root


@pytest.fixture(scope="session")
def speech() -> bytes:
    samples, rate = piper_speech()
    return wav_bytes(samples, rate)


@pytest.fixture(scope="session")
def speech_video() -> bytes:
    samples, rate = piper_speech()
    return mp4_with_audio(samples, rate, len(samples) / rate)


@pytest.fixture
def api_audio(settings, embedded_models):
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "WhisperBase").symlink_to(embedded_models / "WhisperBase")
    # The test media server is on this machine, which URL jobs may reach only when the owner says so.
    with running_api(settings.model_copy(update={"fetch_allowed_hosts": ("127.0.0.1",)})) as api:
        yield api


@pytest.fixture
def media_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``: where yt-dlp fetches URL jobs from."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run(api, route, **kwargs) -> dict:
    response = api.post(route, **kwargs)
    assert response.status_code == 200, response.json()
    return api.wait(response.json()["data"]["request_id"], timeout=120)


def fetch(api, url: str) -> bytes:
    response = api.client.get(url.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 200
    return response.content


def mentions_the_sentence(text: str) -> bool:
    return sum(word in text.lower() for word in WORDS) >= 4


# ---------------------------------------------------------------- text to speech
@pytest.mark.parametrize("fmt", ["flac", "wav", "mp3", "ogg"])
def test_piper_speaks_in_each_format(api_audio, fmt):
    status = run(api_audio, "txt2audio", json={"text": SENTENCE, "model": "Piper_en_US_Joe", "format": fmt, "lang": "en-us", "voice": "joe"})
    assert status["status"] == "done", status
    samples, rate = soundfile.read(io.BytesIO(fetch(api_audio, status["result_url"])))
    assert rate == 22050 and 1.5 < len(samples) / rate < 6.0


def test_speed_and_sample_rate_are_honoured(api_audio):
    body = {"text": SENTENCE, "model": "Piper_en_US_Joe", "format": "wav", "lang": "en-us", "voice": "joe"}
    normal = run(api_audio, "txt2audio", json=body)
    fast = run(api_audio, "txt2audio", json={**body, "speed": 2, "sample_rate": 16000})
    a, rate_a = soundfile.read(io.BytesIO(fetch(api_audio, normal["result_url"])))
    b, rate_b = soundfile.read(io.BytesIO(fetch(api_audio, fast["result_url"])))
    assert rate_b == 16000
    assert len(b) / rate_b < 0.75 * len(a) / rate_a


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"text": "hi"}, "text"),
        ({"voice": "nobody"}, "voice"),
        ({"mode": "voice_clone"}, "mode"),
        ({"mode": "whisper"}, "mode"),
        ({"speed": 3}, "speed"),
        ({"sample_rate": 8000}, "sample_rate"),
        ({"lang": "xx"}, "lang"),
    ],
)
def test_bad_speech_requests_are_422(api_audio, extra, field):
    body = {"text": SENTENCE, "model": "Piper_en_US_Joe", "format": "wav", "lang": "en-us", "voice": "joe", **extra}
    response = api_audio.post("txt2audio", json=body)
    assert response.status_code == 422
    assert field in response.json()["errors"]


# ---------------------------------------------------------------- transcription
def test_piper_speech_is_transcribed_back(api_audio, speech):
    status = run(
        api_audio,
        "audiofile2txt",
        files={"audio": ("speech.wav", speech, "audio/wav")},
        data={"include_ts": "0", "model": "WhisperBase", "return_result_in_response": "1"},
    )
    assert status["status"] == "done", status
    assert mentions_the_sentence(status["result"])
    assert fetch(api_audio, status["result_url"]).decode().strip() == status["result"]
    job = api_audio.engine.jobs.get(status_id(status))
    assert job.meta["language"] == "en" and job.meta["segments"] >= 1


def status_id(status: dict) -> str:
    return status["result_url"].split("/results/", 1)[1].split("/", 1)[0]


def test_timestamps_and_progress(api_audio, speech):
    seen = []

    async def record(event):
        seen.append((event.status, event.progress))

    api_audio.engine.events.subscribe(record)
    status = run(api_audio, "audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data={"include_ts": "true", "model": "WhisperBase"})
    text = fetch(api_audio, status["result_url"]).decode()
    first = text.splitlines()[0]
    assert first.startswith("[00:00:0") and " --> " in first and mentions_the_sentence(text)
    eventually(lambda: seen and seen[-1][0] == "done")
    progress = [p for s, p in seen if s == "in_progress"]
    assert progress and progress[0] == 50.0 and progress == sorted(progress)


def test_video_file_is_transcribed(api_audio, speech_video):
    status = run(api_audio, "videofile2txt", files={"video": ("clip.mp4", speech_video, "video/mp4")}, data={"include_ts": "0", "model": "WhisperBase", "return_result_in_response": "1"})
    assert status["status"] == "done", status
    assert mentions_the_sentence(status["result"])


def test_video_without_audio_is_422(api_audio):
    silent = mp4_with_audio(None, 22050, 1.0)
    response = api_audio.post("videofile2txt", files={"video": ("clip.mp4", silent, "video/mp4")}, data={"include_ts": "0", "model": "WhisperBase"})
    assert response.status_code == 422
    assert "video" in response.json()["errors"] and "no audio track" in first_message(response)


def test_video_url_is_downloaded_then_transcribed(api_audio, media_server, speech_video):
    root, base = media_server
    (root / "clip.mp4").write_bytes(speech_video)
    seen = []

    async def record(event):
        seen.append((event.status, event.progress))

    api_audio.engine.events.subscribe(record)
    status = run(api_audio, "vid2txt", json={"video_url": f"{base}/clip.mp4", "include_ts": False, "model": "WhisperBase", "return_result_in_response": True})
    assert status["status"] == "done", status
    assert mentions_the_sentence(status["result"])
    eventually(lambda: seen and seen[-1][0] == "done")
    statuses = [s for s, _ in seen]
    assert statuses[0] == "processing" and statuses.count("processing") == 1
    assert [p for s, p in seen if s == "in_progress"][0] == 50.0


def test_url_price_reads_the_duration(api_audio, media_server, speech_video):
    root, base = media_server
    (root / "clip.mp4").write_bytes(speech_video)
    response = api_audio.post("vid2txt/price-calculation", json={"video_url": f"{base}/clip.mp4", "include_ts": False, "model": "WhisperBase"})
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["price"] == pytest.approx(0.002032 + 0.018968 * 2.9 / 3600, abs=2e-6)


def test_unreachable_url_is_422(api_audio, media_server):
    _, base = media_server
    response = api_audio.post("vid2txt", json={"video_url": f"{base}/missing.mp4", "include_ts": False, "model": "WhisperBase"})
    assert response.status_code == 422 and "video_url" in response.json()["errors"]


def redirecting_server(target: str):
    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        do_GET = do_HEAD

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.2:9/a.mp4", "http://localhost:9/a.mp4", "http://169.254.169.254/latest/meta-data/",
     "http://10.0.0.1/a.mp4", "http://192.168.1.1/a.mp4", "http://[::1]:9/a.mp4", "http://0.0.0.0:9/a.mp4"],
)
def test_urls_to_internal_addresses_are_refused(api_audio, url):
    response = api_audio.post("vid2txt", json={"video_url": url, "model": "WhisperBase"})
    assert response.status_code == 422, response.json()
    assert "private, loopback or link-local" in json.dumps(response.json())


def test_redirects_to_internal_addresses_are_refused_before_they_are_followed(api_audio, media_server, speech_video):
    root, base = media_server
    (root / "talk.mp4").write_bytes(speech_video)
    hidden = base.replace("127.0.0.1", "127.0.0.2") + "/talk.mp4"  # loopback, but not an allowed host
    server = redirecting_server(hidden)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/watch"
        response = api_audio.post("vid2txt", json={"video_url": url, "model": "WhisperBase"})
        assert response.status_code == 422
        assert "private, loopback or link-local" in json.dumps(response.json())
        # The same redirect to an allowed host is followed and transcribed.
        server.shutdown()
        server.server_close()
        server = redirecting_server(f"{base}/talk.mp4")
        url = f"http://127.0.0.1:{server.server_address[1]}/watch"
        assert run(api_audio, "vid2txt", json={"video_url": url, "model": "WhisperBase"})["status"] == "done"
    finally:
        server.shutdown()
        server.server_close()


def test_file_urls_are_refused(api_audio, tmp_path, speech):
    (tmp_path / "speech.wav").write_bytes(speech)
    response = api_audio.post("vid2txt", json={"video_url": f"file://{tmp_path / 'speech.wav'}", "include_ts": False, "model": "WhisperBase"})
    assert response.status_code == 422 and "video_url" in response.json()["errors"]


def test_live_space_is_422(api_audio, media_server):
    root, base = media_server
    # An HLS playlist without #EXT-X-ENDLIST is a stream still being recorded: yt-dlp reports it live.
    (root / "seg0.ts").write_bytes(b"\x47" + b"\x00" * 187)
    (root / "live.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:6.0,\nseg0.ts\n")
    response = api_audio.post("aud2txt", json={"audio_url": f"{base}/live.m3u8", "include_ts": False, "model": "WhisperBase"})
    assert response.status_code == 422, response.json()
    ((field, (message,)),) = response.json()["errors"].items()
    assert field == "audio_url" and "live" in message


def test_whisper_large_without_weights_names_how_to_get_them(api_audio, speech):
    response = api_audio.post("audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data={"include_ts": "0", "model": "WhisperLargeV3"})
    assert response.status_code == 422
    message = first_message(response)
    assert "WhisperLargeV3" in message and "drylocal pull WhisperLargeV3" in message


def test_default_transcription_model_is_the_embedded_one(api_audio, speech):
    status = run(api_audio, "audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data={"include_ts": "0", "return_result_in_response": "1"})
    assert status["status"] == "done" and mentions_the_sentence(status["result"])


# ---------------------------------------------------------------- WhisperLargeV3's loader
@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    from tests.whisper_checkpoint import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "whisper")


def test_transformers_whisper_is_converted_once_and_transcribes(api_audio, tiny_whisper, speech, settings):
    import shutil

    shutil.copytree(tiny_whisper, settings.models_dir / "WhisperLargeV3")
    form = {"include_ts": "1", "model": "WhisperLargeV3", "return_result_in_response": "1"}
    status = run(api_audio, "audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data=form)
    assert status["status"] == "done", status
    converted = settings.models_dir / ".converted" / "WhisperLargeV3" / "ct2-float16"
    assert (converted / "model.bin").is_file() and (converted / "tokenizer.json").is_file()
    # Random weights say random words (sampled, once greedy decoding gives up), but some, in the
    # timestamped layout.
    meta = api_audio.engine.jobs.get(status_id(status)).meta
    stamp_line = re.compile(r"\[\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\] ")
    stamped = [line for line in status["result"].splitlines() if stamp_line.match(line)]
    assert stamp_line.match(status["result"]) and len(stamped) == meta["segments"] >= 1, status["result"]
    assert any(segment["text"] for segment in meta["timestamps"]), meta
    stamp = (converted / "model.bin").stat().st_mtime_ns
    api_audio.engine.worker._resident.clear()  # force a second load: it must reuse the conversion
    again = run(api_audio, "audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data=form)
    assert again["status"] == "done" and (converted / "model.bin").stat().st_mtime_ns == stamp
    # What random weights can show: the converted model hears the audio. Language detection is one
    # deterministic forward pass: the same audio gives the same probabilities, other audio others.
    samples, rate = soundfile.read(io.BytesIO(speech), dtype="float32")
    backwards = wav_bytes(samples[::-1].copy(), rate)
    other = run(api_audio, "audiofile2txt", files={"audio": ("backwards.wav", backwards, "audio/wav")}, data=form)
    detected = [api_audio.engine.jobs.get(status_id(s)).meta for s in (status, again, other)]
    assert detected[0]["language_probability"] == detected[1]["language_probability"]
    assert detected[0]["language_probability"] != detected[2]["language_probability"]


def test_broken_checkpoint_fails_the_job_with_the_reason(api_audio, speech, settings):
    broken = settings.models_dir / "WhisperLargeV3"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "whisper"}')
    status = run(api_audio, "audiofile2txt", files={"audio": ("speech.wav", speech, "audio/wav")}, data={"include_ts": "0", "model": "WhisperLargeV3"})
    assert status["status"] == "error"
    assert status["error_code"] == "PROCESSING_ERROR" and "WhisperLargeV3 failed to load" in status["error_message"]
