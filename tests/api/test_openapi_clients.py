"""Clients generated from the served `/openapi.json` work unedited, as an integrator would use
them: a Python client from `openapi-python-client` (0 warnings) runs the README's tour, errors
included; a TypeScript storefront type-checks against `openapi-typescript`'s output (default
options); Redocly's and Spectral's recommended rules pass.

The Python generator comes with the dev extra; the npm tools are pinned in
tests/clients/package.json and package-lock.json and installed by `make install` (`npm ci`).
Without node and npm on the machine the npm tools' tests are skipped, saying so.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from backorder.api.app import create_app
from backorder.config import Settings
from tests.support.api import MASTER_KEY

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE_BIN = CLIENTS / "node_modules" / ".bin"
BASE_URL = "http://backorder.test"
PACKAGE = "backorder_client"
# Redocly's `operation-4xx-response` asks every operation for a 4xx answer. The probes and the
# metrics scrape take no key, no parameter and no body: they have none to document (README,
# "Generating a client").
JUSTIFIED_WARNINGS = {"operation-4xx-response": {"/healthz", "/readyz", "/metrics"}}

Modules = Callable[[str], Any]


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool and check that it succeeded."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
async def document(settings: Settings) -> dict[str, Any]:
    """The document the service serves at /openapi.json (it needs no database)."""
    transport = ASGITransport(app=create_app(settings))
    async with AsyncClient(transport=transport, base_url=BASE_URL) as http:
        r = await http.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("clients")
    (path / "openapi.json").write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def npm_tools() -> Path:
    """The pinned npm tools, installed from the lock file if `make install` has not yet."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the TypeScript and lint checks need them")
    if not (NODE_BIN / "tsc").exists():
        run(CLIENTS, "npm", "ci", "--no-audit", "--no-fund")
    return NODE_BIN


