//! `tessera key ...`

use std::sync::Arc;

use clap::Subcommand;

use super::output;
use crate::admin::Admin;
use crate::clock::format_time;
use crate::oauth::KeyRing;
use crate::oauth::keyring::{KeyState, describe};
use crate::startup;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List signing keys and their states.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create the next key: published now, signing after keys.publish_ahead.
    Rotate {
        /// Sign with the new key at once. Verifiers holding a cached JWKS may then meet an
        /// unknown kid until their cache expires.
        #[arg(long)]
        now: bool,
    },
    /// Stop a key signing now; it stays published until its tokens expire.
    Retire {
        /// Key ids are base64url and may begin with '-'.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// For a compromised key: unpublish it now, never sign with it again, and make every
    /// token it signed fail introspection. Revoking the active key activates a successor.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

pub async fn run(cmd: KeyCommand, admin: &Admin) -> anyhow::Result<()> {
    let settings = &admin.settings;
    match cmd {
        KeyCommand::List { json } => {
            let keys = admin.store.list_keys().await?;
            let max_ttl = i64::try_from(settings.tokens.access_ttl.as_secs())
                .unwrap_or(i64::MAX)
                .max(admin.store.max_client_access_ttl().await?.unwrap_or(0));
            let infos = describe(&keys, admin.clock.now(), max_ttl);
            let time = |t: Option<i64>| t.map(format_time).unwrap_or_default();
            if json {
                let view: Vec<serde_json::Value> = infos
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "kid": k.kid, "alg": k.algorithm, "state": k.state,
                            "created": format_time(k.created_at), "activates": format_time(k.activates_at),
                            "retires": k.retires_at.map(format_time), "unpublished": k.unpublished_at.map(format_time),
                            "revoked": k.revoked_at.map(format_time),
                        })
                    })
                    .collect();
                output::json(&view)?;
            } else {
                let rows: Vec<Vec<String>> = infos
                    .iter()
                    .map(|k| {
                        vec![
                            k.kid.clone(),
                            k.algorithm.clone(),
                            serde_json::to_value(k.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            format_time(k.created_at),
                            format_time(k.activates_at),
                            time(k.retires_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES"],
                    &rows,
                );
            }
        }
        KeyCommand::Rotate { now } => {
            let ring = ring(admin).await?;
            let kid = ring.rotate(now, &admin.actor).await?;
            if now {
                println!("key {kid} created and signing now");
            } else {
                println!(
                    "key {kid} created: published now, signing in {}",
                    humantime::format_duration(settings.keys.publish_ahead)
                );
            }
        }
        KeyCommand::Retire { kid } => {
            ring(admin).await?.retire(&kid, &admin.actor).await?;
            println!("key {kid} retired: no longer signing, published until its tokens expire");
        }
        KeyCommand::Revoke { kid } => {
            let ring = ring(admin).await?;
            ring.revoke(&kid, &admin.actor).await?;
            let signing = ring
                .describe()
                .into_iter()
                .find(|k| k.state == KeyState::Active)
                .map(|k| k.kid)
                .unwrap_or_default();
            println!(
                "key {kid} revoked: unpublished, and its tokens fail introspection on every \
                 server within 2 s; signing key now {signing}"
            );
        }
    }
    Ok(())
}

async fn ring(admin: &Admin) -> anyhow::Result<Arc<KeyRing>> {
    let kek = startup::load_kek(&admin.settings, &admin.store, true)?;
    Ok(KeyRing::start(
        admin.store.clone(),
        kek,
        admin.clock.clone(),
        startup::key_policy(&admin.settings),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn a_kid_may_begin_with_a_hyphen() {
        for verb in ["retire", "revoke"] {
            let cli = Cli::try_parse_from(["tessera", "key", verb, "-iXk3"]).expect("parses");
            assert!(matches!(cli.command, Command::Key(_)), "{verb}");
        }
    }
}
