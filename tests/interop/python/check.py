"""Interop checks of a live Tessera with Python client libraries: authlib, PyJWT, requests.

Run by tests/interop/run, which starts the server, seeds it and exports:
  INTEROP_ISSUER, INTEROP_BACKEND, INTEROP_ALICE_ID, INTEROP_ALICE_PASSWORD,
  INTEROP_BOB_PASSWORD, INTEROP_GW_SECRET, INTEROP_GW2_SECRET, INTEROP_SVC_SECRET, INTEROP_RS_SECRET.
Prints one `PASS name` or `FAIL name: why` line per check; exits 1 if any check failed.
"""

import os
import sys
import time
import traceback
import uuid

import authlib
import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

ISSUER = os.environ["INTEROP_ISSUER"]
ALICE_ID = os.environ["INTEROP_ALICE_ID"]
ALICE_PW = os.environ["INTEROP_ALICE_PASSWORD"]
BOB_PW = os.environ["INTEROP_BOB_PASSWORD"]
GW = ("gw", os.environ["INTEROP_GW_SECRET"])
GW2 = ("gw2", os.environ["INTEROP_GW2_SECRET"])
SVC = ("svc", os.environ["INTEROP_SVC_SECRET"])
RS = ("rs", os.environ["INTEROP_RS_SECRET"])
AUDIENCE = "api://orders"
TIMEOUT = 10

results = {"passed": 0, "failed": 0}
# Filled by the metadata check; the fallbacks keep later checks meaningful if it failed.
META = {
    "token_endpoint": f"{ISSUER}/oauth/token",
    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
    "revocation_endpoint": f"{ISSUER}/oauth/revoke",
    "introspection_endpoint": f"{ISSUER}/oauth/introspect",
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
    # RFC 8414 §2 makes response_types_supported REQUIRED; Tessera has no authorization
    # endpoint and publishes []. authlib treats an empty array as missing. Reported, not failed.
    rt = errors.pop("response_types_supported", None)
    if rt:
        print(
            "NOTE authlib rejects response_types_supported="
            f"{doc.get('response_types_supported')!r}: {rt}",
            flush=True,
        )
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


print(
    f"python {sys.version.split()[0]}, authlib {authlib.__version__}, PyJWT {jwt.__version__}, "
    f"requests {requests.__version__}",
    flush=True,
)
print(f"python checks: {results['passed']} passed, {results['failed']} failed", flush=True)
sys.exit(1 if results["failed"] else 0)
