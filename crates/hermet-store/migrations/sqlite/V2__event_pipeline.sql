-- Event pipeline (docs/ARCHITECTURE.md "Sync modes and the embedded event log"): Kafka
-- publication, dead letters, relay lease, compensation.
-- See the PostgreSQL migration of the same name for the reasons.

ALTER TABLE outbox ADD COLUMN kafka_topic TEXT;
ALTER TABLE outbox ADD COLUMN kafka_partition INTEGER;
ALTER TABLE outbox ADD COLUMN kafka_offset INTEGER;

CREATE INDEX outbox_channel_created ON outbox (aggregate_key) WHERE event_type = 'channel.created';

CREATE TABLE dead_letter (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer    TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    source      TEXT NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replay', 'replayed', 'discarded')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letter_status ON dead_letter (status, id);

CREATE TABLE relay_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- The compensation scanner looks at recently created channels.
CREATE INDEX channel_created_at ON channel (created_at);
