-- Bounded growth: revoked families are collected once reuse detection no longer needs them, and
-- the audit log is partitioned by day on `at` so that retention drops whole partitions instead
-- of deleting rows one by one. Day partitions are attached ahead of time by clean-up (and at
-- start); an event whose day has no partition (a clock far off, or a row older than 400 days
-- copied here) lands in audit_log_default, from which clean-up deletes rows.

CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at)
    WHERE revoked_at IS NOT NULL;

ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER SEQUENCE audit_log_id_seq OWNED BY NONE;
DROP INDEX audit_log_at, audit_log_username_at, audit_log_client_at, audit_log_action_at;
ALTER TABLE audit_log_unpartitioned DROP CONSTRAINT audit_log_pkey;

CREATE TABLE audit_log (
    id        BIGINT NOT NULL DEFAULT nextval('audit_log_id_seq'),
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL,
    username  TEXT,
    client_id TEXT,
    details   TEXT NOT NULL DEFAULT '{}',
    -- Unique per partition only (a partitioned key must hold the partition column); the
    -- sequence keeps ids unique, and (at, id) is the order `tessera audit` pages in.
    PRIMARY KEY (at, id)
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE INDEX audit_log_username_at ON audit_log (username, at);
CREATE INDEX audit_log_client_at ON audit_log (client_id, at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);

-- A partition for every day of the last 400 that has rows, today's and the next two, so that
-- what is copied and what the first start writes land in day partitions (retention can drop
-- them) and the default one stays small (attaching a day scans it).
DO $$
DECLARE
    today BIGINT := (extract(epoch FROM now())::BIGINT / 86400) * 86400;
    day BIGINT;
BEGIN
    FOR day IN
        SELECT DISTINCT (at / 86400) * 86400 FROM audit_log_unpartitioned
        WHERE at >= today - 400 * 86400 AND at < today
        UNION SELECT today + i * 86400 FROM generate_series(0, 2) AS i
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%s) TO (%s)',
            'audit_log_p' || to_char(to_timestamp(day) AT TIME ZONE 'UTC', 'YYYYMMDD'),
            day, day + 86400);
    END LOOP;
END $$;

INSERT INTO audit_log (id, at, actor, action, target, outcome, username, client_id, details)
SELECT id, at, actor, action, target, outcome, username, client_id, details
FROM audit_log_unpartitioned;
DROP TABLE audit_log_unpartitioned;
