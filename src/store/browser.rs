//! Signing in through Tessera's own pages: login sessions (named by a cookie, kept by the hash
//! of its secret), authorization codes (kept by hash, redeemed once) and remembered consents.

use serde::Serialize;
use sqlx::FromRow;

use super::refresh::NewFamily;

/// A login session about to start, replacing `replaces` (the browser's previous one) if any.
pub struct NewSession {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub user_id: String,
    pub auth_time: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    /// The hash the password was just verified against: the session starts only if the user
    /// still has it and is enabled.
    pub verified_password_hash: String,
    pub replaces: Option<String>,
}

/// A live login session.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub auth_time: i64,
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
}

/// An authorization code about to be handed out.
pub struct NewCode {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    /// `None` when the request named none (the client's one registered URI was used).
    pub redirect_uri: Option<String>,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored code, with its session's end.
#[derive(Debug, Clone, FromRow)]
pub struct CodeRecord {
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: Option<String>,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    /// When the session the code was issued in ends at the latest (whether it still lives is
    /// checked when the code is redeemed, holding its row).
    pub session_expires_at: Option<i64>,
}

/// What redeeming a code issues, written with the redemption.
pub struct Redemption<'a> {
    pub code_hash: &'a [u8],
    pub now: i64,
    pub access_jti: &'a str,
    pub access_expires_at: i64,
    /// The family to start, if the client may refresh.
    pub family: Option<&'a NewFamily>,
    /// The login session the code was issued in.
    pub session_id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeemed {
    Issued,
    /// Someone redeemed it first (or it expired meanwhile): nothing was written.
    NotRedeemable,
    /// The user was disabled or changed password since: nothing was written.
    UserChanged,
    /// The login session ended (or its user changed) before the redemption: nothing was
    /// written.
    SessionEnded,
}

/// What a user allowed a client.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ConsentRecord {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

/// Which login sessions to end: one, or all of a user's.
#[derive(Debug, Clone, Copy)]
pub enum SessionTarget<'a> {
    One(&'a str),
    User(&'a str),
}

/// The refresh families of ended sessions (of those `$3`/`$4` name) go with them. Families
/// granted offline_access name no session, so they stay.
pub(super) const END_SESSION_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
     WHERE revoked_at IS NULL AND session_id IN (SELECT id FROM browser_sessions \
       WHERE revoked_at IS NOT NULL AND ($3 IS NULL OR id = $3) AND ($4 IS NULL OR user_id = $4))";

/// The session, code and consent statements shared by both backends.
macro_rules! browser_statements {
    () => {
        /// Starts a login session (ending the one it replaces); `false`, changing nothing, when
        /// the user changed password or was disabled since the password was checked.
        pub(super) async fn start_session(
            &self,
            session: &NewSession,
            events: &[AuditEvent],
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_write().await?;
            let unchanged = sqlx::query(CHECK_USER_UNCHANGED)
                .bind(&session.user_id)
                .bind(&session.verified_password_hash)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !unchanged {
                return Ok(false);
            }
            if let Some(old) = &session.replaces {
                // Held first (after the user, the order every writer takes): a redemption in
                // the old session commits before its family moves.
                sqlx::query(LOCK_SESSION).bind(old).execute(&mut *tx).await?;
                // The same user signing in again keeps the refresh tokens issued in the old
                // session (they move to the new one); another user's go with it.
                sqlx::query(
                    "UPDATE refresh_families SET session_id = $1 WHERE session_id = $2 AND user_id = $3",
                )
                .bind(&session.id)
                .bind(old)
                .bind(&session.user_id)
                .execute(&mut *tx)
                .await?;
                Self::end_sessions_in(&mut tx, SessionTarget::One(old), session.auth_time, "replaced")
                    .await?;
            }
            sqlx::query(
                "INSERT INTO browser_sessions (id, secret_hash, user_id, auth_time, last_seen_at, \
                 idle_expires_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5, $6)",
            )
            .bind(&session.id)
            .bind(&session.secret_hash)
            .bind(&session.user_id)
            .bind(session.auth_time)
            .bind(session.idle_expires_at)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            Self::insert_audit(&mut tx, events).await?;
            tx.commit().await?;
            Ok(true)
        }

        /// The live session a cookie's secret names, its user still enabled.
        pub(super) async fn find_session(
            &self,
            secret_hash: &[u8],
            now: i64,
        ) -> Result<Option<SessionRecord>, StoreError> {
            Ok(sqlx::query_as::<_, SessionRecord>(
                "SELECT s.id, s.user_id, s.auth_time, s.last_seen_at, s.idle_expires_at, s.expires_at \
                 FROM browser_sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND s.idle_expires_at > $2 \
                   AND s.expires_at > $2 AND u.disabled = 0 AND u.password_changed_at <= s.auth_time",
            )
            .bind(secret_hash.to_vec())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
        }

        /// The session a cookie's secret names, if not ended, however long it has been idle: the
        /// one a new sign-in in that browser replaces.
        pub(super) async fn find_session_id(&self, secret_hash: &[u8]) -> Result<Option<String>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT id FROM browser_sessions WHERE secret_hash = $1 AND revoked_at IS NULL",
            )
            .bind(secret_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?)
        }

        /// Moves a live session's idle expiry on.
        pub(super) async fn touch_session(
            &self,
            id: &str,
            now: i64,
            idle_expires_at: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE browser_sessions SET last_seen_at = $2, idle_expires_at = $3 \
                 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .bind(idle_expires_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn end_sessions_in(
            conn: &mut Conn,
            target: SessionTarget<'_>,
            now: i64,
            reason: &str,
        ) -> Result<u64, sqlx::Error> {
            let (id, user) = match target {
                SessionTarget::One(id) => (Some(id), None),
                SessionTarget::User(user) => (None, Some(user)),
            };
            // The sessions first: a code redemption holding a session's row (CHECK_SESSION_LIVE)
            // finishes before this goes on, and the families statement after it then sees the
            // family that redemption started.
            let ended = sqlx::query(
                "UPDATE browser_sessions SET revoked_at = $1 \
                 WHERE revoked_at IS NULL AND ($2 IS NULL OR id = $2) AND ($3 IS NULL OR user_id = $3)",
            )
            .bind(now)
            .bind(id)
            .bind(user)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            sqlx::query(END_SESSION_FAMILIES)
                .bind(now)
                .bind(format!("session_{reason}"))
                .bind(id)
                .bind(user)
                .execute(&mut *conn)
                .await?;
            Ok(ended)
        }

        /// Ends login sessions and the refresh families started from them (not those granted
        /// offline_access); returns how many sessions ended. The event is recorded only when
        /// one did.
        pub(super) async fn end_sessions(
            &self,
            target: SessionTarget<'_>,
            now: i64,
            reason: &str,
            event: &AuditEvent,
        ) -> Result<u64, StoreError> {
            let mut tx = self.begin_write().await?;
            let ended = Self::end_sessions_in(&mut tx, target, now, reason).await?;
            if ended > 0 {
                Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            }
            tx.commit().await?;
            Ok(ended)
        }

        /// Remembers that the session was shown the consent page of the request hashed so.
        pub(super) async fn hold_consent(
            &self,
            id: &str,
            request_hash: &[u8],
            now: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE browser_sessions SET pending_consent = $2, pending_consent_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(request_hash.to_vec())
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        /// Takes the consent page the session was shown, if it was this request's: `false` for
        /// a consent form the session was never shown, or already answered.
        pub(super) async fn take_consent(
            &self,
            id: &str,
            request_hash: &[u8],
            shown_after: i64,
        ) -> Result<bool, StoreError> {
            Ok(sqlx::query(
                "UPDATE browser_sessions SET pending_consent = NULL, pending_consent_at = NULL \
                 WHERE id = $1 AND pending_consent = $2 AND pending_consent_at > $3 \
                   AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(request_hash.to_vec())
            .bind(shown_after)
            .execute(&self.pool)
            .await?
            .rows_affected()
                > 0)
        }

        /// A user's live sessions, newest first.
        pub(super) async fn list_sessions(
            &self,
            user_id: &str,
            now: i64,
        ) -> Result<Vec<SessionRecord>, StoreError> {
            Ok(sqlx::query_as::<_, SessionRecord>(
                "SELECT id, user_id, auth_time, last_seen_at, idle_expires_at, expires_at \
                 FROM browser_sessions WHERE user_id = $1 AND revoked_at IS NULL \
                   AND idle_expires_at > $2 AND expires_at > $2 \
                 ORDER BY auth_time DESC, id DESC LIMIT 1000",
            )
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
        }

        /// Stores a code with its `code.issued` event.
        pub(super) async fn insert_code(
            &self,
            code: &NewCode,
            events: &[AuditEvent],
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, \
                 redirect_uri, scope, code_challenge, nonce, auth_time, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&code.code_hash)
            .bind(&code.client_id)
            .bind(&code.user_id)
            .bind(&code.session_id)
            .bind(code.redirect_uri.as_deref())
            .bind(&code.scope)
            .bind(&code.code_challenge)
            .bind(code.nonce.as_deref())
            .bind(code.auth_time)
            .bind(code.created_at)
            .bind(code.expires_at)
            .execute(&mut *tx)
            .await?;
            Self::insert_audit(&mut tx, events).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn find_code(
            &self,
            code_hash: &[u8],
        ) -> Result<Option<CodeRecord>, StoreError> {
            Ok(sqlx::query_as::<_, CodeRecord>(
                "SELECT c.client_id, c.user_id, c.session_id, c.redirect_uri, c.scope, \
                   c.code_challenge, c.nonce, c.auth_time, c.expires_at, c.redeemed_at, \
                   (SELECT s.expires_at FROM browser_sessions s WHERE s.id = c.session_id) \
                     AS session_expires_at \
                 FROM authorization_codes c WHERE c.code_hash = $1",
            )
            .bind(code_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?)
        }

        /// Marks a code redeemed and starts what it issues, in one transaction: a second
        /// redemption waits for this one and then finds the code taken, with the family and
        /// the access token's id to revoke already recorded.
        pub(super) async fn redeem_code(
            &self,
            r: &Redemption<'_>,
            events: &[AuditEvent],
        ) -> Result<Redeemed, StoreError> {
            let mut tx = self.begin_write().await?;
            // User, then session, then code: the order every other writer of these rows takes.
            sqlx::query(LOCK_SESSION_USER)
                .bind(r.session_id)
                .execute(&mut *tx)
                .await?;
            // Checked again here, holding the rows: a logout, password change or disable that
            // commits first is seen; one that comes later waits for this and then ends what it
            // issues.
            let live = sqlx::query(CHECK_SESSION_LIVE)
                .bind(r.session_id)
                .bind(r.now)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !live {
                // A second use still counts as one, whatever became of the session.
                let redeemed: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT redeemed_at FROM authorization_codes WHERE code_hash = $1",
                )
                .bind(r.code_hash.to_vec())
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(match redeemed {
                    Some(Some(_)) => Redeemed::NotRedeemable,
                    _ => Redeemed::SessionEnded,
                });
            }
            let taken = sqlx::query(
                "UPDATE authorization_codes SET redeemed_at = $2, family_id = $3, access_jti = $4, \
                 access_expires_at = $5 WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2",
            )
            .bind(r.code_hash.to_vec())
            .bind(r.now)
            .bind(r.family.map(|f| f.id.as_str()))
            .bind(r.access_jti)
            .bind(r.access_expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 {
                return Ok(Redeemed::NotRedeemable);
            }
            if let Some(family) = r.family {
                if !Self::create_family_in(&mut tx, family).await? {
                    return Ok(Redeemed::UserChanged);
                }
            }
            Self::insert_audit(&mut tx, events).await?;
            tx.commit().await?;
            Ok(Redeemed::Issued)
        }

        /// A redeemed code presented again: revokes the family it started and denylists the
        /// access token it issued. `false` when there was nothing left to revoke.
        pub(super) async fn revoke_code_grants(
            &self,
            code_hash: &[u8],
            now: i64,
            events: &[AuditEvent],
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_write().await?;
            let issued: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT family_id, access_jti, access_expires_at FROM authorization_codes \
                 WHERE code_hash = $1 AND redeemed_at IS NOT NULL",
            )
            .bind(code_hash.to_vec())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((family, jti, jti_expires_at)) = issued else {
                return Ok(false);
            };
            let mut revoked = false;
            if let Some(family) = family {
                revoked |= Self::revoke_family_in(&mut tx, &family, now, "code_replayed").await?;
            }
            if let Some(jti) = jti {
                revoked |= sqlx::query(
                    "INSERT INTO access_denylist (jti, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(jti_expires_at.unwrap_or(now))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
            }
            Self::insert_audit(&mut tx, events).await?;
            tx.commit().await?;
            Ok(revoked)
        }

        /// The scopes a user allowed a client, space-separated.
        pub(super) async fn find_consent(
            &self,
            user_id: &str,
            client_id: &str,
        ) -> Result<Option<String>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
            )
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?)
        }

        /// Remembers what a user allowed a client (replacing what was remembered).
        pub(super) async fn grant_consent(
            &self,
            user_id: &str,
            client_id: &str,
            scope: &str,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, \
                 granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn list_consents(
            &self,
            user_id: &str,
        ) -> Result<Vec<ConsentRecord>, StoreError> {
            Ok(sqlx::query_as::<_, ConsentRecord>(
                "SELECT client_id, scope, granted_at FROM consents WHERE user_id = $1 ORDER BY client_id",
            )
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?)
        }

        /// Forgets a consent and revokes the client's refresh families for that user.
        pub(super) async fn revoke_consent(
            &self,
            user_id: &str,
            client_id: &str,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            // Codes already handed out but not redeemed are worth nothing now: expired at the
            // epoch, so that no clock (a redemption that read its time a moment earlier, another
            // host's) still finds them redeemable.
            sqlx::query(
                "UPDATE authorization_codes SET expires_at = 0 \
                 WHERE user_id = $1 AND client_id = $2 AND redeemed_at IS NULL",
            )
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
            let gone = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1, revoked_reason = 'consent_revoked' \
                 WHERE revoked_at IS NULL AND user_id = $2 AND client_id = $3",
            )
            .bind(now)
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
            Self::commit_change(tx, gone, "consent", event).await
        }
    };
}
pub(super) use browser_statements;
