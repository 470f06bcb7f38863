"""Chatterbox written for this project: Resemble AI's Chatterbox Multilingual TTS (the T3 text-to-token
model, S3Gen's token-to-mel flow and vocoder, and their speaker encoders), each module keyed like the
released checkpoints so their weights load under their own names. The ``chatterbox-tts`` package pins
torch 2.6 and needs torchaudio, which has no CPU build for this project's torch, so it cannot be installed.
"""
