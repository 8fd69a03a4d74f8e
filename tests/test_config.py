"""A configuration that refuses mistakes: each one line (file, key, problem), exit 2, no
traceback; `check-config`, `--version`, and reaching what was stored while open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import ConfigError, ModelConfig, ProviderConfig, load_config, parse_config
from continuo.core.routing import Router
from tests.support.configs import write_config
from tests.support.servers import ServerThread

ROOT = Path(__file__).resolve().parent.parent

CHAT = '[[providers]]\nname = "up"\ntype = "chat_completions"\nbase_url = "http://127.0.0.1:9/v1"\n'
ROUTE = '[[models]]\nname = "*"\nprovider = "up"\n'


def continuo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUO_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "continuo", *args], capture_output=True, text=True, env=environment, timeout=60
    )


MISTAKES = [
    ('[background]\nmax_concurrent = "eight"\n', 'background.max_concurrent: expected an integer, got "eight"'),
    (CHAT + 'timeout = "soon"\n', 'providers[0].timeout: expected a number, got "soon"'),
    (CHAT + "timeout = 0\n", "providers[0].timeout: must be > 0, got 0"),
    (CHAT + "max_retries = -1\n", "providers[0].max_retries: must be >= 0, got -1"),
    ("[server]\nport = 70000\n", "server.port: must be <= 65535, got 70000"),
    ('[server]\nport = "8080"\n', 'server.port: expected an integer, got "8080"'),
    ("[database]\nmigrate = 1\n", "database.migrate: expected true or false, got 1"),
    ("[servr]\nport = 1\n", "servr: unknown section (did you mean 'server'?)"),
    ("[server]\nprot = 1\n", "server.prot: unknown key (did you mean 'port'?)"),
    (CHAT + 'bse_url = "x"\n', "providers[0].bse_url: unknown key (did you mean 'base_url'?)"),
    (
        "[limits]\nzebra = 1\n",
        "limits.zebra: unknown key (known: requests_per_minute, concurrent_streams, max_input_items, redis_url)",
    ),
    (
        '[[models]]\nname = "m"\nprovider = "up"\nupstream = "x"\n[[providers]]\nname = "up"\ntype = "local"\n',
        "models[0].upstream: unknown key (did you mean 'upstream_model'?)",
    ),
    (
        '[[providers]]\nname = "up"\ntype = "chat_completion"\nbase_url = "http://x/v1"\n',
        "providers[0].type: must be one of 'chat_completions', 'responses' or 'local', got \"chat_completion\" "
        "(did you mean 'chat_completions'?)",
    ),
    (
        '[[providers]]\nname = "up"\ntype = "responses"\n',
        "providers[0].base_url: required for a provider of type 'responses'",
    ),
    (
        '[[providers]]\nname = "up"\ntype = "chat_completions"\nbase_url = "127.0.0.1:9000"\n',
        'providers[0].base_url: must look like an http:// or https:// URL, got "127.0.0.1:9000"',
    ),
    (
        CHAT + 'api_key = "sk-secret"\n',
        "providers[0].api_key: keys do not belong in the file: set api_key_env "
        "to the name of an environment variable that holds it",
    ),
    (CHAT + "n_threads = 2\n", "providers[0].n_threads: not used by a provider of type 'chat_completions'"),
    (CHAT + "cache_reuse = 256\n", "providers[0].cache_reuse: not used by a provider of type 'chat_completions'"),
    (CHAT + CHAT, "providers[1].name: another provider is already named 'up'"),
    (
        CHAT + '[[models]]\nname = "m"\nprovider = "uup"\n',
        "models[0].provider: no provider is named 'uup' (did you mean 'up'?)",
    ),
    (
        '[[models]]\nname = "m"\nprovider = "up"\n',
        "models[0].provider: no provider is named 'up' (no [[providers]] is configured)",
    ),
    (CHAT + ROUTE + ROUTE, "models[1].name: another [[models]] entry is already named '*'"),
    (
        '[database]\nurl = "mysql://u@h/db"\n',
        "database.url: unsupported database URL scheme 'mysql': use sqlite:///path or postgresql://user@host:5432/db",
    ),
    (
        '[database]\nurl = "sqlite://"\n',
        "database.url: an in-memory SQLite database cannot be shared by the server's connections: give a file path",
    ),
    (
        '[database]\nurl = "not a url"\n',
        "database.url: 'not a url' is not a database URL (sqlite:///path or postgresql://user@host:5432/db)",
    ),
    (
        '[[keys]]\nproject = "a"\n',
        "keys[0]: needs exactly one of 'hash' (sha256:<hex>) or 'env' (a variable holding the key)",
    ),
    (
        '[[keys]]\nproject = "a"\nhash = "sha256:beef"\n',
        'keys[0].hash: must look like sha256:<64 lowercase hex digits>, got "sha256:beef"',
    ),
    (
        '[[keys]]\nproject = "a"\nenv = "CONTINUO_TEST_UNSET_KEY"\n',
        "keys[0].env: the environment variable "
        "CONTINUO_TEST_UNSET_KEY is unset or empty, so this key for project 'a' would not work; set it or remove "
        "the entry",
    ),
    (
        '[logging]\nformat = "jsn"\n',
        "logging.format: must be one of 'auto', 'json' or 'text', got \"jsn\" (did you mean 'json'?)",
    ),
    (
        '[metrics]\nkey_env = "CONTINUO_TEST_UNSET_METRICS"\n',
        "metrics.key_env: the environment variable CONTINUO_TEST_UNSET_METRICS is unset or empty",
    ),
    ("providers = 3\n", "providers: expected an array, got 3"),
    (
        '[[providers]]\nname = "e"\ntype = "local"\nmodel_path = "/nonexistent/model.gguf"\n',
        "providers[0].model_path: local model file not found: /nonexistent/model.gguf",
    ),
    ("[server\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
]


@pytest.mark.parametrize(("text", "line"), MISTAKES, ids=[m[1].split(":")[0] for m in MISTAKES])
def test_each_mistake_is_one_line_and_exit_2(tmp_path, text, line):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = continuo("check-config", "--config", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"continuo: {path}: {line}\n"


def test_serve_refuses_a_mistake_without_a_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[background]\nmax_concurrent = "eight"\n')
    result = continuo("serve", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f'continuo: {path}: background.max_concurrent: expected an integer, got "eight"\n'


def test_every_mistake_is_reported_each_on_its_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "x"\nhots = "h"\n')
    result = continuo("check-config", "--config", str(path))
    assert result.returncode == 2
    assert sorted(result.stderr.splitlines()) == [
        f"continuo: {path}: server.hots: unknown key (did you mean 'host'?)",
        f'continuo: {path}: server.port: expected an integer, got "x"',
    ]


def test_missing_file_and_bad_database_override(tmp_path):
    missing = continuo("check-config", "--config", str(tmp_path / "nope.toml"))
    assert (missing.returncode, missing.stderr) == (2, f"continuo: {tmp_path / 'nope.toml'}: config file not found\n")
    override = continuo("check-config", env={"CONTINUO_DATABASE_URL": "mysql://x/y"})
    assert override.returncode == 2
    assert override.stderr == (
        "continuo: CONTINUO_DATABASE_URL: unsupported database URL scheme 'mysql': use sqlite:///path or "
        "postgresql://user@host:5432/db\n"
    )


def test_a_key_from_the_environment_must_be_there(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(CHAT + ROUTE + '[[keys]]\nproject = "a"\nenv = "CONTINUO_TEST_K"\n')
    empty = continuo("check-config", "--config", str(path), env={"CONTINUO_TEST_K": ""})
    assert empty.returncode == 2 and "keys[0].env: the environment variable CONTINUO_TEST_K is unset" in empty.stderr
    assert continuo("serve", "--config", str(path)).returncode == 2
    ok = continuo("check-config", "--config", str(path), env={"CONTINUO_TEST_K": "sk-k"})
    assert ok.returncode == 0, ok.stderr
    assert "sk-k" not in ok.stdout + ok.stderr
    # The keys commands do not need the variable: they manage keys in the database.
    with pytest.raises(ConfigError):
        load_config(path)
    assert load_config(path, environment=False).keys[0].env == "CONTINUO_TEST_K"


def test_the_example_config_passes_and_version():
    result = continuo("check-config", "--config", str(ROOT / "continuo.example.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{ROOT / 'continuo.example.toml'}: OK")
    from continuo import __version__

    version = continuo("--version")
    assert (version.returncode, version.stdout) == (0, f"continuo {__version__}\n")


def test_parse_config_keeps_the_attribute_api():
    config = parse_config(
        {
            "server": {"port": 9000},
            "providers": [
                {"name": "up", "type": "chat_completions", "base_url": "http://h/v1", "api_key_env": "CONTINUO_X"},
                {"name": "e", "type": "local", "cache_ram_mib": 64},
            ],
            "models": [{"name": "m", "provider": "up"}],
        }
    )
    assert (config.server.host, config.server.port, config.background.max_concurrent) == ("127.0.0.1", 9000, 8)
    assert config.providers[0].timeout == 600.0 and config.providers[0].api_key is None
    assert config.providers[1].options == {"cache_ram_mib": 64} and config.providers[0].options == {}


class _Backend:
    def __init__(self, provider: ProviderConfig) -> None:
        self.name = provider.name

    async def aclose(self) -> None:
        pass


def test_models_list_names_and_the_embedded_model_behind_a_catch_all():
    config = parse_config(
        {
            "providers": [
                {"name": "up", "type": "chat_completions", "base_url": "http://h/v1"},
                {"name": "embedded", "type": "local"},
            ],
            "models": [{"name": "gpt-x", "provider": "up"}, {"name": "*", "provider": "embedded"}],
        }
    )
    router = Router(config, _Backend)  # type: ignore[arg-type]
    assert router.model_names() == ["gpt-x", "embedded"]
    assert router.serves("anything") and router.serves("embedded")
    # Which provider each name goes to (GET /v1/models says it as owned_by).
    assert [router.provider_name(n) for n in ("gpt-x", "embedded", "anything")] == ["up", "embedded", "embedded"]
    config.models = [ModelConfig(name="gpt-x", provider="up")]
    strict = Router(config, _Backend)  # type: ignore[arg-type]
    assert strict.model_names() == ["gpt-x"] and not strict.serves("anything")
    assert strict.provider_name("anything") is None


def test_models_say_which_provider_serves_them(upstream, tmp_path):
    path = write_config(tmp_path / "c.toml", database_url=f"sqlite:///{tmp_path / 'c.db'}", upstream_url=upstream.url)
    server = ServerThread(create_app(load_config(path))).start()
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
            assert client.models.retrieve("gpt-anything").owned_by == "fake"
    finally:
        server.stop()


def test_what_was_stored_while_open_is_moved_to_a_project(upstream, tmp_path):
    path = write_config(tmp_path / "c.toml", database_url=f"sqlite:///{tmp_path / 'c.db'}", upstream_url=upstream.url)
    server = ServerThread(create_app(load_config(path))).start()
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as anyone:
            stored = anyone.responses.create(model="m", input="while open")
            thread = anyone.conversations.create(items=[{"role": "user", "content": "kept while open"}])
        made = continuo("keys", "create", "--project", "team-a", "--config", str(path))
        key = made.stdout.strip()
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as team_a:
            with pytest.raises(openai.NotFoundError):
                team_a.responses.retrieve(stored.id)
            listed = continuo("projects", "list", "--config", str(path))
            assert listed.stdout == "'' 1\n"
            moved = continuo("projects", "move", "--from", "", "--to", "team-a", "--config", str(path))
            assert (moved.returncode, moved.stdout) == (0, "moved 1 response(s) from project '' to 'team-a'\n")
            assert team_a.responses.retrieve(stored.id).output_text == "echo: while open"
            assert [i.content[0].text for i in team_a.conversations.items.list(thread.id)] == ["kept while open"]
            chained = team_a.responses.create(model="m", input="again", previous_response_id=stored.id)
            assert chained.status == "completed"
        assert continuo("projects", "list", "--config", str(path)).stdout == "'team-a' 2\n"
    finally:
        server.stop()


def test_the_readme_config_block_is_valid(monkeypatch):
    import re
    import tomllib

    block = re.search(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    monkeypatch.setenv("TEAM_A_KEY", "sk-team-a")
    config = parse_config(tomllib.loads(block[1]), environment=True)
    assert [p.name for p in config.providers] == ["upstream", "embedded"]
