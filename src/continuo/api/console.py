"""The console's static files (``continuo/console/``) at ``/console``.

Only the files the package ships are served, read once at start: a name that is not one
of them is a 404 whatever it spells, so no path reaches outside the folder. The page's
calls to ``/v1/`` carry the API key; the files themselves need none.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.errors import NotFound

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# Scripts and styles from this origin only, no inline code, nothing from elsewhere; images
# may be data: URLs (images inside stored responses); API calls go to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # Not fingerprinted: the browser may keep a copy but asks (If-None-Match) every time.
    "cache-control": "no-cache",
}


class _Asset:
    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _load() -> dict[str, _Asset]:
    assets: dict[str, _Asset] = {}
    folder = resources.files("continuo") / "console"
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        for entry in directory.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix in CONTENT_TYPES:
                assets[prefix + entry.name] = _Asset(entry.read_bytes(), CONTENT_TYPES[suffix])
    return assets


ASSETS = _load()


def _serve(request: Request, name: str) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
    headers = {**SECURITY_HEADERS, "etag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, headers=headers, media_type=asset.content_type)


async def console_page(request: Request) -> Response:
    return _serve(request, "index.html")


async def console_asset(request: Request) -> Response:
    return _serve(request, request.path_params["name"] or "index.html")


CONSOLE_ROUTES = [
    Route("/console", console_page, methods=["GET", "HEAD"]),
    Route("/console/{name:path}", console_asset, methods=["GET", "HEAD"]),
]
