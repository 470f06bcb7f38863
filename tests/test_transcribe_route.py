"""transcribe: the SDK's recommended transcription call (``client.transcription.create``), one route for
a URL or a file, on the embedded Whisper base."""

from __future__ import annotations

import pytest

from engine.tasks.transcribe import source_kind
from tests.conftest import first_message
from tests.media_files import mp4_with_audio
from tests.test_audio import (  # noqa: F401  (fixtures)
    api_audio,
    embedded_models,
    fetch,
    media_server,
    mentions_the_sentence,
    run,
    speech,
    speech_video,
    status_id,
)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://x.com/i/spaces/1vOxwjaWkZbJB", "audio_url"),
        ("https://twitter.com/i/spaces/1vOxwjaWkZbJB", "audio_url"),
        ("https://www.youtube.com/watch?v=jNQXAC9IVRw", "video_url"),
        ("https://x.com/someone/status/1234", "video_url"),
        ("https://example.com/talk.mp3", "video_url"),
    ],
)
def test_a_spaces_url_is_audio_and_any_other_url_is_video(url, kind):
    assert source_kind(url, None) == kind


def test_an_uploaded_file_is_audio_or_video_by_its_content(speech, speech_video):  # noqa: F811
    assert source_kind(None, speech) == "audio_file"
    assert source_kind(None, speech_video) == "video_file"


def test_an_audio_file_is_transcribed(api_audio, speech):  # noqa: F811
    status = run(api_audio, "transcribe", files={"source_file": ("speech.wav", speech, "audio/wav")},
                 data={"include_ts": "0", "model": "WhisperBase", "return_result_in_response": "1"})
    assert status["status"] == "done", status
    assert mentions_the_sentence(status["result"])
    job = api_audio.engine.jobs.get(status_id(status))
    assert job.meta["source"] == "audio_file" and job.meta["language"] == "en"


def test_a_video_file_named_as_audio_is_still_a_video(api_audio, speech_video):  # noqa: F811
    status = run(api_audio, "transcribe", files={"source_file": ("clip.mp3", speech_video, "audio/mpeg")},
                 data={"include_ts": "1", "model": "WhisperBase"})
    assert status["status"] == "done", status
    text = fetch(api_audio, status["result_url"]).decode()
    assert text.startswith("[00:00:0") and mentions_the_sentence(text)
    assert api_audio.engine.jobs.get(status_id(status)).meta["source"] == "video_file"


def test_a_url_is_downloaded_then_transcribed(api_audio, media_server, speech_video):  # noqa: F811
    root, base = media_server
    (root / "clip.mp4").write_bytes(speech_video)
    status = run(api_audio, "transcribe", json={"source_url": f"{base}/clip.mp4", "include_ts": False,
                                                "model": "WhisperBase", "return_result_in_response": True})
    assert status["status"] == "done", status
    assert mentions_the_sentence(status["result"])
    assert api_audio.engine.jobs.get(status_id(status)).meta["source"] == "video_url"


def test_exactly_one_source_is_taken(api_audio, speech):  # noqa: F811
    both = api_audio.post("transcribe", files={"source_file": ("speech.wav", speech, "audio/wav")},
                          data={"source_url": "https://example.com/a.mp4", "include_ts": "0", "model": "WhisperBase"})
    assert both.status_code == 422 and "prohibits" in first_message(both)
    neither = api_audio.post("transcribe", json={"include_ts": False, "model": "WhisperBase"})
    assert neither.status_code == 422 and "source url field is required" in first_message(neither)


def test_a_file_without_sound_is_refused(api_audio):
    silent = mp4_with_audio(None, 22050, 1.0)
    response = api_audio.post("transcribe", files={"source_file": ("clip.mp4", silent, "video/mp4")},
                              data={"include_ts": "0", "model": "WhisperBase"})
    assert response.status_code == 422 and "no audio track" in first_message(response)


def test_price_by_file_by_url_or_by_duration_as_the_single_source_routes(api_audio, media_server, speech_video):  # noqa: F811
    root, base = media_server
    (root / "clip.mp4").write_bytes(speech_video)
    same = api_audio.post("vid2txt/price-calculation", json={"video_url": f"{base}/clip.mp4", "include_ts": False,
                                                             "model": "WhisperBase"}).json()["data"]["price"]
    by_url = api_audio.post("transcribe/price-calculation", json={"source_url": f"{base}/clip.mp4", "include_ts": False,
                                                                  "model": "WhisperBase"})
    assert by_url.status_code == 200 and by_url.json()["data"]["price"] == same
    by_file = api_audio.post("transcribe/price-calculation", files={"source_file": ("clip.mp4", speech_video, "video/mp4")},
                             data={"include_ts": "0", "model": "WhisperBase"})
    assert by_file.json()["data"]["price"] == pytest.approx(same, abs=2e-6)
    hour = api_audio.post("transcribe/price-calculation", json={"include_ts": False, "model": "WhisperBase", "duration_seconds": 3600})
    assert hour.json()["data"]["price"] == pytest.approx(0.021, abs=1e-6)
