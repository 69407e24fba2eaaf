-- Bounded growth: revoked families are collected once reuse detection no longer needs them.
-- (Postgres also partitions the audit log by day here; SQLite deletes old rows in batches.)

CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at)
    WHERE revoked_at IS NOT NULL;
