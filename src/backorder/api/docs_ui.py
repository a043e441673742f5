"""Swagger UI and ReDoc, every byte from the service itself.

FastAPI's own pages load their scripts from a public CDN (and ReDoc's fonts from Google):
on a network without internet they stay blank, and the ops desk works through Swagger UI.
The files come from the `fastapi-offline` package (Swagger UI 5, ReDoc 2, both under their
own open licences), served under `/docs/static/`. The pages hold no inline script, so a
`script-src 'self'` content security policy lets them run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import fastapi_offline
import orjson
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs/static"

SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "displayRequestDuration": True,
    # Off: a key kept in the browser's localStorage outlives the tab and is readable by any
    # script on the origin; staff authorize again after a reload.
    "persistAuthorization": False,
    # Swagger UI would otherwise send the schema to a public validator and draw its badge.
    "validatorUrl": None,
}


# ReDoc's sidebar draws Redocly's logo from Redocly's CDN (and hides it when it fails to
# load). An empty `src` fails at once without a request, so ReDoc hides it by itself.
_REDOC_LOGO = b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'


@cache
def _redoc_script() -> bytes:
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(_REDOC_LOGO, b'src:""')


def _swagger_html(root: str, title: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" type="image/png" href="{root}{ASSETS_PATH}/favicon.png">
<link rel="stylesheet" href="{root}{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/swagger-ui-init.js"></script>
</body>
</html>
"""


def _swagger_init(root: str, openapi_url: str) -> str:
    # The settings travel as JSON; the two presets are functions, which JSON cannot carry.
    config = orjson.dumps({"url": root + openapi_url, **SWAGGER_UI_PARAMETERS}).decode()
    return (
        f"window.ui = SwaggerUIBundle(Object.assign({config}, {{"
        "presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]"
        "}));\n"
    )


def _redoc_html(root: str, title: str, openapi_url: str) -> str:
    # ReDoc renders a <redoc spec-url> element by itself once its script has loaded.
    # FastAPI's page also links Google's web fonts: not here, ReDoc falls back to the
    # system's, so nothing leaves the network.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="{root}{ASSETS_PATH}/favicon.png">
</head>
<body>
<redoc spec-url="{root}{openapi_url}"></redoc>
<script src="{root}{ASSETS_PATH}/redoc.standalone.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve `/docs` (Swagger UI) and `/redoc` from local files; the app must be built with
    `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not registered too."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    def root_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(_swagger_html(root_of(request), title))

    async def swagger_ui_init(request: Request) -> Response:
        return Response(_swagger_init(root_of(request), openapi_url), media_type="text/javascript")

    async def redoc(request: Request) -> HTMLResponse:
        return HTMLResponse(_redoc_html(root_of(request), title, openapi_url))

    async def redoc_script(request: Request) -> Response:
        return Response(_redoc_script(), media_type="text/javascript")

    # Plain routes, as FastAPI's own docs are: pages, not operations of the API.
    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/docs/swagger-ui-init.js", swagger_ui_init, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    # Before the mount, so that this copy answers instead of the file.
    app.add_route(f"{ASSETS_PATH}/redoc.standalone.js", redoc_script, include_in_schema=False)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
