//! Signing keys, private halves sealed by the caller before they reach here.

use sqlx::FromRow;

#[derive(Clone, FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub public_jwk: String,
    pub private_key: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    /// Set by `tessera key revoke`: the key is no longer published and verifies nothing.
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .field("algorithm", &self.algorithm)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// See [`Store::key_change_marker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChangeMarker(pub(super) (i64, i64, i64, i64, i64));

/// The key statements shared by both backends; each backend adds `announce_key_change`.
macro_rules! key_statements {
    () => {
        /// Every key, oldest generation first.
        pub(super) async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
            Ok(sqlx::query_as::<_, StoredKey>(
                "SELECT kid, generation, algorithm, public_jwk, private_key, created_at, activates_at, \
                 retired_at, revoked_at FROM signing_keys ORDER BY generation",
            )
            .fetch_all(&self.pool)
            .await?)
        }

        /// Inserts a key for a generation. When another instance took that generation first, this
        /// fails with `Conflict("signing key generation")`: the database decides who rotates.
        pub(super) async fn insert_key(&self, key: &StoredKey, event: &AuditEvent) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, generation, algorithm, public_jwk, private_key, \
                 created_at, activates_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key.kid)
            .bind(key.generation)
            .bind(&key.algorithm)
            .bind(&key.public_jwk)
            .bind(key.private_key.clone())
            .bind(key.created_at)
            .bind(key.activates_at)
            .bind(key.retired_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "signing key generation"))?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            self.announce_key_change(&mut tx, &key.kid).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Marks a key retired as of `at` (it stays published until its tokens expire).
        pub(super) async fn retire_key(
            &self,
            kid: &str,
            at: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            self.end_key(
                "UPDATE signing_keys SET retired_at = $1 \
                 WHERE kid = $2 AND (retired_at IS NULL OR retired_at > $1)",
                "unretired key",
                kid,
                at,
                event,
            )
            .await
        }

        /// Marks a key revoked (and so retired) as of `at`: it leaves the JWKS, and tokens it
        /// signed no longer verify.
        pub(super) async fn revoke_key(
            &self,
            kid: &str,
            at: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            self.end_key(
                "UPDATE signing_keys SET revoked_at = $1, \
                 retired_at = CASE WHEN retired_at IS NULL OR retired_at > $1 THEN $1 ELSE retired_at END \
                 WHERE kid = $2 AND revoked_at IS NULL",
                "unrevoked key",
                kid,
                at,
                event,
            )
            .await
        }

        /// Runs `update` (binding `at`, `kid`) with its audit row and the change announcement;
        /// `NotFound(missing)` when it changed no row.
        async fn end_key(
            &self,
            update: &'static str,
            missing: &'static str,
            kid: &str,
            at: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(update)
                .bind(at)
                .bind(kid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound(missing));
            }
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            self.announce_key_change(&mut tx, kid).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Brings a key's activation forward to `at` (a successor taking over from a retired or
        /// revoked key); audited when it changed anything.
        pub(super) async fn activate_key_at(
            &self,
            kid: &str,
            at: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE signing_keys SET activates_at = $1 WHERE kid = $2 AND activates_at > $1",
            )
            .bind(at)
            .bind(kid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            }
            self.announce_key_change(&mut tx, kid).await?;
            tx.commit().await?;
            Ok(())
        }

        /// A summary of the key table that changes whenever any key is added, activated earlier,
        /// retired, revoked or deleted: what a server polls (about once a second) to notice key
        /// changes that another process made.
        pub(super) async fn key_change_marker(&self) -> Result<KeyChangeMarker, StoreError> {
            let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(MAX(generation), 0), \
                 CAST(COALESCE(SUM(activates_at), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(retired_at), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(revoked_at), 0) AS BIGINT) FROM signing_keys",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(KeyChangeMarker(row))
        }


        pub(super) async fn delete_key(&self, kid: &str) -> Result<u64, StoreError> {
            Ok(sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(&self.pool)
                .await?
                .rows_affected())
        }
    };
}
pub(super) use key_statements;
