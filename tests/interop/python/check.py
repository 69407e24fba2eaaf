"""Interop checks of a live Tessera with Python client libraries: authlib, joserfc, PyJWT,
requests.

Run by tests/interop/run, which starts the server, seeds it and exports:
  INTEROP_ISSUER, INTEROP_BACKEND, INTEROP_ALICE_ID, INTEROP_ALICE_PASSWORD,
  INTEROP_BOB_PASSWORD, INTEROP_GW_SECRET, INTEROP_GW2_SECRET, INTEROP_SVC_SECRET, INTEROP_RS_SECRET,
  INTEROP_WEBAPP_SECRET.
Prints one `PASS name` or `FAIL name: why` line per check; exits 1 if any check failed.
"""

import base64
import hashlib
import os
import sys
import time
import traceback
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import authlib
import joserfc
import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc import discovery, rpinitiated
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ISSUER = os.environ["INTEROP_ISSUER"]
ALICE_ID = os.environ["INTEROP_ALICE_ID"]
ALICE_PW = os.environ["INTEROP_ALICE_PASSWORD"]
BOB_PW = os.environ["INTEROP_BOB_PASSWORD"]
GW = ("gw", os.environ["INTEROP_GW_SECRET"])
GW2 = ("gw2", os.environ["INTEROP_GW2_SECRET"])
SVC = ("svc", os.environ["INTEROP_SVC_SECRET"])
RS = ("rs", os.environ["INTEROP_RS_SECRET"])
WEBAPP = ("webapp", os.environ["INTEROP_WEBAPP_SECRET"])
AUDIENCE = "api://orders"
TIMEOUT = 10

results = {"passed": 0, "failed": 0}
# Filled by the metadata check; the fallbacks keep later checks meaningful if it failed.
META = {
    "token_endpoint": f"{ISSUER}/oauth/token",
    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
    "revocation_endpoint": f"{ISSUER}/oauth/revoke",
    "introspection_endpoint": f"{ISSUER}/oauth/introspect",
    "authorization_endpoint": f"{ISSUER}/oauth/authorize",
    "userinfo_endpoint": f"{ISSUER}/userinfo",
    "end_session_endpoint": f"{ISSUER}/oauth/logout",
}


class CheckFailed(AssertionError):
    pass


def expect(cond, why):
    if not cond:
        raise CheckFailed(why)


def eq(got, want, what):
    if got != want:
        raise CheckFailed(f"{what}: expected {want!r}, got {got!r}")


def check(name):
    def wrap(fn):
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported, none is fatal
            results["failed"] += 1
            detail = str(err) if isinstance(err, CheckFailed) else repr(err)
            print(f"FAIL {name}: {detail}", flush=True)
            if not isinstance(err, CheckFailed):
                traceback.print_exc(file=sys.stdout)
        else:
            results["passed"] += 1
            print(f"PASS {name}", flush=True)
        return fn

    return wrap


def session(client, method="client_secret_basic", scope="read write"):
    """An authlib session that records the token requests it sends."""
    s = OAuth2Session(
        client_id=client[0],
        client_secret=client[1],
        token_endpoint_auth_method=method,
        scope=scope,
        token_endpoint=META["token_endpoint"],
    )
    s.sent = []
    s.hooks["response"].append(lambda resp, *a, **k: s.sent.append(resp.request))
    return s


def body_text(req):
    body = req.body or ""
    return body.decode() if isinstance(body, bytes) else body


def login(s, username="alice", password=None):
    return s.fetch_token(
        META["token_endpoint"],
        grant_type="password",
        username=username,
        password=ALICE_PW if password is None else password,
    )


def oauth_error(fn):
    """Runs fn, which must raise authlib's OAuthError; returns its error code."""
    try:
        fn()
    except OAuthError as err:
        return err.error
    raise CheckFailed("expected an OAuth error response, the call succeeded")


jwk_client = None


def verify(token, audience=AUDIENCE):
    """PyJWT: key from the live JWKS by kid, signature, iss, aud, exp/nbf/iat, typ."""
    header = jwt.get_unverified_header(token)
    eq(header.get("typ"), "at+jwt", "JWT header typ")
    eq(header.get("alg"), "ES256", "JWT header alg")
    expect(header.get("kid"), "JWT header has no kid")
    key = jwk_client.get_signing_key_from_jwt(token)
    eq(key.key_id, header["kid"], "PyJWKClient key id")
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )


def post(endpoint, client, data, how="basic"):
    if how == "basic":
        return requests.post(endpoint, data=data, auth=client, timeout=TIMEOUT)
    if how == "post":
        body = dict(data, client_id=client[0], client_secret=client[1])
        return requests.post(endpoint, data=body, timeout=TIMEOUT)
    return requests.post(endpoint, data=data, timeout=TIMEOUT)


def introspect(token, client=RS):
    resp = post(META["introspection_endpoint"], client, {"token": token})
    eq(resp.status_code, 200, f"introspection status ({resp.text})")
    expect(
        resp.headers.get("Content-Type", "").startswith("application/json"),
        f"introspection Content-Type {resp.headers.get('Content-Type')!r}",
    )
    return resp.json()


def revoke(token, client=GW, hint=None, how="basic"):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    resp = post(META["revocation_endpoint"], client, data, how)
    eq(resp.status_code, 200, f"revocation status ({resp.text})")
    return resp


# --- checks --------------------------------------------------------------------------------


