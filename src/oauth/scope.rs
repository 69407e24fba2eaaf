//! Scope strings (RFC 6749 §3.3): space-delimited tokens of NQCHAR.

use super::OAuthError;

/// The longest scope token accepted.
const MAX_TOKEN_LEN: usize = 128;

/// Parses a scope parameter into its distinct tokens, in order of first appearance.
pub fn parse(raw: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        if !is_valid_token(token) {
            return Err(OAuthError::InvalidScope(
                "scope contains an invalid character or token".into(),
            ));
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    Ok(out)
}

/// NQCHAR = %x21 / %x23-5B / %x5D-7E
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The scope to grant: the requested one when it is within `allowed`, or all of `allowed`
/// when nothing was requested.
pub fn grant(requested: Option<&str>, allowed: &[String]) -> Result<Vec<String>, OAuthError> {
    match requested {
        None => Ok(allowed.to_vec()),
        Some(raw) => {
            let wanted = parse(raw)?;
            if wanted.is_empty() {
                return Ok(allowed.to_vec());
            }
            if let Some(extra) = wanted.iter().find(|s| !allowed.contains(s)) {
                return Err(OAuthError::InvalidScope(
                    format!("scope {extra} is not allowed").into(),
                ));
            }
            Ok(wanted)
        }
    }
}

/// Whether every scope `requested` is among the space-separated `granted` (a narrowing, never a
/// widening: RFC 6749 §6).
pub fn within(requested: &[String], granted: &str) -> bool {
    requested
        .iter()
        .all(|r| granted.split_whitespace().any(|g| g == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_dedupes_and_validates() {
        assert_eq!(parse("a b  a c").expect("ok"), v(&["a", "b", "c"]));
        assert!(parse("a\"b").is_err());
        assert!(parse("a\\b").is_err());
        assert!(parse("é").is_err());
        assert!(parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn grant_narrows_and_refuses_widening() {
        let allowed = v(&["read", "write"]);
        assert_eq!(grant(None, &allowed).expect("ok"), allowed);
        assert_eq!(grant(Some("read"), &allowed).expect("ok"), v(&["read"]));
        assert!(matches!(
            grant(Some("admin"), &allowed),
            Err(OAuthError::InvalidScope(_))
        ));
        assert_eq!(grant(Some(""), &allowed).expect("ok"), allowed);
    }

    #[test]
    fn within_allows_narrowing_only() {
        assert!(within(&v(&["read"]), "read write"));
        assert!(within(&v(&["read", "write"]), "write  read"));
        assert!(!within(&v(&["admin"]), "read write"));
        assert!(!within(&v(&["rea"]), "read"));
        assert!(within(&[], ""));
    }
}
