//! What leaves for the tracker is scrubbed first: every string of every event, for anything
//! shaped like a credential and for the configured secrets themselves.

use std::sync::LazyLock;

use regex::Regex;
use sentry::protocol::{Event, Values};

use crate::config::Settings;

/// Values that must never leave even if some message quoted them: the key-encryption key and
/// the database URL's password.
pub(super) fn known_secrets(settings: &Settings) -> Vec<String> {
    let mut secrets = vec![settings.keys.encryption_key.expose().to_owned()];
    let url = settings.database.url.expose();
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        secrets.push(password.to_owned());
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && key.eq_ignore_ascii_case("password")
            {
                secrets.push(value.to_owned());
            }
        }
    }
    // Each as written in the URL (percent-encoded) and decoded.
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| s.len() >= 4);
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Replaces anything that looks like a credential in `text`.
pub fn scrub(text: &str, known: &[String]) -> String {
    static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            // Tessera's own refresh tokens and client secrets, wherever they start.
            (r"(ts[rc])_[A-Za-z0-9_\-]+", "${1}_[redacted]"),
            // JWTs (access tokens, and anything else signed).
            (
                r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
                "[jwt redacted]",
            ),
            // user:password@ in any URL.
            (r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):[^@\s]*@", "$1:[redacted]@"),
            // Authorization header values.
            (r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=\-]+", "$1 [redacted]"),
            // key=value and "key": "value" pairs whose key names a secret.
            (
                r#"(?i)\b([a-z_]*(?:password|passwd|secret|token|code|authorization|cookie|encryption_key|dsn)[a-z_]*\\?["']?\s*[=:]\s*)(\\?"[^"\\]*(?:\\.[^"\\]*)*\\?"|'[^']*'|[^\s&"',;]+)"#,
                "${1}[redacted]",
            ),
        ]
        .into_iter()
        .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
        .collect()
    });
    let once = |text: &str| {
        let mut out = text.to_owned();
        for secret in known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        for (pattern, with) in PATTERNS.iter() {
            if pattern.is_match(&out) {
                out = pattern.replace_all(&out, *with).into_owned();
            }
        }
        out
    };
    // As written, then (percent-encoded text: a form body, a query string) decoded, so that
    // neither form hides a secret from the patterns.
    let raw = once(text);
    if raw.contains('%') {
        once(&percent_encoding::percent_decode_str(&raw).decode_utf8_lossy())
    } else {
        raw
    }
}

/// The last word on what leaves, whatever produced the event (our layer or the panic hook).
pub(super) fn scrub_event(mut event: Event<'static>, known: &[String]) -> Event<'static> {
    let clean = |text: &mut String| *text = scrub(text, known);
    event.request = None;
    event.user = None;
    event.breadcrumbs = Values::new();
    if let Some(message) = event.message.as_mut() {
        clean(message);
    }
    if let Some(entry) = event.logentry.as_mut() {
        clean(&mut entry.message);
        entry.params.clear();
    }
    for exception in &mut event.exception.values {
        if let Some(value) = exception.value.as_mut() {
            clean(value);
        }
        clean(&mut exception.ty);
    }
    for value in event.tags.values_mut() {
        clean(value);
    }
    event.extra.clear();
    event.fingerprint = event
        .fingerprint
        .iter()
        .map(|part| scrub(part, known).into())
        .collect::<Vec<_>>()
        .into();
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_scrubbed() {
        let known = vec![
            "the-kek-value".to_owned(),
            "S3cret%20Pass%23word".to_owned(),
            "S3cret Pass#word".to_owned(),
        ];
        let cases = [
            ("refresh tsr_AbC-123_x failed", "tsr_[redacted]"),
            ("secret tsc_Zz9 used", "tsc_[redacted]"),
            ("token eyJhbGciOi.eyJzdWIi.c2ln here", "[jwt redacted]"),
            (
                "postgres://app:hunter2@db/tessera",
                "postgres://app:[redacted]@db",
            ),
            ("Authorization: Basic Z3c6c2VjcmV0", "[redacted]"),
            ("password=correct-horse&x=1", "password=[redacted]"),
            (
                r#"{"client_secret": "s3cr3t"}"#,
                r#""client_secret": [redacted]"#,
            ),
            ("kek is the-kek-value", "kek is [redacted]"),
            (
                r#""password": "correct horse battery""#,
                r#""password": [redacted]"#,
            ),
            (r#"{\"password\":\"hunter2\"}"#, "[redacted]"),
            ("field%3Dtsr_AbC-123", "field=tsr_[redacted]"),
            ("client%5Fsecret=s3cr3t", "client_secret=[redacted]"),
            ("password=correct%26horse%20battery", "password=[redacted]"),
            ("db pw S3cret%20Pass%23word here", "db pw [redacted] here"),
            ("client_secret=abc%22def", "client_secret=[redacted]"),
        ];
        for (input, expected) in cases {
            let out = scrub(input, &known);
            assert!(out.contains(expected), "{input:?} became {out:?}");
            for secret in [
                "AbC-123",
                "Zz9",
                "eyJzdWIi",
                "hunter2",
                "Z3c6",
                "correct-horse",
                "s3cr3t",
                "the-kek",
                "horse battery",
                "S3cret",
                "def",
            ] {
                assert!(!out.contains(secret), "{input:?} kept {secret:?}: {out:?}");
            }
        }
    }
}
