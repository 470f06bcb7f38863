"""Placements: the fastest way each model fits a GPU and host-RAM budget, decided by a pure function
(model_registry/placement.py) over the catalog's computed figures, applied by the diffusers loader and planned
with by the worker. No GPU here: the decisions run on simulated budgets, and where the loader would call a
CUDA-only pipeline method the call is recorded instead."""

from __future__ import annotations

import random
import re
from contextlib import contextmanager

import pytest

from engine.devices import DeviceBudget, cuda_budget
from engine.scheduler import QueuedJob, plan
from model_registry.catalog import builtin_specs
from model_registry.footprint import ComponentFootprint, Footprint, footprint, read_layout
from model_registry.placement import KINDS, card_budget, place
from model_registry.weight_memory import computed_slugs

GB = 1_000_000_000
GIB = 2**30
SPECS = {spec.slug: spec for spec in builtin_specs()}
TORCH_MODELS = [slug for slug in computed_slugs() if slug in SPECS]
LAYOUT = read_layout()


def on_card(settings, card_gb: int, ram_gb: int) -> DeviceBudget:
    """A CUDA card sold as ``card_gb`` in a machine with ``ram_gb`` of RAM, with the server's budget rules."""
    return cuda_budget(settings, "cuda:0", card_gb * GIB, ram_bytes=ram_gb * GIB)


def placed(settings, slug: str, card_gb: int, ram_gb: int = 64):
    return on_card(settings, card_gb, ram_gb).place(footprint(SPECS[slug], LAYOUT))


# ---------------------------------------------------------------- the decision
@pytest.mark.parametrize("slug", TORCH_MODELS)
def test_every_catalog_torch_model_has_a_placement_on_24_gb_with_64_gb_of_ram(settings, slug):
    placement = placed(settings, slug, 24)
    assert placement.kind in KINDS, placement.reason
    budget = on_card(settings, 24, 64)
    assert placement.gpu_bytes <= budget.budget_bytes and placement.host_bytes <= budget.host_budget_bytes


def test_the_models_that_never_fit_a_24_gb_card_now_do_offloaded(settings):
    for slug in ("Flux1schnell", "QwenImageEdit_Plus_NF4", "Ltx2_19B_Dist_FP8", "Ltx2_3_19B_Dist_INT8"):
        spec = SPECS[slug]
        assert spec.vram_bytes > on_card(settings, 24, 64).budget_bytes
        placement = placed(settings, slug, 24)
        assert placement.offloaded and placement.host_bytes == sum(spec.memory.values())


def component(name, weights, group=None, layer=None):
    return ComponentFootprint(name, weights, group or weights, layer or weights)


