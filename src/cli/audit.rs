//! `tessera audit`: the audit log, newest first.

use clap::Args;

use super::{UsageError, output};
use crate::admin::{Admin, AuditFilter};
use crate::clock::format_time;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    client: Option<String>,
    /// e.g. login.failure, refresh.reuse_detected, user.add
    #[arg(long)]
    action: Option<String>,
    /// RFC 3339 time (2026-01-31T12:00:00Z) or an age (2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Rows to show (at most 10000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Show the rows after this one: the cursor (TIME:ID) the previous page printed.
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    #[arg(long)]
    json: bool,
}

fn parse_since(raw: &str, now: i64) -> Result<i64, UsageError> {
    if let Ok(age) = humantime::parse_duration(raw) {
        return Ok(now - i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2));
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            UsageError(format!(
                "--since {raw:?} is neither an RFC 3339 time nor an age like 2h"
            ))
        })
}

/// `TIME:ID`, as a page's hint prints it.
fn parse_cursor(raw: &str) -> Result<(i64, i64), UsageError> {
    raw.split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| UsageError(format!("--after {raw:?} is not a cursor printed by a page")))
}

pub async fn run(args: AuditArgs, admin: &Admin) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, admin.clock.now()))
        .transpose()?;
    let filter = AuditFilter {
        username: args.user,
        client_id: args.client,
        action: args.action,
        since,
        after: args.after.as_deref().map(parse_cursor).transpose()?,
        limit: i64::from(args.limit.clamp(1, super::page::MAX_LIMIT)),
    };
    let limit = filter.limit;
    let rows = admin.audit_log(filter).await?;
    super::page::hint_next(
        rows.len(),
        limit,
        rows.last().map(|r| format!("{}:{}", r.at, r.id)).as_deref(),
    );
    if args.json {
        let view: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "time": format_time(r.at), "actor": r.actor, "action": r.action,
                    "target": r.target, "outcome": r.outcome, "user": r.username, "client": r.client_id,
                    "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or_default(),
                })
            })
            .collect();
        return output::json(&view);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format_time(r.at),
                r.action.clone(),
                r.outcome.clone(),
                r.actor.clone(),
                r.target.clone(),
                r.details.clone(),
            ]
        })
        .collect();
    output::table(
        &["TIME", "ACTION", "OUTCOME", "ACTOR", "TARGET", "DETAILS"],
        &table,
    );
    Ok(())
}
