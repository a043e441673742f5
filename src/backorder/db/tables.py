"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; a test checks they agree.

The product row is the lock for its SKU: every writer of a SKU's stock or queue takes
`SELECT ... FOR UPDATE` on it first. The backorder queue is `backorder_queue`: a narrow row of
queue keys per order line with `backordered > 0`, written in the same statement that makes a
line wait and deleted in the one that ends its wait. Keeping the keys out of `order_line`
(and `fillfactor` room on its pages) lets a fill update lines in place (HOT), without adding
entries to their indexes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

NOW = text("clock_timestamp()")


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW)


api_key = Table(
    "api_key",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    _created_at(),
    Column("revoked_at", DateTime(timezone=True)),
    # To the minute, not to the request: see `keys.touch`.
    Column("last_used_at", DateTime(timezone=True)),
    CheckConstraint("role IN ('ops', 'storefront')", name="role"),
)

product = Table(
    "product",
    metadata,
    Column("sku", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("backorders_allowed", Boolean, nullable=False, server_default=text("true")),
    Column("backorder_limit", Integer),
    Column("allocation_strategy", Text, nullable=False, server_default=text("'fifo'")),
    Column("discontinued", Boolean, nullable=False, server_default=text("false")),
    Column("expected_restock_date", Date),
    Column("reorder_point", Integer),
    Column("safety_stock", Integer),
    Column("lead_time_days", Integer),
    # How long an order that comes to wait for it waits at most, unless it has a deadline of
    # its own (`sales_order.backorder_deadline`).
    Column("max_backorder_days", Integer),
    Column("alternatives", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # Live counters, kept in the same transaction as every change of stock or queue.
    Column("on_hand", BigInteger, nullable=False, server_default=text("0")),
    Column("allocated", BigInteger, nullable=False, server_default=text("0")),
    Column("backordered", BigInteger, nullable=False, server_default=text("0")),
    Column("incoming", BigInteger, nullable=False, server_default=text("0")),
    # Units on hand, unallocated, at inactive locations: not available to orders. Kept with
    # the counters, so that `available` = on_hand - allocated - unavailable is a column sum.
    Column("unavailable", BigInteger, nullable=False, server_default=text("0")),
    # The availability state last announced by an event, so that `product.low_stock` and
    # `product.back_in_stock` are written on entering a state, not again while in it.
    Column("stock_state", Text, nullable=False, server_default=text("'out'")),
    # Totals for /metrics, kept by the statements that place orders and fill the queue (they
    # hold this row's lock anyway), so a scrape sums one row per product, not the history.
    Column("units_backordered_at_placement", BigInteger, nullable=False, server_default=text("0")),
    Column("units_filled_from_queue", BigInteger, nullable=False, server_default=text("0")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("allocation_strategy IN ('fifo', 'priority')", name="allocation_strategy"),
    CheckConstraint("on_hand >= 0", name="on_hand_nonnegative"),
    CheckConstraint("allocated >= 0 AND allocated <= on_hand", name="allocated_within_on_hand"),
    CheckConstraint("backordered >= 0", name="backordered_nonnegative"),
    CheckConstraint("incoming >= 0", name="incoming_nonnegative"),
    CheckConstraint(
        "unavailable >= 0 AND allocated + unavailable <= on_hand", name="unavailable_within"
    ),
    CheckConstraint("backorder_limit IS NULL OR backorder_limit >= 0", name="backorder_limit"),
    CheckConstraint("max_backorder_days BETWEEN 1 AND 3650", name="max_backorder_days_range"),
    CheckConstraint("stock_state IN ('out', 'low', 'in')", name="stock_state"),
)

purchase_order = Table(
    "purchase_order",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("sku", Text, ForeignKey("product.sku"), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("received", BigInteger, nullable=False, server_default=text("0")),
    # Where the receipt lands.
    Column(
        "location",
        Text,
        ForeignKey("location.code"),
        nullable=False,
        server_default=text("'main'"),
    ),
    Column("expected_date", Date, nullable=False),
    Column("reference", Text),
    Column("status", Text, nullable=False, server_default=text("'open'")),
    # When the PO was found past its date with units unreceived; set once, by the claim that
    # writes `purchase_order.overdue` (workers/purchase_orders.py); a new date clears it.
    Column("overdue_at", DateTime(timezone=True)),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("received >= 0 AND received <= quantity", name="received_within_quantity"),
    CheckConstraint("status IN ('open', 'closed', 'cancelled')", name="status"),
    Index(
        "ix_purchase_order_open_by_sku",
        "sku",
        "expected_date",
        "created_at",
        postgresql_where=text("status = 'open'"),
    ),
    Index(
        "ix_purchase_order_due",
        "expected_date",
        postgresql_where=text("status = 'open' AND overdue_at IS NULL"),
    ),
)

# Where stock is kept: warehouses, stores, 3PL sites. `main` always exists (the migration makes
# it): stock that predates locations is there, and every write naming no location uses it.
location = Table(
    "location",
    metadata,
    Column("code", Text, primary_key=True),
    # A small number for the lines that name it (`order_line.location_id`); `main` is 1.
    Column("id", SmallInteger, Identity(always=True), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("rank", SmallInteger, nullable=False, server_default=text("100")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("rank BETWEEN 0 AND 1000", name="rank_range"),
)

# Stock per SKU and location; the product row's counters are its sums, and the product row
# stays the one lock of its SKU (every writer of these rows holds it). A row exists once the
# SKU has had a stock movement at the location, and stays when emptied.
stock_level = Table(
    "stock_level",
    metadata,
    Column("sku", Text, ForeignKey("product.sku"), primary_key=True),
    Column("location", Text, ForeignKey("location.code"), primary_key=True),
    Column("on_hand", BigInteger, nullable=False, server_default=text("0")),
    Column("allocated", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("on_hand >= 0", name="on_hand_nonnegative"),
    CheckConstraint("allocated >= 0 AND allocated <= on_hand", name="allocated_within_on_hand"),
    Index("ix_stock_level_location", "location"),
)

# A move of unallocated units between two locations (its two ledger rows carry its id).
transfer = Table(
    "transfer",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("sku", Text, ForeignKey("product.sku"), nullable=False),
    Column("from_location", Text, ForeignKey("location.code"), nullable=False),
    Column("to_location", Text, ForeignKey("location.code"), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("reference", Text),
    _created_at(),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("from_location <> to_location", name="distinct_locations"),
    Index("ix_transfer_sku_created_at", "sku", "created_at"),
)

stock_movement = Table(
    "stock_movement",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sku", Text, ForeignKey("product.sku"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("reference", Text),
    Column("reason", Text),
    Column("order_id", UUID(as_uuid=True)),
    Column("shipment_id", UUID(as_uuid=True)),
    Column("purchase_order_id", UUID(as_uuid=True)),
    _created_at(),
    Column("location", Text, nullable=False),
    Column("transfer_id", UUID(as_uuid=True)),
    CheckConstraint(
        "kind IN ('restock', 'adjustment', 'shipment', 'receipt', 'transfer')", name="kind"
    ),
    CheckConstraint("quantity <> 0", name="quantity_nonzero"),
    # Every ledger row belongs to a stock level (whose on_hand is the sum of its rows); the
    # writer holds that row's lock already, so the key check costs no new lock.
    ForeignKeyConstraint(
        ["sku", "location"],
        ["stock_level.sku", "stock_level.location"],
        name="fk_stock_movement_stock_level",
    ),
    Index("ix_stock_movement_sku_id", "sku", "id"),
)

sales_order = Table(
    "sales_order",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("channel", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("ship_policy", Text, nullable=False, server_default=text("'partial'")),
    Column("external_ref", Text),
    # Until when the customer waits for backordered units (the expiry worker cancels them
    # after it); its own, or `created_at` + its products' `max_backorder_days`.
    Column("backorder_deadline", DateTime(timezone=True)),
    Column("status", Text, nullable=False),
    # Kept with the status so that `order.ready_to_ship` is written on the transition only.
    Column("ready_to_ship", Boolean, nullable=False, server_default=text("false")),
    # Reports: whether any unit waited at placement.
    Column("backordered_at_placement", Boolean, nullable=False, server_default=text("false")),
    # The sums of its lines' units, which the status is made of: kept on the row that a fill
    # locks, so a status is never computed from lines an older snapshot saw (db/stock.py).
    Column("allocated", BigInteger, nullable=False, server_default=text("0")),
    Column("backordered", BigInteger, nullable=False, server_default=text("0")),
    Column("shipped", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
    CheckConstraint(
        "allocated >= 0 AND backordered >= 0 AND shipped >= 0", name="units_nonnegative"
    ),
    CheckConstraint("ship_policy IN ('partial', 'complete')", name="ship_policy"),
    CheckConstraint(
        "status IN ('cancelled', 'shipped', 'partially_shipped', 'allocated', "
        "'partially_backordered', 'backordered')",
        name="status",
    ),
    Index("ix_sales_order_created_at_id", "created_at", "id"),
    Index("ix_sales_order_channel_created_at_id", "channel", "created_at", "id"),
    Index("ix_sales_order_customer_id", "customer_id"),
    # external_ref is unique per channel (an integrator's guard against placing twice); led by
    # the reference so that an ops lookup by reference alone uses it too.
    Index(
        "uq_sales_order_external_ref_channel",
        "external_ref",
        "channel",
        unique=True,
        postgresql_where=text("external_ref IS NOT NULL"),
    ),
    # No index on `status`: a fill changes the status of every order it reaches, and an
    # indexed column would make each of those updates non-HOT.
    postgresql_with={"fillfactor": 50},
)

order_line = Table(
    "order_line",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), ForeignKey("sales_order.id"), nullable=False),
    Column("line_no", SmallInteger, nullable=False),
    Column("sku", Text, ForeignKey("product.sku"), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("allocated", BigInteger, nullable=False),
    Column("backordered", BigInteger, nullable=False),
    Column("shipped", BigInteger, nullable=False, server_default=text("0")),
    Column("cancelled", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Reports: what waited at placement and when the wait ended by allocation.
    Column("initial_backordered", BigInteger, nullable=False),
    Column("filled_at", DateTime(timezone=True)),
    # The promise date of the backordered units, kept by `db/promises.py`.
    Column("expected_date", Date),
    # Where its allocated and shipped units are. `location_id`: the line's primary location,
    # where its first units were allocated (0 while it has held none); `allocated_at` and
    # `shipped_at`: its units at any other location, `{code: units}` (null when none). The
    # primary's units are the rest of `allocated` and `shipped`. A fill sets the primary of a
    # line that held nothing, a fixed-width column whose new value takes no more room than
    # the old: the line is still rewritten in place (HOT), so a 100,000-line restock writes no
    # row and no index entry more than it did before locations (a map or a row per line did:
    # +80 % WAL, +15 % time). The view `line_allocation` shows a line's units as rows.
    Column("location_id", SmallInteger, nullable=False, server_default=text("0")),
    Column("allocated_at", JSONB),
    Column("shipped_at", JSONB),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint(
        "allocated >= 0 AND backordered >= 0 AND shipped >= 0 AND cancelled >= 0",
        name="parts_nonnegative",
    ),
    CheckConstraint(
        "quantity = allocated + backordered + shipped + cancelled", name="parts_add_up"
    ),
    UniqueConstraint("order_id", "line_no"),
    UniqueConstraint("order_id", "sku"),
    Index("ix_order_line_sku_created_at", "sku", "created_at"),
    # The lines that waited, by placement: the console overview splits the days its age
    # boundaries fall on with it (db/trends.py). Neither column changes after placement, so
    # fills stay HOT. Migration 20261208_0009 also adds the statistics object the overview's
    # day groups are planned with (SQLAlchemy has no construct for one).
    Index(
        "ix_order_line_waited_created_at",
        "created_at",
        postgresql_where=text("initial_backordered > 0"),
    ),
    # More than half of each page is left free: a restock filling a run of lines placed one
    # after another rewrites every row of their pages, and each new version (a little longer:
    # it gains `filled_at`) must fit beside the old, or the row moves and every index of the
    # table gets a new entry for it. At 50 % the last rows of a full page no longer fit once
    # a line also names its location (measured: 7 % of a 100,000-line fill moved); at 45 %
    # all stay.
    postgresql_with={"fillfactor": 45},
)

# The waiting lines, in queue order per SKU: `fifo` by (created_at, line_id), `priority` by
# (priority DESC, created_at, line_id). `priority` is the order's, kept by reprioritising.
# A row exists exactly while its line's `backordered > 0` (the invariant checks say so).
backorder_queue = Table(
    "backorder_queue",
    metadata,
    Column("line_id", UUID(as_uuid=True), ForeignKey("order_line.id"), primary_key=True),
    Column("sku", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The order's deadline, on each of its waiting lines (null: it waits as long as it takes),
    # and whether the line was last announced at risk (`db/promises.py`).
    Column("deadline", DateTime(timezone=True)),
    Column("at_risk", Boolean, nullable=False, server_default=text("false")),
    Index("ix_backorder_queue_fifo", "sku", "created_at", "line_id"),
    Index("ix_backorder_queue_priority", "sku", text("priority DESC"), "created_at", "line_id"),
    Index(
        "ix_backorder_queue_sku_with_deadline", "sku", postgresql_where=text("deadline IS NOT NULL")
    ),
    Index("ix_backorder_queue_deadline", "deadline", postgresql_where=text("deadline IS NOT NULL")),
)

shipment = Table(
    "shipment",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), ForeignKey("sales_order.id"), nullable=False),
    Column("lines", JSONB, nullable=False),
    # Where it left from (shipments before locations: `main`).
    Column("location", Text, nullable=False, server_default=text("'main'")),
    _created_at(),
    Index("ix_shipment_order_id", "order_id"),
)

# Read by id only (the feed, the fan-out): no index by type, whose inserts land mid-tree and
# cost more than the row (migration 0005); a `type=` filter walks the primary key.
event = Table(
    "event",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("type", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    _created_at(),
)

webhook_endpoint = Table(
    "webhook_endpoint",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("secret", Text, nullable=False),
    Column("description", Text),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    Column("deleted_at", DateTime(timezone=True)),
    # The storefront channel that manages it (null: ops); the channel whose feed it receives
    # (null: everything). A storefront's endpoint receives its own channel only.
    Column("owner_channel", Text),
    Column("channel", Text),
    # Rotation with an overlap: both secrets sign until the previous one expires.
    Column("previous_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    # The circuit breaker: an endpoint failing again and again is left alone for a while.
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("circuit_open_until", DateTime(timezone=True)),
    CheckConstraint("owner_channel IS NULL OR channel = owner_channel", name="owner_channel"),
    Index(
        "ix_webhook_endpoint_owner_channel",
        "owner_channel",
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

webhook_delivery = Table(
    "webhook_delivery",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("endpoint_id", UUID(as_uuid=True), ForeignKey("webhook_endpoint.id"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("event.id"), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Null once the delivery is finished: nothing is due.
    Column("next_attempt_at", DateTime(timezone=True), server_default=NOW),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    _created_at(),
    Column("manual_retries", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    UniqueConstraint("endpoint_id", "event_id"),
    # Claims read each endpoint's due deliveries, so one endpoint's backlog starves no other.
    Index(
        "ix_webhook_delivery_endpoint_id_next_attempt_at",
        "endpoint_id",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
)

# Position of background consumers of the event feed (e.g. the webhook fan-out).
worker_cursor = Table(
    "worker_cursor",
    metadata,
    Column("name", Text, primary_key=True),
    Column("last_event_id", BigInteger, nullable=False, server_default=text("0")),
)

stock_subscription = Table(
    "stock_subscription",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("sku", Text, ForeignKey("product.sku"), nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("contact", Text),
    Column("channel", Text, nullable=False),
    _created_at(),
    Column("notified_at", DateTime(timezone=True)),
    Column("event_id", BigInteger),
    Index("ix_stock_subscription_waiting", "sku", postgresql_where=text("notified_at IS NULL")),
)

idempotency_key = Table(
    "idempotency_key",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("scope", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    _created_at(),
    UniqueConstraint("scope", "key"),
    Index("ix_idempotency_key_created_at", "created_at"),
)
