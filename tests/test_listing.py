"""The console's routes on SQLite and PostgreSQL, over HTTP: ``GET /v1/responses`` (every
filter, search, cursor paging, bad parameters, project isolation) and
``GET /v1/responses/{id}/graph``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.postgres import create_database, drop_database
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

KEYS = (
    '[[keys]]\nproject = "alpha"\nenv = "CONTINUO_TEST_LIST_ALPHA"\n\n'
    '[[keys]]\nproject = "beta"\nenv = "CONTINUO_TEST_LIST_BETA"\n\n'
    "[background]\nmax_concurrent = 2\npoll_seconds = 0.2\n"
)
ALPHA, BETA = "sk-list-alpha", "sk-list-beta"


@dataclass
class Data:
    """What the module's fixture stored in project alpha, by name, with its second."""

    server: ServerThread
    database: str
    ids: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, int] = field(default_factory=dict)


def sdk(server: ServerThread, key: str = ALPHA) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def listing(client: openai.OpenAI, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/responses", cast_to=object, options={"params": params})
    return answer


def graph(client: openai.OpenAI, response_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/responses/{response_id}/graph", cast_to=object)
    return answer


def next_second() -> int:
    start = int(time.time())
    return int(wait_until(lambda: int(time.time()) > start and int(time.time())))


def populate(client: openai.OpenAI, upstream: Any, data: Data) -> None:
    def create(name: str, **body: Any) -> None:
        body.setdefault("model", "m-a")
        response = client.responses.create(**body)
        data.ids[name] = response.id
        data.seconds[name] = int(response.created_at)

    next_second()
    create("apples", input="alpha apples", metadata={"team": "red"})
    create("banana", model="m-b", input="banana bread", metadata={"team": "blue", "env": "prod"})
    next_second()
    upstream.script(Reply(text="zebra crossing"))
    create("cherry", input="cherry pie", metadata={"team": "red", "env": "prod"})
    job = client.responses.create(model="m-b", input="durian fruit", background=True)
    wait_until(lambda: client.responses.retrieve(job.id).status == "completed")
    data.ids["durian"], data.seconds["durian"] = job.id, int(job.created_at)
    next_second()
    create("elder", input="elderberry wine", previous_response_id=data.ids["apples"])
    upstream.script(Reply(status=500, body=b'{"error": {"message": "down"}}'))
    failed = client.responses.create(model="m-a", input="fig tree", background=True)
    wait_until(lambda: client.responses.retrieve(failed.id).status == "failed")
    data.ids["fig"], data.seconds["fig"] = failed.id, int(failed.created_at)
    client.responses.create(model="m-a", input="grape unstored", store=False)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def data(request, upstream, tmp_path_factory) -> Iterator[Data]:
    tmp: Path = tmp_path_factory.mktemp(f"list-{request.param}")
    database = f"sqlite:///{tmp / 'list.db'}" if request.param == "sqlite" else create_database()
    config = write_config(tmp / "list.toml", database_url=database, upstream_url=upstream.url, extra=KEYS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTINUO_TEST_LIST_ALPHA", ALPHA)
        patch.setenv("CONTINUO_TEST_LIST_BETA", BETA)
        server = ServerThread(create_app(load_config(config))).start()
    found = Data(server, database)
    upstream.reset()
    with sdk(server) as client:
        populate(client, upstream, found)
    upstream.reset()
    yield found
    server.stop()
    if request.param == "postgresql":
        drop_database(database)


@pytest.fixture
def alpha(data) -> Iterator[openai.OpenAI]:
    with sdk(data.server) as client:
        yield client


NEWEST_FIRST = ["fig", "elder", "durian", "cherry", "banana", "apples"]


def names(data: Data, answer: dict[str, Any]) -> list[str]:
    by_id = {v: k for k, v in data.ids.items()}
    return [by_id.get(item["id"], item["id"]) for item in answer["data"]]


def in_order(data: Data, expected: list[str], answer: dict[str, Any]) -> bool:
    """Within one second the order is by id; across seconds, by time."""
    wanted = sorted(expected, key=lambda n: (data.seconds[n], data.ids[n]), reverse=True)
    return names(data, answer) == wanted


# -- the list ---------------------------------------------------------------------------------


def test_lists_newest_first_with_objects_as_retrieve_returns_them(data, alpha):
    answer = listing(alpha)
    assert answer["object"] == "list" and answer["has_more"] is False
    assert in_order(data, NEWEST_FIRST, answer)
    assert answer["first_id"] == answer["data"][0]["id"] and answer["last_id"] == answer["data"][-1]["id"]
    for item in answer["data"]:
        assert item == alpha.get(f"/responses/{item['id']}", cast_to=object)
    assert "grape" not in str(answer)  # store: false is not stored, so not listed


def test_ascending_order(data, alpha):
    answer = listing(alpha, order="asc")
    assert names(data, answer) == list(reversed(names(data, listing(alpha))))


def test_pages_by_cursor_both_ways_and_in_both_orders(data, alpha):
    for order in ("desc", "asc"):
        whole = names(data, listing(alpha, order=order))
        seen: list[str] = []
        after = None
        while True:
            page = listing(alpha, order=order, limit=4, **({"after": after} if after else {}))
            seen += names(data, page)
            assert len(page["data"]) <= 4
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == whole
        # Backwards from the end: ``before`` gives the page just before, in listing order.
        last = data.ids[whole[-1]]
        back = listing(alpha, order=order, limit=2, before=last)
        assert names(data, back) == whole[-3:-1] and back["has_more"] is True
        start = listing(alpha, order=order, limit=4, before=back["first_id"])
        assert names(data, start) == whole[:-3] and start["has_more"] is False
    assert listing(alpha, limit=1)["has_more"] is True


def test_filters(data, alpha):
    assert set(names(data, listing(alpha, model="m-b"))) == {"banana", "durian"}
    assert names(data, listing(alpha, model="m-zzz")) == []
    assert names(data, listing(alpha, status="failed")) == ["fig"]
    assert set(names(data, listing(alpha, status="completed"))) == {"apples", "banana", "cherry", "durian", "elder"}
    assert set(names(data, listing(alpha, background="true"))) == {"durian", "fig"}
    assert set(names(data, listing(alpha, background="false"))) == {"apples", "banana", "cherry", "elder"}
    assert set(names(data, listing(alpha, **{"metadata[team]": "red"}))) == {"apples", "cherry"}
    both = listing(alpha, **{"metadata[team]": "red", "metadata[env]": "prod"})
    assert names(data, both) == ["cherry"]
    assert names(data, listing(alpha, **{"metadata[team]": "green"})) == []
    second = data.seconds["cherry"]
    assert set(names(data, listing(alpha, created_after=second))) == {"cherry", "durian", "elder", "fig"}
    assert set(names(data, listing(alpha, created_before=second))) == {"apples", "banana"}
    window = listing(alpha, created_after=second, created_before=second + 1)
    assert set(names(data, window)) == {"cherry", "durian"}
    combined = listing(alpha, model="m-a", status="completed", created_after=data.seconds["banana"])
    assert set(names(data, combined)) == {"apples", "cherry", "elder"}
    # Blank fields (a form's) filter nothing.
    assert len(listing(alpha, model="", q="", status="")["data"]) == 6


def test_filtered_pages(data, alpha):
    first = listing(alpha, model="m-a", limit=2)
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = listing(alpha, model="m-a", limit=2, after=first["last_id"])
    assert set(names(data, first) + names(data, rest)) == {"apples", "cherry", "elder", "fig"}
    assert rest["has_more"] is False


def test_search_covers_input_and_output_text(data, alpha):
    assert names(data, listing(alpha, q="apple")) == ["apples"]  # a word's beginning is enough
    assert names(data, listing(alpha, q="BREAD banana")) == ["banana"]  # every word, any case
    assert names(data, listing(alpha, q="zebra")) == ["cherry"]  # the output only
    assert names(data, listing(alpha, q="echo elderberry")) == ["elder"]  # input and output
    assert set(names(data, listing(alpha, q="durian"))) == {"durian"}  # a background run's
    assert names(data, listing(alpha, q="grape")) == []  # store: false
    assert names(data, listing(alpha, q="banana zebra")) == []
    assert names(data, listing(alpha, q="pie crossing", status="completed")) == ["cherry"]
    # The chained turn is found by its own text, not its ancestors'.
    assert "elder" not in names(data, listing(alpha, q="alpha"))
    # Punctuation is not a word: such a query filters nothing; quotes are not syntax.
    assert len(listing(alpha, q="?! --")["data"]) == 6
    assert names(data, listing(alpha, q='"cherry" OR NEAR(')) == []
    assert names(data, listing(alpha, q='cherry"*')) == ["cherry"]


def test_search_forgets_deleted_responses(data, alpha):
    made = alpha.responses.create(model="m-a", input="kumquat marmalade", metadata={"test": "delete"})
    assert names(data, listing(alpha, q="kumquat")) == [made.id]
    alpha.responses.delete(made.id)
    assert listing(alpha, q="kumquat")["data"] == []
    assert texts_without_response(data.database) == 0


def texts_without_response(database: str) -> int:
    """Search entries left by deleted responses (and, on SQLite, whether the FTS index is sound)."""
    if database.startswith("sqlite"):
        import sqlite3

        orphans = (
            "SELECT count(*) FROM response_search_keys AS k "
            "WHERE NOT EXISTS (SELECT 1 FROM responses AS r WHERE r.id = k.response_id)"
        )
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO response_fts(response_fts) VALUES ('integrity-check')")
            indexed = conn.execute("SELECT count(*) FROM response_fts WHERE response_fts MATCH 'kumquat'").fetchone()[0]
            keys = conn.execute("SELECT count(*) FROM response_search_keys").fetchone()[0]
            searchable = conn.execute("SELECT count(*) FROM responses WHERE search_words IS NOT NULL").fetchone()[0]
            return int(conn.execute(orphans).fetchone()[0]) + int(indexed) + abs(int(keys) - int(searchable))
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(database)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM responses WHERE search_words LIKE '%kumquat%'"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_other_projects_see_nothing(data):
    with sdk(data.server, BETA) as beta:
        assert listing(beta) == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
        assert listing(beta, q="apple")["data"] == []
        with pytest.raises(openai.BadRequestError) as raised:
            listing(beta, after=data.ids["apples"])  # another project's id is no cursor
        assert raised.value.body["param"] == "after"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            graph(beta, data.ids["apples"])
        mine = beta.responses.create(model="m-a", input="beta only")
        assert [item["id"] for item in listing(beta)["data"]] == [mine.id]
        assert graph(beta, mine.id)["nodes"][0]["id"] == mine.id


BAD = [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"order": "newest"}, "order"),
    ({"status": "done"}, "status"),
    ({"background": "yes"}, "background"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"created_before": -1}, "created_before"),
    ({"created_after": 10**13}, "created_after"),
    ({"after": "resp_nothing_here"}, "after"),
    ({"before": "resp_nothing_here"}, "before"),
    ({"after": "resp_a", "before": "resp_b"}, "before"),
    ({"metadata": "team"}, "metadata"),
    ({"metadata[]": "red"}, "metadata"),
    ({"q": "x" * 1001}, "q"),
]


