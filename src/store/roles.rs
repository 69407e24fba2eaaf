//! Roles, which users carry into their access tokens.

use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RoleRecord {
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub members: i64,
}

macro_rules! role_statements {
    () => {
        pub(super) async fn create_role(
            &self,
            name: &str,
            description: &str,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query("INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "role"))?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
            Ok(sqlx::query_as::<_, RoleRecord>(
                "SELECT r.name, r.description, r.created_at, COUNT(ur.user_id) AS members \
                 FROM roles r LEFT JOIN user_roles ur ON ur.role_name = r.name \
                 GROUP BY r.name, r.description, r.created_at ORDER BY r.name",
            )
            .fetch_all(&self.pool)
            .await?)
        }

        /// Deletes a role. Unless `force`, refuses with `Conflict("role assignment")` while any
        /// user holds it; returns how many assignments went with it.
        pub(super) async fn delete_role(
            &self,
            name: &str,
            force: bool,
            event: &AuditEvent,
        ) -> Result<i64, StoreError> {
            let mut tx = self.begin_write().await?;
            let members: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE role_name = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            if members > 0 && !force {
                return Err(StoreError::Conflict("role assignment"));
            }
            let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound("role"));
            }
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(members)
        }

        pub(super) async fn count_role_members(&self, name: &str) -> Result<i64, StoreError> {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE role_name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?,
            )
        }
    };
}
pub(super) use role_statements;
