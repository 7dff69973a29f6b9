-- Event pipeline (docs/ARCHITECTURE.md "Sync modes and the embedded event log"): Kafka
-- publication, dead letters, relay lease, compensation.

-- Where the relay published each row on Kafka: read-your-writes waits until the
-- projectors' offsets for that partition pass this offset; drain checks use it too.
ALTER TABLE outbox
    ADD COLUMN kafka_topic     TEXT,
    ADD COLUMN kafka_partition INTEGER,
    ADD COLUMN kafka_offset    BIGINT;

-- The compensation scanner asks "does channel X have its channel.created event?"; a
-- partial index holds only those rows, so it costs nothing on the hot insert path.
CREATE INDEX outbox_channel_created ON outbox (aggregate_key) WHERE event_type = 'channel.created';

-- Events a consumer could not apply after its retries (`000_70dd81066eae5b2b.txt` §5.2). `payload` is
-- kept as text: an unreadable payload is exactly what may land here.
CREATE TABLE dead_letter (
    id          BIGSERIAL PRIMARY KEY,
    consumer    TEXT NOT NULL,
    event_id    BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    source      TEXT NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replay', 'replayed', 'discarded')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letter_status ON dead_letter (status, id);

-- One relay publishes at a time (per-key order, no double publishing): the holder renews
-- its lease before every batch and stops publishing before it can expire.
CREATE TABLE relay_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The compensation scanner looks at recently created channels.
CREATE INDEX channel_created_at ON channel (created_at);
