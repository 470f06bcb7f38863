"""Placements: the fastest way each model fits a GPU and host-RAM budget, decided by a pure function
(model_registry/placement.py) over the catalog's computed figures, applied by the diffusers loader and planned
with by the worker. No GPU here: the decisions run on simulated budgets, and where the loader would call a
CUDA-only pipeline method the call is recorded instead."""

from __future__ import annotations

import random
import re
from contextlib import contextmanager, nullcontext

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
    for slug in ("Flux1schnell", "Ltx2_19B_Dist_FP8", "Ltx2_3_19B_Dist_INT8"):
        spec = SPECS[slug]
        assert spec.vram_bytes > on_card(settings, 24, 64).budget_bytes
        placement = placed(settings, slug, 24)
        quantized = {name: spec.quantized_memory[name] for name in placement.quantized_encoders}
        assert placement.offloaded and placement.host_bytes == sum({**spec.memory, **quantized}.values())


def test_qwen_image_edit_nf4_is_resident_on_24_gb_with_its_encoder_in_nf4_too(settings):
    """Its Qwen2.5-VL-7B encoder, 16.6 GB in bf16, is what kept the NF4 model off a 24 GB card: quantized like
    its transformer it fits whole, which beats any offload."""
    spec = SPECS["QwenImageEdit_Plus_NF4"]
    assert sum(spec.memory.values()) > on_card(settings, 24, 64).budget_bytes
    placement = placed(settings, "QwenImageEdit_Plus_NF4", 24)
    assert (placement.kind, placement.quantized_encoders) == ("resident", ("text_encoder",))
    assert placement.gpu_bytes <= on_card(settings, 24, 64).budget_bytes
    # A 80 GB card holds the encoder as stored.
    assert placed(settings, "QwenImageEdit_Plus_NF4", 80).quantized_encoders == ()


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


