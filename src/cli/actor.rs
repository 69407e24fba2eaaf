//! Who an admin command acts as, for the audit log: the operating-system user the process runs
//! as (never `$USER`, which any caller sets at will), and beside it the name automation may give
//! itself with `--actor` or `TESSERA_ACTOR`.

use super::UsageError;

/// Longest name `--actor` takes, in characters.
const MAX_NAME_CHARS: usize = 64;

/// `cli:<os user>`, or `cli:<os user> (as <name>)` when a name is given. The OS user comes
/// first so that a chosen name can never pass for it, and one account's rows share a prefix.
pub fn actor(name: Option<&str>) -> Result<String, UsageError> {
    let os_user = os_user();
    match name {
        None => Ok(format!("cli:{os_user}")),
        Some(name) => {
            validate(name)?;
            Ok(format!("cli:{os_user} (as {name})"))
        }
    }
}

fn validate(name: &str) -> Result<(), UsageError> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS || name.chars().any(invisible) {
        return Err(UsageError(format!(
            "--actor (or TESSERA_ACTOR) must be 1 to {MAX_NAME_CHARS} characters, not blank, without control or format characters"
        )));
    }
    Ok(())
}

/// Control characters, and the format and separator ones (Unicode Cf, Zl, Zp) that can reorder
/// or hide text when `tessera audit` prints it.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// The name of the process's effective user from the user database; where it has none (a
/// container run with an arbitrary uid), `uid:<number>`.
fn os_user() -> String {
    match whoami::username() {
        Ok(name) if !name.is_empty() && !name.chars().any(char::is_control) => name,
        _ => effective_uid().map_or_else(|| "unknown".into(), |uid| format!("uid:{uid}")),
    }
}

/// The effective uid, read from `/proc/self/status` (Linux) since the crate forbids the
/// `unsafe` a `geteuid` call would need.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_user_comes_first_and_the_name_beside_it() {
        let plain = actor(None).expect("actor");
        assert!(plain.starts_with("cli:") && !plain.contains(' '), "{plain}");
        assert_eq!(
            actor(Some("deploy-bot")).expect("named"),
            format!("{plain} (as deploy-bot)")
        );
        assert!(actor(Some(&"x".repeat(64))).is_ok());
        assert!(actor(Some("nightly job: rotate")).is_ok());
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "esc\u{1b}[31m",
            "ops\u{202e}x",
            "line\u{2028}sep",
            "zero\u{200b}width",
            &"x".repeat(65),
        ] {
            assert!(actor(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn effective_uid_is_read() {
        if cfg!(target_os = "linux") {
            assert!(effective_uid().is_some());
        }
    }
}
