//! The browser's side of signing in: `GET`/`POST /oauth/authorize`, the sign-in and consent
//! forms, RP-initiated logout, and `/userinfo`. The domain decides which page comes next; this
//! reads parameters and cookies, checks each form's CSRF token and where it came from, renders,
//! and sets the cookies.

mod cookies;
mod pages;
pub mod responses;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::authorize::{Outcome, Refusal, Step};
use crate::oauth::{Logout, Params};

use super::{AppState, form};
use cookies::Cookies;
use pages::{Chrome, ConsentPage, LoginPage, LogoutPage, MessagePage, respond};

/// Form fields of Tessera's own; everything else a form carries is the authorization request.
const OWN_FIELDS: [&str; 4] = ["csrf_token", "username", "password", "decision"];

/// What the pages of one deployment share.
pub struct Site {
    chrome: Chrome,
    cookies: Cookies,
}

impl Site {
    /// The pages of a deployment at `issuer`, showing `product` and the logo at `logo_url`
    /// (empty: none).
    pub fn new(product: &str, logo_url: &str, issuer: &str) -> Self {
        Self {
            chrome: Chrome::new(product, logo_url, issuer),
            cookies: Cookies::new(issuer),
        }
    }
}

/// The request's parameters without Tessera's own fields.
fn request_params(params: &Params) -> Params {
    Params::new(
        params
            .pairs()
            .iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect(),
    )
}

/// Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2)
///
/// `response_type=code` with PKCE (`code_challenge_method=S256`) for every client; `state`,
/// `nonce`, `prompt` (none, login, consent), `max_age`, `login_hint`. Shows the sign-in page,
/// the consent page, or sends the browser back to the client.
#[utoipa::path(get, path = "/oauth/authorize", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::BackToClient),
        (status = 400, response = responses::ErrorPage),
        (status = 503, response = responses::PageUnavailable),
    )
)]
pub async fn authorize_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = match form::parse(req.query_string().as_bytes()) {
        Ok(params) => params,
        Err(e) => {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &e.description(),
            );
        }
    };
    authorize(&req, &state, params).await
}

/// Authorization endpoint, form-posted (OIDC Core §3.1.2.1)
///
/// The same parameters as `GET /oauth/authorize`, as a form.
#[utoipa::path(post, path = "/oauth/authorize", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::BackToClient),
        (status = 400, response = responses::ErrorPage),
        (status = 503, response = responses::PageUnavailable),
    )
)]
pub async fn authorize_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match form::read(&req, payload, state.max_body_bytes).await {
        Ok(params) => authorize(&req, &state, params).await,
        Err(e) => message(
            &state,
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            &e.description(),
        ),
    }
}

async fn authorize(req: &HttpRequest, state: &AppState, params: Params) -> HttpResponse {
    let params = request_params(&params);
    let cookie = state.site.cookies.session(req);
    let step = state.oauth.authorize(&params, cookie.as_deref()).await;
    show(req, state, step.map(Outcome::from))
}

/// The sign-in form
///
/// Posted by Tessera's sign-in page: `username`, `password`, `csrf_token` and the
/// authorization request's parameters. A new login session (cookie) on success.
#[utoipa::path(post, path = "/oauth/authorize/login", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::BackToClient),
        (status = 400, response = responses::ErrorPage),
        (status = 503, response = responses::PageUnavailable),
        (status = 403, response = responses::FormRefused),
    )
)]
pub async fn login(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match read_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let outcome = state
        .oauth
        .sign_in(
            &form.request,
            form.fields.get("username").unwrap_or(""),
            form.fields.get("password").unwrap_or(""),
            form.session.as_deref(),
        )
        .await;
    show(&req, &state, outcome)
}

/// The consent form
///
/// Posted by Tessera's consent page: `decision` (`allow` or `deny`), `csrf_token` and the
/// authorization request's parameters. Deny sends `error=access_denied` back to the client.
#[utoipa::path(post, path = "/oauth/authorize/consent", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::BackToClient),
        (status = 400, response = responses::ErrorPage),
        (status = 503, response = responses::PageUnavailable),
        (status = 403, response = responses::FormRefused),
    )
)]
pub async fn consent(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match read_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let allow = match form.fields.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                "Choose allow or deny",
                "The form was sent without a decision.",
            );
        }
    };
    let step = state
        .oauth
        .decide_consent(&form.request, allow, form.session.as_deref())
        .await;
    show(&req, &state, step.map(Outcome::from))
}

