//! `tessera client ...`

use clap::{ArgAction, Subcommand};

use super::output::{self, ClientView};
use super::page::PageArgs;
use crate::admin::{Admin, ClientSpec, ClientUpdate};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client's secret is printed once, never again.
    Add {
        client_id: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Grant the client may use: password, refresh_token or client_credentials (repeatable).
        #[arg(long = "grant", value_name = "GRANT", required = true)]
        grants: Vec<String>,
        /// Scope the client may ask for (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// `aud` of its tokens (repeatable); default tokens.default_audience.
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
        /// A public client: no secret, sends only client_id.
        #[arg(long)]
        public: bool,
        /// May call the introspection endpoint.
        #[arg(long)]
        introspect: bool,
        /// Access-token lifetime for this client (e.g. 5m), overriding tokens.access_ttl.
        #[arg(long, value_parser = humantime::parse_duration)]
        access_ttl: Option<std::time::Duration>,
        /// Where the user may be sent back after signing in, matched exactly (repeatable):
        /// https, http on 127.0.0.1 or [::1] (any port), or an app's reversed-domain scheme.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may send the user afterwards (repeatable).
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// The operator's own client: its users are not asked for consent.
        #[arg(long)]
        first_party: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change what a client may do; options not given stay as they are.
    Update {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the grant list (repeatable).
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// Replaces the scope list (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Replaces the audience list (repeatable).
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
        /// Allow (true) or forbid (false) introspection.
        #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
        introspect: Option<bool>,
        #[arg(long, value_parser = humantime::parse_duration)]
        access_ttl: Option<std::time::Duration>,
        /// Replaces the redirect URI list (repeatable).
        #[arg(
            long = "redirect-uri",
            value_name = "URI",
            conflicts_with = "no_redirect_uris"
        )]
        redirect_uris: Vec<String>,
        /// Removes every redirect URI.
        #[arg(long)]
        no_redirect_uris: bool,
        /// Replaces the post-logout redirect URI list (repeatable).
        #[arg(
            long = "post-logout-redirect-uri",
            value_name = "URI",
            conflicts_with = "no_post_logout_redirect_uris"
        )]
        post_logout_redirect_uris: Vec<String>,
        /// Removes every post-logout redirect URI.
        #[arg(long)]
        no_post_logout_redirect_uris: bool,
        /// Mark (true) or unmark (false) the client as the operator's own.
        #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
        first_party: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// List clients in id order, one page at a time.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Generate a new secret; the old one stops working at once.
    RotateSecret {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a client and revoke its refresh tokens.
    Delete { client_id: String },
}

fn secs(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn print(view: &ClientView, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(view);
    }
    println!("client_id:    {}", view.client_id);
    println!("name:         {}", view.name);
    println!(
        "type:         {}",
        if view.public {
            "public"
        } else {
            "confidential"
        }
    );
    println!("grants:       {}", view.grant_types.join(" "));
    println!("scopes:       {}", view.scopes.join(" "));
    println!("audiences:    {}", view.audiences.join(" "));
    println!("introspect:   {}", view.introspect);
    if let Some(ttl) = view.access_token_ttl {
        println!("access ttl:   {ttl}s");
    }
    if !view.redirect_uris.is_empty() {
        println!("redirect:     {}", view.redirect_uris.join(" "));
    }
    if !view.post_logout_redirect_uris.is_empty() {
        println!("post-logout:  {}", view.post_logout_redirect_uris.join(" "));
    }
    if view.first_party {
        println!("first party:  true");
    }
    println!("created:      {}", view.created_at);
    if let Some(secret) = &view.client_secret {
        println!("client_secret: {secret}");
        println!("(store the secret now: it is not shown again)");
    }
    Ok(())
}

pub async fn run(cmd: ClientCommand, admin: &Admin) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add {
            client_id,
            name,
            grants,
            scopes,
            audiences,
            public,
            introspect,
            access_ttl,
            redirect_uris,
            post_logout_redirect_uris,
            first_party,
            json,
        } => {
            let spec = ClientSpec {
                client_id,
                name,
                grant_types: grants,
                scopes,
                audiences,
                public,
                introspect,
                access_ttl: secs(access_ttl),
                redirect_uris,
                post_logout_redirect_uris,
                first_party,
            };
            let (client, secret) = admin.add_client(spec).await?;
            print(&ClientView::new(&client, secret), json)?;
        }
        ClientCommand::Update {
            client_id,
            name,
            grants,
            scopes,
            audiences,
            introspect,
            access_ttl,
            redirect_uris,
            no_redirect_uris,
            post_logout_redirect_uris,
            no_post_logout_redirect_uris,
            first_party,
            json,
        } => {
            let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let update = ClientUpdate {
                name,
                grant_types: non_empty(grants),
                scopes: non_empty(scopes),
                audiences: non_empty(audiences),
                introspect,
                access_ttl: access_ttl.map(|d| secs(Some(d))),
                redirect_uris: if no_redirect_uris {
                    Some(Vec::new())
                } else {
                    non_empty(redirect_uris)
                },
                post_logout_redirect_uris: if no_post_logout_redirect_uris {
                    Some(Vec::new())
                } else {
                    non_empty(post_logout_redirect_uris)
                },
                first_party,
            };
            let client = admin.update_client(&client_id, update).await?;
            print(&ClientView::new(&client, None), json)?;
        }
        ClientCommand::List { page, json } => {
            let clients = admin.list_clients(&page.page()).await?;
            page.hint_next(clients.len(), clients.last().map(|c| c.client_id.as_str()));
            let views: Vec<ClientView> = clients.iter().map(|c| ClientView::new(c, None)).collect();
            if json {
                output::json(&views)?;
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.client_id.clone(),
                            if v.public { "public" } else { "confidential" }.into(),
                            v.grant_types.join(","),
                            v.scopes.join(","),
                            v.name.clone(),
                        ]
                    })
                    .collect();
                output::table(&["CLIENT_ID", "TYPE", "GRANTS", "SCOPES", "NAME"], &rows);
            }
        }
        ClientCommand::Show { client_id, json } => {
            print(
                &ClientView::new(&admin.client(&client_id).await?, None),
                json,
            )?;
        }
        ClientCommand::RotateSecret { client_id, json } => {
            let (client, secret) = admin.rotate_client_secret(&client_id).await?;
            print(&ClientView::new(&client, Some(secret)), json)?;
        }
        ClientCommand::Delete { client_id } => {
            admin.delete_client(&client_id).await?;
            println!("client {client_id} deleted; its refresh tokens are revoked");
        }
    }
    Ok(())
}
