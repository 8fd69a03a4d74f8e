"""``continuo serve`` and ``continuo migrate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from continuo.config import ConfigError, load_config


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from continuo.api.app import create_app

    config = load_config(args.config)
    host = args.host or config.server.host
    port = args.port or config.server.port
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop="auto",
        http="auto",
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from continuo.store.sql import SQLStore

    config = load_config(args.config)

    async def run() -> None:
        store = SQLStore(config.database.url)
        try:
            await store.run_migrations()
        finally:
            await store.close()

    asyncio.run(run())
    print("database is up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="continuo", description="The OpenAI Responses API, stateful, for any model.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--config", help="TOML config file (default: $CONTINUO_CONFIG, else built-in defaults)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)
    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--config")
    migrate.set_defaults(run=_migrate)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Request lines of the upstream client and migration chatter are not worth a log line each.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result: int = args.run(args)
    except ConfigError as exc:
        print(f"continuo: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
