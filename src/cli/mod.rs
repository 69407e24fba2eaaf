//! The `tessera` command line: argument parsing and dispatch to the admin layer.
//! Exit status: 0 success, 1 operational error (one line on stderr), 2 usage error.

mod actor;
mod audit;
mod clients;
mod healthcheck;
mod keys;
mod output;
mod page;
mod password;
mod roles;
mod sign_in;
mod tokens;
mod users;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::admin::Admin;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::startup;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "A small, fast OAuth 2.0 authorization server"
)]
pub struct Cli {
    /// Settings file layered over the built-in defaults (environment variables still win).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Who is acting (e.g. a deploy job), for the audit log of admin changes: recorded beside
    /// the operating-system user, never instead of it.
    #[arg(long, global = true, env = "TESSERA_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Manage roles.
    #[command(subcommand)]
    Role(roles::RoleCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(clients::ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// List and revoke refresh-token sessions.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// List and end login sessions of the sign-in page.
    #[command(subcommand)]
    Session(sign_in::SessionCommand),
    /// List and revoke what users allowed clients on the consent page.
    #[command(subcommand)]
    Consent(sign_in::ConsentCommand),
    /// Query the audit log, newest first.
    Audit(audit::AuditArgs),
    /// Delete expired tokens, denylist entries and old audit rows once.
    Gc,
    /// Probe the configured listener's /readyz (or /healthz): exit 0 on 200, else 1.
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// An error that is the user's to fix in the command line: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            if err.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// The error and its causes on one line, whitespace runs (multi-line parser excerpts) folded.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    // Every admin command acts as the same actor.
    let admin = |settings| admin(settings, cli.actor.as_deref());
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = startup::open_store(&settings).await?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(cmd) => users::run(cmd, &admin(settings).await?).await,
        Command::Role(cmd) => roles::run(cmd, &admin(settings).await?).await,
        Command::Client(cmd) => clients::run(cmd, &admin(settings).await?).await,
        Command::Key(cmd) => keys::run(cmd, &admin(settings).await?).await,
        Command::Token(cmd) => tokens::run(cmd, &admin(settings).await?).await,
        Command::Session(cmd) => sign_in::run_session(cmd, &admin(settings).await?).await,
        Command::Consent(cmd) => sign_in::run_consent(cmd, &admin(settings).await?).await,
        Command::Audit(args) => audit::run(args, &admin(settings).await?).await,
        Command::Gc => {
            let admin = admin(settings).await?;
            let report = admin.gc().await?;
            println!(
                "deleted {} refresh families, {} refresh tokens, {} denylist entries, {} audit rows ({} day partitions), {} throttle counters, {} signing keys, {} login sessions, {} authorization codes",
                report.rows.refresh_families,
                report.rows.refresh_tokens,
                report.rows.denylist,
                report.rows.audit_rows,
                report.rows.audit_partitions,
                report.throttle_counters,
                report.signing_keys,
                report.rows.login_sessions,
                report.rows.authorization_codes
            );
            Ok(())
        }
        Command::Healthcheck(args) => healthcheck::run(&args, &settings),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init(
        &settings.log.level,
        settings.log.format,
        Some(settings.telemetry.otlp_endpoint.as_str()),
    )?;
    let exceptions = crate::telemetry::exceptions::init(&settings)?;
    let app = startup::Application::build(settings, Arc::new(SystemClock)).await?;
    let result = app.run_until_stopped().await;
    tracing::info!("tessera stopped");
    telemetry.shutdown();
    // Sends what is still queued, waiting a few seconds at most.
    crate::telemetry::exceptions::shut_down(exceptions);
    result
}

/// The admin layer on the configured database, migrated when `migrate_on_start` allows.
async fn admin(settings: Settings, actor_name: Option<&str>) -> anyhow::Result<Admin> {
    let actor = actor::actor(actor_name)?;
    let store = startup::open_store(&settings).await?;
    if settings.database.migrate_on_start {
        store.migrate().await.context("applying migrations")?;
    }
    Ok(Admin::new(store, Arc::new(SystemClock), settings, actor)?)
}
