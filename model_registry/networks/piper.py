"""Piper VITS voices run by onnxruntime, with phonemes from the ``espeak-ng`` command.

Piper's own ``piper-tts`` package is GPL-3; this reimplements the small part drylocal needs from the
voice's JSON config: espeak-ng IPA per clause, the clause's punctuation kept (it shapes prosody),
then Piper's id layout: BOS, PAD, (phoneme, PAD)*, EOS.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = ("PiperVoice", "load_piper_voice", "phoneme_ids")

_CLAUSE = re.compile(r"([^.,;:!?]+)([.,;:!?]*)")
MAX_SENTENCE_PHONEMES = 400
"""The longest phoneme string given to the voice at once. VITS's attention grows with the square of
the input: one 9,500-character text without sentence punctuation took the process past 20 GB, so a
long sentence is cut at word boundaries whatever its punctuation (about 25 s of speech per piece)."""


def _espeak(text: str, voice: str) -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng is not installed; `apt-get install espeak-ng` (scripts/setup.sh does it).")
    done = subprocess.run(
        [binary, "-q", "-v", voice, "--ipa", "-b", "1", "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    # espeak-ng breaks long clauses over lines; they are one clause to Piper.
    return " ".join(line.strip() for line in done.stdout.decode("utf-8").splitlines() if line.strip())


def phonemize(text: str, voice: str) -> list[str]:
    """One IPA string per sentence, with the clause punctuation espeak-ng's command line drops."""
    sentences, current = [], ""
    for words, punctuation in _CLAUSE.findall(unicodedata.normalize("NFC", text)):
        if not words.strip():
            continue
        current += _espeak(words, voice) + punctuation[:1]
        if punctuation[:1] in (".", "!", "?"):
            sentences.append(current)
            current = ""
        else:
            current += " "
    if current.strip():
        sentences.append(current.strip())
    return [piece for sentence in sentences for piece in _bounded(sentence, MAX_SENTENCE_PHONEMES)]


def _bounded(phonemes: str, limit: int) -> list[str]:
    """``phonemes`` in pieces of at most ``limit`` characters, cut between words where there are any."""
    pieces, current = [], ""
    for word in phonemes.split(" "):
        while len(word) > limit:  # one "word" longer than the limit: cut it where it must be cut
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:limit])
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current.strip():
        pieces.append(current)
    return pieces


def phoneme_ids(phonemes: str, id_map: dict[str, list[int]]) -> list[int]:
    ids = [*id_map["^"], *id_map["_"]]
    for symbol in unicodedata.normalize("NFD", phonemes):
        if symbol in id_map:
            ids += [*id_map[symbol], *id_map["_"]]
    return ids + id_map["$"]


@dataclass
class PiperVoice:
    session: object
    config: dict
    path: Path

    @property
    def sample_rate(self) -> int:
        return int(self.config["audio"]["sample_rate"])

    @property
    def espeak_voice(self) -> str:
        return self.config.get("espeak", {}).get("voice", "en-us")

    def sentences(self, text: str) -> list[str]:
        return phonemize(text, self.espeak_voice)

    def speak(self, phonemes: str, speed: float = 1.0, speaker_id: int | None = None):
        """Audio (float32, -1..1) for one sentence's phonemes."""
        import numpy as np

        inference = self.config.get("inference", {})
        ids = np.array([phoneme_ids(phonemes, self.config["phoneme_id_map"])], dtype=np.int64)
        scales = np.array(
            [inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0) / speed, inference.get("noise_w", 0.8)],
            dtype=np.float32,
        )
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64), "scales": scales}
        if any(i.name == "sid" for i in self.session.get_inputs()):
            feeds["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        audio = self.session.run(None, feeds)[0]
        return np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32)


    def synthesize(self, text: str, *, speed: float = 1.0, progress=None, sentence_silence: float = 0.2, **_):
        """(samples, rate) for the whole text, sentence by sentence with Piper's pause between them."""
        import numpy as np

        sentences = self.sentences(text)
        if not sentences:
            raise ValueError("The text has nothing to speak.")
        pause = np.zeros(int(self.sample_rate * sentence_silence), dtype=np.float32)
        pieces = []
        for index, phonemes in enumerate(sentences):
            pieces += [self.speak(phonemes, speed), pause]
            if progress is not None:
                progress(100.0 * (index + 1) / len(sentences))
        return np.concatenate(pieces[:-1]), self.sample_rate


def load_piper_voice(path: Path, device: str = "cpu") -> PiperVoice:
    """``path``: the .onnx file, or a folder holding one .onnx with its .onnx.json config."""
    from model_registry.loaders._onnx import onnx_session

    model = path if path.is_file() else next(iter(sorted(path.glob("*.onnx"))), None)
    if model is None:
        raise FileNotFoundError(f"no Piper .onnx voice in {path}")
    config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    return PiperVoice(onnx_session(model, device), config, model)
