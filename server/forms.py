"""The request form of every dryAPI task route: its fields, as the contract and hosted OpenAPI name them.

Fields the hosted OpenAPI marks required but real clients omit (``guidance``, ``steps``, ``fps``,
``lyrics``, TTS ``lang``/``format``/``speed``/``sample_rate``) are optional here and default from the
model's ``info.defaults`` (API_CONTRACT.md: "accept both").
"""

from __future__ import annotations

from dataclasses import dataclass

from server.fields import Field

__all__ = ("FORMS", "TaskForm")


@dataclass(frozen=True)
class TaskForm:
    task: str
    label: str
    """How the hosted service names the task in messages: 'does not support Text To Image'."""
    group: str
    fields: tuple[Field, ...]
    model_required: bool = True
    inline_result: bool = False
    """Whether ``return_result_in_response`` applies."""

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _s(name: str, required: bool = False, price: str = "optional", **kw) -> Field:
    return Field(name, "string", required, price, **kw)


def _i(name: str, required: bool = False, price: str = "optional", **kw) -> Field:
    return Field(name, "integer", required, price, **kw)


def _n(name: str, required: bool = False, price: str = "optional", **kw) -> Field:
    return Field(name, "number", required, price, **kw)


def _b(name: str, required: bool = False, price: str = "optional", **kw) -> Field:
    return Field(name, "boolean", required, price, **kw)


def _file(name: str, rule: str, required: bool = False, price: str = "optional", kind: str = "file") -> Field:
    return Field(name, kind, required, price, file_rule=rule)


_WEBHOOK = Field("webhook_url", "url", price="no", max_length=2048)
_INLINE = _b("return_result_in_response", price="no")
_NEG = _s("negative_prompt")
_GUIDANCE = _n("guidance", aliases=("guidance_scale",))
_IMAGE_SIZE = (_i("width"), _i("height"))
_VIDEO_COMMON = (
    _s("prompt", True, price="no"),
    _NEG,
    _i("width", True, "required"),
    _i("height", True, "required"),
    _i("steps"),
    _i("frames", True, "required"),
    _i("fps"),
    _GUIDANCE,
    _i("seed", True),
    _WEBHOOK,
)
_TRANSCRIBE = (_b("include_ts"), _INLINE, _WEBHOOK, _n("duration_seconds", price="only"))

FORMS: dict[str, TaskForm] = {
    form.task: form
    for form in (
        TaskForm(
            "txt2img",
            "Text To Image",
            "generation",
            (
                _s("prompt", True),
                _NEG,
                _i("width", True, "required"),
                _i("height", True, "required"),
                _i("seed", True),
                _i("steps"),
                _GUIDANCE,
                Field("loras", "loras"),
                _WEBHOOK,
            ),
        ),
        TaskForm(
            "img2img",
            "Image To Image",
            "transformation",
            (
                _s("prompt", True),
                _NEG,
                _file("image", "image", price="no"),
                _file("images", "image", price="no", kind="files"),
                *_IMAGE_SIZE,
                _i("steps"),
                _i("seed", True),
                _GUIDANCE,
                Field("loras", "loras"),
                _WEBHOOK,
            ),
        ),
        TaskForm("txt2video", "Text To Video", "generation", _VIDEO_COMMON),
        TaskForm(
            "img2video",
            "Image To Video",
            "generation",
            (*_VIDEO_COMMON, _file("first_frame_image", "image", True, "no"), _file("last_frame_image", "image", price="no")),
        ),
        TaskForm(
            "aud2video",
            "Audio To Video",
            "generation",
            (
                *_VIDEO_COMMON,
                _file("audio", "video_audio", True, "no"),
                _file("first_frame_image", "image", price="no"),
                _file("last_frame_image", "image", price="no"),
            ),
        ),
        TaskForm(
            "txt2audio",
            "Text To Speech",
            "generation",
            (
                _s("text", True),
                _i("count_text", price="only"),
                _s("lang"),
                _s("format", choices=("mp3", "wav", "flac", "ogg")),
                _n("speed"),
                _n("sample_rate"),
                _s("mode", choices=("custom_voice", "voice_clone", "voice_design")),
                _s("voice"),
                _s("ref_text", price="no"),
                _s("instruct"),
                _file("ref_audio", "voice_reference", price="no"),
                _WEBHOOK,
            ),
        ),
        TaskForm(
            "txt2music",
            "Text To Music",
            "generation",
            (
                _s("caption", True, price="no"),
                _s("lyrics", price="no"),
                _n("duration", True, "required"),
                _i("inference_steps", price="required"),
                _n("guidance_scale"),
                _i("seed"),
                _s("format", choices=("mp3", "wav", "flac", "ogg")),
                _i("bpm"),
                _s("keyscale"),
                _i("timesignature", choices=(2, 3, 4, 6)),
                _s("vocal_language"),
                _file("reference_audio", "music_reference", price="no"),
                _WEBHOOK,
            ),
        ),
        TaskForm(
            "txt2embedding",
            "Text To Embedding",
            "generation",
            (Field("input", "text_or_list", True, "required"), _INLINE, _WEBHOOK),
            inline_result=True,
        ),
        TaskForm(
            "img2txt",
            "Image To Text",
            "analysis",
            (
                _file("image", "image", True),
                _s("language"),
                _s("format", choices=("text", "json")),
                *_IMAGE_SIZE,
                _INLINE,
                _WEBHOOK,
            ),
            inline_result=True,
        ),
        TaskForm(
            "vid2txt",
            "Video To Text",
            "analysis",
            (Field("video_url", "url", True), *_TRANSCRIBE),
            model_required=False,
            inline_result=True,
        ),
        TaskForm(
            "aud2txt",
            "Audio To Text",
            "analysis",
            (Field("audio_url", "url", True), *_TRANSCRIBE),
            inline_result=True,
        ),
        TaskForm(
            "audiofile2txt",
            "Audio File To Text",
            "analysis",
            (_file("audio", "audio", True), *_TRANSCRIBE),
            model_required=False,
            inline_result=True,
        ),
        TaskForm(
            "videofile2txt",
            "Video File To Text",
            "analysis",
            (_file("video", "video", True), *_TRANSCRIBE),
            model_required=False,
            inline_result=True,
        ),
        TaskForm(
            "img-rmbg",
            "Background Removal",
            "transformation",
            (_file("image", "image", True), *_IMAGE_SIZE, _WEBHOOK),
        ),
        TaskForm(
            "img-upscale",
            "Image Upscale",
            "transformation",
            (_file("image", "image", True), *_IMAGE_SIZE, _WEBHOOK),
        ),
    )
}
