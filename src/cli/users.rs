//! `tessera user ...`

use clap::Subcommand;

use super::output::{self, UserView};
use super::page::PageArgs;
use super::password;
use crate::admin::{Admin, ProfileUpdate, UserProfile, user_cursor};

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
        /// The user's email address (OpenID Connect `email` scope).
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// The email address is known to be the user's.
        #[arg(long, requires = "email")]
        email_verified: bool,
        /// The user's full name (OpenID Connect `profile` scope).
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// Change a user's email address or name; options not given stay as they are.
    Update {
        username: String,
        /// A new email address; it is unverified unless --email-verified true is given too.
        #[arg(long, value_name = "ADDRESS", conflicts_with = "no_email")]
        email: Option<String>,
        /// Remove the email address.
        #[arg(long)]
        no_email: bool,
        /// Whether the email address is known to be the user's.
        #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
        email_verified: Option<bool>,
        /// A new full name.
        #[arg(long, value_name = "TEXT", conflicts_with = "no_name")]
        name: Option<String>,
        /// Remove the name.
        #[arg(long)]
        no_name: bool,
        #[arg(long)]
        json: bool,
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
            email,
            email_verified,
            name,
        } => {
            let password = password::read(password_stdin)?;
            let profile = UserProfile {
                email,
                email_verified,
                name,
            };
            let user = admin
                .add_user_with_profile(&username, &password, &roles, disabled, profile)
                .await?;
            println!("user {} created (id {})", user.username, user.id);
        }
        UserCommand::Update {
            username,
            email,
            no_email,
            email_verified,
            name,
            no_name,
            json,
        } => {
            let update = ProfileUpdate {
                email: if no_email {
                    Some(None)
                } else {
                    email.map(Some)
                },
                email_verified,
                name: if no_name { Some(None) } else { name.map(Some) },
            };
            let user = admin.update_profile(&username, update).await?;
            if json {
                output::json(&UserView::from(&user))?;
            } else {
                println!("user {} updated", user.username);
            }
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
                if let Some(email) = &v.email {
                    let verified = if v.email_verified {
                        "verified"
                    } else {
                        "unverified"
                    };
                    println!("email:               {email} ({verified})");
                }
                if let Some(name) = &v.name {
                    println!("name:                {name}");
                }
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