def with_quantized_encoder(fp: Footprint, encoder_bytes: int, on_gpu_at_load: bool) -> Footprint:
    """``fp`` with a quantized form of its text encoder, as footprint() builds it for an NF4/INT8/FP8 slug."""
    from dataclasses import replace

    small = tuple(
        component(c.name, encoder_bytes, encoder_bytes // 4, encoder_bytes // 8) if c.name == "text_encoder" else c
        for c in fp.components
    )
    load = fp.load_bytes + (encoder_bytes if on_gpu_at_load else 0)
    quantized = replace(fp, components=small, load_bytes=load, quantized_encoders=("text_encoder",))
    return replace(fp, encoders_quantized=quantized)


@pytest.mark.parametrize(
    ("budget", "kind", "encoders"),
    [
        (16 * GB, "resident", ()),
        (14 * GB, "resident", ("text_encoder",)),  # 10 + 1 + 1 weights, 1 working: quantizing beats offloading
        (11 * GB, "model_offload", ("text_encoder",)),
        (5 * GB, "group_offload", ("text_encoder",)),
    ],
)
def test_quantized_text_encoders_come_after_resident_and_before_offload(budget, kind, encoders):
    fp = with_quantized_encoder(TOY, GB, on_gpu_at_load=False)
    placement = place(fp, budget, 64 * GB)
    assert (placement.kind, placement.quantized_encoders) == (kind, encoders)
    if placement.offloaded:
        assert placement.host_bytes == 12 * GB  # the quantized weights are what stays in RAM


def test_bitsandbytes_encoders_that_the_load_cannot_hold_stay_16_bit_offloaded():
    """bitsandbytes quantizes on the GPU at load: a transformer and an encoder quantized there at once may
    not fit a small card, where the 16-bit encoder, loaded in RAM, does."""
    fp = with_quantized_encoder(replace_load(TOY, 8 * GB), 3 * GB, on_gpu_at_load=True)
    placement = place(fp, 10 * GB, 64 * GB)
    assert (placement.kind, placement.quantized_encoders) == ("group_offload", ())
    assert place(fp, 10 * GB, 64 * GB, device="cpu").quantized_encoders == ()


def replace_load(fp: Footprint, load: int) -> Footprint:
    from dataclasses import replace

    return replace(fp, load_bytes=load)


def replace_components(fp: Footprint, parts: list[ComponentFootprint]) -> Footprint:
    from dataclasses import replace

    return replace(fp, components=tuple(parts))


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
        if len(parts) > 1 and rng.random() < 0.5:
            parts[1] = component("text_encoder", parts[1].weight_bytes, parts[1].group_bytes, parts[1].layer_bytes)
            fp = with_quantized_encoder(
                replace_components(fp, parts), max(1, parts[1].weight_bytes // 3), on_gpu_at_load=rng.random() < 0.5
            )
        device = rng.choice(("cuda:0", "cpu"))
        gpu, host = rng.randint(1, 100) * GB, rng.randint(0, 128) * GB
        placement = place(fp, gpu, host, device=device)
        if placement.kind == "too_big":
            assert placement.reason
            continue
        used = fp.encoders_quantized if placement.quantized_encoders else fp
        assert used is not None and (device != "cpu" or used is fp)
        assert placement.gpu_bytes <= gpu and placement.host_bytes <= host
        assert placement.gpu_bytes >= min(c.layer_bytes for c in used.components)
        assert placement.gpu_bytes >= (used.load_bytes if placement.offloaded else 0)
        assert placement.host_bytes == (0 if placement.kind == "resident" else used.weight_bytes)


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
    # LTX-2 on a 10 GB card with 64 GB of RAM: layer by layer, decoding in tiles.
    placement = placed(settings, "Ltx2_19B_Dist_FP8", 10)
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


# ---------------------------------------------------------------- the loader quantizes the encoders it is told to
def test_nf4_and_int8_placements_have_bitsandbytes_quantize_the_encoders_too():
    from model_registry.loaders.diffusers import _options

    for slug in ("QwenImageEdit_Plus_NF4", "ZImageTurbo_INT8"):
        plain, _ = _options(SPECS[slug], "cuda:0")
        assert plain["quantization_config"].components_to_quantize == ["transformer"]
        quantized, _ = _options(SPECS[slug], "cuda:0", ("text_encoder",))
        assert quantized["quantization_config"].components_to_quantize == ["transformer", "text_encoder"]


def test_a_kept_prequantized_transformer_still_leaves_the_encoders_to_quantize(tiny_flux):
    """The quantized-transformer cache replaces the transformer's quantization, not the encoders'."""
    import torch

    from model_registry.loaders.diffusers import _options, _use_prequantized

    options, _ = _options(SPECS["QwenImageEdit_Plus_NF4"], "cuda:0", ("text_encoder",))
    options = {**options, "dtype": torch.float32}
    reused = _use_prequantized(options, tiny_flux / "transformer")
    assert reused["quantization_config"].components_to_quantize == ["text_encoder"] and "transformer" in reused
    alone, _ = _options(SPECS["QwenImageEdit_Plus_NF4"], "cuda:0")
    assert "quantization_config" not in _use_prequantized({**alone, "dtype": options["dtype"]}, tiny_flux / "transformer")


def test_an_fp8_placement_casts_the_named_encoders_to_float8_storage(settings, tiny_flux, cuda_calls):
    import msgspec
    import torch

    fp8 = msgspec.structs.replace(SPECS["Flux1schnell"], quantization="fp8")
    from dataclasses import replace

    from model_registry.loaders.diffusers import load

    placement = replace(place(footprint(fp8, LAYOUT), 20 * GB, 64 * GB), kind="model_offload", quantized_encoders=("text_encoder_2",))

    loaded = load(fp8, tiny_flux, "cuda:0", placement=placement)
    pipe = loaded.handle
    t5 = [m for m in pipe.text_encoder_2.modules() if isinstance(m, torch.nn.Linear)]
    clip = [m for m in pipe.text_encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert t5 and all(m.weight.dtype == torch.float8_e4m3fn for m in t5)
    assert all(m.weight.dtype == torch.bfloat16 for m in clip)
    assert loaded.extras["quantized_encoders"] == ("text_encoder_2",)
    assert cuda_calls == [("enable_model_cpu_offload", {"device": "cuda:0"})]


# ---------------------------------------------------------------- resident: read component by component onto the GPU
@pytest.fixture
def resident_on_cuda(monkeypatch, cuda_calls):
    """As cuda_calls, plus what a resident CUDA load does that needs a device: from_pretrained records its
    options and loads on the CPU, moves to the device are recorded, and the current-device switch is a no-op."""
    from diffusers import DiffusionPipeline

    from model_registry.loaders import diffusers as loader

    original = DiffusionPipeline.from_pretrained.__func__
    seen: dict = {"moved": []}

    def recording_from_pretrained(cls, path, **options):
        seen["options"] = dict(options)
        cpu = {k: v for k, v in options.items() if k != "device_map"}
        return original(cls, path, **cpu)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(recording_from_pretrained))
    monkeypatch.setattr(DiffusionPipeline, "to", lambda self, device: seen.setdefault("pipe_to", device) and self)
    monkeypatch.setattr(loader, "_to_device", lambda module, device: seen["moved"].append((type(module).__name__, device)) or module)
    monkeypatch.setattr(loader, "_current_cuda_device", lambda device: nullcontext())
    return seen


def test_a_resident_gpu_load_reads_each_component_straight_onto_the_device(tiny_flux, resident_on_cuda):
    from model_registry.loaders.diffusers import load

    resident = place(footprint(SPECS["Flux1schnell"], LAYOUT), 80 * GB, 64 * GB)
    assert resident.kind == "resident"
    load(SPECS["Flux1schnell"], tiny_flux, "cuda:0", placement=resident)
    assert resident_on_cuda["options"]["device_map"] == "cuda" and resident_on_cuda["moved"] == []


def test_an_offloaded_load_reads_into_ram(settings, tiny_flux, resident_on_cuda):
    from model_registry.loaders.diffusers import load

    load(SPECS["Flux1schnell"], tiny_flux, "cuda:0", placement=placed(settings, "Flux1schnell", 32))
    assert "device_map" not in resident_on_cuda["options"]


def test_a_resident_fp8_component_is_cast_in_ram_before_it_moves(tiny_flux, resident_on_cuda):
    """The GPU never holds an FP8 slug's transformer (or FP8 encoder) in 16 bits: each is read in RAM, cast to
    float8 storage, and only then moved, alone; the rest is read straight onto the device."""
    import msgspec
    import torch
    from dataclasses import replace

    from model_registry.loaders.diffusers import load

    fp8 = msgspec.structs.replace(SPECS["Flux1schnell"], quantization="fp8")
    placement = replace(place(footprint(fp8, LAYOUT), 80 * GB, 64 * GB), quantized_encoders=("text_encoder_2",))
    assert placement.kind == "resident"
    loaded = load(fp8, tiny_flux, "cuda:0", placement=placement)
    passed = resident_on_cuda["options"]
    assert passed["device_map"] == "cuda"
    assert [name for name, _ in resident_on_cuda["moved"]] == ["FluxTransformer2DModel", "T5EncoderModel"]
    for name in ("transformer", "text_encoder_2"):
        # All but the layers diffusers' skip patterns keep in 16 bits (norms, embedders).
        stored = [m.weight.dtype for m in passed[name].modules() if isinstance(m, torch.nn.Linear)]
        assert stored.count(torch.float8_e4m3fn) > len(stored) / 2, (name, stored)
        assert getattr(loaded.handle, name) is passed[name]
    assert loaded.precision == "fp8"
