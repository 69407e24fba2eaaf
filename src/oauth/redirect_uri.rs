//! Redirect URIs a client may register, and how a presented one is matched against them.
//! Matching is exact string comparison (RFC 9700 §4.1.3), with the one exception native apps
//! need: on a loopback address over http the port may differ, since the app binds whatever
//! port is free when it starts (RFC 8252 §7.3).

use url::{Host, Url};

/// Longest redirect URI accepted.
const MAX_LEN: usize = 2000;

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRedirectUri {
    #[error("{0:?} is not an absolute URI")]
    NotAbsolute(String),
    #[error("{0:?} has a fragment; redirect URIs must not (RFC 6749 §3.1.2)")]
    Fragment(String),
    #[error("{0:?} carries a user name or password")]
    UserInfo(String),
    #[error("{0:?} uses http on a host other than 127.0.0.1 or [::1]; use https (RFC 9700 §2.6)")]
    PlainHttp(String),
    #[error(
        "{0:?} names a private-use scheme that is not a reversed domain name such as com.example.app (RFC 8252 §7.1)"
    )]
    PrivateScheme(String),
    #[error("{0:?} is longer than {MAX_LEN} characters or holds a space or a control character")]
    Malformed(String),
    #[error("{uri:?} is not written the way browsers will read it; register it as {canonical:?}")]
    NotCanonical { uri: String, canonical: String },
    #[error("{0:?} holds a backslash, which browsers read as a slash")]
    Backslash(String),
    #[error("{0:?} already carries {1:?}, which the authorization response adds itself")]
    ReservedParameter(String, String),
}

/// Parameters an authorization response (RFC 6749 §4.1.2, RFC 9207) puts on the redirect URI.
const RESPONSE_PARAMETERS: [&str; 6] = [
    "code",
    "state",
    "iss",
    "error",
    "error_description",
    "error_uri",
];

/// Checks one URI a client asks to register.
///
/// Allowed: `https` URIs; `http` on the loopback addresses `127.0.0.1` and `[::1]` with any
/// port (RFC 8252 §7.3; `localhost` is not, §8.3); and private-use schemes of native apps that
/// are a reversed domain name with at least one dot (`com.example.app:/callback`, §7.1).
/// Never a fragment, never user information, never a relative URI.
pub fn validate(uri: &str) -> Result<(), InvalidRedirectUri> {
    if uri.is_empty()
        || uri.len() > MAX_LEN
        || uri.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(InvalidRedirectUri::Malformed(uri.to_owned()));
    }
    if uri.contains('\\') {
        return Err(InvalidRedirectUri::Backslash(uri.to_owned()));
    }
    let parsed = Url::parse(uri).map_err(|_| InvalidRedirectUri::NotAbsolute(uri.to_owned()))?;
    if uri.contains('#') || parsed.fragment().is_some() {
        return Err(InvalidRedirectUri::Fragment(uri.to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(InvalidRedirectUri::UserInfo(uri.to_owned()));
    }
    // What is stored is what every parser reads alike: a URI the parser would rewrite (case,
    // dot segments, `https:host`, percent-encoding, an IDN host, a spelled-out loopback
    // address) could send a browser somewhere other than where it reads.
    if parsed.as_str() != uri {
        return Err(InvalidRedirectUri::NotCanonical {
            uri: uri.to_owned(),
            canonical: parsed.as_str().to_owned(),
        });
    }
    if let Some((name, _)) = parsed
        .query_pairs()
        .find(|(name, _)| RESPONSE_PARAMETERS.contains(&name.as_ref()))
    {
        return Err(InvalidRedirectUri::ReservedParameter(
            uri.to_owned(),
            name.into_owned(),
        ));
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "https" => Err(InvalidRedirectUri::NotAbsolute(uri.to_owned())),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(InvalidRedirectUri::PlainHttp(uri.to_owned())),
        scheme if scheme.contains('.') && !scheme.starts_with('.') && !scheme.ends_with('.') => {
            Ok(())
        }
        _ => Err(InvalidRedirectUri::PrivateScheme(uri.to_owned())),
    }
}

/// Whether `presented` is one of `registered`: the same string, or for a registered http
/// loopback URI the same URI on another port.
pub fn matches(registered: &[String], presented: &str) -> bool {
    registered
        .iter()
        .any(|r| r == presented || same_but_loopback_port(r, presented))
}

/// Whether any program on the user's device could receive what is sent to `uri`: a loopback
/// address (any local process can listen on a port) or a private-use scheme (any app can claim
/// it), RFC 8252 §8.6. Such a redirect does not prove which client asked.
pub fn any_local_app_may_receive(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| {
        (u.scheme() == "http" && is_loopback(&u)) || !matches!(u.scheme(), "http" | "https")
    })
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        _ => false,
    }
}

