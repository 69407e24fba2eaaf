//! The browser flow's two cookies: the login session and the CSRF token. Over https they take
//! the `__Host-` prefix (Secure, Path=/, no Domain: no other host can set or read them).

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration};
use subtle::ConstantTimeEq;

use crate::crypto::tokens;

/// The cookie names and flags of one deployment.
pub struct Cookies {
    secure: bool,
    session: &'static str,
    csrf: &'static str,
}

impl Cookies {
    pub fn new(issuer: &str) -> Self {
        let secure = issuer.starts_with("https://");
        Self {
            secure,
            session: if secure {
                "__Host-tessera_session"
            } else {
                "tessera_session"
            },
            csrf: if secure {
                "__Host-tessera_csrf"
            } else {
                "tessera_csrf"
            },
        }
    }

    pub fn session(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.session).map(|c| c.value().to_owned())
    }

    pub fn set_session(&self, secret: String, max_age: i64) -> Cookie<'static> {
        self.build(self.session, secret, Duration::seconds(max_age))
    }

    pub fn clear_session(&self) -> Cookie<'static> {
        self.build(self.session, String::new(), Duration::ZERO)
    }

    /// The browser's CSRF token, and the cookie to set when it had none yet.
    pub fn csrf(&self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        match req.cookie(self.csrf) {
            Some(c) if c.value().len() == 43 => (c.value().to_owned(), None),
            _ => {
                let token = tokens::generate("");
                let cookie = self.build(self.csrf, token.clone(), Duration::hours(12));
                (token, Some(cookie))
            }
        }
    }

    /// Whether a form carries the token of the browser that was shown it (double submit,
    /// compared in constant time).
    pub fn csrf_matches(&self, req: &HttpRequest, submitted: Option<&str>) -> bool {
        match (req.cookie(self.csrf), submitted) {
            (Some(cookie), Some(submitted)) if cookie.value().len() == 43 => {
                bool::from(cookie.value().as_bytes().ct_eq(submitted.as_bytes()))
            }
            _ => false,
        }
    }

    fn build(&self, name: &'static str, value: String, max_age: Duration) -> Cookie<'static> {
        let mut cookie = Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(max_age)
            .finish();
        cookie.set_secure(self.secure);
        cookie
    }
}
