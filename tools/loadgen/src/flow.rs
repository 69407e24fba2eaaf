//! The browser scenarios: `authcode_flow` (a fresh browser: the sign-in page, the sign-in form
//! with its argon2 verify, then the client's code exchange) and `code_exchange` (a browser signed
//! in once, untimed: authorize answered from its session, then the code exchange). Each virtual
//! client is a browser without JavaScript and the client's back end on one connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{LOCATION, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;

use crate::conn::{Conn, Resp};
use crate::run::{Ctx, REQUEST_TIMEOUT, SETUP_TIMEOUT, Scenario, Stats, body_snippet, urlencode};

const AUTHORIZE_PATH: &str = "/oauth/authorize";
const LOGIN_PATH: &str = "/oauth/authorize/login";

/// Why an iteration stopped: the key it is counted under (`login 503`) and a sample.
struct Failure {
    key: String,
    detail: String,
}

impl Failure {
    fn new(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            detail: detail.into(),
        }
    }

    fn status(step: &str, resp: &Resp, what: &str) -> Self {
        Self::new(
            format!("{step} {}{what}", resp.status.as_u16()),
            body_snippet(&resp.body),
        )
    }
}

/// A browser's cookies (`name=value`), kept as `Set-Cookie` leaves them.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take(&mut self, resp: &Resp) {
        for line in resp.headers.get_all(SET_COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            let pair = line.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let name = name.trim();
            self.0.retain(|(k, _)| k != name);
            if !value.is_empty() && !line.contains("Max-Age=0") {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

/// One authorization request's PKCE pair (RFC 7636, S256), `state` and `nonce`. Unique, not
/// secret: the verifier is a hash of the run's start and a counter.
struct Request {
    verifier: String,
    challenge: String,
    state: String,
}

impl Request {
    fn new(ctx: &Ctx) -> Self {
        let n = ctx.flow_seq.fetch_add(1, Ordering::Relaxed);
        let verifier = b64_sha256(format!("{}:{n}", ctx.run_seed).as_bytes());
        let challenge = b64_sha256(verifier.as_bytes());
        Self {
            verifier,
            challenge,
            state: format!("st{n}"),
        }
    }

    fn path(&self, ctx: &Ctx) -> String {
        format!(
            "{AUTHORIZE_PATH}?client_id={}&response_type=code&redirect_uri={}&scope={}&state={}&nonce=n{}&code_challenge={}&code_challenge_method=S256",
            urlencode(&ctx.web_id),
            urlencode(&ctx.redirect_uri),
            urlencode(&ctx.web_scope),
            self.state,
            self.state,
            self.challenge
        )
    }
}

fn b64_sha256(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// One request, its latency kept under `step` when it is answered.
#[allow(clippy::too_many_arguments)] // the parts of one request, as `Conn::send_with` takes them
async fn request(
    conn: &mut Conn,
    stats: &mut Stats,
    step: &'static str,
    method: Method,
    path: &str,
    auth: Option<&str>,
    form: Option<String>,
    headers: &[(&'static str, &str)],
) -> Result<Resp, Failure> {
    let started = Instant::now();
    let result = tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.send_with(method, path, auth, form, headers),
    )
    .await;
    stats.http_requests += 1;
    match result {
        Ok(Ok(resp)) => {
            stats.step(step, started.elapsed());
            Ok(resp)
        }
        Ok(Err(e)) => {
            stats.transport_errors += 1;
            Err(Failure::new(format!("{step} transport error"), e))
        }
        Err(_) => {
            stats.transport_errors += 1;
            conn.reset();
            Err(Failure::new(format!("{step} timeout"), "request timed out"))
        }
    }
}

/// Signs a browser in from scratch: the sign-in page (its CSRF cookie, its form's hidden
/// fields), then the form with the next account's password. The code of the 303.
async fn sign_in(
    ctx: &Ctx,
    conn: &mut Conn,
    stats: &mut Stats,
    jar: &mut Jar,
    req: &Request,
) -> Result<String, Failure> {
    let page = request(
        conn,
        stats,
        "authorize",
        Method::GET,
        &req.path(ctx),
        None,
        None,
        &[],
    )
    .await?;
    if page.status != StatusCode::OK {
        return Err(Failure::status("authorize", &page, ""));
    }
    jar.take(&page);
    let Some(mut fields) = form_fields(&String::from_utf8_lossy(&page.body), LOGIN_PATH) else {
        return Err(Failure::status(
            "authorize",
            &page,
            " without the sign-in form",
        ));
    };
    fields.push(("username".into(), ctx.next_username()));
    fields.push(("password".into(), ctx.password.clone()));
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let cookies = jar.header();
    let back = request(
        conn,
        stats,
        "login",
        Method::POST,
        LOGIN_PATH,
        None,
        Some(body),
        &[("cookie", &cookies), ("sec-fetch-site", "same-origin")],
    )
    .await?;
    jar.take(&back);
    code_of(&back, "login", req)
}

/// The code of a 303 back to the client, whose `state` must be the request's.
fn code_of(resp: &Resp, step: &str, req: &Request) -> Result<String, Failure> {
    if resp.status != StatusCode::SEE_OTHER {
        let what = if resp.status == StatusCode::OK {
            " (a page, not the redirect)"
        } else {
            ""
        };
        return Err(Failure::status(step, resp, what));
    }
    let location = resp
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let query = location.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    if let Some(error) = param("error") {
        return Err(Failure::new(format!("{step} 303 error={error}"), location));
    }
    if param("state").as_deref() != Some(req.state.as_str()) {
        return Err(Failure::new(format!("{step} 303 wrong state"), location));
    }
    param("code").ok_or_else(|| Failure::new(format!("{step} 303 without code"), location))
}

/// The client redeems the code (RFC 6749 §4.1.3, with the PKCE verifier): access, refresh and
/// ID tokens.
async fn redeem(
    ctx: &Ctx,
    conn: &mut Conn,
    stats: &mut Stats,
    code: &str,
    req: &Request,
) -> Result<(), Failure> {
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        urlencode(code),
        urlencode(&ctx.redirect_uri),
        req.verifier
    );
    let resp = request(
        conn,
        stats,
        "token",
        Method::POST,
        "/oauth/token",
        Some(&ctx.web),
        Some(form),
        &[],
    )
    .await?;
    if resp.status != StatusCode::OK {
        return Err(Failure::status("token", &resp, ""));
    }
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    for field in ["access_token", "refresh_token", "id_token"] {
        if !body.get(field).is_some_and(Value::is_string) {
            return Err(Failure::status(
                "token",
                &resp,
                &format!(" without {field}"),
            ));
        }
    }
    Ok(())
}

/// `authcode_flow`: a fresh browser signs in, the client redeems the code.
async fn fresh_browser(ctx: &Ctx, conn: &mut Conn, stats: &mut Stats) -> Result<(), Failure> {
    let req = Request::new(ctx);
    let mut jar = Jar::default();
    let code = sign_in(ctx, conn, stats, &mut jar, &req).await?;
    redeem(ctx, conn, stats, &code, &req).await
}

/// `code_exchange`: the signed-in browser is sent straight back with a code (no page, no
/// password), the client redeems it.
async fn signed_in_browser(
    ctx: &Ctx,
    conn: &mut Conn,
    stats: &mut Stats,
    jar: &Jar,
) -> Result<(), Failure> {
    let req = Request::new(ctx);
    let cookies = jar.header();
    let back = request(
        conn,
        stats,
        "authorize",
        Method::GET,
        &req.path(ctx),
        None,
        None,
        &[("cookie", &cookies)],
    )
    .await?;
    let code = code_of(&back, "authorize", &req)?;
    redeem(ctx, conn, stats, &code, &req).await
}

/// `code_exchange`'s untimed set-up: sign in once and keep the session cookie. The code is not
/// redeemed (its audit rows would count against the scenario); it expires unused. A full hashing
/// queue (503) is retried within the bound.
async fn setup(ctx: &Ctx, conn: &mut Conn) -> Result<Jar, String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let mut untimed = Stats::default();
        let mut jar = Jar::default();
        let req = Request::new(ctx);
        match sign_in(ctx, conn, &mut untimed, &mut jar, &req).await {
            Ok(_) => return Ok(jar),
            Err(f) if Instant::now() >= deadline => return Err(format!("{}: {}", f.key, f.detail)),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn worker(ctx: Arc<Ctx>, barrier: Arc<Barrier>) -> Stats {
    let mut stats = Stats::default();
    let mut conn = Conn::new(ctx.addr);
    let ready = match ctx.scenario {
        Scenario::CodeExchange => tokio::time::timeout(SETUP_TIMEOUT, setup(&ctx, &mut conn))
            .await
            .unwrap_or_else(|_| Err("setup timed out".into())),
        _ => conn.connect().await.map(|()| Jar::default()),
    };
    let session = match ready {
        Ok(jar) => Some(jar),
        Err(e) => {
            stats.setup_failures += 1;
            stats.error(format!("setup: {e}"));
            None
        }
    };
    barrier.wait().await;
    let deadline = Instant::now() + ctx.duration;
    let Some(session) = session else {
        stats.connects = conn.connects;
        return stats;
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let result = match ctx.scenario {
            Scenario::CodeExchange => {
                signed_in_browser(&ctx, &mut conn, &mut stats, &session).await
            }
            _ => fresh_browser(&ctx, &mut conn, &mut stats).await,
        };
        let finished = Instant::now();
        let transport = result
            .as_ref()
            .is_err_and(|f| f.key.ends_with("transport error") || f.key.ends_with("timeout"));
        if !transport {
            let us = u64::try_from((finished - started).as_micros()).unwrap_or(u64::MAX);
            stats.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            stats.max_us = stats.max_us.max(us);
        }
        match result {
            Ok(()) => {
                // The rate counts completed exchanges only.
                if finished <= deadline {
                    stats.in_window += 1;
                }
                *stats.status.entry("200".into()).or_default() += 1;
            }
            Err(f) => {
                *stats.status.entry(f.key.clone()).or_default() += 1;
                stats.error(format!("{}: {}", f.key, f.detail));
                if transport {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    stats.connects = conn.connects;
    stats
}

/// The fields of the form posting to a URL ending in `action`: its hidden inputs, unescaped.
/// A string search over the page Tessera renders, not an HTML parser.
fn form_fields(html: &str, action: &str) -> Option<Vec<(String, String)>> {
    let marker = format!("{action}\">");
    let mut rest = html;
    loop {
        let start = rest.find("<form ")?;
        rest = &rest[start..];
        let end = rest.find("</form>")?;
        let (form, after) = rest.split_at(end);
        let head_end = form.find('>')? + 1;
        if form[..head_end].ends_with(&marker) {
            return Some(hidden_inputs(&form[head_end..]));
        }
        rest = after;
    }
}

fn hidden_inputs(mut form: &str) -> Vec<(String, String)> {
    const INPUT: &str = "<input type=\"hidden\" name=\"";
    const VALUE: &str = "\" value=\"";
    let mut fields = Vec::new();
    while let Some(i) = form.find(INPUT) {
        form = &form[i + INPUT.len()..];
        let Some((name, after)) = form.split_once(VALUE) else {
            break;
        };
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        fields.push((html_unescape(name), html_unescape(value)));
        form = after;
    }
    fields
}

/// Undoes the HTML escaping of a template engine (named and numeric character references).
fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| u8::try_from(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?).ok())
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<p>x</p><form method="post" action="/oauth/logout/confirm"><input type="hidden" name="a" value="b"></form>
<form method="post" action="http://127.0.0.1:1/oauth/authorize/login">
<input type="hidden" name="redirect_uri" value="https://bench.example/cb?x=1&amp;y=&#34;2&#34;">
<input type="hidden" name="state" value="st&#x27;1">
<input type="hidden" name="csrf_token" value="abc">
<label for="username">Username</label>
<input id="username" name="username" type="text" value="">
</form>"#;

    #[test]
    fn reads_the_hidden_fields_of_the_right_form() {
        let fields = form_fields(PAGE, LOGIN_PATH).expect("form");
        assert_eq!(
            fields,
            vec![
                (
                    "redirect_uri".to_owned(),
                    "https://bench.example/cb?x=1&y=\"2\"".to_owned()
                ),
                ("state".to_owned(), "st'1".to_owned()),
                ("csrf_token".to_owned(), "abc".to_owned()),
            ]
        );
        assert!(form_fields(PAGE, "/oauth/authorize/consent").is_none());
    }

    #[test]
    fn unescapes_and_decodes() {
        assert_eq!(html_unescape("a&amp;b&#47;c&#x2F;d&bogus"), "a&b/c/d&bogus");
        assert_eq!(percent_decode("http%3A%2F%2Fa%2"), "http://a%2");
    }
}
