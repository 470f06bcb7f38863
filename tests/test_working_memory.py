"""A job's working memory: estimated at its own request, measured per shape once it ran, and planned with
(weights + the job's working memory). No GPU here: where the worker would read ``max_memory_allocated``, the
test hands it a figure, and the rest (shape, record, persistence, planning) runs as on a GPU."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from engine.working_memory import PeakBox, request_of, shape_key
from model_registry.catalog import builtin_specs
from model_registry.footprint import Request, footprint, job_working_bytes, largest_request

SPECS = {spec.slug: spec for spec in builtin_specs()}
GB = 1_000_000_000


# ---------------------------------------------------------------- shapes
def test_a_request_is_rounded_up_to_its_shapes_bucket_and_defaults_fill_the_rest():
    flux = SPECS["Flux1schnell"]
    assert request_of(flux, {"width": 1000, "height": 1024}, {}) == Request(1024, 1024, 1, 0.0, 0)
    assert request_of(flux, {}, {}) == Request(768, 768, 1, 0.0, 0)  # the model's defaults
    ltx = SPECS["Ltxv_13B_0_9_8_Distilled_FP8"]
    assert request_of(ltx, {"width": 512, "height": 512, "frames": 121}, {}).frames == 121
    assert request_of(ltx, {"width": 512, "height": 512, "frames": 100}, {}).frames == 105
    klein = SPECS["Flux_2_Klein_4B_BF16"]
    assert request_of(klein, {"width": 512, "height": 512}, {"images": ["a.png", "b.png", "c.png"]}).images == 3
    music = SPECS["ACE-Step-v1.5-turbo"]
    assert request_of(music, {"duration": 31}, {}).seconds == 40.0
    assert shape_key(Request(1024, 768, 1, 0.0, 2)) == "1024x768 f1 s0 i2"


# ---------------------------------------------------------------- the estimate
def test_the_estimate_grows_with_the_request_and_tops_out_at_the_placements_figure():
    for slug in ("Flux1schnell", "QwenImageEdit_Plus_NF4", "Ltx2_19B_Dist_FP8", "Flux_2_Klein_4B_BF16"):
        spec = SPECS[slug]
        fp = footprint(spec)
        largest = job_working_bytes(spec, largest_request(spec), vae_tiling=False)
        assert largest == max(fp.working_bytes, fp.decode_bytes)
        small = job_working_bytes(spec, Request(512, 512, 1, 0.0, 0), vae_tiling=False)
        assert 0 < small < largest, slug
    flux = SPECS["Flux1schnell"]
    whole = job_working_bytes(flux, Request(2048, 2048), vae_tiling=False)
    tiled = job_working_bytes(flux, Request(2048, 2048), vae_tiling=True)
    assert tiled < whole


def test_loaders_that_reserve_their_working_memory_have_no_per_job_estimate():
    assert job_working_bytes(SPECS["WhisperLargeV3"], Request(0, 0), vae_tiling=False) is None


# ---------------------------------------------------------------- measured, recorded, planned with
@pytest.fixture
def peak_of(monkeypatch):
    """The worker's measure reports ``figures[0]`` bytes (a CUDA device would report max_memory_allocated)."""
    from engine import worker

    figures = [3 * GB]

    @contextmanager
    def fake_peak(device):
        box = PeakBox()
        yield box
        box.bytes = figures[0]

    monkeypatch.setattr(worker, "measure_peak", fake_peak)
    return figures


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    from tests.flux_checkpoint import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux-working") / "flux")


def test_a_jobs_measured_working_memory_is_kept_per_shape_and_planned_with_after_a_restart(settings, tiny_flux, peak_of):
    from engine.measurements import MeasurementStore
    from tests.conftest import running_api
    from tests.user_models import register_models, tiny_flux_entry

    register_models(settings, tiny_flux_entry(tiny_flux))
    body = {"prompt": "a red cat", "model": "TinyFlux", "width": 64, "height": 48, "steps": 1, "seed": 1}
    with running_api(settings) as api:
        status = api.wait(api.post("txt2img", json=body).json()["data"]["request_id"], timeout=120)
        assert status["status"] == "done", status
        worker = api.engine.worker
        assert worker.working_measured == {("TinyFlux", "64x64 f1 s0 i0"): 3 * GB}
        peak_of[0] = GB  # a smaller peak later never lowers the figure: the next job may peak higher again
        status = api.wait(api.post("txt2img", json=body).json()["data"]["request_id"], timeout=120)
        assert worker.working_measured[("TinyFlux", "64x64 f1 s0 i0")] == 3 * GB
        stored = MeasurementStore(api.engine.db).working()
    assert stored == {("TinyFlux", "64x64 f1 s0 i0"): 3 * GB}

    with running_api(settings) as api:
        worker = api.engine.worker
        assert worker.working_measured == stored
        job = api.engine.jobs.get(api.post("txt2img", json={**body, "width": 60}).json()["data"]["request_id"])
        other = api.engine.jobs.get(api.post("txt2img", json={**body, "width": 128}).json()["data"]["request_id"])
        # Planned as the worker sees them: the measured shape at its measure, the other at its estimate.
        worker._requests[job.id] = request_of(worker.registry.get("TinyFlux"), job.params, job.inputs)
        worker._requests[other.id] = request_of(worker.registry.get("TinyFlux"), other.params, other.inputs)
        placement = worker.placement("TinyFlux")
        need, working = worker._job_memory("TinyFlux", job.id)
        assert working == 3 * GB and need == working + placement.gpu_bytes - placement.working_bytes
        assert worker._job_memory("TinyFlux", other.id)[1] != 3 * GB
