"""Uploaded video in, transformed video out: frames in small batches both ways, the source's audio carried.

Reading goes through PyAV (FFmpeg's libraries), so any container FFmpeg opens works: MP4, MPEG, QuickTime,
AVI, WMV (ASF), OGG and more. Frames come out upright (a phone's rotation tag applied), as RGB uint8.

Writing, by what plays where:
- ``H264_MP4``: H.264 yuv420p in MP4, the one format every browser, phone, player and editor opens.
- ``VP9_ALPHA_WEBM``: VP9 yuva420p in WebM, for a video with transparency. It is the alpha format
  browsers play: Chrome, Firefox and Edge composite it over the page in a ``<video>`` element, OBS
  overlays it, and ffmpeg and the editors built on it read the alpha through libvpx. Safari shows it
  opaque (its alpha format is HEVC with alpha, which FFmpeg cannot encode). ProRes 4444 in MOV is the
  editors' own alpha format (Premiere, Final Cut, After Effects, Resolve), but no browser plays it and it
  takes tens of times the bytes, so it is not produced; an editor that cannot read WebM alpha takes the
  matte MP4 beside it as a track matte over the colour video.
- ``MATTE_MP4``: the alpha alone as a grey H.264 MP4 (white = kept), which any player opens.

Colour: frames go to YUV with the BT.709 matrix and are tagged so. Players guess the matrix of an
untagged file, and guess differently (by frame size, by player), so the tag keeps colours the same.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator, NamedTuple

from engine.errors import JobFailure

__all__ = (
    "H264_MP4",
    "MATTE_MP4",
    "VP9_ALPHA_WEBM",
    "X264_OPTIONS",
    "FrameBatch",
    "VideoFormat",
    "VideoProbe",
    "VideoWriter",
    "frame_batches",
    "probe_video",
    "read_video",
)

# AVCOL_* code 1 is BT.709 for the matrix, the primaries and the transfer; range 1 is limited (MPEG).
_BT709, _LIMITED_RANGE = 1, 1

# A container may not say what it is; the upload's name then picks the demuxer.
_FORMAT_BY_SUFFIX = {".mpg": "mpeg", ".mpeg": "mpeg", ".vob": "mpeg", ".wmv": "asf", ".asf": "asf", ".ts": "mpegts"}


class VideoProbe(NamedTuple):
    """What validation needs to know of an upload, sizes as displayed (rotation applied)."""

    width: int
    height: int
    frames: int
    """The container's frame count, or its video packets counted where it stores none (WebM, MPEG, OGG)."""
    fps: Fraction
    duration: float
    """Seconds."""
    has_audio: bool


@dataclass(frozen=True)
class VideoFormat:
    """How one kind of result is written: container, codec, pixel format, and which audio it may copy."""

    container: str
    codec: str
    pix_fmt: str
    options: dict[str, str]
    content_type: str
    extension: str
    even_sides: bool
    """4:2:0 in H.264 needs even sides; VP9 rounds the chroma up and keeps odd ones."""
    audio_copy: frozenset[str] = field(default_factory=frozenset)
    """Audio codecs the container takes as they are: their packets are remuxed, not re-encoded, so the
    sound loses nothing and costs no time."""
    audio_codec: str | None = None
    """The encoder for any other audio; None writes no audio."""
    audio_rate: int | None = None
    """The rate that encoder needs (Opus: 48 kHz); None keeps the source's."""


# CRF 18 is visually lossless for x264. The macroblock tree is off because x264's AVX-512 code for it reads
# memory it never wrote: with it on, the same frames encoded on an AVX-512 CPU (Zen 4 and 5, Xeons) come out
# as a different file each time, up to 3 % apart in size and most pixels a value or so apart, so the same
# seed would not give the same video. Off, the file is the same every time and, on a grainy test clip, 12-15 %
# smaller for 0.02 dB less PSNR. The generated videos (_video.py) take the same options.
X264_OPTIONS = {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}

H264_MP4 = VideoFormat(
    container="mp4",
    codec="libx264",
    pix_fmt="yuv420p",
    options=X264_OPTIONS,
    content_type="video/mp4",
    extension="mp4",
    even_sides=True,
    # What MP4 players decode everywhere; PCM, Vorbis, WMA or MP2 would make a file browsers refuse.
    audio_copy=frozenset({"aac", "mp3"}),
    audio_codec="aac",
)