@check("rfc8414 metadata: fields and endpoints")
def _():
    resp = requests.get(f"{ISSUER}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    eq(resp.status_code, 200, "metadata status")
    doc = resp.json()
    eq(doc.get("issuer"), ISSUER, "issuer")
    for field in ("token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint"):
        expect(str(doc.get(field, "")).startswith(ISSUER + "/"), f"{field} = {doc.get(field)!r}")
        META[field] = doc[field]
    for grant in ("password", "refresh_token", "client_credentials"):
        expect(grant in doc.get("grant_types_supported", []), f"grant_types_supported lacks {grant}")
    for method in ("client_secret_basic", "client_secret_post"):
        expect(
            method in doc.get("token_endpoint_auth_methods_supported", []),
            f"token_endpoint_auth_methods_supported lacks {method}",
        )


@check("rfc8414 metadata: authlib AuthorizationServerMetadata.validate")
def _():
    doc = requests.get(f"{ISSUER}/.well-known/oauth-authorization-server", timeout=TIMEOUT).json()
    # authlib insists on https; the suite runs on plain loopback HTTP.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    metadata = AuthorizationServerMetadata(doc)
    errors = {}
    for key in metadata.REGISTRY_KEYS:
        try:
            getattr(metadata, f"validate_{key}")()
        except ValueError as err:
            errors[key] = str(err)
    expect(not errors, f"authlib metadata validation errors: {errors}")


@check("pyjwt PyJWKClient: live JWKS holds ES256 keys with kid")
def _():
    global jwk_client
    resp = requests.get(META["jwks_uri"], timeout=TIMEOUT)
    eq(resp.status_code, 200, "JWKS status")
    expect("max-age=" in resp.headers.get("Cache-Control", ""), "JWKS has no Cache-Control max-age")
    for raw in resp.json().get("keys", []):
        expect("d" not in raw, f"JWK {raw.get('kid')} publishes its private member d")
    jwk_client = jwt.PyJWKClient(META["jwks_uri"], cache_keys=True, timeout=TIMEOUT)
    keys = jwk_client.get_signing_keys()
    expect(keys, "no signing keys in the JWKS")
    for key in keys:
        expect(key.key_id, "a JWK without kid")
        eq(key.algorithm_name, "ES256", f"algorithm of {key.key_id}")


state = {}


@check("authlib OAuth2Session: password grant with client_secret_basic")
def _():
    s = session(GW)
    token = login(s)
    req = s.sent[-1]
    expect(req.headers.get("Authorization", "").startswith("Basic "), "authlib did not send Basic auth")
    expect("client_secret" not in body_text(req), "secret was also sent in the body")
    eq(token["token_type"].lower(), "bearer", "token_type")
    expect(isinstance(token.get("expires_in"), int) and token["expires_in"] > 0, f"expires_in {token.get('expires_in')!r}")
    eq(sorted(token.get("scope", "").split()), ["read", "write"], "granted scope")
    expect(token.get("refresh_token", "").startswith("tsr_"), "refresh token lacks the tsr_ prefix")
    expect(not token.is_expired(), "authlib considers the fresh token expired")
    state["s"] = s
    state["login"] = dict(token)


@check("pyjwt: password-grant access token verifies (RFC 9068 header and claims)")
def _():
    token = state["login"]
    claims = verify(token["access_token"])
    eq(claims["iss"], ISSUER, "iss")
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    expect(AUDIENCE in aud, f"aud {claims['aud']!r} lacks {AUDIENCE}")
    eq(claims["sub"], ALICE_ID, "sub (alice's user id)")
    uuid.UUID(claims["sub"])
    eq(claims["client_id"], "gw", "client_id")
    eq(sorted(claims["scope"].split()), ["read", "write"], "scope")
    eq(claims.get("roles"), ["admin"], "roles")
    eq(claims.get("preferred_username"), "alice", "preferred_username")
    eq(claims["exp"] - claims["iat"], token["expires_in"], "exp - iat vs expires_in")
    now = time.time()
    expect(claims["iat"] <= now + 5 and claims["nbf"] <= now + 5, "iat/nbf in the future")
    expect(isinstance(claims["jti"], str) and len(claims["jti"]) >= 16, f"jti {claims['jti']!r}")


@check("pyjwt: wrong audience, wrong issuer and tampered signature are rejected")
def _():
    access = state["login"]["access_token"]
    key = jwk_client.get_signing_key_from_jwt(access).key
    for kwargs, err in (
        ({"audience": "api://other", "issuer": ISSUER}, jwt.InvalidAudienceError),
        ({"audience": AUDIENCE, "issuer": "http://evil.example"}, jwt.InvalidIssuerError),
    ):
        try:
            jwt.decode(access, key, algorithms=["ES256"], **kwargs)
        except err:
            pass
        else:
            raise CheckFailed(f"decode with {kwargs} did not raise {err.__name__}")
    head, body, sig = access.split(".")
    forged_body = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(body).replace(b'"alice"', b'"mallo"')
    ).decode()
    try:
        jwt.decode(f"{head}.{forged_body}.{sig}", key, algorithms=["ES256"], audience=AUDIENCE)
    except jwt.InvalidSignatureError:
        pass
    else:
        raise CheckFailed("a token with an altered payload verified")


@check("authlib OAuth2Session.refresh_token: rotation, new token verifies")
def _():
    s = state["s"]
    first = state["login"]
    new = s.refresh_token(META["token_endpoint"])
    req = s.sent[-1]
    expect(req.headers.get("Authorization", "").startswith("Basic "), "refresh was not sent with Basic auth")
    expect(new["access_token"] != first["access_token"], "same access token after refresh")
    expect(new.get("refresh_token", "").startswith("tsr_"), "no new refresh token")
    expect(new["refresh_token"] != first["refresh_token"], "refresh token was not rotated")
    eq(s.token["refresh_token"], new["refresh_token"], "authlib session keeps the rotated refresh token")
    claims = verify(new["access_token"])
    eq(claims["sub"], ALICE_ID, "sub after refresh")
    eq(claims.get("roles"), ["admin"], "roles after refresh")
    eq(sorted(claims["scope"].split()), ["read", "write"], "scope after refresh")
    state["refreshed"] = dict(new)


