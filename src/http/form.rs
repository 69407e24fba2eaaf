//! Strict reading of `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2, §B):
//! size-limited, valid UTF-8, no parameter twice, empty values treated as absent.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web;
use futures_util::StreamExt;
use percent_encoding::percent_decode;

use crate::oauth::{OAuthError, Params};

/// More parameters than any OAuth request needs.
const MAX_PARAMS: usize = 64;

/// Reads and parses a form body of at most `limit` bytes.
pub async fn read(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Params, OAuthError> {
    check_content_type(req)?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(OAuthError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(512).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(OAuthError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

fn check_content_type(req: &HttpRequest) -> Result<(), OAuthError> {
    let wrong =
        || OAuthError::invalid_request("Content-Type must be application/x-www-form-urlencoded");
    let value = req.headers().get(header::CONTENT_TYPE).ok_or_else(wrong)?;
    let value = value.to_str().map_err(|_| wrong())?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(wrong());
    }
    for param in parts {
        if let Some((name, charset)) = param.split_once('=') {
            let charset = charset.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset") && !charset.eq_ignore_ascii_case("utf-8")
            {
                return Err(OAuthError::invalid_request(
                    "only the UTF-8 charset is accepted",
                ));
            }
        }
    }
    Ok(())
}

/// Parses a form body.
pub fn parse(body: &[u8]) -> Result<Params, OAuthError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for segment in body.split(|b| *b == b'&').filter(|s| !s.is_empty()) {
        if seen.len() >= MAX_PARAMS {
            return Err(OAuthError::invalid_request("too many parameters"));
        }
        let (name, value) = match segment.iter().position(|b| *b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &b""[..]),
        };
        let name = decode(name)?;
        let value = decode(value)?;
        if seen.contains(&name) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is repeated",
                printable(&name)
            )));
        }
        seen.push(name.clone());
        // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    Ok(Params::new(pairs))
}

/// Percent-decodes one form component (`+` is a space) into UTF-8 without NUL bytes.
pub fn decode(raw: &[u8]) -> Result<String, OAuthError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let decoded: Vec<u8> = percent_decode(&spaced).collect();
    let text = String::from_utf8(decoded)
        .map_err(|_| OAuthError::invalid_request("parameters must be valid UTF-8"))?;
    if text.contains('\0') {
        return Err(OAuthError::invalid_request(
            "parameters must not contain NUL",
        ));
    }
    Ok(text)
}

/// A parameter name safe to echo in an error description.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_encoded_values() {
        let p = parse(b"grant_type=password&username=a%20b+c&password=p%26%3D%2B").expect("parses");
        assert_eq!(p.get("grant_type"), Some("password"));
        assert_eq!(p.get("username"), Some("a b c"));
        assert_eq!(p.get("password"), Some("p&=+"));
    }

    #[test]
    fn empty_values_are_absent_and_repeats_refused() {
        let p = parse(b"scope=&a=1").expect("parses");
        assert_eq!(p.get("scope"), None);
        assert!(matches!(
            parse(b"a=1&a=2"),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse(b"a=&a=2"),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn refuses_invalid_utf8_nul_and_floods() {
        assert!(parse(b"a=%FF%FE").is_err());
        assert!(parse(b"a=x%00y").is_err());
        let many: String = (0..100).map(|i| format!("p{i}=1&")).collect();
        assert!(parse(many.as_bytes()).is_err());
    }

    #[test]
    fn unicode_round_trips() {
        let p = parse("u=%E2%9C%93%F0%9F%94%91".as_bytes()).expect("parses");
        assert_eq!(p.get("u"), Some("✓🔑"));
    }
}
