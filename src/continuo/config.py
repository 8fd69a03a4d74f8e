"""Server configuration: one TOML file plus environment variables.

The whole file is validated by the pydantic models below (every type and range, no
unknown key anywhere). A mistake is a ``ConfigError`` whose lines each name the file, the
key and the problem; the CLI prints them and exits non-zero, without a traceback.

Secrets never live in the file: a provider names the environment variable that holds its
key (``api_key_env``) and the key is read from the environment when the server starts.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from continuo.config_errors import ConfigError, describe

PROVIDER_TYPES = ("chat_completions", "responses", "local")
# Set in the worker processes of ``continuo serve --workers N``.
WORKER_ENV = "CONTINUO_WORKER"
# Settings that only the embedded model reads, and those that only HTTP providers read.
LOCAL_ONLY = (
    "model_path",
    "n_threads",
    "n_ctx",
    "cache_ram_mib",
    "cache_reuse",
    "parallel",
    "default_max_output_tokens",
    "sampling_defaults",
)
HTTP_ONLY = ("base_url", "api_key_env", "headers", "connect_timeout", "max_retries", "fetch_remote_content")

__all__ = ["ConfigError", "load_config", "parse_config"]

NonEmpty = Annotated[str, Field(min_length=1)]
# Fractions allowed (0.5: twelve hours); at most 100,000 days, which also keeps out inf.
RetainDays = Annotated[float, Field(ge=0, le=100_000)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]


def _problem(key: str, message: str) -> PydanticCustomError:
    """A problem with ``key`` (a path below the model that raises it)."""
    return PydanticCustomError("continuo", message, {"key": key})


class _Section(BaseModel):
    # strict: TOML has types, so "8" where a number belongs is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", strict=True)


class ServerConfig(_Section):
    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(ge=1)] = 50 * 1024 * 1024
    # Server processes on one port; 0 or "auto": one per core.
    workers: Count | Literal["auto"] = 1
    # Retention: days a response is kept after it was created (and a conversation after
    # its last use), for every project without a [[projects]] retain_days of its own.
    # None or 0: kept until deleted. The sweep runs every retention_interval seconds, in
    # transactions of at most retention_batch rows.
    retain_days: RetainDays | None = None
    retention_interval: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    retention_batch: Annotated[int, Field(ge=1, le=100_000)] = 100


def database_url_problem(url: str) -> str | None:
    """Why Continuo cannot use ``url``, or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{url!r} is not a database URL (sqlite:///path or postgresql://user@host:5432/db)"
    scheme = parsed.drivername
    if scheme in ("sqlite", "sqlite+pysqlite"):
        if not parsed.database or parsed.database == ":memory:":
            return "an in-memory SQLite database cannot be shared by the server's connections: give a file path"
        return None
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return None if parsed.database else "a PostgreSQL URL needs a database name (postgresql://user@host:5432/db)"
    return f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://user@host:5432/db"


class DatabaseConfig(_Section):
    url: NonEmpty = "sqlite:///continuo.db"
    # Run migrations at start (``continuo migrate`` does it on demand).
    migrate: bool = True
    # Connections per replica (PostgreSQL).
    pool_size: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _supported(self) -> DatabaseConfig:
        if (problem := database_url_problem(self.url)) is not None:
            raise _problem("url", problem)
        return self


class BackgroundConfig(_Section):
    # Runs at once on this replica; the rest wait, queued, in order.
    max_concurrent: Count = 8
    # A replica renews its runs' leases every lease_seconds / 3; a run whose lease ran
    # out (its replica died) is ended as failed by whichever replica notices.
    lease_seconds: Positive = 30.0
    # How often readers and the queue look at the store when no wake-up came.
    poll_seconds: Positive = 1.0


class LimitsConfig(_Section):
    # 0 turns a limit off.
    requests_per_minute: Count = 0  # per API key, across every worker and replica
    concurrent_streams: Count = 0  # per API key, across every worker and replica
    max_input_items: Annotated[int, Field(ge=1)] = 4096
    # Count the limits in Redis rather than in the database.
    redis_url: Annotated[str, Field(pattern=r"^rediss?://")] | None = None


class SecurityConfig(_Section):
    # The server fetches URLs itself only for providers with fetch_remote_content; these
    # bound what it will fetch.
    allow_private_urls: bool = False
    fetch_max_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    fetch_timeout: Positive = 10.0
    # A server whose keys were all revoked stays closed unless this is true; then it is
    # open again while no key is active (as before the first key was created).
    reopen_without_active_keys: bool = False
    # Long contexts: the environment variable holding the key(s) that seal compaction
    # items (comma-separated; the first seals, all open). Unset: a key generated on first
    # start and kept in the database.
    compaction_key_env: NonEmpty | None = None


class WebSocketConfig(_Section):
    """WebSocket mode on ``/v1/responses``: limits per socket."""

    max_age_seconds: Positive = 3600.0  # then the server closes the socket (OpenAI: 60 minutes)
    max_streams: Annotated[int, Field(ge=1)] = 8  # lanes (stream_id) with a response running or waiting
    max_active_responses: Annotated[int, Field(ge=1)] = 32  # responses running or waiting, all lanes
    cache_responses: Count = 16  # store:false contexts kept for continuation
    cache_bytes: Count = 32 * 1024 * 1024  # their JSON size, all together


class MCPConfig(_Section):
    """``[mcp]``: remote MCP tools that Continuo runs itself."""

    # When not empty, a request's server_url must start with one of these.
    allowed_servers: list[str] = Field(default_factory=list)
    list_timeout: Positive = 30.0
    call_timeout: Positive = 120.0
    # The longest tool output (characters) given to the model; the rest is cut off.
    max_output_chars: Annotated[int, Field(ge=1)] = 100_000
    # Model calls in one response at most (a loop guard beside max_tool_calls).
    max_rounds: Annotated[int, Field(ge=1)] = 32


class MCPServerConfig(_Section):
    """``[[mcp_servers]]``: a server clients may use by ``server_label`` alone."""

    label: NonEmpty
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # "streamable_http" (default for url), "sse", or "stdio" (with command).
    transport: Literal["streamable_http", "sse", "stdio"] | None = None
    command: NonEmpty | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # Header name -> environment variable holding its value (secrets stay out of the file).
    headers_env: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    require_approval: Any = None
    allowed_tools: Any = None

    @model_validator(mode="after")
    def _one_way_to_reach_it(self) -> MCPServerConfig:
        if (self.url is None) == (self.command is None):
            raise _problem("", "needs exactly one of 'url' or 'command'")
        return self


class MetricsConfig(_Section):
    """``GET /metrics``: open to loopback clients only, unless a key is set (then anyone
    with the key) or ``public`` is true."""

    enabled: bool = True
    key_env: NonEmpty | None = None
    public: bool = False


class LoggingConfig(_Section):
    # "auto": plain text on a terminal, one JSON object a line otherwise.
    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    # One line per request: method, route template, status, duration, model, request id.
    access: bool = True


class KeyConfig(_Section):
    """A key declared in the file: by its hash (``sha256:<hex>``) or by the name of the
    environment variable that holds it."""

    project: Annotated[str, Field(max_length=128)]
    hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    env: NonEmpty | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        if (self.hash is None) == (self.env is None):
            raise _problem("", "needs exactly one of 'hash' (sha256:<hex>) or 'env' (a variable holding the key)")
        return self


class ProviderConfig(_Section):
    name: NonEmpty
    type: Literal["chat_completions", "responses", "local"]
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")] | None = None
    api_key_env: NonEmpty | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Positive = 600.0
    connect_timeout: Positive = 10.0
    max_retries: Count = 2
    drop_params: list[str] = Field(default_factory=list)
    # Download http(s) images and files in the input and send them inline, for upstreams
    # that cannot fetch URLs themselves.
    fetch_remote_content: bool = False
    model_path: NonEmpty | None = None
    n_threads: Annotated[int, Field(ge=1)] = 1
    n_ctx: Annotated[int, Field(ge=16)] = 4096
    cache_ram_mib: Count | None = None
    # type = "local": llama.cpp's --cache-reuse: the shortest run of cached prompt tokens
    # that a new prompt may reuse by shifting it (0: off, only a common prefix is reused).
    cache_reuse: Count = 0
    # The largest non-streamed body, and the longest stream line, taken from the upstream.
    max_response_bytes: Annotated[int, Field(ge=1)] = 16 * 1024 * 1024
    # type = "local": generations at once (llama.cpp slots, continuous batching); each
    # gets the whole n_ctx (the KV cache holds parallel * n_ctx tokens).
    parallel: Annotated[int, Field(ge=1)] = 4
    # type = "local": the output cap when a request sends no max_output_tokens (0: none).
    default_max_output_tokens: Count = 512
    # type = "local": llama.cpp sampling settings (its own names) added to a request that
    # sets no penalty of its own; None: the built-in anti-loop defaults, {}: none.
    sampling_defaults: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise _problem(
                "api_key",
                "keys do not belong in the file: set api_key_env to the name of an environment variable that holds it",
            )
        return data

    @model_validator(mode="after")
    def _fits_type(self) -> ProviderConfig:
        if self.type != "local" and self.base_url is None:
            raise _problem("base_url", f"required for a provider of type {self.type!r}")
        unused = LOCAL_ONLY if self.type != "local" else HTTP_ONLY
        for name in unused:
            if name in self.model_fields_set:
                raise _problem(name, f"not used by a provider of type {self.type!r}")
        return self

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def options(self) -> dict[str, Any]:
        """Settings particular to this provider's type that were set."""
        return {"cache_ram_mib": self.cache_ram_mib} if self.cache_ram_mib is not None else {}


class ProjectConfig(_Section):
    """``[[projects]]``: settings of one project (the name its keys carry; "" is the
    project of what was stored while no key existed)."""

    name: Annotated[str, Field(max_length=128)]
    # Overrides [server] retain_days; 0: kept until deleted; absent: the server's default.
    retain_days: RetainDays | None = None


class ModelConfig(_Section):
    name: NonEmpty
    provider: NonEmpty
    upstream_model: NonEmpty | None = None
    # Long contexts: the model's context window in tokens (the embedded model knows its own).
    context_window: Annotated[int, Field(ge=1)] | None = None


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    mcp: MCPConfig = Field(default_factory=MCPConfig)
    mcp_servers: list[MCPServerConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    projects: list[ProjectConfig] = Field(default_factory=list)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        seen: set[str] = set()
        for i, provider in enumerate(self.providers):
            if provider.name in seen:
                raise _problem(f"providers[{i}].name", f"another provider is already named {provider.name!r}")
            seen.add(provider.name)
        projects: set[str] = set()
        for i, project in enumerate(self.projects):
            if project.name in projects:
                raise _problem(f"projects[{i}].name", f"another [[projects]] entry is already named {project.name!r}")
            projects.add(project.name)
        names: set[str] = set()
        for i, model in enumerate(self.models):
            if model.name in names:
                raise _problem(f"models[{i}].name", f"another [[models]] entry is already named {model.name!r}")
            names.add(model.name)
            if model.provider not in seen:
                raise _problem(f"models[{i}].provider", _unknown_provider(model.provider, sorted(seen)))
        return self


def _unknown_provider(name: str, known: list[str]) -> str:
    import difflib

    message = f"no provider is named {name!r}"
    if close := difflib.get_close_matches(name, known, n=1):
        return f"{message} (did you mean {close[0]!r}?)"
    return f"{message} (providers: {', '.join(known)})" if known else f"{message} (no [[providers]] is configured)"


def parse_config(raw: dict[str, Any], *, environment: bool = False) -> Config:
    """Validate a parsed TOML document. With ``environment``, also check what the
    environment must supply (variables named by ``[[keys]]`` and ``[metrics]``)."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, Config)) from None
    if environment:
        check_environment(config)
    return config


def check_environment(config: Config) -> None:
    """A key source that yields nothing would leave the server open (or a key unusable):
    refuse to start instead."""
    problems = []
    for i, key in enumerate(config.keys):
        if key.env is not None and not os.environ.get(key.env):
            problems.append(
                f"keys[{i}].env: the environment variable {key.env} is unset or empty, so this key "
                f"for project {key.project!r} would not work; set it or remove the entry"
            )
    if config.metrics.key_env is not None and not os.environ.get(config.metrics.key_env):
        problems.append(f"metrics.key_env: the environment variable {config.metrics.key_env} is unset or empty")
    if problems:
        raise ConfigError(problems)


def default_local_model() -> tuple[list[ProviderConfig], list[ModelConfig]]:
    """With no provider configured, the embedded model answers as ``local`` and for any
    other name, so a fresh install works with no key and no upstream."""
    provider = ProviderConfig(name="local", type="local")
    return [provider], [ModelConfig(name="local", provider="local"), ModelConfig(name="*", provider="local")]


def load_config(path: str | os.PathLike[str] | None = None, *, environment: bool = True) -> Config:
    """Read the TOML file at ``path`` (or ``$CONTINUO_CONFIG``); no file means defaults:
    SQLite at ./continuo.db and the embedded local model.

    ``$CONTINUO_DATABASE_URL`` overrides ``[database] url``. ``environment``: also check
    the environment variables the file names (the server needs them; ``keys`` commands
    do not).
    """
    path = path or os.environ.get("CONTINUO_CONFIG")
    raw: dict[str, Any] = {}
    where = str(path) if path else "(defaults)"
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(["config file not found"], where) from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise ConfigError([f"cannot read the config file: {exc}"], where) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"not valid TOML: {exc}"], where) from None
    try:
        config = parse_config(raw, environment=environment)
    except ConfigError as exc:
        raise ConfigError(exc.problems, where) from None
    if not config.providers:
        config.providers, config.models = default_local_model()
    if url := os.environ.get("CONTINUO_DATABASE_URL"):
        if (problem := database_url_problem(url)) is not None:
            raise ConfigError([problem], "CONTINUO_DATABASE_URL")
        config.database.url = url
    return config