@pytest.mark.parametrize(("params", "param"), BAD)
def test_bad_parameters_name_the_param(data, alpha, params, param):
    with pytest.raises(openai.BadRequestError) as raised:
        listing(alpha, **params)
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == param and error["type"] == "invalid_request_error"


def test_odd_values_are_not_found_rather_than_errors(data, alpha):
    assert listing(alpha, model="m\x00a")["data"] == []
    assert listing(alpha, **{"metadata[te\x00am]": "red"})["data"] == []
    assert listing(alpha, **{"metadata[team]": "r'ed\""})["data"] == []
    with pytest.raises(openai.BadRequestError):
        listing(alpha, after="resp_\x00")


# -- the graph --------------------------------------------------------------------------------


def test_graph_of_a_branching_chain(data, alpha, upstream):
    root = alpha.responses.create(model="m-a", input="graph root " + "x" * 200)
    left = alpha.responses.create(model="m-a", input="left", previous_response_id=root.id)
    right = alpha.responses.create(model="m-b", input="right", previous_response_id=root.id, background=True)
    wait_until(lambda: alpha.responses.retrieve(right.id).status == "completed")
    upstream.script(Reply(text="deep answer"))
    deep = alpha.responses.create(model="m-a", input="deep", previous_response_id=left.id)
    other = alpha.responses.create(model="m-a", input="unrelated")

    answer = graph(alpha, deep.id)
    assert answer["object"] == "response.graph" and answer["id"] == deep.id
    assert answer["root_id"] == root.id and answer["truncated"] is False
    nodes = {node["id"]: node for node in answer["nodes"]}
    assert set(nodes) == {root.id, left.id, right.id, deep.id} and other.id not in nodes
    keys = [(node["created_at"], node["id"]) for node in answer["nodes"]]
    assert keys == sorted(keys)
    assert nodes[deep.id] == {
        "id": deep.id,
        "previous_response_id": left.id,
        "created_at": deep.created_at,
        "status": "completed",
        "model": "m-a",
        "background": False,
        "preview": "deep answer",
    }
    assert nodes[right.id]["background"] is True and nodes[right.id]["model"] == "m-b"
    assert nodes[root.id]["previous_response_id"] is None
    assert nodes[root.id]["preview"] == ("echo: graph root " + "x" * 200)[:120]
    # Any member of the tree gives the same tree.
    assert graph(alpha, root.id)["nodes"] == answer["nodes"]
    assert graph(alpha, right.id)["root_id"] == root.id
    assert [n["id"] for n in graph(alpha, other.id)["nodes"]] == [other.id]


def test_graph_of_unknown_response_is_404(data, alpha):
    with pytest.raises(openai.NotFoundError) as raised:
        graph(alpha, "resp_unknown")
    assert raised.value.body["param"] == "response_id"  # type: ignore[index]


def test_a_model_name_with_nul_is_stored_and_listed(data, alpha):
    made = alpha.responses.create(model="m\x00nul", input="nul\x00 model")
    assert [item["id"] for item in listing(alpha, q="nul model")["data"]] == [made.id]
    assert graph(alpha, made.id)["nodes"][0]["preview"] == "echo: nul model"