/// End session (OpenID Connect RP-Initiated Logout 1.0)
///
/// With a valid `id_token_hint`, ends the login session it names at once; without one, asks the
/// user to confirm. Then on to `post_logout_redirect_uri` (registered for the client, with
/// `state`) or a signed-out page.
#[utoipa::path(method(get, post), path = "/oauth/logout", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::OnAfterLogout),
        (status = 400, response = responses::ErrorPage),
        (status = 503, response = responses::PageUnavailable),
    )
)]
pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let raw = if req.method() == actix_web::http::Method::POST {
        body.as_ref()
    } else {
        req.query_string().as_bytes()
    };
    let params = match form::parse(raw) {
        Ok(params) => params,
        Err(e) => {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-out link is not valid",
                &e.description(),
            );
        }
    };
    let cookie = state.site.cookies.session(&req);
    match state.oauth.logout(&params, cookie.as_deref()).await {
        Ok(Logout::Confirm) => {
            let (csrf, set) = state.site.cookies.csrf(&req);
            let hidden: Vec<(String, String)> = request_params(&params).pairs().to_vec();
            let page = LogoutPage {
                chrome: &state.site.chrome,
                hidden: &hidden,
                csrf: &csrf,
            };
            with_cookies(
                respond(
                    StatusCode::OK,
                    &state.site.chrome,
                    &page,
                    params.get("post_logout_redirect_uri"),
                ),
                set,
            )
        }
        Ok(Logout::Done(then)) => signed_out(&state, then),
        Err(refusal) => refused(&state, refusal),
    }
}

/// Confirmed sign-out
///
/// Posted by the confirmation page: ends this browser's login session.
#[utoipa::path(post, path = "/oauth/logout/confirm", tag = "browser",
    responses(
        (status = 200, response = responses::PageShown),
        (status = 303, response = responses::OnAfterLogout),
        (status = 400, response = responses::ErrorPage),
        (status = 403, response = responses::FormRefused),
        (status = 503, response = responses::PageUnavailable),
    )
)]
pub async fn logout_confirm(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match read_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    match state
        .oauth
        .confirm_logout(&form.request, form.session.as_deref())
        .await
    {
        Ok(Logout::Done(then)) => signed_out(&state, then),
        Ok(Logout::Confirm) => signed_out(&state, None),
        Err(refusal) => refused(&state, refusal),
    }
}

/// UserInfo (OIDC Core §5.3)
///
/// Claims about the user of a bearer access token granted `openid`: `sub` and
/// `preferred_username`, with `email` its `email` and `email_verified`, with `profile` its
/// `name`, when the user has them.
#[utoipa::path(method(get, post), path = "/userinfo", tag = "browser",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims.", body = Object, content_type = "application/json"),
        (status = 401, description = "No valid access token (`WWW-Authenticate: Bearer error=\"invalid_token\"`).",
            body = super::schemas::BearerErrorBody, content_type = "application/json",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 §3."))),
        (status = 403, description = "The token was not granted `openid` (`insufficient_scope`).",
            body = super::schemas::BearerErrorBody, content_type = "application/json",
            headers(("WWW-Authenticate" = String, description = "RFC 6750 §3."))),
        (status = 503, response = super::error_responses::Unavailable),
    )
)]
pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match state.oauth.userinfo(token).await {
        Ok(claims) => {
            let mut response = HttpResponse::Ok();
            pages::no_store(&mut response);
            response.json(claims)
        }
        Err(error) => super::error::bearer_error(&error),
    }
}

/// The pages' stylesheet
#[utoipa::path(get, path = "/assets/tessera.css", tag = "browser",
    responses((status = 200, description = "CSS.", content_type = "text/css")))]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .body(pages::STYLESHEET)
}

/// A form of Tessera's own pages, taken apart: its own fields, the authorization (or logout)
/// request it carries, and the browser's login-session cookie.
struct PostedForm {
    fields: Params,
    request: Params,
    session: Option<String>,
}

