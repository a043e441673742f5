"""Response examples for the OpenAPI document: one story, told consistently.

`TRAIL-42` has 80 units on hand (40 counted in, 5 written off, 40 received from PO-1234,
which still brings 60 more by 2026-12-01). Customer `c-1001` orders 100 through the
`web-shop` storefront: 80 are allocated, 20 backordered, and the backordered line expects
2026-12-01 from the PO. Each example below is what one call answers from that moment on
(shipping the 80, a restock, a receipt, a cancel...), so the figures agree with each other.

Plain JSON values only (strings for ids and times): these dicts go into the schema as they are.
"""

from __future__ import annotations

from typing import Any

SKU = "TRAIL-42"
CUSTOMER = "c-1001"
CHANNEL = "web-shop"
ORDER_ID = "5b1d3c52-8f0e-4a77-9d61-2f0b1c9e4a10"
LINE_ID = "9e0c6a41-1d2f-4c8b-a7e3-0f5d6b2c8a91"
PO_ID = "0b6f3c9e-3f5e-4a8e-9a43-6f1f2f7a9c11"
SHIPMENT_ID = "c4a7e2d1-5b3f-4e8a-9c6d-7f1e2a3b4c5d"
API_KEY_ID = "7a4e1f0c-2b3d-4c5e-8f6a-9b0c1d2e3f4a"
EXPECTED = "2026-12-01"

PRODUCT_CREATED = "2026-11-02T08:00:00Z"
PO_CREATED = "2026-11-20T09:30:00Z"
PO_RECEIVED_40 = "2026-11-23T14:05:12Z"
PLACED = "2026-11-23T16:03:13.123456Z"
SHIPPED = "2026-11-24T10:15:00Z"


def _line(**units: Any) -> dict[str, Any]:
    """The order's one line: 100 of TRAIL-42, with the given units and status."""
    line: dict[str, Any] = {
        "id": LINE_ID,
        "sku": SKU,
        "quantity": 100,
        "allocated": 80,
        "backordered": 20,
        "shipped": 0,
        "cancelled": 0,
        "status": "partially_backordered",
        "expected_date": EXPECTED,
        "at_risk": False,
    }
    line.update(units)
    # Where its allocated and shipped units are: all at `main` here.
    line.setdefault(
        "allocations",
        [{"location": "main", "allocated": line["allocated"], "shipped": line["shipped"]}]
        if line["allocated"] + line["shipped"]
        else [],
    )
    return line


