//! Finding the client's credentials in a request: `Authorization: Basic` (RFC 6749 §2.3.1, with
//! form-urlencoded id and secret inside the Base64) or `client_id`/`client_secret` in the body.

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::oauth::{ClientAuth, OAuthError, Params};
use crate::secret::Secret;

use super::form;

/// Longest Authorization header accepted.
const MAX_HEADER: usize = 4096;

pub fn extract(req: &HttpRequest, params: &Params) -> Result<ClientAuth, OAuthError> {
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let basic = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        (Some(value), None) => Some(parse_basic(value.as_bytes())?),
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use either HTTP Basic or client_secret in the body, not both",
        )),
        (Some((id, _)), Some(other), None) if other != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the one in the Authorization header",
        )),
        (Some((client_id, secret)), _, None) => Ok(ClientAuth::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(ClientAuth::Post {
            client_id: id.to_owned(),
            secret: Secret::new(secret),
        }),
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        (None, Some(id), None) => Ok(ClientAuth::Public {
            client_id: id.to_owned(),
        }),
        (None, None, None) => Ok(ClientAuth::Missing),
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))`.
pub fn parse_basic(value: &[u8]) -> Result<(String, Secret), OAuthError> {
    let bad = |why: &'static str| OAuthError::invalid_client(why);
    if value.len() > MAX_HEADER {
        return Err(bad("Authorization header too long"));
    }
    let value = std::str::from_utf8(value).map_err(|_| bad("malformed Authorization header"))?;
    let (scheme, encoded) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("only the Basic authentication scheme is supported"));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("malformed Basic credentials"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| bad("malformed Basic credentials"))?;
    let id = form::decode(id.as_bytes()).map_err(|_| bad("malformed Basic credentials"))?;
    let secret = form::decode(secret.as_bytes()).map_err(|_| bad("malformed Basic credentials"))?;
    if id.is_empty() {
        return Err(bad("malformed Basic credentials"));
    }
    Ok((id, Secret::new(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn decodes_form_encoded_credentials() {
        let (id, secret) = parse_basic(basic("my%3Aclient:s%2Bc+ret").as_bytes()).expect("parses");
        assert_eq!(id, "my:client");
        assert_eq!(secret.expose(), "s+c ret");
    }

    #[test]
    fn refuses_broken_headers() {
        for value in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            &basic("no-colon"),
            &basic(":secret"),
            &basic("a:%FF"),
        ] {
            assert!(
                matches!(
                    parse_basic(value.as_bytes()),
                    Err(OAuthError::InvalidClient(_))
                ),
                "{value}"
            );
        }
        assert!(parse_basic(&vec![b'a'; 5000]).is_err());
    }
}
