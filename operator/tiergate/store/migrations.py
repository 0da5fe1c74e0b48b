"""Numbered schema migrations, one list per engine.

Migration N is the N-th entry (1-based); `schema_version` records which ran. One runner
(`_dialect.DialectStore.migrate_flow`) applies them when a store opens, under a lock (SQLite:
an IMMEDIATE transaction; PostgreSQL: a transaction-scoped advisory lock), so two processes
opening at once apply each once.
Append new migrations; never edit one that has shipped.

Columns ``due_at``: when a queued or in-flight message may next be leased (its
``next_attempt_at`` while queued, its lease expiry while in flight), NULL in every other
state. The lease index covers exactly the leasable rows.
"""

from __future__ import annotations

SQLITE_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            traffic_class TEXT NOT NULL,
            destination TEXT NOT NULL,
            sender_id TEXT NOT NULL,
            body TEXT NOT NULL,
            encoding TEXT NOT NULL,
            segments INTEGER NOT NULL,
            client_ref TEXT,
            idempotency_key TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            due_at REAL,
            lease_owner TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            submitted_at REAL,
            delivered_at REAL,
            upstream_message_id TEXT,
            last_error TEXT,
            tier TEXT,
            revision TEXT,
            replay_count INTEGER NOT NULL DEFAULT 0,
            replay_job_id TEXT
        )""",
        "CREATE UNIQUE INDEX messages_idempotency ON messages (customer_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX messages_due ON messages (traffic_class, due_at) WHERE due_at IS NOT NULL",
        "CREATE INDEX messages_upstream ON messages (upstream_message_id)"
        " WHERE upstream_message_id IS NOT NULL",
        """CREATE TABLE message_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL,
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        )""",
        "CREATE INDEX message_events_message ON message_events (message_id)",
        """CREATE TABLE discards (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            traffic_class TEXT NOT NULL,
            tier TEXT,
            revision TEXT,
            reason TEXT NOT NULL,
            upstream_error TEXT,
            attempts INTEGER NOT NULL,
            discarded_at REAL NOT NULL,
            message_created_at REAL NOT NULL,
            replay_job_id TEXT,
            replayed_at REAL
        )""",
        "CREATE INDEX discards_time ON discards (discarded_at)",
        "CREATE INDEX discards_message ON discards (message_id)",
        "CREATE INDEX discards_unreplayed ON discards (discarded_at) WHERE replay_job_id IS NULL",
        """CREATE TABLE pending_receipts (
            upstream_message_id TEXT PRIMARY KEY,
            delivered INTEGER NOT NULL,
            detail TEXT,
            received_at REAL NOT NULL
        )""",
        """CREATE TABLE replay_jobs (
            id TEXT PRIMARY KEY,
            filter TEXT NOT NULL,
            rate REAL,
            dry_run INTEGER NOT NULL,
            max_age_seconds REAL,
            source TEXT,
            state TEXT NOT NULL,
            matched INTEGER NOT NULL,
            replayed INTEGER NOT NULL,
            skipped INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            cursor TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
    # Event details as data: a JSON object (``event`` plus fields) instead of a sentence.
    ("ALTER TABLE message_events ADD COLUMN data TEXT",),
]

POSTGRES_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            traffic_class TEXT NOT NULL,
            destination TEXT NOT NULL,
            sender_id TEXT NOT NULL,
            body TEXT NOT NULL,
            encoding TEXT NOT NULL,
            segments INTEGER NOT NULL,
            client_ref TEXT,
            idempotency_key TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL,
            due_at TIMESTAMPTZ,
            lease_owner TEXT,
            lease_expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            submitted_at TIMESTAMPTZ,
            delivered_at TIMESTAMPTZ,
            upstream_message_id TEXT,
            last_error TEXT,
            tier TEXT,
            revision TEXT,
            replay_count INTEGER NOT NULL DEFAULT 0,
            replay_job_id TEXT
        )""",
        "CREATE UNIQUE INDEX messages_idempotency ON messages (customer_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX messages_due ON messages (traffic_class, due_at) WHERE due_at IS NOT NULL",
        "CREATE INDEX messages_upstream ON messages (upstream_message_id)"
        " WHERE upstream_message_id IS NOT NULL",
        """CREATE TABLE message_events (
            seq BIGSERIAL PRIMARY KEY,
            message_id TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        )""",
        "CREATE INDEX message_events_message ON message_events (message_id)",
        """CREATE TABLE discards (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            traffic_class TEXT NOT NULL,
            tier TEXT,
            revision TEXT,
            reason TEXT NOT NULL,
            upstream_error TEXT,
            attempts INTEGER NOT NULL,
            discarded_at TIMESTAMPTZ NOT NULL,
            message_created_at TIMESTAMPTZ NOT NULL,
            replay_job_id TEXT,
            replayed_at TIMESTAMPTZ
        )""",
        "CREATE INDEX discards_time ON discards (discarded_at)",
        "CREATE INDEX discards_message ON discards (message_id)",
        "CREATE INDEX discards_unreplayed ON discards (discarded_at) WHERE replay_job_id IS NULL",
        """CREATE TABLE pending_receipts (
            upstream_message_id TEXT PRIMARY KEY,
            delivered BOOLEAN NOT NULL,
            detail TEXT,
            received_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE replay_jobs (
            id TEXT PRIMARY KEY,
            filter TEXT NOT NULL,
            rate DOUBLE PRECISION,
            dry_run BOOLEAN NOT NULL,
            max_age_seconds DOUBLE PRECISION,
            source TEXT,
            state TEXT NOT NULL,
            matched BIGINT NOT NULL,
            replayed BIGINT NOT NULL,
            skipped BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            cursor TEXT,
            error TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
    ),
    ("ALTER TABLE message_events ADD COLUMN data JSONB",),
]

