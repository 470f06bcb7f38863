"""One settings tree, built once at start-up from the environment and ``$DRYLOCAL_HOME/config.toml``.

Environment variables use the prefix ``DRYLOCAL_`` (``DRYLOCAL_PORT=9000``); the config file holds the
same names at its top level, beside the ``[[models]]`` rows of a user's own models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

__all__ = ("Settings", "default_home")


def default_home() -> Path:
    return Path(os.environ.get("DRYLOCAL_HOME") or Path.home() / ".drylocal").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRYLOCAL_", env_nested_delimiter="__", extra="ignore")
    _toml_file: ClassVar[Path | None] = None

    home: Path = Field(default_factory=default_home)
    """The data directory: drylocal.db, results/, inputs/, models/, config.toml. Nothing else is written."""
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    """Base of result URLs handed to clients; defaults to http://host:port."""
    metrics_public: bool = False
    """``GET /metrics`` without a key, for a local Prometheus scraper; otherwise it needs an owner's
    key (the counts cover every account)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (beside IP addresses, localhost, ``host`` and ``public_url``'s) that requests may
    address this server by; any other ``Host`` is refused with 421, against DNS rebinding."""

    device: str = "auto"
    """``auto`` (every CUDA device present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    devices: tuple[str, ...] = ()
    """The devices to drive, one worker each (``["cuda:0", "cuda:2"]``); empty = as ``device`` says."""
    memory_budget_bytes: int | None = None
    """Memory the scheduler may fill with models; None = device memory minus the reserve."""
    gpu_reserve_bytes: int = 1_500_000_000
    """Kept free on a GPU for activations, the CUDA context and other processes."""
    cpu_memory_fraction: float = 0.5
    """On the CPU the budget is this share of the machine's RAM."""
    host_memory_fraction: float = 0.8
    """On a GPU machine, the share of RAM that offloaded models' weights may take (model_registry/placement.py):
    below the supervisor's default kill line at 90 %, leaving the rest to the server itself."""
    host_memory_budget_bytes: int | None = None
    """That RAM budget in bytes, overriding ``host_memory_fraction``."""
    keep_alive_seconds: float = 300.0
    """Idle time before a model unloads: -1 = never, 0 = at once. A model's spec may override it."""
    max_wait_seconds: float = 30.0
    """A job whose model is resident may overtake one that needs a swap, until that one waited this long."""
    max_batch_inputs: int = 256
    """Most texts one micro-batch of embedding jobs may hold."""
    webhook_allow_http_loopback: bool = True
    """Webhooks to this machine (local receivers, plain http allowed) for the owner's keys (the
    ``unlimited`` tier); other accounts may never make the server call its own ports."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Hosts (names or addresses) every account's webhooks may reach although they are on this machine
    or a private network, e.g. an automation server on the LAN; plain http is allowed to them."""
    webhook_retry_delays: tuple[float, ...] = (0, 60, 120, 300, 600, 1800, 3600, 10800, 21600, 43200)
    """Seconds before each delivery attempt (the documented schedule)."""
    pusher_app_keys: tuple[str, ...] = ("dryapi-api-prod-key", "depin-api-prod-key")
    """App keys the WebSocket server at /app/{key} answers to (both spellings the docs' examples use);
    the first one signs /broadcasting/auth answers."""
    max_connections: int = 1024
    """Open HTTP and WebSocket connections the server holds at once; past it, new ones get 503 (so
    thousands of half-sent requests cannot hold it)."""
    header_timeout_seconds: float = 10.0
    """A request's headers must arrive whole within this long of the connection (or of the answer before
    them on a kept-alive one), else it is closed: slow senders cannot hold sockets (0: no limit)."""
    body_idle_seconds: float = 30.0
    """A request body that stops arriving for this long closes its connection (0: no limit)."""
    pusher_max_sockets_per_ip: int = 64
    """WebSockets one address may hold open at once; the next is refused with 4100 (over capacity)."""
    pusher_activity_timeout: float = 30.0
    """Seconds of client silence before the server pings (advertised to clients in the handshake)."""
    pusher_pong_timeout: float = 30.0
    """Seconds a pinged client has to answer before its socket is closed with 4201."""
    fetch_allowed_hosts: tuple[str, ...] = ()
    """Hosts (names or addresses) that vid2txt/aud2txt URLs may reach although they are on a private
    network or this machine, e.g. a media server on the LAN; every other internal address is refused."""
    max_downloads: int = 2
    """URL media (vid2txt, aud2txt) downloaded at the same time, beside the GPU's queue."""
    job_time_limit_seconds: float = 1800
    """How long one job may run before it is stopped at its next progress step (video twice this,
    transcription this plus twice the media's length); 0 = no limit."""
    max_attempts: int = 2
    """A job interrupted by a lost server (killed, machine down) is re-queued until it has started this
    many times; a job whose own run killed the server is failed at once (``supervise``)."""
    supervise: bool = True
    """``drylocal serve`` runs the server as a child it restarts after a crash, killing it at
    ``memory_limit_bytes``; the job a dead child was running is failed (refunded), never re-run."""
    memory_limit_bytes: int | None = None
    """Resident memory at which the supervisor kills the server: None = 90 % of the machine's RAM,
    0 = no limit."""
    embedded_skip: tuple[str, ...] = ()
    """Packaged models ``drylocal serve`` does not prepare at start (each is converted once, into
    ``models_dir``; SmolLM2_135M_Instruct takes the longest, about 40 s on two cores)."""
    status_hold_seconds: float = 2.0
    """``request-status`` of an unfinished job answers when the job ends, or after this long as it then
    stands. Clients poll at once and then after a second or more (the SDK: 1, 1.5, 2.25 s...): a fast
    job's result reaches them as it is done instead of at their next poll. 0 answers at once."""
    isolate_executor: bool = True
    """Models load and run in a child process of the server: a job that crashes it or outgrows
    ``executor_memory_limit_bytes`` fails (refunded, not retried) while the API stays up and a new
    process starts. False: they run in the server's own process (a crash then restarts the server)."""
    executor_memory_limit_bytes: int | None = None
    """Resident memory at which the server kills its inference process: None = 85 % of the machine's
    RAM (below the supervisor's limit for the server, so the job, not the API, is what stops), 0 = no limit."""

    rate_limits_enabled: bool = True
    """The documented per-key limits for Basic and Premium keys (owner keys are never limited)."""
    rate_limits: dict[str, dict[str, tuple[int, int]]] = {}
    """Overrides, ``{tier: {bucket: [per_minute, per_day]}}`` with 0 = no limit; buckets are route names,
    ``whisper`` (Basic's shared transcription limit), ``price-calculation`` and ``request-status``."""

    result_ttl_seconds: int = 24 * 3600
    """How long a signed result URL stays valid."""
    result_retention_seconds: float = 7 * 86400
    """How long a finished job's result files are kept (then its status answers without a URL)."""
    job_retention_seconds: float = 30 * 86400
    """How long finished job rows are kept; charges and refunds stay in the ledger for good."""
    gc_interval_seconds: float = 3600
    """How often the server collects what expired (``drylocal gc`` does it at once); 0 = never."""
    error_format: Literal["array", "object"] = "object"
    """422 ``errors`` as the Laravel object {field: [messages]} the hosted service answers and the real
    clients parse (the SDK's balance check, the MCP server's ``errors.items()``), or ``"array"``: the
    docs' array of {field, messages}."""
    initial_balance: float = 5.0
    """Credit of an account created by ``drylocal keys create`` (the hosted sign-up bonus)."""
    database_url: str | None = None
    """``postgresql://user@host/db``: keep jobs, accounts and the ledger in PostgreSQL, so several API
    processes can serve one queue (needs the ``postgres`` extra and a shared ``home`` for inputs and
    results); unset = the SQLite file ``home/drylocal.db``."""

    @property
    def db_path(self) -> Path:
        return self.home / "drylocal.db"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def inputs_dir(self) -> Path:
        return self.home / "inputs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        home = Path(overrides.get("home") or default_home()).expanduser()
        cls._toml_file = home / "config.toml"
        try:
            return cls(**{"home": home, **overrides})
        finally:
            cls._toml_file = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None and cls._toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    def ensure_dirs(self) -> None:
        for folder in (self.home, self.results_dir, self.inputs_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
