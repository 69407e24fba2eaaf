//! `tessera role ...`

use clap::Subcommand;

use super::output;
use crate::admin::Admin;
use crate::clock::format_time;

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Add {
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List roles with how many users hold each.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a role; refused while it is assigned unless --force.
    Delete {
        role: String,
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cmd: RoleCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::Add { role, description } => {
            admin.add_role(&role, &description).await?;
            println!("role {role} created");
        }
        RoleCommand::List { json } => {
            let roles = admin.list_roles().await?;
            if json {
                let view: Vec<serde_json::Value> = roles
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "description": r.description,
                            "members": r.members,
                            "created_at": format_time(r.created_at),
                        })
                    })
                    .collect();
                output::json(&view)?;
            } else {
                let rows: Vec<Vec<String>> = roles
                    .iter()
                    .map(|r| vec![r.name.clone(), r.members.to_string(), r.description.clone()])
                    .collect();
                output::table(&["ROLE", "MEMBERS", "DESCRIPTION"], &rows);
            }
        }
        RoleCommand::Delete { role, force } => {
            let members = admin.delete_role(&role, force).await?;
            println!("role {role} deleted ({members} assignment(s) removed)");
        }
    }
    Ok(())
}