VP9_ALPHA_WEBM = VideoFormat(
    container="webm",
    codec="libvpx-vp9",
    pix_fmt="yuva420p",
    # Constant quality (b=0 with a CRF). cpu-used 4 (of 0-8) and row threads make libvpx several times
    # faster than its defaults for a few percent more bytes; at those it would take longer than the network.
    options={"crf": "30", "b": "0", "row-mt": "1", "cpu-used": "4", "deadline": "good"},
    content_type="video/webm",
    extension="webm",
    even_sides=False,
    audio_copy=frozenset({"opus", "vorbis"}),  # WebM allows no other audio codec
    audio_codec="libopus",
    audio_rate=48000,
)

# The matte: H.264 as above, without sound. Its grey is carried as yuv420p with neutral chroma, not as
# "gray" (4:0:0 High profile), which browsers and phones do not decode.
MATTE_MP4 = replace(H264_MP4, audio_copy=frozenset(), audio_codec=None)


# ------------------------------------------------------------------------------------------ reading


def _open(source, filename: str = ""):
    import av

    try:
        return av.open(source)
    except av.FFmpegError:
        fmt = _FORMAT_BY_SUFFIX.get(Path(filename).suffix.lower())
        if fmt is None:
            raise
        if hasattr(source, "seek"):
            source.seek(0)
        return av.open(source, format=fmt)


# The rates cameras and editors record at. ASF and WebM keep millisecond timestamps, so a 29.97 fps
# stream reads back as 29.92 from a short clip; a rate this close to one of these is taken to be it.
_STANDARD_RATES = tuple(
    Fraction(rate)
    for rate in (12, 15, Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 48, 50)
    + (Fraction(60000, 1001), 60, 90, 100, Fraction(120000, 1001), 120, 240)
)
_STANDARD_RATE_TOLERANCE = Fraction(1, 200)


def _frame_rate(stream) -> Fraction:
    """The nominal rate where the stream is constant-rate, else its average, as a small fraction.

    ``guessed_rate`` (r_frame_rate) is the exact nominal rate (30000/1001) of a constant-rate stream but
    the timestamp resolution (90 or 120) of a variable-rate phone recording; ``average_rate`` is right for
    both but may be a long fraction, which the encoder's time base would carry.
    """
    average, guessed = stream.average_rate, stream.guessed_rate
    if guessed and (not average or abs(guessed - average) <= average / 1000):
        rate = Fraction(guessed)
    elif average:
        rate = Fraction(average).limit_denominator(1001)
    else:
        rate = Fraction(stream.base_rate or 25)
    nearest = min(_STANDARD_RATES, key=lambda standard: abs(standard - rate))
    return nearest if abs(nearest - rate) <= rate * _STANDARD_RATE_TOLERANCE else rate


def _probe(container) -> VideoProbe:
    stream = container.streams.video[0]
    fps = _frame_rate(stream)
    # Where the container stores no frame count (WebM, MPEG, OGG) its packets are counted: demuxing
    # decodes nothing, and their timestamps give the duration MPEG's header only guesses from a bitrate.
    counted = not stream.frames
    frames, first, end = 0, None, None
    # ASF leaves packet durations at 0: a frame then lasts one frame at the stream's rate.
    step = round(1 / (fps * stream.time_base)) if stream.time_base else 0
    for packet in container.demux(stream):
        if first is None:
            # The rotation tag is read off the first frame: PyAV keeps the stream's display matrix to itself.
            # A short clip's may come only with the end marker, which flushes the decoder's delay.
            first = next(iter(packet.decode()), None)
        if packet.size == 0:  # the end marker, or an AVI chunk for a dropped frame
            continue
        frames += 1
        if packet.pts is not None:
            end = max(end or 0, packet.pts + (packet.duration or step))
        if first is not None and not counted:
            break
    if first is None:
        raise ValueError("no video frame decodes")
    if counted and end is not None:
        duration = float((end - (stream.start_time or 0)) * stream.time_base)
    elif stream.duration:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = float(frames / fps)
    frames = stream.frames or frames
    quarter_turns = round((first.rotation or 0) / 90) % 4
    width, height = (first.height, first.width) if quarter_turns % 2 else (first.width, first.height)
    has_audio = any(s.type == "audio" for s in container.streams)
    return VideoProbe(width, height, int(frames), fps, duration, has_audio)


def probe_video(data: bytes, filename: str = "") -> VideoProbe | None:
    """Size, frame count, rate, duration and audio of uploaded bytes; None if they hold no decodable video.

    ``filename`` picks the demuxer for containers FFmpeg cannot recognise from their content alone.
    """
    try:
        with _open(io.BytesIO(data), filename) as container:
            if not container.streams.video:
                return None
            return _probe(container)
    except Exception:  # anything FFmpeg cannot read is "not a video" to validation
        return None


