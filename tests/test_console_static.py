"""The console's files at /console: served without a key (the API beside them still asks
for one), with the right content types, a strict Content-Security-Policy and revalidation,
and nothing outside the package's console folder."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from continuo.core.keys import hash_key
from tests.support.configs import write_config
from tests.support.servers import ServerThread

FOLDER = resources.files("continuo") / "console"


@pytest.fixture(scope="module")
def keyed(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    tmp = tmp_path_factory.mktemp("console-static")
    config = write_config(
        tmp / "static.toml",
        database_url=f"sqlite:///{tmp / 'static.db'}",
        upstream_url=upstream.url,
        extra=f'[[keys]]\nproject = "p"\nhash = "{hash_key("sk-static")}"\n',
    )
    server = ServerThread(create_app(load_config(config))).start()
    yield server
    server.stop()


def raw_get(server: ServerThread, path: str) -> int:
    """The status of a GET sent with the path exactly as written (no client tidies it)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "content_type", "file"),
    [
        ("/console", "text/html; charset=utf-8", "index.html"),
        ("/console/", "text/html; charset=utf-8", "index.html"),
        ("/console/console.css", "text/css; charset=utf-8", "console.css"),
        ("/console/js/main.js", "text/javascript; charset=utf-8", "js/main.js"),
        ("/console/icon.svg", "image/svg+xml", "icon.svg"),
    ],
)
def test_files_are_served_without_a_key(keyed, path, content_type, file):
    answer = httpx.get(keyed.url + path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == content_type
    assert answer.content == (FOLDER / file).read_bytes()
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-cache"
    again = httpx.get(keyed.url + path, headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # The API beside it still wants the key.
    assert httpx.get(f"{keyed.url}/v1/models").status_code == 401


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script():
    for entry in [FOLDER / "index.html", FOLDER / "console.css", *(FOLDER / "js").iterdir()]:
        text = entry.read_text()
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), entry.name
        assert "@import" not in text and "@font-face" not in text, entry.name
    page = (FOLDER / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S)
    assert scripts == [""]  # one module, loaded from a file
    assert not re.search(r"\s(style|on[a-z]+)=", page)  # no inline style, no inline handler


def test_every_module_the_page_imports_is_served(keyed):
    pending, seen = ["js/main.js"], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        answer = httpx.get(f"{keyed.url}/console/{name}")
        assert answer.status_code == 200, name
        for imported in re.findall(r'from "\./([\w.]+\.js)"', answer.text):
            if f"js/{imported}" not in seen:
                pending.append(f"js/{imported}")
    assert seen == {f"js/{p.name}" for p in (FOLDER / "js").iterdir()}
    # The page preloads every module but the entry point, so none waits for its importer.
    preloaded = re.findall(r'rel="modulepreload" href="/console/(js/[\w.]+)"', httpx.get(f"{keyed.url}/console").text)
    assert sorted(preloaded) == sorted(seen - {"js/main.js"})


@pytest.mark.parametrize(
    "path",
    [
        "/console/../pyproject.toml",
        "/console/%2e%2e/api/console.py",
        "/console/js/../../api/console.py",
        "/console/..%2fapi%2fconsole.py",
        "/console/%2e%2e%2f%2e%2e%2fconfig.py",
        "/console//etc/passwd",
        "/console/nope.js",
        "/console/js",
    ],
)
def test_nothing_outside_the_console_folder_is_served(keyed, path):
    assert raw_get(keyed, path) == 404
    answer = httpx.get(keyed.url + path)
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_built_wheel_carries_every_console_file(tmp_path):
    """A non-editable install has the console: the wheel holds each file of the folder."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("continuo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith("continuo/console/")}
    shipped = {
        f"continuo/console/{path.relative_to(root / 'src/continuo/console')}"
        for path in (root / "src/continuo/console").rglob("*")
        if path.is_file()
    }
    assert packed == shipped and "continuo/console/js/main.js" in packed
