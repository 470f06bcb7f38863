#!/usr/bin/env python
"""Transcription end to end: drylocal (upload to done, over HTTP) against faster-whisper called
directly in one process, on the same audio, model and decoding options, side by side.

    .venv/bin/python scripts/bench_transcribe.py                    # embedded Whisper base, Piper speech
    .venv/bin/python scripts/bench_transcribe.py --audio talk.mp3   # your own recording
    .venv/bin/python scripts/bench_transcribe.py --model-path DIR --slug WhisperLargeV3

Prints seconds per transcription for both, their ratio, and each one's real-time factor
(processing seconds per second of audio; below 1 is faster than real time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.harness import ServerProcess  # noqa: E402

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. A local inference server answers the same requests as "
    "the hosted service. It schedules every job by the memory it needs, and it never loses a job it accepted. "
)


def speech_file(target: Path, repeats: int) -> Path:
    # In a child process: onnxruntime's idle threads would otherwise keep spinning in the process
    # that then times faster-whisper, and slow it down.
    code = (
        "import sys; from pathlib import Path; from tests.media_files import piper_speech, wav_bytes; "
        "s, r = piper_speech(sys.argv[1]); Path(sys.argv[2]).write_bytes(wav_bytes(s, r))"
    )
    subprocess.run([sys.executable, "-c", code, PARAGRAPH * repeats, str(target)], cwd=ROOT, check=True)
    return target


def audio_seconds(path: Path) -> float:
    from faster_whisper import decode_audio

    return len(decode_audio(str(path))) / 16000


def direct_run(slug: str, model_path: Path, audio: Path, runs: int, device: str) -> dict:
    from faster_whisper import WhisperModel

    from engine.tasks._transcription import transcript_text
    from model_registry import ModelRegistry, WeightsLocator
    from model_registry.loaders.faster_whisper import compute_type

    # The precision drylocal picks for this model on this device, so both sides decode alike.
    kind = compute_type(ModelRegistry.from_files(WeightsLocator(model_path.parent)).get(slug), device)
    started = time.perf_counter()
    model = WhisperModel(str(model_path), device=device, compute_type=kind, cpu_threads=os.cpu_count() or 0)
    load = time.perf_counter() - started
    times, text = [], ""
    for index in range(runs + 1):
        started = time.perf_counter()
        if device == "cuda":
            from faster_whisper import BatchedInferencePipeline

            segments, _ = BatchedInferencePipeline(model=model).transcribe(str(audio), batch_size=16, without_timestamps=True)
        else:
            segments, _ = model.transcribe(str(audio), beam_size=5, vad_filter=True, without_timestamps=True)
        text = transcript_text([{"start": s.start, "end": s.end, "text": s.text.strip()} for s in segments], False)
        if index:
            times.append(time.perf_counter() - started)
    return {"seconds": statistics.mean(times), "load_seconds": load, "text": text}


def drylocal_run(home: Path, slug: str, audio: Path, runs: int) -> dict:
    with ServerProcess(home) as server:
        client = server.client()
        times, text = [], ""
        data_bytes = audio.read_bytes()
        for index in range(runs + 1):
            started = time.perf_counter()
            # Polled as a client would, not in a hot loop: on a small CPU polling competes with decoding.
            data = client.run("audiofile2txt", poll=0.1, files={"audio": (audio.name, data_bytes)},
                              data={"include_ts": "0", "model": slug, "return_result_in_response": "1"})
            text = data["result"]
            if index:  # the first job also loads the model
                times.append(time.perf_counter() - started)
        return {"seconds": statistics.mean(times), "load_seconds": client.model(slug)["load_seconds"], "text": text}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, help="an audio or video file (default: Piper speech)")
    parser.add_argument("--repeats", type=int, default=4, help="paragraphs of generated speech (about 11 s each)")
    parser.add_argument("--slug", default="WhisperBase")
    parser.add_argument("--model-path", type=Path, help="a CTranslate2 Whisper folder (default: the embedded base)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        home = scratch / "home"
        models = home / "models"
        models.mkdir(parents=True)
        if args.model_path:
            (models / args.slug).symlink_to(args.model_path.resolve())
            model_path = args.model_path
        else:
            from model_registry.embedded import provision_embedded

            model_path = provision_embedded(models, only=("WhisperBase",))["WhisperBase"]
        audio = args.audio or speech_file(scratch / "speech.wav", args.repeats)
        seconds = audio_seconds(audio)
        ours = drylocal_run(home, args.slug, audio, args.runs)
        theirs = direct_run(args.slug, model_path, audio, args.runs, device)
    row = {
        "model": args.slug, "device": device, "audio_seconds": round(seconds, 2),
        "drylocal_seconds": round(ours["seconds"], 3), "direct_seconds": round(theirs["seconds"], 3),
        "ratio": round(ours["seconds"] / theirs["seconds"], 3),
        "drylocal_rtf": round(ours["seconds"] / seconds, 4), "direct_rtf": round(theirs["seconds"] / seconds, 4),
        "drylocal_load_seconds": round(ours["load_seconds"] or 0, 3), "direct_load_seconds": round(theirs["load_seconds"], 3),
        "same_text": ours["text"].strip() == theirs["text"].strip(),
    }
    print(json.dumps(row, indent=2))
    print(f"\n{args.slug} on {device}, {row['audio_seconds']} s of audio: drylocal {row['drylocal_seconds']} s "
          f"(RTF {row['drylocal_rtf']}) vs faster-whisper direct {row['direct_seconds']} s (RTF {row['direct_rtf']}), "
          f"ratio {row['ratio']}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
