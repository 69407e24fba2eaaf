//! `tessera session ...` (login sessions of the sign-in page) and `tessera consent ...` (what
//! users allowed clients). Cookie secrets are never shown: a session is named by its id, the
//! `sid` of the ID tokens issued in it.

use clap::Subcommand;

use super::output;
use crate::admin::Admin;
use crate::clock::format_time;

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// A user's live login sessions, newest first.
    List {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// End one login session (by id), or all of a user's with --user. Refresh tokens issued in
    /// it end too, unless granted offline_access.
    Revoke {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        session: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// What a user allowed each client.
    List {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget what a user allowed a client, and revoke that client's refresh tokens for the
    /// user: the next sign-in asks again.
    Revoke { user: String, client: String },
}

pub async fn run_session(cmd: SessionCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { user, json } => {
            let sessions = admin.login_sessions(&user).await?;
            if json {
                let view: Vec<serde_json::Value> = sessions
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "session_id": s.id, "signed_in": format_time(s.auth_time),
                            "last_seen": format_time(s.last_seen_at),
                            "expires": format_time(s.idle_expires_at.min(s.expires_at)),
                        })
                    })
                    .collect();
                output::json(&view)?;
            } else {
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            format_time(s.auth_time),
                            format_time(s.last_seen_at),
                            format_time(s.idle_expires_at.min(s.expires_at)),
                        ]
                    })
                    .collect();
                output::table(&["SESSION", "SIGNED_IN", "LAST_SEEN", "EXPIRES"], &rows);
            }
        }
        SessionCommand::Revoke { session, user } => {
            let n = admin
                .end_login_sessions(session.as_deref(), user.as_deref())
                .await?;
            match (session, user) {
                (Some(id), _) if n == 0 => anyhow::bail!("no live session {id}"),
                (Some(id), _) => println!("session {id} ended"),
                (None, Some(user)) => println!("{n} session(s) of {user} ended"),
                (None, None) => {}
            }
        }
    }
    Ok(())
}

pub async fn run_consent(cmd: ConsentCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        ConsentCommand::List { user, json } => {
            let consents = admin.consents(&user).await?;
            if json {
                let view: Vec<serde_json::Value> = consents
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "client_id": c.client_id, "scope": c.scope,
                            "granted": format_time(c.granted_at),
                        })
                    })
                    .collect();
                output::json(&view)?;
            } else {
                let rows: Vec<Vec<String>> = consents
                    .iter()
                    .map(|c| {
                        vec![
                            c.client_id.clone(),
                            c.scope.clone(),
                            format_time(c.granted_at),
                        ]
                    })
                    .collect();
                output::table(&["CLIENT", "SCOPE", "GRANTED"], &rows);
            }
        }
        ConsentCommand::Revoke { user, client } => {
            admin.revoke_consent(&user, &client).await?;
            println!("consent of {user} to {client} revoked");
        }
    }
    Ok(())
}
