//! Tables for people, JSON for scripts. JSON field names are part of the documented interface.

use serde::Serialize;

use crate::admin::{ClientRecord, UserRecord};
use crate::clock::format_time;

/// Control characters shown escaped, so stored text cannot drive the terminal.
fn printable(cell: &str) -> String {
    cell.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub password_changed_at: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            disabled: u.disabled,
            roles: u.roles.clone(),
            created_at: format_time(u.created_at),
            updated_at: format_time(u.updated_at),
            password_changed_at: format_time(u.password_changed_at),
            email: u.profile.email.clone(),
            email_verified: u.profile.email_verified,
            name: u.profile.name.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub introspect: bool,
    /// Seconds; null means `tokens.access_ttl`.
    pub access_token_ttl: Option<i64>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Present only when the secret was just generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl ClientView {
    pub fn new(c: &ClientRecord, secret: Option<String>) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            public: c.is_public(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            audiences: c.audiences.clone(),
            introspect: c.introspect,
            access_token_ttl: c.access_ttl,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            first_party: c.first_party,
            created_at: format_time(c.created_at),
            updated_at: format_time(c.updated_at),
            client_secret: secret,
        }
    }
}