def read_video(path: Path) -> VideoProbe:
    """The probe of a job's uploaded file; a job failure if it holds no decodable video."""
    try:
        with _open(str(path), path.name) as container:
            if container.streams.video:
                return _probe(container)
    except Exception as exc:
        raise JobFailure("INVALID_INPUT", f"The video could not be read: {exc}") from exc
    raise JobFailure("INVALID_INPUT", "The upload holds no video stream.")


class FrameBatch(NamedTuple):
    pixels: object
    """(B, H, W, 3) uint8 RGB."""
    times: list[Fraction]
    """Each frame's presentation time in seconds from the video's start, strictly increasing."""


def frame_batches(path: Path, batch_frames: int) -> Iterator[FrameBatch]:
    """The video's frames in order, upright, up to ``batch_frames`` at a time.

    Only one batch is alive at a time, so a long video never sits in memory whole. The times let a writer
    keep the source's timing exactly: a variable-rate phone recording or an AVI with dropped frames stays
    in sync with its sound, where renumbering the frames at the average rate would drift.
    """
    import numpy as np

    pixels, times = [], []
    with _open(str(path), path.name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the encoders
        step = 1 / _frame_rate(stream)
        start, size, last = stream.start_time, None, None
        for frame in container.decode(stream):
            # A stream may change size midway (a spliced recording); every frame takes the first's.
            size = size or (frame.width, frame.height)
            rgb = frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
            pixels.append(np.rot90(rgb, k=round((frame.rotation or 0) / 90) % 4))
            if start is None:
                start = frame.pts or 0
            time = None if frame.pts is None else max(Fraction(0), (frame.pts - start) * stream.time_base)
            if last is not None and (time is None or time <= last):
                time = last + step  # no timestamp, or one out of order in a damaged file: the next slot
            times.append(last := time or Fraction(0))
            if len(pixels) == batch_frames:
                yield FrameBatch(np.stack(pixels), times)
                pixels, times = [], []
    if pixels:
        yield FrameBatch(np.stack(pixels), times)


# ------------------------------------------------------------------------------------------ writing


class _AudioCarrier:
    """The source's first audio stream, fed into the output as the video advances, so the two interleave
    and neither is held whole in memory.

    Where the output takes the codec as it is, packets are remuxed; otherwise they are decoded and
    re-encoded with the format's encoder (AAC in MP4, Opus in WebM).
    """

    def __init__(self, source: Path, output, fmt: VideoFormat) -> None:
        import av

        self.input = _open(str(source), source.name)
        self.stream = self.input.streams.audio[0]
        self.copy = self.stream.codec_context.codec.canonical_name in fmt.audio_copy
        if self.copy:
            self.out = output.add_stream_from_template(self.stream)
        else:
            rate = fmt.audio_rate or self.stream.codec_context.sample_rate or 48000
            layout = "mono" if self.stream.codec_context.channels == 1 else "stereo"
            self.out = output.add_stream(fmt.audio_codec, rate=rate, layout=layout)
            self.resampler = av.AudioResampler(format=self.out.format.name, layout=layout, rate=rate)
        self.output = output
        # The video's first frame is time 0 of the output (an MPEG stream may start at 0.5 s); the sound
        # shifts with it to stay in sync.
        video = self.input.streams.video[0]
        start = video.start_time * video.time_base if video.start_time and video.time_base else 0
        self.shift = round(start / self.stream.time_base)
        self.packets = self.input.demux(self.stream)
        self.pending = None
        self.samples: int | None = None

    def feed_until(self, seconds: float | None) -> None:
        """Mux the source's audio up to ``seconds`` of output time (None: all of it).

        Packets before time 0 are kept: they hold the codec's priming (Opus pre-skip, AAC's delay) or sound
        that led the picture, and the muxer shifts every stream so the earliest starts at 0, in sync.
        """
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.size == 0:  # the end marker: a decoder may still hold the last frames (WMA does)
                if not self.copy:
                    self._transcode(packet)
                continue
            pts = (packet.pts if packet.pts is not None else packet.dts or 0) - self.shift
            if seconds is not None and pts * self.stream.time_base > seconds:
                self.pending = packet
                return
            self._mux(packet, pts)

    def _mux(self, packet, pts: int) -> None:
        if self.copy:
            packet.dts = None if packet.dts is None else packet.dts - self.shift
            packet.pts = pts
            packet.stream = self.out
            self.output.mux(packet)
        else:
            self._transcode(packet)

    def _transcode(self, packet) -> None:
        for frame in packet.decode():
            if self.samples is None:  # the first sound keeps its place against the picture
                start = ((frame.pts or 0) - self.shift) * self.stream.time_base
                self.samples = round(start * self.out.codec_context.sample_rate)
            for piece in self.resampler.resample(frame):
                self._encode(piece)

    def _encode(self, piece) -> None:
        # Counted samples, not the source's timestamps: the encoder wants gap-free frames.
        piece.pts, piece.time_base = self.samples, Fraction(1, piece.sample_rate)
        self.samples += piece.samples
        self.output.mux(self.out.encode(piece))

    def close(self) -> None:
        try:
            self.feed_until(None)
            if not self.copy and self.samples is not None:
                for piece in self.resampler.resample(None):
                    self._encode(piece)
                self.output.mux(self.out.encode(None))
        finally:
            self.input.close()


class VideoWriter:
    """Encodes frames into one result file; ``close()`` returns its bytes.

    ``write`` takes (B, H, W) grey, (B, H, W, 3) RGB or (B, H, W, 4) RGBA uint8 arrays, with each frame's
    time in seconds (a :class:`FrameBatch`'s ``times``) or, without them, frames at ``fps``. With
    ``audio_from`` (the uploaded file) the source's first audio stream goes into the result too.
    """

    def __init__(self, fmt: VideoFormat, width: int, height: int, fps: Fraction, *, audio_from: Path | None = None) -> None:
        import av

        self.fmt, self.fps = fmt, Fraction(fps)
        # A file, not memory: MP4's faststart (the index moved to the front, so a browser plays the result
        # while it downloads) rewrites the finished file, which FFmpeg does only on a path of its own.
        self.folder = tempfile.TemporaryDirectory(prefix="drylocal-video-")
        self.path = Path(self.folder.name) / f"result.{fmt.extension}"
        options = {"movflags": "+faststart"} if fmt.container == "mp4" else {}
        self.container = av.open(str(self.path), "w", format=fmt.container, options=options)
        self.stream = self.container.add_stream(fmt.codec, rate=self.fps)
        # Exact for a constant rate p/q (a frame is q*k ticks) and finer than 1/90000 s for a variable one.
        p = self.fps.numerator
        self.time_base = Fraction(1, p * math.ceil(90000 / p))
        self.stream.codec_context.time_base = self.time_base
        # An odd row or column, where the codec needs even sides, is cropped: one pixel, never a bar.
        self.width = width - width % 2 if fmt.even_sides else width
        self.height = height - height % 2 if fmt.even_sides else height
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, fmt.pix_fmt
        self.stream.options = dict(fmt.options)
        context = self.stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _LIMITED_RANGE
        self.frames, self.last_pts = 0, -1
        # Every stream must exist before the first packet is muxed: the container writes its header then.
        self.audio = None
        if audio_from is not None and fmt.audio_codec is not None:
            with contextlib.suppress(IndexError):  # the source has no audio stream
                self.audio = _AudioCarrier(audio_from, self.container, fmt)

    def write(self, pixels, times: list[Fraction] | None = None) -> None:
        import av
        import numpy as np

        for index, image in enumerate(pixels):
            layout = "gray" if image.ndim == 2 else {1: "gray", 3: "rgb24", 4: "rgba"}[image.shape[2]]
            image = image[..., 0] if layout == "gray" and image.ndim == 3 else image
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: self.height, : self.width]), format=layout)
            frame = frame.reformat(format=self.fmt.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
            time = times[index] if times is not None else self.frames / self.fps
            frame.pts = self.last_pts = max(round(time / self.time_base), self.last_pts + 1)
            frame.time_base = self.time_base
            self.frames += 1
            self.container.mux(self.stream.encode(frame))
        if self.audio is not None:
            # A little sound ahead of the pictures: the muxer interleaves by time and holds the rest.
            self.audio.feed_until(float(self.last_pts * self.time_base) + 1.0)

    def close(self) -> bytes:
        try:
            self.container.mux(self.stream.encode(None))
            if self.audio is not None:
                self.audio.close()
        finally:
            self.container.close()
        try:
            return self.path.read_bytes()
        finally:
            self.folder.cleanup()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            return
        # The job failed midway: release FFmpeg's state; there is no file to keep.
        with contextlib.suppress(Exception):
            if self.audio is not None:
                self.audio.input.close()
            self.container.close()
        self.folder.cleanup()
