//! OAuth clients: what each may do, and the hash of its secret.

use serde::Serialize;
use sqlx::FromRow;

use super::split_list;

#[derive(Debug, Clone, Serialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    #[serde(skip)]
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    /// Per-client access-token lifetime in seconds, overriding `tokens.access_ttl`.
    pub access_ttl: Option<i64>,
    pub introspect: bool,
    /// Where the authorization endpoint may send the user back, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the user afterwards.
    pub post_logout_redirect_uris: Vec<String>,
    /// A client of the same operator: its users are not asked for consent.
    pub first_party: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ClientRecord {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    /// The name shown to users: the registered name, else the id.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.client_id
        } else {
            &self.name
        }
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

pub struct NewClient {
    pub client_id: String,
    pub name: String,
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub access_ttl: Option<i64>,
    pub introspect: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
    pub now: i64,
}

#[derive(FromRow)]
pub(super) struct ClientRow {
    client_id: String,
    name: String,
    secret_hash: Option<Vec<u8>>,
    grant_types: String,
    scopes: String,
    audiences: String,
    access_ttl: Option<i64>,
    introspect: i64,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    first_party: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<ClientRow> for ClientRecord {
    fn from(r: ClientRow) -> Self {
        Self {
            client_id: r.client_id,
            name: r.name,
            secret_hash: r.secret_hash,
            grant_types: split_list(&r.grant_types),
            scopes: split_list(&r.scopes),
            audiences: split_list(&r.audiences),
            access_ttl: r.access_ttl,
            introspect: r.introspect != 0,
            redirect_uris: split_list(&r.redirect_uris),
            post_logout_redirect_uris: split_list(&r.post_logout_redirect_uris),
            first_party: r.first_party != 0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub(super) const CLIENT_COLUMNS: &str = "client_id, name, secret_hash, grant_types, scopes, \
    audiences, access_ttl, introspect, redirect_uris, post_logout_redirect_uris, first_party, \
    created_at, updated_at";

/// The client statements shared by both backends; each backend adds `find_client` (through
/// its cache, if it has one) and `announce_client_change`.
macro_rules! client_statements {
    () => {
        pub(super) async fn create_client(
            &self,
            client: &NewClient,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO clients (client_id, name, secret_hash, grant_types, scopes, audiences, \
                 access_ttl, introspect, redirect_uris, post_logout_redirect_uris, first_party, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $11, $12, $9, $9)",
            )
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(client.secret_hash.clone())
            .bind(join_list(&client.grant_types))
            .bind(join_list(&client.scopes))
            .bind(join_list(&client.audiences))
            .bind(client.access_ttl)
            .bind(i64::from(client.introspect))
            .bind(client.now)
            .bind(join_list(&client.redirect_uris))
            .bind(join_list(&client.post_logout_redirect_uris))
            .bind(i64::from(client.first_party))
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "client"))?;
            self.announce_client_change(&mut tx, &client.client_id)
                .await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// The client as the database has it now.
        async fn read_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
            metrics::counter!("tessera_client_lookups_total", "source" => "database").increment(1);
            let row = sqlx::query_as::<_, ClientRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"
            )))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(ClientRecord::from))
        }

        /// Clients in id order, one page.
        pub(super) async fn list_clients(&self, page: &Page) -> Result<Vec<ClientRecord>, StoreError> {
            let rows = sqlx::query_as::<_, ClientRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id > $1 ORDER BY client_id LIMIT $2"
            )))
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(ClientRecord::from).collect())
        }

        /// Replaces the secret hash of a confidential client.
        pub(super) async fn set_client_secret(
            &self,
            client_id: &str,
            secret_hash: &[u8],
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE clients SET secret_hash = $1, updated_at = $2 WHERE client_id = $3 AND secret_hash IS NOT NULL",
            )
            .bind(secret_hash.to_vec())
            .bind(now)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("confidential client"));
            }
            self.announce_client_change(&mut tx, client_id).await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Updates what a client may do (`tessera client update`).
        pub(super) async fn update_client(
            &self,
            client: &ClientRecord,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE clients SET name = $1, grant_types = $2, scopes = $3, audiences = $4, \
                 access_ttl = $5, introspect = $6, updated_at = $7, redirect_uris = $9, \
                 post_logout_redirect_uris = $10, first_party = $11 WHERE client_id = $8",
            )
            .bind(&client.name)
            .bind(join_list(&client.grant_types))
            .bind(join_list(&client.scopes))
            .bind(join_list(&client.audiences))
            .bind(client.access_ttl)
            .bind(i64::from(client.introspect))
            .bind(now)
            .bind(&client.client_id)
            .bind(join_list(&client.redirect_uris))
            .bind(join_list(&client.post_logout_redirect_uris))
            .bind(i64::from(client.first_party))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("client"));
            }
            self.announce_client_change(&mut tx, &client.client_id)
                .await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Deletes a client; its refresh families go with it (ON DELETE CASCADE).
        pub(super) async fn delete_client(
            &self,
            client_id: &str,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM clients WHERE client_id = $1")
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound("client"));
            }
            self.announce_client_change(&mut tx, client_id).await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// The longest per-client access-token lifetime, which bounds how long a retired key must
        /// stay published.
        pub(super) async fn max_client_access_ttl(&self) -> Result<Option<i64>, StoreError> {
            Ok(sqlx::query_scalar("SELECT MAX(access_ttl) FROM clients")
                .fetch_one(&self.pool)
                .await?)
        }

        /// Every scope some client may ask for, sorted (for `scopes_supported`).
        pub(super) async fn all_client_scopes(&self) -> Result<Vec<String>, StoreError> {
            let rows: Vec<String> = sqlx::query_scalar("SELECT scopes FROM clients")
                .fetch_all(&self.pool)
                .await?;
            let mut scopes: Vec<String> = rows.iter().flat_map(|r| split_list(r)).collect();
            scopes.sort();
            scopes.dedup();
            Ok(scopes)
        }
    };
}
pub(super) use client_statements;
