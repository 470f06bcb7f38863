"""Qwen3-TTS 12 Hz written for this project: the talker and its code predictor, the speaker encoder
and the 12 Hz speech codec, each loading the released checkpoints' weights under their own names.

Qwen's ``qwen-tts`` package pins transformers 4.57 and imports torchaudio (which has no CPU build for
torch 2.13) at import time for a 25 Hz tokenizer no released checkpoint uses, so it cannot be installed
beside this project's stack.
"""
