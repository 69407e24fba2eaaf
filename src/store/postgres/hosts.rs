//! The hosts a database URL names, in libpq's multi-host form
//! (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`), and whether a session
//! on one of them is one Tessera can use. sqlx's driver takes one host per URL, so the list is
//! split here into one set of connect options per host, tried in the URL's order.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::store::StoreError;

/// What `target_session_attrs` asks of a session (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// `read-write` or `primary`, and the default: Tessera writes on every request path (the
    /// audit log at least), so a session that cannot write is no use to it.
    Writable,
    /// `any`: the first host that accepts a connection, unchecked (the behaviour of a
    /// single-host URL before multi-host URLs existed, and of libpq's default).
    Any,
}

#[derive(Debug, Clone)]
pub(super) struct Hosts {
    /// One per host, in the URL's order; each is the whole URL with that host alone.
    pub(super) candidates: Vec<PgConnectOptions>,
    pub(super) target: Target,
}

impl Hosts {
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| StoreError::Config(format!("database.url is not valid: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("it has no scheme"))?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        // The last `@` ends the user info, as sqlx's own parser has it.
        let (userinfo, host_list) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut target = Target::Writable;
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "target_session_attrs" => target = Target::parse(value).map_err(|e| invalid(&e))?,
                "host" | "hostaddr" | "port" if value.contains(',') || value.contains("%2C") => {
                    return Err(invalid(
                        "list several hosts in the URL's authority \
                         (postgres://user@host1:5432,host2:5432/db), not in its query",
                    ));
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let hosts: Vec<&str> = host_list.split(',').collect();
        if hosts.len() > 1 && hosts.iter().any(|h| h.is_empty()) {
            return Err(invalid("an empty host in the host list"));
        }
        let candidates = hosts
            .iter()
            .map(|host| {
                let single = format!("{scheme}://{userinfo}{host}{path}{query}");
                PgConnectOptions::from_str(&single).map_err(|e| invalid(&e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { candidates, target })
    }

    /// `host:port` of candidate `index`, for logs and the readiness reason (no user, no
    /// password).
    pub(super) fn name(&self, index: usize) -> String {
        self.candidates
            .get(index)
            .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
            .unwrap_or_default()
    }

    /// The first candidate in the URL's order that accepts a connection within `patience` and
    /// holds a session [`Target`] accepts; otherwise why none did, host by host. The hosts are
    /// asked at once, and the answer comes as soon as every host before the chosen one has
    /// answered, so that a host gone silent holds up the search only if it is listed first.
    pub(super) async fn find(&self, patience: Duration) -> Result<usize, String> {
        use futures_util::StreamExt;
        let mut probes: futures_util::stream::FuturesUnordered<_> = self
            .candidates
            .iter()
            .enumerate()
            .map(|(index, options)| async move {
                let answer = tokio::time::timeout(patience, async {
                    let mut conn = options.connect().await.map_err(|e| e.to_string())?;
                    // Dropped, not closed politely: a close could stall on a host going away.
                    self.target
                        .accepts(&mut conn)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|_| Err("no answer in time".into()));
                (index, answer)
            })
            .collect();
        let mut answers: Vec<Option<Result<bool, String>>> = vec![None; self.candidates.len()];
        while let Some((index, answer)) = probes.next().await {
            answers[index] = Some(answer);
            for (index, answer) in answers.iter().enumerate() {
                match answer {
                    None => break,
                    Some(Ok(true)) => return Ok(index),
                    Some(_) => {}
                }
            }
        }
        let why: Vec<String> = answers
            .iter()
            .enumerate()
            .map(|(index, answer)| match answer {
                Some(Ok(_)) => format!("{}: read-only", self.name(index)),
                Some(Err(e)) => format!("{}: {e}", self.name(index)),
                None => format!("{}: no answer", self.name(index)),
            })
            .collect();
        Err(why.join("; "))
    }
}

impl Target {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "read-write" | "primary" => Ok(Self::Writable),
            "any" => Ok(Self::Any),
            "read-only" | "standby" | "prefer-standby" => Err(format!(
                "target_session_attrs={value}: Tessera writes on every request path (the audit \
                 log at least), so it needs read-write (the default) or any"
            )),
            other => Err(format!(
                "target_session_attrs={other} is not one of read-write, primary, any"
            )),
        }
    }

    /// Whether the session on `conn` is one this target accepts: for [`Target::Writable`], a
    /// server out of recovery whose transactions are read-write by default.
    pub(super) async fn accepts(self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        if self == Self::Any {
            return Ok(true);
        }
        let (in_recovery, read_only): (bool, String) =
            sqlx::query_as("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
                .fetch_one(conn)
                .await?;
        Ok(!in_recovery && read_only == "off")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> Vec<(String, u16)> {
        Hosts::parse(url)
            .expect("parses")
            .candidates
            .iter()
            .map(|o| (o.get_host().to_owned(), o.get_port()))
            .collect()
    }

    #[test]
    fn a_single_host_is_one_candidate() {
        assert_eq!(
            hosts("postgres://u:p@db.example:6543/tessera?sslmode=require"),
            [("db.example".to_owned(), 6543)]
        );
        let parsed = Hosts::parse("postgres://u@db/tessera").expect("parses");
        assert_eq!(parsed.target, Target::Writable);
        assert_eq!(parsed.candidates[0].get_database(), Some("tessera"));
        assert_eq!(parsed.candidates[0].get_username(), "u");
    }

    #[test]
    fn several_hosts_keep_their_order_ports_and_everything_else() {
        let url = "postgresql://us%40er:p%2Cw@h1:5433,[::1]:5434,h3/tessera?sslmode=disable&target_session_attrs=primary&application_name=t";
        assert_eq!(
            hosts(url),
            [
                ("h1".to_owned(), 5433),
                ("[::1]".to_owned(), 5434),
                ("h3".to_owned(), 5432)
            ]
        );
        let parsed = Hosts::parse(url).expect("parses");
        assert_eq!(parsed.target, Target::Writable);
        for candidate in &parsed.candidates {
            assert_eq!(candidate.get_database(), Some("tessera"));
            assert_eq!(candidate.get_username(), "us@er");
            assert_eq!(candidate.get_application_name(), Some("t"));
        }
        assert_eq!(parsed.name(1), "[::1]:5434");
    }

    #[test]
    fn target_session_attrs_is_read_here_not_passed_on() {
        let any = Hosts::parse("postgres://h1,h2/db?target_session_attrs=any").expect("parses");
        assert_eq!(any.target, Target::Any);
        assert_eq!(any.candidates.len(), 2);
        for refused in ["read-only", "standby", "prefer-standby", "sometimes", ""] {
            let url = format!("postgres://h1,h2/db?target_session_attrs={refused}");
            let err = Hosts::parse(&url).expect_err(refused).to_string();
            assert!(err.contains("target_session_attrs"), "{err}");
        }
    }

    #[test]
    fn malformed_host_lists_are_refused_with_a_reason() {
        for url in [
            "postgres://u@h1,,h2/db",
            "postgres://u@h1,/db",
            "postgres://u@h1:notaport,h2/db",
            "postgres:///db?host=h1,h2",
            "postgres:///db?host=h1%2Ch2",
            "postgres//h1,h2/db",
        ] {
            let err = Hosts::parse(url).expect_err(url);
            assert!(matches!(err, StoreError::Config(_)), "{url}: {err}");
        }
    }
}
