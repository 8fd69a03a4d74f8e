"""Server configuration: one TOML file plus environment variables.

Secrets never live in the file: a provider names the environment variable that holds its
key (``api_key_env``) and the key is read from the environment when the server starts.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER_TYPES = ("chat_completions", "responses", "local")
# Set in the worker processes of ``continuo serve --workers N``.
WORKER_ENV = "CONTINUO_WORKER"


class ConfigError(ValueError):
    pass


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 50 * 1024 * 1024
    # Server processes on one port; 0 or "auto": one per core.
    workers: int | str = 1


@dataclass(slots=True)
class DatabaseConfig:
    url: str = "sqlite:///continuo.db"
    # Run migrations at start (``continuo migrate`` does it on demand).
    migrate: bool = True
    # Connections per replica (PostgreSQL).
    pool_size: int = 10


@dataclass(slots=True)
class BackgroundConfig:
    # Runs at once on this replica; the rest wait, queued, in order.
    max_concurrent: int = 8
    # A replica renews its runs' leases every lease_seconds / 3; a run whose lease ran
    # out (its replica died) is ended as failed by whichever replica notices.
    lease_seconds: float = 30.0
    # How often readers and the queue look at the store when no wake-up came.
    poll_seconds: float = 1.0


@dataclass(slots=True)
class LimitsConfig:
    # 0 turns a limit off.
    requests_per_minute: int = 0  # per API key, across every worker and replica
    concurrent_streams: int = 0  # per API key, across every worker and replica
    max_input_items: int = 4096
    # Count the limits in Redis rather than in the database.
    redis_url: str | None = None


@dataclass(slots=True)
class WebSocketConfig:
    """WebSocket mode on ``/v1/responses``: limits per socket."""

    max_age_seconds: float = 3600.0  # then the server closes the socket (OpenAI: 60 minutes)
    max_streams: int = 8  # lanes (stream_id) with a response running or waiting, at once
    max_active_responses: int = 32  # responses running or waiting, all lanes together
    cache_responses: int = 16  # store:false contexts kept for continuation
    cache_bytes: int = 32 * 1024 * 1024  # their JSON size, all together


@dataclass(slots=True)
class SecurityConfig:
    # The server fetches URLs itself only for providers with fetch_remote_content; these
    # bound what it will fetch.
    allow_private_urls: bool = False
    fetch_max_bytes: int = 20 * 1024 * 1024
    fetch_timeout: float = 10.0
    # A server whose keys were all revoked stays closed unless this is true; then it is
    # open again while no key is active (as before the first key was created).
    reopen_without_active_keys: bool = False
    # Long contexts: the environment variable holding the key(s) that seal compaction
    # items (comma-separated; the first seals, all open). Unset: a key generated on first
    # start and kept in the database.
    compaction_key_env: str | None = None


@dataclass(slots=True)
class MCPConfig:
    """``[mcp]``: remote MCP tools that Continuo runs itself."""

    # When not empty, a request's server_url must start with one of these.
    allowed_servers: list[str] = field(default_factory=list)
    list_timeout: float = 30.0
    call_timeout: float = 120.0
    # The longest tool output (characters) given to the model; the rest is cut off.
    max_output_chars: int = 100_000
    # Model calls in one response at most (a loop guard beside max_tool_calls).
    max_rounds: int = 32


@dataclass(slots=True)
class MCPServerConfig:
    """``[[mcp_servers]]``: a server clients may use by ``server_label`` alone."""

    label: str
    url: str | None = None
    # "streamable_http" (default for url), "sse", or "stdio" (with command).
    transport: str | None = None
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # Header name -> environment variable holding its value (secrets stay out of the file).
    headers_env: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    require_approval: Any = None
    allowed_tools: Any = None


@dataclass(slots=True)
class KeyConfig:
    """A key declared in the file: by its hash (``sha256:<hex>``) or by the name of the
    environment variable that holds it."""

    project: str
    hash: str | None = None
    env: str | None = None


@dataclass(slots=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_retries: int = 2
    drop_params: list[str] = field(default_factory=list)
    # Download http(s) images and files in the input and send them inline, for upstreams
    # that cannot fetch URLs themselves.
    fetch_remote_content: bool = False
    # The largest non-streamed body, and the longest stream line, taken from the upstream.
    max_response_bytes: int = 16 * 1024 * 1024
    model_path: str | None = None
    n_threads: int = 1
    n_ctx: int = 4096
    # type = "local": generations at once (llama.cpp slots, continuous batching); each
    # gets the whole n_ctx (the KV cache holds parallel * n_ctx tokens).
    parallel: int = 4
    # type = "local": the output cap when a request sends no max_output_tokens (0: none).
    default_max_output_tokens: int = 512
    # type = "local": llama.cpp sampling settings (its own names) added to a request that
    # sets no penalty of its own; None: the built-in anti-loop defaults, {}: none.
    sampling_defaults: dict[str, Any] | None = None
    # Settings of a provider type that this file does not know are kept here.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(slots=True)
class ModelConfig:
    name: str
    provider: str
    upstream_model: str | None = None
    # Long contexts: the model's context window in tokens (the embedded model knows its own).
    context_window: int | None = None


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    keys: list[KeyConfig] = field(default_factory=list)
    providers: list[ProviderConfig] = field(default_factory=list)
    models: list[ModelConfig] = field(default_factory=list)
    mcp: MCPConfig = field(default_factory=MCPConfig)
    mcp_servers: list[MCPServerConfig] = field(default_factory=list)


def _section(raw: dict[str, Any], key: str, cls: type, where: str) -> Any:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - known
    if unknown:
        raise ConfigError(f"[{where}] has unknown keys: {', '.join(sorted(unknown))}")
    return cls(**value)


def _provider(raw: Any, index: int) -> ProviderConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"providers[{index}] must be a table")
    if "name" not in raw or "type" not in raw:
        raise ConfigError(f"providers[{index}] needs 'name' and 'type'")
    if raw["type"] not in PROVIDER_TYPES:
        raise ConfigError(f"providers[{index}].type must be one of {', '.join(PROVIDER_TYPES)}, not {raw['type']!r}")
    known = set(ProviderConfig.__dataclass_fields__) - {"options"}
    values = {k: v for k, v in raw.items() if k in known}
    values["options"] = {k: v for k, v in raw.items() if k not in known}
    if "api_key" in raw:
        raise ConfigError(
            f"providers[{index}]: keys do not belong in the file; set api_key_env to the "
            "name of an environment variable that holds it"
        )
    return ProviderConfig(**values)


def _model(raw: Any, index: int) -> ModelConfig:
    if not isinstance(raw, dict) or "name" not in raw or "provider" not in raw:
        raise ConfigError(f"models[{index}] needs 'name' and 'provider'")
    unknown = set(raw) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"models[{index}] has unknown keys: {', '.join(sorted(unknown))}")
    return ModelConfig(**raw)


def _mcp_server(raw: Any, index: int) -> MCPServerConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str):
        raise ConfigError(f"mcp_servers[{index}] needs a 'label'")
    unknown = set(raw) - {f.name for f in dataclasses.fields(MCPServerConfig)}
    if unknown:
        raise ConfigError(f"mcp_servers[{index}] has unknown keys: {', '.join(sorted(unknown))}")
    if (raw.get("url") is None) == (raw.get("command") is None):
        raise ConfigError(f"mcp_servers[{index}] needs exactly one of 'url' or 'command'")
    if raw.get("transport") not in (None, "streamable_http", "sse", "stdio"):
        raise ConfigError(f"mcp_servers[{index}].transport must be streamable_http, sse or stdio")
    return MCPServerConfig(**raw)


def _key(raw: Any, index: int) -> KeyConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("project"), str):
        raise ConfigError(f"keys[{index}] needs a 'project'")
    unknown = set(raw) - {f.name for f in dataclasses.fields(KeyConfig)}
    if unknown:
        raise ConfigError(f"keys[{index}] has unknown keys: {', '.join(sorted(unknown))}")
    if (raw.get("hash") is None) == (raw.get("env") is None):
        raise ConfigError(f"keys[{index}] needs exactly one of 'hash' (sha256:<hex>) or 'env'")
    if raw.get("hash") is not None and not str(raw["hash"]).startswith("sha256:"):
        raise ConfigError(f"keys[{index}].hash must look like sha256:<hex>")
    return KeyConfig(**raw)


def parse_config(raw: dict[str, Any]) -> Config:
    config = Config(
        server=_section(raw, "server", ServerConfig, "server"),
        database=_section(raw, "database", DatabaseConfig, "database"),
        background=_section(raw, "background", BackgroundConfig, "background"),
        limits=_section(raw, "limits", LimitsConfig, "limits"),
        security=_section(raw, "security", SecurityConfig, "security"),
        websocket=_section(raw, "websocket", WebSocketConfig, "websocket"),
        keys=[_key(k, i) for i, k in enumerate(raw.get("keys", []))],
        providers=[_provider(p, i) for i, p in enumerate(raw.get("providers", []))],
        models=[_model(m, i) for i, m in enumerate(raw.get("models", []))],
        mcp=_section(raw, "mcp", MCPConfig, "mcp"),
        mcp_servers=[_mcp_server(s, i) for i, s in enumerate(raw.get("mcp_servers", []))],
    )
    names = [p.name for p in config.providers]
    if len(names) != len(set(names)):
        raise ConfigError("provider names must be unique")
    for i, model in enumerate(config.models):
        if model.provider not in names:
            raise ConfigError(f"models[{i}] names unknown provider {model.provider!r}")
    return config


def default_local_model() -> tuple[list[ProviderConfig], list[ModelConfig]]:
    """With no provider configured, the embedded model answers as ``local`` and for any
    other name, so a fresh install works with no key and no upstream."""
    provider = ProviderConfig(name="local", type="local")
    return [provider], [ModelConfig(name="local", provider="local"), ModelConfig(name="*", provider="local")]


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the TOML file at ``path`` (or ``$CONTINUO_CONFIG``); no file means defaults:
    SQLite at ./continuo.db and the embedded local model.

    ``$CONTINUO_DATABASE_URL`` overrides ``[database] url``.
    """
    path = path or os.environ.get("CONTINUO_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    config = parse_config(raw)
    if not config.providers:
        config.providers, config.models = default_local_model()
    if url := os.environ.get("CONTINUO_DATABASE_URL"):
        config.database.url = url
    return config