# Weights 15 GB: a 10 GB transformer in 2 GB groups and 0.5 GB layers, a 4 GB encoder, a 1 GB VAE.
TOY = Footprint(
    "Toy",
    (component("transformer", 10 * GB, 2 * GB, GB // 2), component("text_encoder", 4 * GB, GB, GB // 2), component("vae", GB, GB // 5, GB // 10)),
    working_bytes=GB,
    offloadable=True,
)


@pytest.mark.parametrize(
    ("budget", "kind"),
    [(16 * GB, "resident"), (12 * GB, "model_offload"), (5 * GB, "group_offload"), (2 * GB, "sequential_offload"), (GB, "too_big")],
)
def test_the_fastest_placement_that_fits_wins(budget, kind):
    assert place(TOY, budget, 64 * GB).kind == kind


def test_an_offloaded_placement_needs_host_ram_for_every_weight():
    assert place(TOY, 12 * GB, 15 * GB).kind == "model_offload"
    refused = place(TOY, 12 * GB, 14 * GB)
    assert refused.kind == "too_big" and "host memory budget of 14.0 GB" in refused.reason


def test_vae_tiling_is_tried_before_a_slower_placement():
    decoding = Footprint(TOY.slug, TOY.components, GB, decode_bytes=8 * GB, tiled_decode_bytes=GB, offloadable=True)
    whole = place(decoding, 24 * GB, 64 * GB)
    assert (whole.kind, whole.vae_tiling) == ("resident", False)
    tiled = place(decoding, 16 * GB, 64 * GB)
    assert (tiled.kind, tiled.vae_tiling) == ("resident", True) and tiled.gpu_bytes == 16 * GB


def test_on_the_cpu_nothing_is_offloaded():
    assert place(TOY, 16 * GB, 0, device="cpu").kind == "resident"
    assert place(TOY, 12 * GB, 64 * GB, device="cpu").kind == "too_big"


def test_a_loader_that_cannot_offload_is_resident_or_too_big(settings):
    nanonets = footprint(SPECS["Nanonets_Ocr_S_F16"], LAYOUT)
    assert place(nanonets, 8 * GB, 64 * GB).kind == "resident"
    refused = place(nanonets, 4 * GB, 64 * GB)
    assert refused.kind == "too_big" and "cannot offload" in refused.reason


def test_bigger_cards_never_get_slower_placements(settings):
    order = {kind: i for i, kind in enumerate((*KINDS, "too_big"))}
    for slug in TORCH_MODELS:
        ranks = [order[placed(settings, slug, gb).kind] for gb in (8, 12, 16, 24, 32, 48, 80, 96)]
        assert ranks == sorted(ranks, reverse=True), (slug, ranks)


def test_placements_never_exceed_either_budget():
    rng = random.Random(20240611)
    for _ in range(2000):
        parts = []
        for i in range(rng.randint(1, 6)):
            weights = rng.randint(1, 30) * GB // rng.choice((1, 4, 10))
            group = rng.randint(1, weights)
            parts.append(component("vae" if i == 0 else f"part{i}", weights, group, rng.randint(1, group)))
        decode = rng.choice((0, rng.randint(1, 40) * GB))
        fp = Footprint(
            "Random", tuple(parts), rng.randint(0, 8) * GB, decode, decode // rng.randint(1, 20) if decode else 0,
            offloadable=rng.random() < 0.8, load_bytes=rng.choice((0, parts[-1].weight_bytes)),
        )
        gpu, host = rng.randint(1, 100) * GB, rng.randint(0, 128) * GB
        placement = place(fp, gpu, host, device=rng.choice(("cuda:0", "cpu")))
        if placement.kind == "too_big":
            assert placement.reason
            continue
        assert placement.gpu_bytes <= gpu and placement.host_bytes <= host
        assert placement.gpu_bytes >= min(c.layer_bytes for c in fp.components)
        assert placement.host_bytes == (0 if placement.kind == "resident" else fp.weight_bytes)


def test_a_12_gb_card_with_16_gb_of_ram_refuses_ltx2_saying_what_would_fit(settings):
    refused = placed(settings, "Ltx2_19B_Dist_FP8", 12, ram_gb=16)
    assert refused.kind == "too_big"
    assert "more than the host memory budget" in refused.reason
    # A bigger card (resident needs no RAM for offloaded weights), or this card with the RAM to offload.
    assert re.search(r"on a card of \d+ GB \(resident\)", refused.reason), refused.reason
    assert re.search(r"on this GPU with 48\.8 GB of host RAM for its weights \(\w+ offload\)", refused.reason)


def test_a_4_bit_quantization_is_named_where_it_would_fit(settings):
    refused = placed(settings, "Flux1schnell", 12, ram_gb=16)
    assert refused.kind == "too_big"
    assert "text_encoder_2 quantized to 4 bits" in refused.reason


def test_plan_admits_a_model_by_its_placements_need_not_its_weights(settings):
    budget = on_card(settings, 24, 64)
    flux = placed(settings, "Flux1schnell", 24)
    assert SPECS["Flux1schnell"].vram_bytes > budget.budget_bytes >= flux.gpu_bytes
    decision = plan([QueuedJob("j1", "Flux1schnell", "txt2img", flux.gpu_bytes, 0.0)], [], budget.budget_bytes, 1.0, 30)
    assert decision.run == ("j1",) and decision.load and not decision.fail


def test_plan_fails_a_job_whose_model_has_no_placement():
    job = QueuedJob("j1", "Ltx2", "txt2video", GB, 0.0, refusal="Model Ltx2 needs about 56.4 GB ...")
    decision = plan([job], [], 10 * GB, 1.0, 30)
    assert decision.fail == (("j1", "Model Ltx2 needs about 56.4 GB ..."),) and not decision.run


@pytest.mark.parametrize("slug", sorted(LAYOUT))
def test_the_offload_layout_file_matches_the_meta_device_builds(slug):
    from model_registry.offload_layout import component_layout

    assert component_layout(SPECS[slug]) == LAYOUT[slug], "rerun scripts/offload_layout.py"


def test_every_offloadable_catalog_model_has_its_layout():
    from model_registry.offload_layout import offloadable_slugs

    assert sorted(offloadable_slugs()) == sorted(LAYOUT)


# ---------------------------------------------------------------- the loader applies it
@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    from tests.flux_checkpoint import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux-placement") / "flux")


@pytest.fixture
def cuda_calls(monkeypatch):
    """The loader run as on a CUDA device: the pipeline methods that need one record their calls instead, and
    the load is measured as on the CPU (there is no CUDA to synchronise)."""
    from diffusers import DiffusionPipeline, ModelMixin, hooks

    from model_registry.loaders import _memory, diffusers as loader

    calls: list[tuple] = []
    for method in ("enable_model_cpu_offload", "enable_sequential_cpu_offload"):
        monkeypatch.setattr(DiffusionPipeline, method, lambda self, method=method, **kw: calls.append((method, kw)))
    monkeypatch.setattr(
        ModelMixin, "enable_group_offload", lambda self, **kw: calls.append(("enable_group_offload", type(self).__name__, kw))
    )
    monkeypatch.setattr(
        hooks, "apply_group_offloading", lambda module, **kw: calls.append(("apply_group_offloading", type(module).__name__, kw))
    )

    @contextmanager
    def measured_on_cpu(device):
        with _memory.measured_load("cpu") as box:
            yield box

    monkeypatch.setattr(loader, "measured_load", measured_on_cpu)
    return calls


def load_flux(tiny_flux, device, placement):
    from model_registry.loaders.diffusers import load

    return load(SPECS["Flux1schnell"], tiny_flux, device, placement=placement)


def test_model_offload_calls_enable_model_cpu_offload_on_the_budgets_device(settings, tiny_flux, cuda_calls):
    placement = placed(settings, "Flux1schnell", 32)
    assert placement.kind == "model_offload"
    loaded = load_flux(tiny_flux, "cuda:0", placement)
    assert cuda_calls == [("enable_model_cpu_offload", {"device": "cuda:0"})]
    assert loaded.extras["placement"] is placement


def test_group_offload_streams_the_transformer_by_block_and_the_rest_by_leaf(settings, tiny_flux, cuda_calls):
    placement = placed(settings, "Flux1schnell", 24)
    assert placement.kind == "group_offload"
    load_flux(tiny_flux, "cuda:1", placement)
    by_component = {call[1]: (call[0], call[2]) for call in cuda_calls}
    method, options = by_component["FluxTransformer2DModel"]
    assert method == "enable_group_offload" and options["offload_type"] == "block_level"
    assert options["num_blocks_per_group"] == 1 and options["use_stream"] and str(options["onload_device"]) == "cuda:1"
    assert by_component["AutoencoderKL"][1]["offload_type"] == "leaf_level"
    for encoder in ("CLIPTextModel", "T5EncoderModel"):
        assert by_component[encoder][0] == "apply_group_offloading" and by_component[encoder][1]["offload_type"] == "leaf_level"


def test_sequential_offload_and_vae_tiling(settings, tiny_flux, cuda_calls):
    # LTX-2 on a 12 GB card with 64 GB of RAM: layer by layer, decoding in tiles.
    placement = placed(settings, "Ltx2_19B_Dist_FP8", 12)
    assert (placement.kind, placement.vae_tiling) == ("sequential_offload", True)
    loaded = load_flux(tiny_flux, "cuda:0", placement)
    assert cuda_calls == [("enable_sequential_cpu_offload", {"device": "cuda:0"})]
    assert loaded.handle.vae.use_tiling


def test_on_the_cpu_the_loader_records_its_resident_placement(tiny_flux):
    budget = DeviceBudget("cpu", 64 * GB, 128 * GB, host_budget_bytes=64 * GB)
    placement = budget.place(footprint(SPECS["Flux1schnell"], LAYOUT))
    assert placement.kind == "resident"
    loaded = load_flux(tiny_flux, "cpu", placement)
    assert loaded.extras["placement"] is placement and loaded.handle.transformer.device.type == "cpu"


# ---------------------------------------------------------------- the worker plans and loads with it
def test_a_model_that_fits_only_offloaded_is_admitted_and_loaded_so(settings, tiny_flux):
    """A 29.7 GB model on a 24 GB card: planned with its placement's need and handed that placement to load."""
    from model_registry import ModelRegistry, WeightsLocator
    from tests.conftest import running_api
    from tests.user_models import register_models, tiny_flux_entry

    memory = "memory = { transformer = 20_000_000_000, text_encoder_2 = 9_500_000_000, vae = 200_000_000 }\n"
    register_models(settings, tiny_flux_entry(tiny_flux).replace("vram_bytes = 10000000\n", f"vram_bytes = 29_700_000_000\n{memory}"))
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    loads = []

    def load_on_the_cpu(spec, device, placement):  # no CUDA here: the pipeline runs on the CPU
        loads.append((device, placement))
        return registry.load(spec, "cpu", placement)

    budget = on_card(settings, 24, 64)
    with running_api(settings, budget=budget, load_fn=load_on_the_cpu) as api:
        body = {"prompt": "a red cat", "model": "TinyFlux", "width": 64, "height": 48, "steps": 1, "seed": 1}
        status = api.wait(api.post("txt2img", json=body).json()["data"]["request_id"], timeout=120)
        assert status["status"] == "done", status
        listed = {m["slug"]: m for m in api.get("models", params={"per_page": 50}).json()["data"]}
    (device, placement), = loads
    assert device == "cuda:0" and placement.kind == "model_offload"
    assert placement.gpu_bytes <= budget.budget_bytes < 29_700_000_000
    assert listed["TinyFlux"]["placement"] == placement.as_dict()


def test_card_budget_is_the_card_less_the_reserve():
    assert card_budget(24) == 24 * GIB - 1_500_000_000


def test_the_budget_starts_from_what_the_card_had_free(settings):
    """A display (or another process) holding 2 GB of a 24 GB card keeps it: the budget is the free memory
    at start-up less the reserve, not the card's size."""
    from engine.devices import cuda_budget

    whole = cuda_budget(settings, "cuda:0", 24 * GIB, ram_bytes=64 * GIB)
    shared = cuda_budget(settings, "cuda:0", 24 * GIB, ram_bytes=64 * GIB, free_bytes=22 * GIB)
    assert whole.budget_bytes == 24 * GIB - 1_500_000_000
    assert shared.budget_bytes == 22 * GIB - 1_500_000_000