@check("requests: introspection of a live access token (RFC 7662)")
def _():
    token = state["refreshed"]["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    info = introspect(token)
    eq(info.get("active"), True, "active")
    eq(info.get("client_id"), "gw", "client_id")
    eq(info.get("username"), "alice", "username")
    eq(sorted(info.get("scope", "").split()), ["read", "write"], "scope")
    eq(info.get("sub"), ALICE_ID, "sub")
    eq(info.get("exp"), claims["exp"], "exp")
    eq(info.get("iss"), ISSUER, "iss")
    eq(info.get("jti"), claims["jti"], "jti")
    expect(str(info.get("token_type", "")).lower() == "bearer", f"token_type {info.get('token_type')!r}")
    aud = info.get("aud")
    expect(aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud), f"aud {aud!r}")


@check("requests: introspection of a live refresh token, client_secret_post")
def _():
    rt = state["refreshed"]["refresh_token"]
    resp = post(META["introspection_endpoint"], RS, {"token": rt, "token_type_hint": "refresh_token"}, how="post")
    eq(resp.status_code, 200, f"status ({resp.text})")
    info = resp.json()
    eq(info.get("active"), True, "active")
    eq(info.get("client_id"), "gw", "client_id")
    eq(info.get("username"), "alice", "username")
    eq(info.get("sub"), ALICE_ID, "sub")


@check("requests: introspection refused without credentials or permission")
def _():
    token = state["refreshed"]["access_token"]
    resp = post(META["introspection_endpoint"], None, {"token": token}, how="none")
    expect(resp.status_code in (400, 401), f"anonymous introspection got {resp.status_code}: {resp.text}")
    eq(resp.json().get("error"), "invalid_client", "anonymous introspection error")
    resp = post(META["introspection_endpoint"], SVC, {"token": token})
    expect(resp.status_code in (400, 401, 403), f"svc (no --introspect) got {resp.status_code}: {resp.text}")
    expect("active" not in resp.json(), "a client without permission got an introspection answer")
    resp = post(META["introspection_endpoint"], (RS[0], "wrong-secret"), {"token": token})
    eq(resp.status_code, 401, "wrong secret status")
    eq(resp.json().get("error"), "invalid_client", "wrong secret error")


@check("requests: revoking the refresh token makes authlib's refresh fail with invalid_grant")
def _():
    s = state["s"]
    rt = s.token["refresh_token"]
    resp = revoke(rt, hint="refresh_token")
    expect("no-store" in resp.headers.get("Cache-Control", ""), "revocation response lacks no-store")
    eq(introspect(rt).get("active"), False, "introspection of the revoked refresh token")
    eq(oauth_error(lambda: s.refresh_token(META["token_endpoint"])), "invalid_grant", "refresh after revocation")


@check("requests: revoking an access token turns introspection to active=false")
def _():
    # The refreshed access token of the session revoked above is already inactive (its family
    # was revoked, RFC 7009 §2.1): a fresh login's.
    eq(introspect(state["refreshed"]["access_token"]).get("active"), False,
       "an access token of a revoked refresh token's family")
    access = login(session(GW))["access_token"]
    eq(introspect(access).get("active"), True, "active before revocation")
    revoke(access, hint="access_token", how="post")
    info = introspect(access)
    eq(info, {"active": False}, "introspection after revocation")


@check("requests: revocation by another client, and of unknown tokens, is a no-op 200")
def _():
    s = session(GW)
    token = login(s)
    # svc is not the owner: RFC 7009 §2.1 says the server must not revoke it.
    revoke(token["refresh_token"], client=SVC)
    revoke(token["access_token"], client=SVC)
    eq(introspect(token["refresh_token"]).get("active"), True, "gw's refresh token after svc's attempt")
    eq(introspect(token["access_token"]).get("active"), True, "gw's access token after svc's attempt")
    revoke("tsr_not-a-real-token")
    revoke("not-a-token-at-all", hint="access_token")
    resp = post(META["revocation_endpoint"], (GW[0], "wrong-secret"), {"token": token["refresh_token"]})
    eq(resp.status_code, 401, "revocation with a wrong secret")
    eq(introspect(token["refresh_token"]).get("active"), True, "still active after the refused revocation")


@check("authlib: refresh-token reuse revokes the whole family (RFC 9700 §4.14.2)")
def _():
    s = session(GW)
    first = login(s)
    second = s.refresh_token(META["token_endpoint"])
    eq(
        oauth_error(lambda: s.refresh_token(META["token_endpoint"], refresh_token=first["refresh_token"])),
        "invalid_grant",
        "replayed refresh token",
    )
    eq(
        oauth_error(lambda: s.refresh_token(META["token_endpoint"], refresh_token=second["refresh_token"])),
        "invalid_grant",
        "the family's current refresh token after the replay",
    )


@check("authlib: refresh may not widen scope (RFC 6749 §6); another client's presentation ends the session")
def _():
    s = session(GW, scope="read")
    login(s)
    eq(
        oauth_error(lambda: s.refresh_token(META["token_endpoint"], scope="read write")),
        "invalid_scope",
        "refresh asking for more than was granted",
    )
    # The refused widening consumed nothing.
    new = s.refresh_token(META["token_endpoint"])
    eq(new.get("scope"), "read", "scope after refresh")
    eq(verify(new["access_token"])["client_id"], "gw", "client_id after refresh")
    other = session(GW2)
    eq(
        oauth_error(lambda: other.refresh_token(META["token_endpoint"], refresh_token=s.token["refresh_token"])),
        "invalid_grant",
        "gw2 presenting gw's refresh token",
    )
    # Taken for stolen (RFC 9700 §4.14.2): gw's session is revoked, its access token with it.
    eq(oauth_error(lambda: s.refresh_token(META["token_endpoint"])), "invalid_grant",
       "gw's refresh after gw2 presented it")
    eq(introspect(new["access_token"]).get("active"), False, "gw's access token after the theft")


