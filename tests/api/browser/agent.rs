//! A browser without JavaScript, as the sign-in pages must work for: it keeps cookies, reads
//! forms (their action and hidden fields) out of the HTML, posts them back, and follows
//! nothing by itself, so every redirect can be looked at.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use regex::Regex;
use url::Url;

/// The PKCE verifier of RFC 7636 Appendix B and its S256 challenge.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// One answer: status, headers, body.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Location` of a redirect, parsed.
    pub fn location(&self) -> Url {
        assert!(
            (300..400).contains(&self.status),
            "expected a redirect, got {}: {}",
            self.status,
            self.body
        );
        Url::parse(self.header("location")).expect("absolute Location")
    }

    /// A query parameter of the redirect's `Location`.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        self.location()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The form whose action ends with `action`: its fields (hidden inputs, and the named
    /// text inputs with their values), unescaped.
    pub fn form(&self, action: &str) -> Vec<(String, String)> {
        let form_re =
            Regex::new(r#"(?s)<form method="post" action="([^"]*)">(.*?)</form>"#).expect("regex");
        let input_re =
            Regex::new(r#"<input type="hidden" name="([^"]*)" value="([^"]*)">"#).expect("regex");
        let form = form_re
            .captures_iter(&self.body)
            .find(|c| c[1].ends_with(action))
            .unwrap_or_else(|| panic!("no form posting to {action} in {}", self.body));
        input_re
            .captures_iter(&form[2])
            .map(|c| (unescape(&c[1]), unescape(&c[2])))
            .collect()
    }

    pub fn is_login_page(&self) -> bool {
        self.status == 200 && self.body.contains(r#"action="/oauth/authorize/login""#)
    }

    pub fn is_consent_page(&self) -> bool {
        self.status == 200 && self.body.contains(r#"action="/oauth/authorize/consent""#)
    }
}

/// Undoes askama's HTML escaping.
fn unescape(s: &str) -> String {
    let re = Regex::new(r"&#(\d+);").expect("regex");
    let s = re.replace_all(s, |c: &regex::Captures| {
        char::from_u32(c[1].parse().expect("number")).map_or(String::new(), String::from)
    });
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

pub struct Browser {
    base: String,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// Set-Cookie lines of the last answer, as sent.
    pub last_set_cookies: Vec<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
            last_set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("Cookie", self.cookie_header())
        };
        let response = req.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.last_set_cookies = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for line in &self.last_set_cookies {
            let pair = line.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                let expired = line.contains("Max-Age=0");
                if expired || value.is_empty() {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let body = response.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    /// GET a path (or an absolute URL) on the server.
    pub async fn get(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let req = self.http.get(url);
        self.send(req).await
    }

    /// Posts a form as a browser does from one of the server's own pages.
    pub async fn post(&mut self, path: &str, fields: &[(String, String)]) -> Page {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Sec-Fetch-Site", "same-origin")
            .form(fields);
        self.send(req).await
    }

    /// Posts with headers of the caller's choosing (a cross-site form, a missing token).
    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(fields);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// Fills in the sign-in form of `page` and sends it.
    pub async fn sign_in(&mut self, page: &Page, username: &str, password: &str) -> Page {
        let mut fields = page.form("/oauth/authorize/login");
        fields.push(("username".into(), username.into()));
        fields.push(("password".into(), password.into()));
        self.post("/oauth/authorize/login", &fields).await
    }

    /// Signs out through the confirmation page, as a user does.
    pub async fn sign_out(&mut self) -> Page {
        let ask = self.get("/oauth/logout").await;
        let fields = ask.form("/oauth/logout/confirm");
        self.post("/oauth/logout/confirm", &fields).await
    }

    /// A cookie the browser holds.
    pub fn cookie(&self, name: &str) -> String {
        self.cookies
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} cookie"))
    }

    /// Presses Allow or Deny on the consent page.
    pub async fn decide(&mut self, page: &Page, allow: bool) -> Page {
        let mut fields = page.form("/oauth/authorize/consent");
        fields.push((
            "decision".into(),
            if allow { "allow" } else { "deny" }.into(),
        ));
        self.post("/oauth/authorize/consent", &fields).await
    }
}

/// An authorization request's query string from `pairs`.
pub fn authorize_path(pairs: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(pairs).expect("query");
    format!("/oauth/authorize?{query}")
}