/// Reads a form of Tessera's own pages: same-origin, and carrying the browser's CSRF token.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PostedForm, HttpResponse> {
    let form = form::read(req, payload, state.max_body_bytes)
        .await
        .map_err(|e| {
            message(
                state,
                StatusCode::BAD_REQUEST,
                "This form is not valid",
                &e.description(),
            )
        })?;
    // Browsers say where a request came from; a form on another site is refused even before
    // its token is looked at.
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "same-origin" | "none"));
    if cross_site || !state.site.cookies.csrf_matches(req, form.get("csrf_token")) {
        metrics::counter!("tessera_authorize_total", "outcome" => "csrf_refused").increment(1);
        return Err(message(
            state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent from this sign-in page, or it is too old. Go back to the application and start again.",
        ));
    }
    Ok(PostedForm {
        request: request_params(&form),
        session: state.site.cookies.session(req),
        fields: form,
    })
}

/// Renders where the domain says the browser goes next.
fn show(req: &HttpRequest, state: &AppState, outcome: Result<Outcome, Refusal>) -> HttpResponse {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(refusal) => return refused(state, refusal),
    };
    let session_cookie = outcome
        .new_session
        .map(|s| state.site.cookies.set_session(s.secret, s.max_age));
    let chrome = &state.site.chrome;
    let mut response = match outcome.step {
        Step::Redirect(to) => see_other(&to),
        Step::Login {
            request,
            error,
            username,
        } => {
            let (csrf, set) = state.site.cookies.csrf(req);
            let hidden = request.base.params.pairs().to_vec();
            let page = LoginPage {
                chrome,
                client_name: request.base.client.display_name(),
                username: &username,
                error,
                hidden: &hidden,
                csrf: &csrf,
            };
            with_cookies(
                respond(
                    StatusCode::OK,
                    chrome,
                    &page,
                    Some(&request.base.redirect_uri),
                ),
                set,
            )
        }
        Step::Consent { request, user } => {
            let (csrf, set) = state.site.cookies.csrf(req);
            let hidden = request.base.params.pairs().to_vec();
            let page = ConsentPage {
                chrome,
                client_name: request.base.client.display_name(),
                username: &user.username,
                scopes: request
                    .scope
                    .iter()
                    .map(|s| (s.as_str(), pages::scope_meaning(s)))
                    .collect(),
                hidden: &hidden,
                csrf: &csrf,
            };
            with_cookies(
                respond(
                    StatusCode::OK,
                    chrome,
                    &page,
                    Some(&request.base.redirect_uri),
                ),
                set,
            )
        }
    };
    if let Some(cookie) = session_cookie {
        let _ = response.add_cookie(&cookie);
    }
    response
}

/// A refusal: shown, or sent back to the client.
fn refused(state: &AppState, refusal: Refusal) -> HttpResponse {
    match refusal {
        Refusal::Page(why) => {
            metrics::counter!("tessera_authorize_total", "outcome" => "refused").increment(1);
            message(
                state,
                StatusCode::BAD_REQUEST,
                "This request cannot be completed",
                &why,
            )
        }
        Refusal::Redirect {
            request,
            error,
            description,
        } => see_other(&state.oauth.refusal_redirect(&request, error, &description)),
        Refusal::Failed(error) => failed(state, &error),
    }
}

fn signed_out(state: &AppState, then: Option<String>) -> HttpResponse {
    let mut response = match then {
        Some(to) => see_other(&to),
        None => message(
            state,
            StatusCode::OK,
            "You are signed out",
            "You can close this window.",
        ),
    };
    let _ = response.add_cookie(&state.site.cookies.clear_session());
    response
}

fn message(state: &AppState, status: StatusCode, heading: &str, text: &str) -> HttpResponse {
    let chrome = &state.site.chrome;
    let page = MessagePage {
        chrome,
        heading,
        message: text,
        is_error: status.is_client_error() || status.is_server_error(),
    };
    respond(status, chrome, &page, None)
}

/// The server could not answer (database, overload, a fault): the status the one mapping
/// gives, as a page.
fn failed(state: &AppState, error: &crate::oauth::OAuthError) -> HttpResponse {
    let status = super::error::log_and_status(error);
    let mut response = message(
        state,
        status,
        "Please try again",
        "The sign-in service is busy or unavailable right now. Try again in a moment.",
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn see_other(to: &str) -> HttpResponse {
    let mut response = HttpResponse::SeeOther();
    pages::no_store(&mut response);
    response.insert_header((header::LOCATION, to)).finish()
}

fn with_cookies(
    mut response: HttpResponse,
    cookie: Option<actix_web::cookie::Cookie<'static>>,
) -> HttpResponse {
    if let Some(cookie) = cookie {
        let _ = response.add_cookie(&cookie);
    }
    response
}