@check("requests: token endpoint errors: unsupported_grant_type, invalid_request")
def _():
    url = META["token_endpoint"]
    cases = [
        ({"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://x/"}, "unauthorized_client"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"}, "unsupported_grant_type"),
        ({"username": "alice", "password": ALICE_PW}, "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unauthorized_client"),
    ]
    for data, code in cases:
        resp = requests.post(url, data=data, auth=GW, timeout=TIMEOUT)
        eq(resp.status_code, 400, f"status for {data}")
        eq(resp.json().get("error"), code, f"error for {data}")
        eq(resp.headers.get("Cache-Control"), "no-store", f"Cache-Control for {data}")


@check("authlib: client_secret_post password grant, narrowed scope")
def _():
    s = session(GW, method="client_secret_post", scope="read")
    token = login(s)
    req = s.sent[-1]
    expect("Authorization" not in req.headers, "client_secret_post sent an Authorization header")
    expect("client_secret=" in body_text(req), "no client_secret in the body")
    eq(token.get("scope"), "read", "granted scope")
    eq(verify(token["access_token"])["scope"], "read", "scope claim")


@check("authlib: wrong password and unknown user are invalid_grant; bad scope is invalid_scope")
def _():
    s = session(GW)
    eq(oauth_error(lambda: login(s, "bob", "not-bobs-password")), "invalid_grant", "wrong password")
    eq(oauth_error(lambda: login(s, "nobody-here", "whatever-pw-1")), "invalid_grant", "unknown user")
    s2 = session(GW, scope="admin")
    eq(oauth_error(lambda: login(s2, "bob", BOB_PW)), "invalid_scope", "scope the client may not ask for")
    token = login(session(GW), "bob", BOB_PW)
    claims = verify(token["access_token"])
    eq(claims.get("preferred_username"), "bob", "bob's preferred_username")
    eq(claims.get("roles"), [], "bob's roles")


@check("requests: wrong client secret is 401 invalid_client with WWW-Authenticate")
def _():
    resp = requests.post(
        META["token_endpoint"],
        data={"grant_type": "password", "username": "alice", "password": ALICE_PW},
        auth=(GW[0], "wrong-secret"),
        timeout=TIMEOUT,
    )
    eq(resp.status_code, 401, "status")
    eq(resp.json().get("error"), "invalid_client", "error")
    expect(resp.headers.get("WWW-Authenticate", "").lower().startswith("basic"), "no WWW-Authenticate: Basic")
    eq(resp.headers.get("Cache-Control"), "no-store", "Cache-Control")


@check("authlib: client_credentials grant, token verifies with PyJWT")
def _():
    s = OAuth2Session(client_id=SVC[0], client_secret=SVC[1], scope="jobs")
    token = s.fetch_token(META["token_endpoint"], grant_type="client_credentials")
    expect("refresh_token" not in token, "client_credentials returned a refresh token")
    claims = verify(token["access_token"], audience="tessera")
    eq(claims["sub"], "svc", "sub")
    eq(claims["client_id"], "svc", "client_id")
    eq(claims["scope"], "jobs", "scope")
    expect("preferred_username" not in claims, "client token has preferred_username")


# --- authorization code flow with PKCE and OpenID Connect ----------------------------------
# Authlib is the relying party; a requests.Session without JavaScript is the browser: it reads
# Tessera's HTML forms, posts them back with their hidden fields and CSRF token, and follows no
# redirect by itself, so every 303 to the client's callback is seen, never fetched.

# Registered as http://127.0.0.1/callback; any port on the loopback address matches (RFC 8252
# §7.3). Nothing listens there: the browser never goes.
CALLBACK = "http://127.0.0.1:47123/callback"
OIDC_SCOPE = "openid profile email"
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain loopback HTTP throughout


class Forms(HTMLParser):
    """Every <form> of a page: its action, method, inputs and named buttons."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._open = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = {"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                          "inputs": [], "buttons": []}
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and a.get("name"):
            self._open["inputs"].append((a["name"], a.get("value", ""), a.get("type", "text").lower()))
        elif self._open is not None and tag == "button" and a.get("name"):
            self._open["buttons"].append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


class Browser:
    """A browser without JavaScript: a cookie jar and HTML forms; no redirect is followed."""

    def __init__(self):
        self.http = requests.Session()
        self.seen = []  # the pages shown, in order: "login", "consent"

    def get(self, url):
        return self.http.get(url, allow_redirects=False, timeout=TIMEOUT)

    def form(self, resp, path):
        """The page's one form, which must post to `path`; its absolute action."""
        eq(resp.status_code, 200, f"status of the page before {path} ({resp.text[:300]!r})")
        expect(resp.headers.get("Content-Type", "").startswith("text/html"),
               f"page Content-Type {resp.headers.get('Content-Type')!r}")
        parser = Forms()
        parser.feed(resp.text)
        eq(len(parser.forms), 1, "forms on the page")
        form = parser.forms[0]
        eq(form["method"], "post", "form method")
        action = urljoin(resp.url, form["action"])
        eq(urlsplit(action).path, urlsplit(ISSUER).path + path, "form action")
        expect(action.startswith(ISSUER + "/"), f"form action {action!r} is not on the issuer")
        return dict(form, action=action)

    def submit(self, form, fill, drop=(), headers=None):
        """Posts the form's hidden inputs (less `drop`) and `fill`, whose names must be fields
        or buttons of the form."""
        inputs = {n for n, _, _ in form["inputs"]}
        buttons = {n for n, _ in form["buttons"]}
        for name, value in fill.items():
            if name in buttons:
                expect((name, value) in form["buttons"], f"the form has no {name}={value} button")
            else:
                expect(name in inputs, f"the form has no field {name!r}")
        data = [(n, v) for n, v, kind in form["inputs"] if kind == "hidden" and n not in drop]
        data += list(fill.items())
        return self.http.post(form["action"], data=data, allow_redirects=False, timeout=TIMEOUT,
                              headers=headers)

    def authorize(self, url, username="alice", password=None, decision="allow"):
        """From the authorization URL through sign-in and consent (whichever are shown) to the
        303 back to the client; returns that response."""
        resp = self.get(url)
        for _ in range(3):
            if resp.status_code == 303:
                return resp
            page = Forms()
            page.feed(resp.text if resp.status_code == 200 else "")
            action = page.forms[0]["action"] if page.forms else ""
            if action.endswith("/oauth/authorize/login"):
                self.seen.append("login")
                form = self.form(resp, "/oauth/authorize/login")
                resp = self.submit(form, {"username": username,
                                          "password": ALICE_PW if password is None else password})
            elif action.endswith("/oauth/authorize/consent"):
                self.seen.append("consent")
                resp = self.submit(self.form(resp, "/oauth/authorize/consent"), {"decision": decision})
            else:
                raise CheckFailed(f"expected a sign-in or consent page or a 303, got "
                                  f"{resp.status_code}: {resp.text[:300]!r}")
        raise CheckFailed("no redirect back to the client after three pages")


def page_headers(resp, what):
    """A sign-in or consent page: never cached, never framed (RFC 6749 §10.13, clickjacking)."""
    expect("no-store" in resp.headers.get("Cache-Control", ""), f"the {what} page lacks Cache-Control: no-store")
    csp = resp.headers.get("Content-Security-Policy", "")
    expect("frame-ancestors 'none'" in csp or resp.headers.get("X-Frame-Options", "").upper() == "DENY",
           f"the {what} page may be framed (CSP {csp!r}, X-Frame-Options {resp.headers.get('X-Frame-Options')!r})")


def callback_params(resp, redirect_uri=CALLBACK):
    """The 303 to the client's redirect URI: its query parameters, one value each."""
    eq(resp.status_code, 303, "status of the redirect back to the client")
    loc = resp.headers.get("Location", "")
    expect(loc.split("?")[0] == redirect_uri, f"Location {loc!r} is not {redirect_uri}")
    expect("no-store" in resp.headers.get("Cache-Control", ""), "the redirect lacks Cache-Control: no-store")
    query = parse_qs(urlsplit(loc).query, keep_blank_values=True)
    for name, values in query.items():
        eq(len(values), 1, f"occurrences of {name} in {loc}")
    return loc, {k: v[0] for k, v in query.items()}


def relying_party(client, scope=OIDC_SCOPE):
    """An authlib session for a client of the code flow (PKCE S256), recording what it sends.
    A public client (no secret) authenticates with `none`."""
    s = OAuth2Session(
        client_id=client[0],
        client_secret=client[1],
        token_endpoint_auth_method="client_secret_basic" if client[1] else "none",
        scope=scope,
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        token_endpoint=META["token_endpoint"],
    )
    s.sent = []
    s.hooks["response"].append(lambda resp, *a, **k: s.sent.append(resp.request))
    return s


def start(s, **extra):
    """authlib's authorization URL with a fresh verifier and nonce: (url, state, verifier, nonce)."""
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, st = s.create_authorization_url(META["authorization_endpoint"], code_verifier=verifier,
                                         nonce=nonce, **extra)
    return url, st, verifier, nonce


def code_flow(client, browser=None, scope=OIDC_SCOPE):
    """The whole flow up to the token response; returns a dict of what a check may look at."""
    s = relying_party(client, scope)
    url, st, verifier, nonce = start(s)
    browser = browser or Browser()
    loc, params = callback_params(browser.authorize(url))
    eq(params.get("state"), st, "state in the callback")
    eq(params.get("iss"), ISSUER, "iss in the callback (RFC 9207)")
    expect(params.get("code"), f"no code in the callback {loc!r}")
    token = s.fetch_token(META["token_endpoint"], authorization_response=loc, code_verifier=verifier)
    return {"s": s, "browser": browser, "loc": loc, "verifier": verifier, "nonce": nonce,
            "token": dict(token)}


def half_hash(value):
    """OIDC Core §3.1.3.6 for ES256: base64url of the left half of SHA-256, no padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()[:16]).rstrip(b"=").decode()


def id_token_claims(id_token, client_id, nonce, access_token, jwks=None):
    """joserfc: signature by kid against the live JWKS (ES256 only); authlib's CodeIDToken:
    iss, aud, exp, iat, nonce, azp, at_hash."""
    keys = KeySet.import_key_set(jwks or requests.get(META["jwks_uri"], timeout=TIMEOUT).json())
    decoded = jose_jwt.decode(id_token, keys, algorithms=["ES256"])
    eq(decoded.header.get("alg"), "ES256", "ID token alg")
    eq(decoded.header.get("typ"), "JWT", "ID token typ")
    expect(decoded.header.get("kid"), "ID token header has no kid")
    options = {"iss": {"essential": True, "value": ISSUER},
               "aud": {"essential": True, "value": client_id},
               "sub": {"essential": True}}
    params = {"client_id": client_id, "nonce": nonce, "access_token": access_token}
    claims = CodeIDToken(decoded.claims, decoded.header, options, params)
    claims.validate(leeway=5)
    return claims


@check("oidc discovery: /.well-known/openid-configuration, authlib OpenIDProviderMetadata.validate")
def _():
    resp = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=TIMEOUT)
    eq(resp.status_code, 200, "discovery status")
    doc = resp.json()
    eq(doc.get("issuer"), ISSUER, "issuer")
    for field in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                  "end_session_endpoint"):
        expect(str(doc.get(field, "")).startswith(ISSUER + "/"), f"{field} = {doc.get(field)!r}")
        META[field] = doc[field]
    eq(doc.get("code_challenge_methods_supported"), ["S256"], "code_challenge_methods_supported")
    eq(doc.get("response_types_supported"), ["code"], "response_types_supported")
    eq(doc.get("authorization_response_iss_parameter_supported"), True,
       "authorization_response_iss_parameter_supported")
    expect("ES256" in doc.get("id_token_signing_alg_values_supported", []),
           "id_token_signing_alg_values_supported lacks ES256")
    expect("authorization_code" in doc.get("grant_types_supported", []),
           "grant_types_supported lacks authorization_code")
    expect("none" in doc.get("token_endpoint_auth_methods_supported", []),
           "token_endpoint_auth_methods_supported lacks none (public clients)")
    for scope in ("openid", "profile", "email"):
        expect(scope in doc.get("scopes_supported", []), f"scopes_supported lacks {scope}")
    errors = {}
    for cls in (discovery.OpenIDProviderMetadata, rpinitiated.OpenIDProviderMetadata):
        metadata = cls(doc)
        for key in cls.REGISTRY_KEYS:
            try:
                getattr(metadata, f"validate_{key}")()
            except ValueError as err:
                errors[key] = str(err)
    # OIDC Discovery §3: "The algorithm RS256 MUST be included" (OIDC Core §15.1 makes RS256
    # mandatory to implement); Tessera signs ID tokens with ES256 only. A known deviation,
    # reported on every run rather than failed; every other validation error fails.
    alg = errors.pop("id_token_signing_alg_values_supported", None)
    if alg:
        print(
            "NOTE authlib rejects id_token_signing_alg_values_supported="
            f"{doc.get('id_token_signing_alg_values_supported')!r}: {alg}",
            flush=True,
        )
    expect(not errors, f"authlib OpenID provider metadata validation errors: {errors}")


@check("authlib + no-JS browser: webapp code flow with PKCE, sign-in and consent pages, state and iss")
def _():
    s = relying_party(WEBAPP)
    url, st, verifier, nonce = start(s)
    query = parse_qs(urlsplit(url).query)
    eq(query.get("code_challenge_method"), ["S256"], "authlib's code_challenge_method")
    eq(query.get("nonce"), [nonce], "nonce in the authorization URL")
    browser = Browser()
    page = browser.get(url)
    login_form = browser.form(page, "/oauth/authorize/login")
    page_headers(page, "sign-in")
    hidden = {n: v for n, v, kind in login_form["inputs"] if kind == "hidden"}
    csrf = browser.http.cookies.get("tessera_csrf")
    expect(csrf, "the sign-in page set no tessera_csrf cookie")
    eq(hidden.get("csrf_token"), csrf, "the form's csrf_token vs the tessera_csrf cookie")
    for name in ("client_id", "redirect_uri", "state", "nonce", "code_challenge", "scope"):
        eq(hidden.get(name), query[name][0], f"hidden {name} copying the request")
    consent = browser.submit(login_form, {"username": "alice", "password": ALICE_PW})
    expect(browser.http.cookies.get("tessera_session"), "signing in set no tessera_session cookie")
    consent_form = browser.form(consent, "/oauth/authorize/consent")
    page_headers(consent, "consent")
    expect(("decision", "allow") in consent_form["buttons"] and ("decision", "deny") in consent_form["buttons"],
           f"consent buttons {consent_form['buttons']!r}")
    for scope in OIDC_SCOPE.split():
        expect(f"<code>{scope}</code>" in consent.text, f"the consent page does not list {scope}")
    loc, params = callback_params(browser.submit(consent_form, {"decision": "allow"}))
    eq(params.get("state"), st, "state")
    eq(params.get("iss"), ISSUER, "iss (RFC 9207)")
    expect(params.get("code", "").startswith("tsa_"), f"code {params.get('code')!r}")
    expect("error" not in params, f"error in the callback: {loc}")
    state["webapp_pending"] = {"s": s, "browser": browser, "loc": loc, "verifier": verifier,
                               "nonce": nonce}


@check("authlib fetch_token: webapp code exchange (client_secret_basic, code_verifier)")
def _():
    flow = state.pop("webapp_pending")
    s = flow["s"]
    token = s.fetch_token(META["token_endpoint"], authorization_response=flow["loc"],
                          code_verifier=flow["verifier"])
    req = s.sent[-1]
    expect(req.headers.get("Authorization", "").startswith("Basic "), "authlib did not send Basic auth")
    body = parse_qs(body_text(req))
    eq(body.get("grant_type"), ["authorization_code"], "grant_type sent")
    eq(body.get("code_verifier"), [flow["verifier"]], "code_verifier sent")
    eq(body.get("redirect_uri"), [CALLBACK], "redirect_uri sent")
    eq(token["token_type"].lower(), "bearer", "token_type")
    eq(sorted(token.get("scope", "").split()), sorted(OIDC_SCOPE.split()), "granted scope")
    expect(token.get("refresh_token", "").startswith("tsr_"), "no tsr_ refresh token")
    expect(token.get("id_token"), "no id_token for the openid scope")
    claims = verify(token["access_token"], audience="tessera")
    eq(claims["sub"], ALICE_ID, "access token sub")
    eq(claims["client_id"], "webapp", "access token client_id")
    flow["token"] = dict(token)
    state["webapp"] = flow


@check("joserfc + authlib CodeIDToken: webapp ID token (JWKS, iss, aud, nonce, azp, at_hash)")
def _():
    flow = state["webapp"]
    token = flow["token"]
    claims = id_token_claims(token["id_token"], "webapp", flow["nonce"], token["access_token"])
    eq(claims["iss"], ISSUER, "iss")
    eq(claims["aud"], "webapp", "aud")
    eq(claims["sub"], ALICE_ID, "sub")
    eq(claims.get("azp"), "webapp", "azp")
    eq(claims.get("nonce"), flow["nonce"], "nonce")
    eq(claims.get("at_hash"), half_hash(token["access_token"]), "at_hash (left half of SHA-256)")
    eq(claims.get("amr"), ["pwd"], "amr")
    expect(isinstance(claims.get("sid"), str) and claims["sid"], f"sid {claims.get('sid')!r}")
    now = time.time()
    expect(isinstance(claims.get("auth_time"), int) and claims["auth_time"] <= claims["iat"] <= now + 5,
           f"auth_time {claims.get('auth_time')!r} / iat {claims['iat']!r}")
    expect(claims["exp"] > now, "the ID token is already expired")
    # The validation bites: another nonce, another audience, another access token are refused.
    jwks = requests.get(META["jwks_uri"], timeout=TIMEOUT).json()
    for client_id, nonce, access, what in (
        ("webapp", "another-nonce", token["access_token"], "a wrong nonce"),
        ("spa", flow["nonce"], token["access_token"], "a wrong audience"),
        ("webapp", flow["nonce"], token["access_token"] + "x", "another access token (at_hash)"),
    ):
        try:
            id_token_claims(token["id_token"], client_id, nonce, access, jwks)
        except JoseError:
            pass
        else:
            raise CheckFailed(f"the ID token validated with {what}")


@check("authlib session: userinfo for openid profile email (sub, email, email_verified, name)")
def _():
    flow = state["webapp"]
    resp = flow["s"].get(META["userinfo_endpoint"], timeout=TIMEOUT)
    eq(resp.status_code, 200, f"userinfo status ({resp.text})")
    expect(flow["s"].sent[-1].headers.get("Authorization", "").startswith("Bearer "),
           "authlib did not send the access token as Bearer")
    info = resp.json()
    eq(info.get("sub"), ALICE_ID, "sub (must equal the ID token's)")
    eq(info.get("email"), "alice@example.com", "email")
    eq(info.get("email_verified"), True, "email_verified")
    eq(info.get("name"), "Alice Example", "name")
    eq(info.get("preferred_username"), "alice", "preferred_username")
    resp = requests.get(META["userinfo_endpoint"], timeout=TIMEOUT)
    eq(resp.status_code, 401, "userinfo without a token")
    expect(resp.headers.get("WWW-Authenticate", "").startswith("Bearer"), "no WWW-Authenticate: Bearer")


@check("authlib OAuth2Session.refresh_token: webapp refresh after the code flow")
def _():
    flow = state["webapp"]
    s, first = flow["s"], flow["token"]
    new = s.refresh_token(META["token_endpoint"])
    expect(s.sent[-1].headers.get("Authorization", "").startswith("Basic "), "refresh not sent with Basic auth")
    expect(new["access_token"] != first["access_token"], "same access token after refresh")
    expect(new.get("refresh_token", "").startswith("tsr_"), "no new refresh token")
    expect(new["refresh_token"] != first["refresh_token"], "refresh token was not rotated")
    eq(s.token["refresh_token"], new["refresh_token"], "authlib session keeps the rotated refresh token")
    eq(sorted(new.get("scope", "").split()), sorted(OIDC_SCOPE.split()), "scope after refresh")
    if new.get("id_token"):  # OIDC Core §12.2: same iss, sub, aud, auth_time
        before = jose_jwt.decode(first["id_token"], KeySet.import_key_set(
            requests.get(META["jwks_uri"], timeout=TIMEOUT).json()), algorithms=["ES256"]).claims
        after = id_token_claims(new["id_token"], "webapp", None, new["access_token"])
        for claim in ("iss", "sub", "aud", "auth_time"):
            eq(after.get(claim), before.get(claim), f"refreshed ID token {claim}")
    resp = s.get(META["userinfo_endpoint"], timeout=TIMEOUT)
    eq(resp.status_code, 200, f"userinfo with the refreshed token ({resp.text})")
    eq(resp.json().get("sub"), ALICE_ID, "userinfo sub after refresh")


@check("authlib: public client spa, PKCE without a secret (token_endpoint_auth_method none)")
def _():
    flow = code_flow(("spa", None))
    s, token = flow["s"], flow["token"]
    req = s.sent[-1]
    expect("Authorization" not in req.headers, "a public client sent an Authorization header")
    body = parse_qs(body_text(req))
    eq(body.get("client_id"), ["spa"], "client_id in the body")
    expect("client_secret" not in body, "a public client sent client_secret")
    eq(body.get("code_verifier"), [flow["verifier"]], "code_verifier sent")
    claims = id_token_claims(token["id_token"], "spa", flow["nonce"], token["access_token"])
    eq(claims["sub"], ALICE_ID, "sub")
    eq(claims.get("azp"), "spa", "azp")
    eq(verify(token["access_token"], audience="tessera")["client_id"], "spa", "access token client_id")
    resp = s.get(META["userinfo_endpoint"], timeout=TIMEOUT)
    eq(resp.status_code, 200, f"userinfo status ({resp.text})")
    eq(resp.json().get("email"), "alice@example.com", "userinfo email")
    expect(token.get("refresh_token"), "no refresh token for spa (it may use refresh_token)")
    new = s.refresh_token(META["token_endpoint"])
    expect("Authorization" not in s.sent[-1].headers, "the public client's refresh sent Authorization")
    expect(new["refresh_token"] != token["refresh_token"], "spa's refresh token was not rotated")


@check("authlib fetch_token: a wrong or missing code_verifier is invalid_grant")
def _():
    s = relying_party(WEBAPP)
    url, st, verifier, _nonce = start(s)
    loc, params = callback_params(Browser().authorize(url))
    eq(params.get("state"), st, "state")
    eq(oauth_error(lambda: s.fetch_token(META["token_endpoint"], authorization_response=loc,
                                         code_verifier=generate_token(48))),
       "invalid_grant", "exchange with another code_verifier")
    eq(oauth_error(lambda: s.fetch_token(META["token_endpoint"], authorization_response=loc)),
       "invalid_grant", "exchange without a code_verifier")


@check("authlib fetch_token: a code used twice is invalid_grant and revokes what it issued")
def _():
    flow = code_flow(WEBAPP)
    s, token = flow["s"], flow["token"]
    eq(oauth_error(lambda: s.fetch_token(META["token_endpoint"], authorization_response=flow["loc"],
                                         code_verifier=flow["verifier"])),
       "invalid_grant", "second exchange of the same code")
    eq(oauth_error(lambda: s.refresh_token(META["token_endpoint"], refresh_token=token["refresh_token"])),
       "invalid_grant", "the first exchange's refresh token after the replay")
    resp = requests.get(META["userinfo_endpoint"], timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {token['access_token']}"})
    eq(resp.status_code, 401, "userinfo with the first exchange's access token after the replay")
    eq(introspect(token["access_token"]).get("active"), False,
       "introspection of the first exchange's access token after the replay")


@check("no-JS browser: an unregistered redirect_uri is a 400 HTML page, never a redirect")
def _():
    s = relying_party(WEBAPP)
    for who, browser in (("a new browser", Browser()), ("a signed-in browser", state["webapp"]["browser"])):
        url, _st, _v, _n = start(s, redirect_uri="https://evil.example/cb")
        resp = browser.get(url)
        eq(resp.status_code, 400, f"status for {who}")
        expect(resp.headers.get("Content-Type", "").startswith("text/html"),
               f"Content-Type {resp.headers.get('Content-Type')!r} for {who}")
        expect("Location" not in resp.headers, f"Location {resp.headers.get('Location')!r} for {who}")


@check("no-JS browser: no code_challenge, or code_challenge_method=plain, is error=invalid_request at the callback")
def _():
    s = relying_party(WEBAPP)
    browser = Browser()
    without, st1 = s.create_authorization_url(META["authorization_endpoint"], nonce=generate_token(20))
    expect("code_challenge" not in without, "authlib added a code_challenge without a verifier")
    verifier = generate_token(48)
    plain, st2 = s.create_authorization_url(META["authorization_endpoint"], nonce=generate_token(20),
                                            code_challenge=verifier, code_challenge_method="plain")
    for what, url, st in (("no code_challenge", without, st1), ("plain", plain, st2)):
        loc, params = callback_params(browser.get(url))
        eq(params.get("error"), "invalid_request", f"error for {what} ({loc})")
        eq(params.get("state"), st, f"state for {what}")
        eq(params.get("iss"), ISSUER, f"iss for {what}")
        expect("code" not in params, f"a code for {what}")


@check("no-JS browser: the sign-in form without its CSRF token (or cross-site) is 403")
def _():
    s = relying_party(WEBAPP)
    url, st, _v, _n = start(s)
    browser = Browser()
    form = browser.form(browser.get(url), "/oauth/authorize/login")
    creds = {"username": "alice", "password": ALICE_PW}
    for what, kwargs in (
        ("without csrf_token", {"drop": ("csrf_token",)}),
        ("with another csrf_token", {"drop": ("csrf_token",), "fill": {"csrf_token": "x" * 43}}),
        ("Sec-Fetch-Site: cross-site", {"headers": {"Sec-Fetch-Site": "cross-site"}}),
    ):
        fill = dict(creds, **kwargs.pop("fill", {}))
        resp = browser.submit(form, fill, **kwargs)
        eq(resp.status_code, 403, f"status {what}")
        expect(resp.headers.get("Content-Type", "").startswith("text/html"), f"Content-Type {what}")
        expect("Location" not in resp.headers, f"a redirect {what}")
        expect("tessera_session" not in resp.cookies, f"a session cookie {what}")
    # The same form with its token goes on: the 403s were the CSRF defence, not the form.
    resp = browser.submit(form, creds)
    if resp.status_code == 200:
        resp = browser.submit(browser.form(resp, "/oauth/authorize/consent"), {"decision": "allow"})
    _loc, params = callback_params(resp)
    eq(params.get("state"), st, "state after the form with its token")
    expect(params.get("code"), "no code after the form with its token")


print(
    f"python {sys.version.split()[0]}, authlib {authlib.__version__}, joserfc {joserfc.__version__}, "
    f"PyJWT {jwt.__version__}, requests {requests.__version__}",
    flush=True,
)
print(f"python checks: {results['passed']} passed, {results['failed']} failed", flush=True)
sys.exit(1 if results["failed"] else 0)