@pytest.fixture(scope="module")
def generated(workdir: Path) -> Iterator[Modules]:
    """A Python client generated from the served document, importable as `backorder_client`."""
    exe = Path(sys.executable).parent / "openapi-python-client"
    done = run(
        workdir,
        *(str(exe), "generate", "--path", "openapi.json", "--meta", "none"),
        *("--output-path", PACKAGE, "--fail-on-warning"),
        # Its ruff post-hooks format the code, as on a developer's machine.
        env={"PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    output = done.stdout + done.stderr
    assert "warning" not in output.lower(), output
    assert (workdir / PACKAGE / "api" / "orders" / "place_order.py").exists()
    sys.path.insert(0, str(workdir))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(workdir))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
async def app(settings: Settings, clean_db: None) -> AsyncIterator[FastAPI]:
    service = create_app(settings)
    async with service.router.lifespan_context(service):
        yield service


def api_client(generated: Modules, app: FastAPI, key: str) -> Any:
    """The generated client, strict about statuses, talking to the app in process."""
    return generated("client").AuthenticatedClient(
        base_url=BASE_URL,
        token=key,
        raise_on_unexpected_status=True,
        httpx_args={"transport": ASGITransport(app=app)},
    )


async def test_the_readme_tour_runs_through_a_generated_python_client(
    generated: Modules, app: FastAPI
) -> None:
    models = generated("models")
    ops = api_client(generated, app, MASTER_KEY)

    created = await generated("api.api_keys.create_api_key").asyncio(
        client=ops, body=models.ApiKeyIn(name="web-shop", role=models.ApiKeyInRole.STOREFRONT)
    )
    assert isinstance(created, models.ApiKeyCreatedOut)
    shop = api_client(generated, app, created.key)

    put_product = generated("api.products_and_stock.put_product")
    product = await put_product.asyncio_detailed(
        "TRAIL-42", client=ops, body=models.ProductIn(name="Trail Runner 42")
    )
    assert product.status_code == 201
    restock = generated("api.products_and_stock.restock")
    first = await restock.asyncio(
        "TRAIL-42", client=ops, body=models.RestockIn(quantity=80, reference="PO-1")
    )
    assert (first.on_hand, first.available) == (80, 80)

    # The storefront orders 100: 80 allocated now, 20 backordered; the same key replays it.
    place_order = generated("api.orders.place_order")
    order_in = models.OrderIn(
        customer_id="c-1001", lines=[models.LineIn(sku="TRAIL-42", quantity=100)]
    )
    placed = await place_order.asyncio_detailed(
        client=shop, body=order_in, idempotency_key="web-88812"
    )
    assert placed.status_code == 201 and "Idempotent-Replayed" not in placed.headers
    order = placed.parsed
    assert isinstance(order, models.OrderOut)
    assert order.status == models.OrderOutStatus.PARTIALLY_BACKORDERED
    assert (order.allocated, order.backordered) == (80, 20)
    replay = await place_order.asyncio_detailed(
        client=shop, body=order_in, idempotency_key="web-88812"
    )
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert replay.parsed.id == order.id

    queue = await generated("api.backorder_queue.list_backorders").asyncio(
        client=ops, sku="TRAIL-42"
    )
    assert isinstance(queue, models.BackorderPage)
    assert [(b.position, b.quantity, b.order_id) for b in queue.data] == [(1, 20, order.id)]
    figures = await generated("api.products_and_stock.get_product").asyncio("TRAIL-42", client=ops)
    assert (figures.on_hand, figures.allocated, figures.backordered) == (80, 80, 20)

    # 50 more arrive: 20 go to the waiting line in the same transaction, 30 stay available.
    second = await restock.asyncio("TRAIL-42", client=ops, body=models.RestockIn(quantity=50))
    assert [(a.order_id, a.quantity) for a in second.allocations] == [(str(order.id), 20)]
    assert second.available == 30
    mine = await generated("api.orders.list_orders").asyncio(client=shop, customer_id="c-1001")
    assert isinstance(mine, models.OrderPage)
    assert [(o.status, o.ready_to_ship) for o in mine.data] == [
        (models.OrderOutStatus.ALLOCATED, True)
    ]


async def test_a_generated_client_parses_every_refusal_as_a_problem(
    generated: Modules, app: FastAPI
) -> None:
    models = generated("models")
    ops = api_client(generated, app, MASTER_KEY)
    no_backorders = models.ProductIn(name="Boot", backorders_allowed=False)
    await generated("api.products_and_stock.put_product").asyncio(
        "BOOT-1", client=ops, body=no_backorders
    )
    await generated("api.products_and_stock.restock").asyncio(
        "BOOT-1", client=ops, body=models.RestockIn(quantity=3)
    )
    place_order = generated("api.orders.place_order")

    def order(quantity: int) -> Any:
        return models.OrderIn(
            customer_id="c-1", lines=[models.LineIn(sku="BOOT-1", quantity=quantity)]
        )

    short = await place_order.asyncio_detailed(client=ops, body=order(5))
    assert short.status_code == 409 and isinstance(short.parsed, models.Problem)
    assert short.parsed.code == "insufficient_stock"
    assert [(li.sku, li.requested, li.available) for li in short.parsed.lines] == [("BOOT-1", 5, 3)]
    assert short.parsed.request_id == short.headers["X-Request-ID"]

    invalid = await place_order.asyncio_detailed(client=ops, body=order(0))
    assert invalid.status_code == 422 and isinstance(invalid.parsed, models.Problem)
    assert invalid.parsed.code == "validation_error"
    assert [e.loc for e in invalid.parsed.errors] == [["body", "lines", 0, "quantity"]]

    key = f"k-{uuid.uuid4()}"
    await place_order.asyncio_detailed(client=ops, body=order(1), idempotency_key=key)
    reused = await place_order.asyncio_detailed(client=ops, body=order(2), idempotency_key=key)
    assert (reused.status_code, reused.parsed.code) == (422, "idempotency_key_reused")

    missing = await generated("api.orders.get_order").asyncio_detailed(uuid.uuid4(), client=ops)
    assert (missing.status_code, missing.parsed.code) == (404, "not_found")
    anonymous = api_client(generated, app, "bo_not-a-key")
    refused = await generated("api.orders.list_orders").asyncio_detailed(client=anonymous)
    assert (refused.status_code, refused.parsed.code) == (401, "unauthorized")


async def test_a_rename_through_a_generated_client_keeps_every_other_setting(
    generated: Modules, app: FastAPI
) -> None:
    """PUT /v1/products/{sku} is a merge: a client that sends only the new name must leave
    `backorders_allowed`, `allocation_strategy` and `discontinued` as they were."""
    models = generated("models")
    ops = api_client(generated, app, MASTER_KEY)
    put_product = generated("api.products_and_stock.put_product")
    settings = models.ProductIn(
        name="Trail Runner 42",
        backorders_allowed=False,
        allocation_strategy=models.ProductInAllocationStrategy.PRIORITY,
        discontinued=True,
        backorder_limit=5,
    )
    created = await put_product.asyncio_detailed("TRAIL-42", client=ops, body=settings)
    assert created.status_code == 201

    rename = models.ProductIn(name="Trail Runner 42 (2027)")
    renamed = await put_product.asyncio_detailed("TRAIL-42", client=ops, body=rename)
    assert renamed.status_code == 200
    now = await generated("api.products_and_stock.get_product").asyncio("TRAIL-42", client=ops)
    assert now.name == "Trail Runner 42 (2027)"
    assert (now.backorders_allowed, now.allocation_strategy.value, now.discontinued) == (
        False,
        "priority",
        True,
    )
    assert (now.backorder_limit, now.status.value) == (5, "discontinued")
    assert rename.to_dict() == {"name": "Trail Runner 42 (2027)"}  # all that went on the wire


def test_a_typescript_storefront_type_checks_against_openapi_typescript(
    npm_tools: Path, workdir: Path
) -> None:
    run(workdir, str(npm_tools / "openapi-typescript"), "openapi.json", "-o", "api.d.ts")
    shutil.copy(CLIENTS / "storefront.ts", workdir / "storefront.ts")
    run(
        workdir,
        *(str(npm_tools / "tsc"), "--noEmit", "--strict", "--target", "es2022"),
        *("--module", "esnext", "--moduleResolution", "bundler", "--lib", "es2022,dom"),
        "storefront.ts",
    )


def test_redocly_recommended_rules_pass(npm_tools: Path, workdir: Path) -> None:
    report = run(
        workdir,
        *(str(npm_tools / "redocly"), "lint", "openapi.json", "--extends=recommended"),
        "--format=json",
        env={"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    problems = json.loads(report.stdout)["problems"]
    found = {(p["ruleId"], p["location"][0]["pointer"], p["severity"]) for p in problems}
    assert {f for f in found if f[2] == "error"} == set()

    def justified(rule: str, pointer: str) -> bool:  # "#/paths/~1healthz/get/responses"
        parts = pointer.split("/")
        path = parts[2].replace("~1", "/") if parts[1:2] == ["paths"] else None
        return path in JUSTIFIED_WARNINGS.get(rule, set())

    assert [f for f in found if not justified(f[0], f[1])] == []


def test_spectral_recommended_rules_pass(npm_tools: Path, workdir: Path) -> None:
    output = workdir / "spectral.json"
    run(
        workdir,
        *(str(npm_tools / "spectral"), "lint", "openapi.json"),
        *("--ruleset", str(CLIENTS / ".spectral.yaml")),
        *("--format", "json", "--output", str(output)),
    )
    assert json.loads(output.read_text() or "[]") == []