fn same_but_loopback_port(registered: &str, presented: &str) -> bool {
    let (Ok(mut r), Ok(mut p)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    // Only URIs written as the parser writes them take part, so that normalisation (case,
    // dot segments, default ports) can never make a different URI match.
    if r.as_str() != registered || p.as_str() != presented {
        return false;
    }
    if r.scheme() != "http" || p.scheme() != "http" || !is_loopback(&r) || !is_loopback(&p) {
        return false;
    }
    r.set_port(None).is_ok() && p.set_port(None).is_ok() && r.as_str() == p.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_https_loopback_http_and_reverse_domain_schemes() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51004/callback",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_the_rfcs_forbid() {
        assert!(matches!(
            validate("http://app.example.com/cb"),
            Err(InvalidRedirectUri::PlainHttp(_))
        ));
        assert!(matches!(
            validate("http://localhost:8080/cb"),
            Err(InvalidRedirectUri::PlainHttp(_))
        ));
        assert!(matches!(
            validate("https://app.example.com/cb#frag"),
            Err(InvalidRedirectUri::Fragment(_))
        ));
        assert!(matches!(
            validate("https://app.example.com/cb#"),
            Err(InvalidRedirectUri::Fragment(_))
        ));
        assert!(matches!(
            validate("https://user:pw@app.example.com/cb"),
            Err(InvalidRedirectUri::UserInfo(_))
        ));
        assert!(matches!(
            validate("/callback"),
            Err(InvalidRedirectUri::NotAbsolute(_))
        ));
        assert!(matches!(
            validate("myapp:/cb"),
            Err(InvalidRedirectUri::PrivateScheme(_))
        ));
        assert!(matches!(
            validate("javascript:alert(1)"),
            Err(InvalidRedirectUri::PrivateScheme(_))
        ));
        assert!(matches!(
            validate("https://app.example.com/a b"),
            Err(InvalidRedirectUri::Malformed(_))
        ));
        assert!(matches!(
            validate(&format!("https://a.example/{}", "x".repeat(2000))),
            Err(InvalidRedirectUri::Malformed(_))
        ));
        assert!(validate("").is_err());
    }

    #[test]
    fn refuses_what_parsers_would_read_differently() {
        for (uri, canonical) in [
            ("https:evil.example/cb", "https://evil.example/cb"),
            ("https:/evil.example/cb", "https://evil.example/cb"),
            ("HTTPS://app.example.com/cb", "https://app.example.com/cb"),
            ("https://app.example.com", "https://app.example.com/"),
            (
                "https://app.example.com/a/../b",
                "https://app.example.com/b",
            ),
            (
                "https://app.example.com/cb/%2e%2e/x",
                "https://app.example.com/x",
            ),
            ("https://\u{430}pple.com/", "https://xn--pple-43d.com/"),
            (
                "https://app.example.com/\u{200b}",
                "https://app.example.com/%E2%80%8B",
            ),
            (
                "https://app.example.com/\u{202e}",
                "https://app.example.com/%E2%80%AE",
            ),
            ("http://127.1/cb", "http://127.0.0.1/cb"),
            ("http://0x7f.1/cb", "http://127.0.0.1/cb"),
            ("http://2130706433/cb", "http://127.0.0.1/cb"),
            ("http://127.0.0.1:80/cb", "http://127.0.0.1/cb"),
            ("http://[0:0::1]/cb", "http://[::1]/cb"),
        ] {
            assert_eq!(
                validate(uri),
                Err(InvalidRedirectUri::NotCanonical {
                    uri: uri.into(),
                    canonical: canonical.into()
                }),
                "{uri}"
            );
        }
        assert!(matches!(
            validate("https://evil.example\\@good.example/cb"),
            Err(InvalidRedirectUri::Backslash(_))
        ));
        for reserved in ["code", "state", "iss", "error"] {
            assert!(
                matches!(
                    validate(&format!("https://app.example.com/cb?{reserved}=x")),
                    Err(InvalidRedirectUri::ReservedParameter(_, _))
                ),
                "{reserved}"
            );
        }
        assert_eq!(validate("https://app.example.com/cb?tenant=7"), Ok(()));
    }

    #[test]
    fn local_apps_may_receive_loopback_and_private_schemes() {
        assert!(any_local_app_may_receive("http://127.0.0.1/cb"));
        assert!(any_local_app_may_receive("http://[::1]:8080/cb"));
        assert!(any_local_app_may_receive("com.example.app:/cb"));
        assert!(!any_local_app_may_receive("https://app.example.com/cb"));
    }

    #[test]
    fn matching_is_exact() {
        let registered = v(&["https://app.example.com/callback"]);
        assert!(matches(&registered, "https://app.example.com/callback"));
        for other in [
            "https://app.example.com/callback/",
            "https://app.example.com/callback?x=1",
            "https://APP.example.com/callback",
            "https://app.example.com:443/callback",
            "https://app.example.com/Callback",
            "https://app.example.com.evil.example/callback",
            "http://app.example.com/callback",
        ] {
            assert!(!matches(&registered, other), "{other}");
        }
    }

    #[test]
    fn loopback_ports_may_differ_and_nothing_else() {
        let registered = v(&["http://127.0.0.1/callback", "http://[::1]:9000/cb"]);
        assert!(matches(&registered, "http://127.0.0.1:51004/callback"));
        assert!(matches(&registered, "http://127.0.0.1/callback"));
        assert!(matches(&registered, "http://[::1]:1234/cb"));
        assert!(!matches(&registered, "http://127.0.0.1:51004/other"));
        assert!(!matches(&registered, "http://127.0.0.1:51004/callback?x=1"));
        assert!(!matches(&registered, "http://127.0.0.2:51004/callback"));
        assert!(!matches(&registered, "https://127.0.0.1:51004/callback"));
        assert!(!matches(&registered, "http://[::1]:1234/callback"));
        // A presented URI the parser would rewrite is not taken as the registered one.
        assert!(!matches(&registered, "http://127.0.0.1:51004/./callback"));
        assert!(!matches(&registered, "HTTP://127.0.0.1:51004/callback"));
    }
}
