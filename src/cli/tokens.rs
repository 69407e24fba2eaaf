//! `tessera token ...`: refresh-token sessions (families). Token values are never shown.

use clap::{Args, Subcommand};

use super::page::PageArgs;
use super::{UsageError, output};
use crate::admin::Admin;
use crate::clock::format_time;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Active refresh-token sessions of a user.
    List {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        page: PageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke sessions: of a user (optionally with one client), of a client, or one family.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    client: Option<String>,
    #[arg(long)]
    family: Option<String>,
}

pub async fn run(cmd: TokenCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::List { user, page, json } => {
            let families = admin.sessions(&user, &page.page()).await?;
            page.hint_next(
                families.len(),
                families.last().map(|f| f.family_id.as_str()),
            );
            if json {
                let view: Vec<serde_json::Value> = families
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "family_id": f.family_id, "client_id": f.client_id,
                            "created": format_time(f.created_at), "last_used": format_time(f.last_used_at),
                            "expires": format_time(f.expires_at),
                        })
                    })
                    .collect();
                output::json(&view)?;
            } else {
                let rows: Vec<Vec<String>> = families
                    .iter()
                    .map(|f| {
                        vec![
                            f.family_id.clone(),
                            f.client_id.clone(),
                            format_time(f.created_at),
                            format_time(f.last_used_at),
                            format_time(f.expires_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["FAMILY", "CLIENT", "CREATED", "LAST_USED", "EXPIRES"],
                    &rows,
                );
            }
        }
        TokenCommand::Revoke(RevokeArgs {
            user,
            client,
            family,
        }) => match (user, client, family) {
            (None, None, Some(family)) => {
                if admin.revoke_session(&family).await? {
                    println!("family {family} revoked");
                } else {
                    anyhow::bail!("no live family {family}");
                }
            }
            (Some(username), client, None) => {
                let user = admin.user(&username).await?;
                let n = admin.revoke_user_sessions(&user, client.as_deref()).await?;
                println!("{n} session(s) of {} revoked", user.username);
            }
            (None, Some(client), None) => {
                let n = admin.revoke_client_sessions(&client).await?;
                println!("{n} session(s) of client {client} revoked");
            }
            _ => {
                return Err(
                    UsageError("give --user [--client], --client, or --family".into()).into(),
                );
            }
        },
    }
    Ok(())
}
