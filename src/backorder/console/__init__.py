"""The ops console: server-rendered pages at /console, in the API's own process and port.

It signs in with an ops API key (a session cookie checked against the database on every
request, `session.py`) and calls the same services and SQL as the API, never the API's
routers: one rule, one implementation, whichever door a change comes through.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from backorder.config import Settings
from backorder.console import routes, session, stock_pages, web


def install(app: FastAPI, settings: Settings) -> None:
    app.state.console_signing_key = session.signing_key(settings)
    app.add_exception_handler(session.SignedOut, routes.signed_out)
    app.include_router(routes.router)
    app.include_router(stock_pages.router)
    app.mount("/console/static", StaticFiles(directory=web.STATIC), name="console-static")