# Migration 3: delivery options, the receipt-timeout state and the webhook outbox.
#
# ``webhook_events`` is the outbox: a row per state change a customer hears about, written by
# triggers in the transaction of the change itself (a message update to submitted, delivered,
# failed, unknown or, by a replay, queued; a discard), so no code path can change a state and
# forget its event, and a crash loses none. Only messages with a ``callback_url`` get rows.
# ``next_attempt_at`` is also the claim: a dispatcher pushes it past the request's deadline
# when it takes the row, so a dispatcher that dies gives its rows back when that passes.
# The engines differ only in column types and in how a trigger is declared.
_WEBHOOK_STATES = "('submitted', 'delivered', 'failed', 'unknown')"
_WEBHOOK_TABLE = """CREATE TABLE webhook_events (
            seq {seq},
            message_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            callback_url TEXT NOT NULL,
            client_ref TEXT,
            state TEXT NOT NULL,
            reason TEXT,
            upstream_message_id TEXT,
            occurred_at {time} NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {time} NOT NULL,
            last_attempt_at {time},
            last_status INTEGER,
            last_error TEXT,
            sent_at {time}
        )"""
_DELIVERY_STATEMENTS = (
    "CREATE INDEX messages_awaiting_receipt ON messages (submitted_at) WHERE state = 'submitted'",
    "CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX webhook_events_pending ON webhook_events (message_id, seq) WHERE status = 'pending'",
    "CREATE INDEX webhook_events_message ON webhook_events (message_id)",
)
_WHEN_STATE_EVENT = f"""NEW.callback_url IS NOT NULL AND (NEW.state IN {_WEBHOOK_STATES}
                OR (NEW.state = 'queued' AND NEW.replay_count > OLD.replay_count))"""
_ON_STATE = """INSERT INTO webhook_events (message_id, customer_id, callback_url, client_ref,
                    state, reason, upstream_message_id, occurred_at, next_attempt_at)
                VALUES (NEW.id, NEW.customer_id, NEW.callback_url, NEW.client_ref, NEW.state,
                    CASE WHEN NEW.state = 'queued' THEN 'replay'
                         WHEN NEW.state IN ('failed', 'unknown') THEN NEW.last_error END,
                    NEW.upstream_message_id, NEW.updated_at, NEW.updated_at);"""
_ON_DISCARD = """INSERT INTO webhook_events (message_id, customer_id, callback_url, client_ref,
                    state, reason, upstream_message_id, occurred_at, next_attempt_at)
                SELECT m.id, m.customer_id, m.callback_url, m.client_ref, 'discarded', NEW.reason,
                    m.upstream_message_id, NEW.discarded_at, NEW.discarded_at
                FROM messages m WHERE m.id = NEW.message_id AND m.callback_url IS NOT NULL;"""


def _delivery_columns(time: str) -> tuple[str, ...]:
    return tuple(
        f"ALTER TABLE messages ADD COLUMN {column}"
        for column in ("callback_url TEXT", f"expires_at {time}", f"send_at {time}")
    )


SQLITE_MIGRATIONS.append(
    (
        *_delivery_columns("REAL"),
        _WEBHOOK_TABLE.format(seq="INTEGER PRIMARY KEY AUTOINCREMENT", time="REAL"),
        *_DELIVERY_STATEMENTS,
        f"""CREATE TRIGGER webhook_on_state AFTER UPDATE OF state ON messages
            WHEN {_WHEN_STATE_EVENT}
            BEGIN {_ON_STATE} END""",
        f"CREATE TRIGGER webhook_on_discard AFTER INSERT ON discards BEGIN {_ON_DISCARD} END",
    )
)

POSTGRES_MIGRATIONS.append(
    (
        *_delivery_columns("TIMESTAMPTZ"),
        _WEBHOOK_TABLE.format(seq="BIGSERIAL PRIMARY KEY", time="TIMESTAMPTZ"),
        *_DELIVERY_STATEMENTS,
        f"""CREATE FUNCTION webhook_on_state() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {_ON_STATE} RETURN NULL; END $$""",
        f"""CREATE TRIGGER webhook_on_state AFTER UPDATE OF state ON messages FOR EACH ROW
            WHEN ({_WHEN_STATE_EVENT}) EXECUTE FUNCTION webhook_on_state()""",
        f"""CREATE FUNCTION webhook_on_discard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {_ON_DISCARD} RETURN NULL; END $$""",
        "CREATE TRIGGER webhook_on_discard AFTER INSERT ON discards FOR EACH ROW"
        " EXECUTE FUNCTION webhook_on_discard()",
    )
)
