//! `tessera user ...`

use clap::Subcommand;

use super::output::{self, UserView};
use super::page::PageArgs;
use super::password;
use crate::admin::{Admin, user_cursor};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from the terminal, or from stdin with --password-stdin.
    Add {
        username: String,
        /// Role to grant (repeatable); the role must exist.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password as one line from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Create the account disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List users in username order, one page at a time.
    List {
        /// Only usernames that start with this.
        #[arg(long, value_name = "PREFIX")]
        search: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a new password; ends the user's refresh-token sessions.
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user; ends their refresh-token sessions.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Delete a user and their sessions.
    Delete { username: String },
    /// Grant a role.
    Grant { username: String, role: String },
    /// Revoke a role.
    Revoke { username: String, role: String },
}

pub async fn run(cmd: UserCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            roles,
            password_stdin,
            disabled,
        } => {
            let password = password::read(password_stdin)?;
            let user = admin
                .add_user(&username, &password, &roles, disabled)
                .await?;
            println!("user {} created (id {})", user.username, user.id);
        }
        UserCommand::List { search, page, json } => {
            let users = admin.list_users(&page.page(), search.as_deref()).await?;
            page.hint_next(users.len(), users.last().map(user_cursor).as_deref());
            if json {
                output::json(&users.iter().map(UserView::from).collect::<Vec<_>>())?;
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        let v = UserView::from(u);
                        vec![
                            v.username,
                            v.id,
                            if v.disabled { "disabled" } else { "enabled" }.into(),
                            v.roles.join(","),
                            v.created_at,
                        ]
                    })
                    .collect();
                output::table(&["USERNAME", "ID", "STATUS", "ROLES", "CREATED"], &rows);
            }
        }
        UserCommand::Show { username, json } => {
            let user = admin.user(&username).await?;
            let v = UserView::from(&user);
            if json {
                output::json(&v)?;
            } else {
                println!("username:            {}", v.username);
                println!("id:                  {}", v.id);
                println!(
                    "status:              {}",
                    if v.disabled { "disabled" } else { "enabled" }
                );
                println!("roles:               {}", v.roles.join(", "));
                println!("created:             {}", v.created_at);
                println!("updated:             {}", v.updated_at);
                println!("password changed:    {}", v.password_changed_at);
            }
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            admin.user(&username).await?;
            let password = password::read(password_stdin)?;
            admin.set_password(&username, &password).await?;
            println!("password of {username} changed; their refresh tokens are revoked");
        }
        UserCommand::Disable { username } => {
            admin.set_disabled(&username, true).await?;
            println!("user {username} disabled; their refresh tokens are revoked");
        }
        UserCommand::Enable { username } => {
            admin.set_disabled(&username, false).await?;
            println!("user {username} enabled");
        }
        UserCommand::Delete { username } => {
            admin.delete_user(&username).await?;
            println!("user {username} deleted");
        }
        UserCommand::Grant { username, role } => {
            admin.grant_role(&username, &role).await?;
            println!("role {role} granted to {username}");
        }
        UserCommand::Revoke { username, role } => {
            admin.revoke_role(&username, &role).await?;
            println!("role {role} revoked from {username}");
        }
    }
    Ok(())
}
