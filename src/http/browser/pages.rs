//! The pages Tessera serves itself, compiled into the binary from `templates/` with every value
//! HTML-escaped, and the headers every page carries.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use askama::Template;
use url::Url;

/// What every page shows around its content.
pub struct Chrome {
    pub product: String,
    pub logo: Option<String>,
    /// The issuer's path, which every link and form action starts with.
    pub base: String,
    /// The logo's origin, allowed in `img-src`.
    logo_origin: Option<String>,
}

impl Chrome {
    pub fn new(product: &str, logo_url: &str, issuer: &str) -> Self {
        let logo = Url::parse(logo_url).ok();
        Self {
            product: product.to_owned(),
            logo: logo.as_ref().map(|_| logo_url.to_owned()),
            logo_origin: logo.map(|u| u.origin().ascii_serialization()),
            base: Url::parse(issuer)
                .map(|u| u.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub chrome: &'a Chrome,
    pub client_name: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub hidden: &'a [(String, String)],
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub chrome: &'a Chrome,
    pub client_name: &'a str,
    pub username: &'a str,
    pub scopes: Vec<(&'a str, String)>,
    pub hidden: &'a [(String, String)],
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub chrome: &'a Chrome,
    pub hidden: &'a [(String, String)],
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub chrome: &'a Chrome,
    pub heading: &'a str,
    pub message: &'a str,
    pub is_error: bool,
}

/// What a scope lets the client do, as the consent page says it.
pub fn scope_meaning(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are".into(),
        "profile" => "See your name".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Keep access while you are not using it".into(),
        other => format!("Use the “{other}” permission"),
    }
}

/// A rendered page with its security headers: nothing framed, no script, no inline style,
/// forms posted only here (and, since a form's redirect counts as its target, to where the
/// request says the browser goes back to), no referrer, never cached.
pub fn respond(
    status: StatusCode,
    chrome: &Chrome,
    page: &impl Template,
    form_target: Option<&str>,
) -> HttpResponse {
    let body = match page.render() {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            return HttpResponse::InternalServerError().finish();
        }
    };
    let img = chrome
        .logo_origin
        .as_deref()
        .map_or(String::new(), |o| format!(" {o}"));
    let form = form_target
        .and_then(source_of)
        .map_or(String::new(), |t| format!(" {t}"));
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'{img}; form-action 'self'{form}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = HttpResponse::build(status);
    no_store(&mut response);
    response
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .body(body)
}

/// Headers of every answer the browser flow gives, pages and redirects alike.
pub fn no_store(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
}

/// A redirect URI as a CSP source: its origin, or its scheme for an app's private scheme.
fn source_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// The stylesheet the pages link to.
pub const STYLESHEET: &str = include_str!("../../../templates/tessera.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let chrome = Chrome::new("<Acme>", "", "https://id.example.com/auth/");
        assert_eq!(chrome.base, "/auth");
        let hidden = vec![("state".to_owned(), "\"><script>x</script>".to_owned())];
        let page = LoginPage {
            chrome: &chrome,
            client_name: "<b>app</b>",
            username: "\" autofocus onfocus=\"x",
            error: Some("<i>no</i>"),
            hidden: &hidden,
            csrf: "t",
        }
        .render()
        .expect("renders");
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>app"), "{page}");
        assert!(!page.contains("<i>no"), "{page}");
        assert!(!page.contains("\" autofocus onfocus"), "{page}");
        assert!(page.contains("&#60;Acme&#62;"), "{page}");
    }

    #[test]
    fn form_targets() {
        assert_eq!(
            source_of("https://app.example.com/cb?x=1").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            source_of("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }
}