def _order(line: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The order with one line; its totals are the line's."""
    order: dict[str, Any] = {
        "id": ORDER_ID,
        "customer_id": CUSTOMER,
        "channel": CHANNEL,
        "priority": 0,
        "ship_policy": "partial",
        "external_ref": "web-88812",
        "backorder_deadline": None,
        "status": line["status"],
        "backorder_type": "partial",
        "ready_to_ship": True,
        **{k: line[k] for k in ("quantity", "allocated", "backordered", "shipped", "cancelled")},
        "created_at": PLACED,
        "updated_at": PLACED,
        "lines": [line],
    }
    order.update(fields)
    return order


# POST /v1/orders (100 ordered, 80 available): allocated 80, backordered 20, ready to ship.
ORDER = _order(_line())

# POST /v1/orders/{id}/cancel: every unshipped unit cancelled; nothing waits any more.
ORDER_CANCELLED = _order(
    _line(allocated=0, backordered=0, cancelled=100, status="cancelled", expected_date=None),
    backorder_type="none",
    ready_to_ship=False,
    updated_at="2026-11-23T17:20:00Z",
)

# POST /v1/orders/{id}/lines/{line_id}/cancel `{"quantity": 5}`: backordered units go first.
ORDER_LINE_CANCELLED = _order(_line(backordered=15, cancelled=5), updated_at="2026-11-23T17:20:00Z")

# PATCH /v1/orders/{id} `{"priority": 7}`.
ORDER_REPRIORITISED = _order(_line(), priority=7, updated_at="2026-11-23T17:20:00Z")

# POST /v1/orders/{id}/shipments: the 80 allocated units leave; 20 still wait.
SHIPMENT: dict[str, Any] = {
    "id": SHIPMENT_ID,
    "order_id": ORDER_ID,
    "location": "main",
    "lines": [{"line_id": LINE_ID, "sku": SKU, "quantity": 80}],
    "created_at": SHIPPED,
    "order": _order(
        _line(allocated=0, shipped=80, status="partially_shipped"),
        ready_to_ship=False,
        updated_at=SHIPPED,
    ),
}

# GET /v1/backorders: c-1001's 20 units are next in line for TRAIL-42.
BACKORDER: dict[str, Any] = {
    "order_id": ORDER_ID,
    "line_id": LINE_ID,
    "sku": SKU,
    "customer_id": CUSTOMER,
    "quantity": 20,
    "priority": 0,
    "created_at": PLACED,
    "position": 1,
    "expected_date": EXPECTED,
}


def _product(sku: str, name: str, **fields: Any) -> dict[str, Any]:
    product: dict[str, Any] = {
        "sku": sku,
        "name": name,
        "backorders_allowed": True,
        "backorder_limit": 500,
        "allocation_strategy": "fifo",
        "discontinued": False,
        "expected_restock_date": None,
        "reorder_point": 20,
        "safety_stock": 10,
        "lead_time_days": 14,
        "max_backorder_days": None,
        "alternatives": [],
        "on_hand": 0,
        "allocated": 0,
        "available": 0,
        "backordered": 0,
        "incoming": 0,
        "status": "backorder",
        "locations": [],
        "created_at": PRODUCT_CREATED,
        "updated_at": PRODUCT_CREATED,
    }
    product.update(fields)
    if product["on_hand"] and not product["locations"]:
        product["locations"] = [_at("main", product["on_hand"], product["allocated"])]
    return product


def _at(location: str, on_hand: int, allocated: int, active: bool = True) -> dict[str, Any]:
    """A product's stock at one location."""
    return {
        "location": location,
        "active": active,
        "on_hand": on_hand,
        "allocated": allocated,
        "available": on_hand - allocated if active else 0,
    }


# GET /v1/products/TRAIL-42 right after the order: nothing available, 20 waiting, 60 incoming.
PRODUCT = _product(
    SKU,
    "Trail Runner 42",
    expected_restock_date=EXPECTED,
    alternatives=["TRAIL-43", "TRAIL-41"],
    on_hand=80,
    allocated=80,
    backordered=20,
    incoming=60,
    status="backorder",
    updated_at=PLACED,
)

# GET /v1/products/TRAIL-42/alternatives: those with stock now, most available first.
ALTERNATIVES: dict[str, Any] = {
    "data": [
        _product(
            "TRAIL-43",
            "Trail Runner 43",
            alternatives=["TRAIL-42"],
            on_hand=47,
            allocated=12,
            available=35,
            status="in_stock",
        ),
        _product(
            "TRAIL-41",
            "Trail Runner 41",
            reorder_point=15,
            alternatives=["TRAIL-42"],
            on_hand=12,
            available=12,
            status="low_stock",
        ),
    ],
    "next_cursor": None,
}

# POST /v1/products/TRAIL-42/restocks `{"quantity": 50, "reference": "PO-1234"}` after the
# order: the queue's head (c-1001's 20 units) is filled first, 30 are left available.
RESTOCK: dict[str, Any] = {
    "id": "319",
    "sku": SKU,
    "location": "main",
    "quantity": 50,
    "allocations": [{"order_id": ORDER_ID, "line_id": LINE_ID, "quantity": 20}],
    "allocated_units": 20,
    "on_hand": 130,
    "allocated": 100,
    "available": 30,
    "backordered": 0,
    "created_at": "2026-11-25T09:00:00Z",
}

# POST /v1/products/TRAIL-42/adjustments `{"delta": -3, "reason": "cycle count"}` after it.
ADJUSTMENT: dict[str, Any] = {
    "id": "320",
    "sku": SKU,
    "location": "main",
    "quantity": -3,
    "allocations": [],
    "allocated_units": 0,
    "on_hand": 127,
    "allocated": 100,
    "available": 27,
    "backordered": 0,
    "created_at": "2026-11-25T11:30:00Z",
    "delta": -3,
    "reason": "cycle count",
}


def _movement(id_: str, kind: str, quantity: int, created_at: str, **fields: Any) -> dict[str, Any]:
    movement: dict[str, Any] = {
        "id": id_,
        "sku": SKU,
        "kind": kind,
        "location": "main",
        "quantity": quantity,
        "reference": None,
        "reason": None,
        "order_id": None,
        "shipment_id": None,
        "purchase_order_id": None,
        "transfer_id": None,
        "created_at": created_at,
    }
    movement.update(fields)
    return movement


# GET /v1/products/TRAIL-42/movements: the ledger, oldest first; it sums to on_hand (80).
MOVEMENTS: dict[str, Any] = {
    "data": [
        _movement("301", "restock", 45, "2026-11-02T08:05:00Z", reference="opening stock"),
        _movement("305", "adjustment", -5, "2026-11-10T12:00:00Z", reason="damaged"),
        _movement(
            "311",
            "receipt",
            40,
            PO_RECEIVED_40,
            reference="PO-1234",
            purchase_order_id=PO_ID,
        ),
    ],
    "next_cursor": None,
}

# One ledger entry: the shipment of the 80 allocated units, signed.
MOVEMENT = _movement(
    "318",
    "shipment",
    -80,
    SHIPPED,
    reference=SHIPMENT_ID,
    order_id=ORDER_ID,
    shipment_id=SHIPMENT_ID,
)

# GET /v1/purchase-orders/{id}: PO-1234, 40 of 100 received.
# GET /v1/products/TRAIL-42/promise?quantity=30 after the order: nothing is available, c-1001's
# line waits for 20, and the PO's 60 cover those 20 and these 30.
PROMISE: dict[str, Any] = {
    "sku": SKU,
    "quantity": 30,
    "available_now": 0,
    "backordered": 30,
    "expected_date": EXPECTED,
    "lines_ahead": 1,
    "units_ahead": 20,
    "refused": None,
}
# The same, had TRAIL-42 taken no backorders: the order would be refused whole.
PROMISE_REFUSED: dict[str, Any] = {
    **PROMISE,
    "available_now": 0,
    "backordered": 0,
    "expected_date": None,
    "lines_ahead": 0,
    "units_ahead": 0,
    "refused": "insufficient_stock",
}

PURCHASE_ORDER: dict[str, Any] = {
    "id": PO_ID,
    "sku": SKU,
    "location": "main",
    "quantity": 100,
    "received": 40,
    "remaining": 60,
    "expected_date": EXPECTED,
    "reference": "PO-1234",
    "status": "open",
    "overdue": False,
    "created_at": PO_CREATED,
    "updated_at": PO_RECEIVED_40,
}

# POST /v1/purchase-orders/{id}/receive `{"quantity": 60}` after the order: the last 60 arrive,
# the queue's 20 are filled, the PO closes.
RECEIPT_AT = "2026-11-26T10:00:00Z"
RECEIPT: dict[str, Any] = {
    "id": "321",
    "sku": SKU,
    "location": "main",
    "quantity": 60,
    "allocations": [{"order_id": ORDER_ID, "line_id": LINE_ID, "quantity": 20}],
    "allocated_units": 20,
    "on_hand": 140,
    "allocated": 100,
    "available": 40,
    "backordered": 0,
    "created_at": RECEIPT_AT,
    "purchase_order": {
        **PURCHASE_ORDER,
        "received": 100,
        "remaining": 0,
        "status": "closed",
        "updated_at": RECEIPT_AT,
    },
}

API_KEY: dict[str, Any] = {
    "id": API_KEY_ID,
    "name": CHANNEL,
    "role": "storefront",
    "prefix": "bo_WZugXko",
    "created_at": "2026-11-01T09:00:00Z",
    "last_used_at": "2026-11-23T16:03:00Z",
}
API_KEY_CREATED: dict[str, Any] = {
    **API_KEY,
    "last_used_at": None,
    "key": "bo_WZugXkoOGT6cl5vFSNAwcopEiEr-3SFD5UutTbUzRM0",
}

HEALTHZ: dict[str, Any] = {"status": "ok"}
READYZ: dict[str, Any] = {"status": "ready", "database": "ok", "migration": "0001"}

# Locations: `main` (every write that names none) and a second site, `leeds`, preferred.
LOCATION_CREATED = "2026-11-01T09:00:00Z"
LOCATION: dict[str, Any] = {
    "code": "leeds",
    "name": "Leeds DC",
    "rank": 10,
    "active": True,
    "created_at": LOCATION_CREATED,
    "updated_at": LOCATION_CREATED,
}
LOCATION_MAIN: dict[str, Any] = {
    "code": "main",
    "name": "Main",
    "rank": 100,
    "active": True,
    "created_at": PRODUCT_CREATED,
    "updated_at": PRODUCT_CREATED,
}
# GET /v1/locations: by rank, then code.
LOCATIONS: dict[str, Any] = {"data": [LOCATION, LOCATION_MAIN], "next_cursor": None}

# POST /v1/transfers `{"sku": "TRAIL-42", "from": "york", "to": "leeds", "quantity": 30}` right
# after the order: 30 units sat at `york`, a store being closed (inactive, so not available).
# Arriving at `leeds` they fill the 20 c-1001 waits for, there; 10 are left available.
TRANSFER_ID = "e2b8f1c4-6a3d-4f7e-8b2c-1d9a0e5f7c33"
TRANSFER: dict[str, Any] = {
    "id": TRANSFER_ID,
    "sku": SKU,
    "from": "york",
    "to": "leeds",
    "quantity": 30,
    "reference": "closing york",
    "created_at": "2026-11-25T09:30:00Z",
    "allocations": [{"order_id": ORDER_ID, "line_id": LINE_ID, "quantity": 20}],
    "allocated_units": 20,
    "on_hand": 110,
    "allocated": 100,
    "available": 10,
    "backordered": 0,
}

# GET /v1/locations/main/pick-list: what to pick at `main`, highest priority first, then oldest.
PICK_LINE: dict[str, Any] = {
    "order_id": ORDER_ID,
    "line_id": LINE_ID,
    "sku": SKU,
    "customer_id": CUSTOMER,
    "quantity": 80,
    "priority": 0,
    "created_at": PLACED,
}


def _dry_run(answer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`answer` as a dry run gives it: no id (nothing is created), and what would move."""
    return {**answer, "id": None, "dry_run": True, "orders": [], "expected_dates": [], **changes}


# POST /v1/products/TRAIL-42/restocks?dry_run=true `{"quantity": 50}`: what the restock above
# would do, written nowhere. c-1001's order would be ready to ship, its line's wait (and date)
# would end, and the line behind it, covered by a PO until now, would move up to an earlier one.
RESTOCK_DRY_RUN = _dry_run(
    RESTOCK,
    orders=[{"order_id": ORDER_ID, "status": "allocated", "ready_to_ship": True}],
    expected_dates=[
        {"line_id": LINE_ID, "before": EXPECTED, "after": None},
        {
            "line_id": "2c5d8e1f-7a4b-4c3d-9e8f-1a2b3c4d5e6f",
            "before": "2026-12-15",
            "after": EXPECTED,
        },
    ],
)
RECEIPT_DRY_RUN = _dry_run(RECEIPT)
TRANSFER_DRY_RUN = _dry_run(TRANSFER)
SHIPMENT_DRY_RUN = _dry_run(
    SHIPMENT,
    orders=[{"order_id": ORDER_ID, "status": "partially_shipped", "ready_to_ship": False}],
)
# POST /v1/orders/{id}/cancel?dry_run=true: the order as the cancel would leave it.
ORDER_CANCEL_DRY_RUN = {
    **ORDER_CANCELLED,
    "dry_run": True,
    "orders": [{"order_id": ORDER_ID, "status": "cancelled", "ready_to_ship": False}],
    "expected_dates": [{"line_id": LINE_ID, "before": EXPECTED, "after": None}],
}
