-- On Kafka, dead letters are also published to `<topic>.dlq` (by the outbox relay, after
-- the fact), so Kafka-native tooling sees them; the table stays the store `hermet dlq`
-- works on. NULL = waiting to be published; letters of the embedded log get 0 (never).
ALTER TABLE dead_letter ADD COLUMN dlq_published_at BIGINT;
UPDATE dead_letter SET dlq_published_at = 0 WHERE source NOT LIKE 'kafka %';
CREATE INDEX dead_letter_to_publish ON dead_letter (id) WHERE dlq_published_at IS NULL;
