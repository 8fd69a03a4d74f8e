"""Several Continuo replicas on one PostgreSQL database of their own (the replicas' and the
conversations' tests)."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.support.configs import write_config
from tests.support.postgres import create_database, drop_database
from tests.support.process import ServerProcess


def replica_config(path: Path, upstream_url: str, database_url: str, max_concurrent: int) -> Path:
    return write_config(
        path,
        database_url=database_url,
        upstream_url=upstream_url,
        database_options="pool_size = 5",
        extra=f"[background]\nmax_concurrent = {max_concurrent}\nlease_seconds = 1\npoll_seconds = 0.5",
    )


class Cluster:
    def __init__(self, tmp: Path, upstream_url: str) -> None:
        self.tmp = tmp
        self.upstream_url = upstream_url
        self.database = create_database()
        self.processes: list[ServerProcess] = []

    def replica(self, name: str, max_concurrent: int) -> ServerProcess:
        config = replica_config(self.tmp / f"{name}.toml", self.upstream_url, self.database, max_concurrent)
        process = ServerProcess(config).start()
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        drop_database(self.database)


def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
