// Interop checks of a live Tessera with Node client libraries: jose and openid-client.
//
// Run by tests/interop/run, which starts the server, seeds it and exports INTEROP_ISSUER,
// INTEROP_ALICE_ID, INTEROP_ALICE_PASSWORD, INTEROP_GW_SECRET, INTEROP_SVC_SECRET,
// INTEROP_RS_SECRET, TESSERA_BIN and the TESSERA__* settings the server runs with (so
// `tessera key rotate` here acts on the same database).
// Prints one `PASS name` or `FAIL name: why` line per check; exits 1 if any check failed.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

import * as jose from 'jose';
import * as client from 'openid-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const ISSUER = env('INTEROP_ISSUER');
const ALICE_ID = env('INTEROP_ALICE_ID');
const ALICE_PW = env('INTEROP_ALICE_PASSWORD');
const GW = ['gw', env('INTEROP_GW_SECRET')];
const SVC = ['svc', env('INTEROP_SVC_SECRET')];
const RS = ['rs', env('INTEROP_RS_SECRET')];
const TESSERA_BIN = env('TESSERA_BIN');
const AUDIENCE = 'api://orders';
const seconds = (name, fallback) => {
  const m = /^(\d+)s$/.exec(process.env[name] ?? '');
  return (m ? Number(m[1]) : fallback) * 1000;
};
const RELOAD_MS = seconds('TESSERA__KEYS__RELOAD_INTERVAL', 1);

const results = { passed: 0, failed: 0 };

class CheckFailed extends Error {}
const expect = (cond, why) => {
  if (!cond) throw new CheckFailed(why);
};
const eq = (got, want, what) => {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new CheckFailed(`${what}: expected ${w}, got ${g}`);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function check(name, fn) {
  try {
    await fn();
    results.passed += 1;
    console.log(`PASS ${name}`);
  } catch (err) {
    results.failed += 1;
    const detail = err instanceof CheckFailed ? err.message : `${err?.name}: ${err?.message}`;
    console.log(`FAIL ${name}: ${detail}`);
    if (!(err instanceof CheckFailed)) console.log(err?.stack ?? err);
  }
}

/** The OAuth error code of a failed openid-client call. */
async function errorCode(promise) {
  try {
    await promise;
  } catch (err) {
    if (err instanceof client.ResponseBodyError) return err.error;
    if (err instanceof client.WWWAuthenticateChallengeError) {
      // 401 + WWW-Authenticate: the body is left unread; the error code is in it.
      const body = await err.response.json().catch(() => ({}));
      return body.error ?? `challenge ${err.cause?.[0]?.scheme}`;
    }
    throw err;
  }
  throw new CheckFailed('expected an OAuth error response, the call succeeded');
}

const header = (token) => jose.decodeProtectedHeader(token);

// --- discovery (RFC 8414) -------------------------------------------------------------------

const issuerUrl = new URL(ISSUER);
// Tessera speaks plain HTTP on loopback here; openid-client refuses non-https unless told.
const discoveryOptions = { algorithm: 'oauth2', execute: [client.allowInsecureRequests] };
const configs = {};

await check('openid-client: default discovery (OIDC) reads openid-configuration, the RFC 8414 document', async () => {
  // Tessera serves one metadata document at both well-known paths.
  const oidc = await client.discovery(issuerUrl, GW[0], undefined, client.ClientSecretBasic(GW[1]), {
    execute: [client.allowInsecureRequests],
  });
  eq(oidc.serverMetadata().issuer, ISSUER, 'issuer');
  const [a, b] = await Promise.all(
    ['openid-configuration', 'oauth-authorization-server'].map(async (name) =>
      (await fetch(`${ISSUER}/.well-known/${name}`)).json(),
    ),
  );
  eq(a, b, '/.well-known/openid-configuration vs /.well-known/oauth-authorization-server');
});

await check("openid-client: discovery(algorithm 'oauth2') reads RFC 8414 metadata", async () => {
  configs.gw = await client.discovery(issuerUrl, GW[0], undefined, client.ClientSecretBasic(GW[1]), discoveryOptions);
  configs.svc = await client.discovery(issuerUrl, SVC[0], undefined, client.ClientSecretPost(SVC[1]), discoveryOptions);
  configs.rs = await client.discovery(issuerUrl, RS[0], undefined, client.ClientSecretBasic(RS[1]), discoveryOptions);
  const meta = configs.gw.serverMetadata();
  eq(meta.issuer, ISSUER, 'issuer');
  eq(meta.token_endpoint, `${ISSUER}/oauth/token`, 'token_endpoint');
  eq(meta.jwks_uri, `${ISSUER}/.well-known/jwks.json`, 'jwks_uri');
  eq(meta.revocation_endpoint, `${ISSUER}/oauth/revoke`, 'revocation_endpoint');
  eq(meta.introspection_endpoint, `${ISSUER}/oauth/introspect`, 'introspection_endpoint');
  for (const grant of ['password', 'refresh_token', 'client_credentials']) {
    expect(meta.grant_types_supported?.includes(grant), `grant_types_supported lacks ${grant}`);
  }
});

const JWKS_URI = configs.gw?.serverMetadata().jwks_uri ?? `${ISSUER}/.well-known/jwks.json`;

// --- jose: verification of tokens from every grant -------------------------------------------

let jwksMaxAgeMs = 1000;
const countingFetch = (counter) => (url, options) => {
  counter.n += 1;
  return fetch(url, options);
};
const mainCounter = { n: 0 };

await check('jose createRemoteJWKSet: JWKS served with caching headers', async () => {
  const resp = await fetch(JWKS_URI);
  eq(resp.status, 200, 'status');
  const cc = resp.headers.get('cache-control') ?? '';
  const m = /max-age=(\d+)/.exec(cc);
  expect(m, `no max-age in Cache-Control ${JSON.stringify(cc)}`);
  jwksMaxAgeMs = Number(m[1]) * 1000;
  expect(resp.headers.get('etag'), 'no ETag on the JWKS');
  const jwks = await resp.json();
  expect(jwks.keys?.length >= 1, 'empty JWKS');
  for (const k of jwks.keys) {
    expect(k.kid && k.kty === 'EC' && k.crv === 'P-256', `unexpected JWK ${JSON.stringify(k)}`);
    expect(!('d' in k), `private member d published for ${k.kid}`);
  }
});

// A verifier that honours the server's Cache-Control: max-age, as a gateway would.
const remote = jose.createRemoteJWKSet(new URL(JWKS_URI), {
  cacheMaxAge: Math.max(jwksMaxAgeMs, 1),
  cooldownDuration: Math.max(jwksMaxAgeMs, 1),
  [jose.customFetch]: countingFetch(mainCounter),
});

async function verify(token, audience = AUDIENCE, jwks = remote) {
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    typ: 'at+jwt',
    issuer: ISSUER,
    audience,
    algorithms: ['ES256'],
    requiredClaims: ['exp', 'iat', 'nbf', 'jti', 'sub', 'client_id'],
  });
  expect(protectedHeader.kid, 'no kid in header');
  return { payload, protectedHeader };
}

const tokens = {};

await check('openid-client password grant (genericGrantRequest) + jose jwtVerify', async () => {
  const resp = await client.genericGrantRequest(configs.gw, 'password', {
    username: 'alice',
    password: ALICE_PW,
    scope: 'read write',
  });
  eq(resp.token_type.toLowerCase(), 'bearer', 'token_type');
  expect(resp.refresh_token?.startsWith('tsr_'), 'no tsr_ refresh token');
  expect(resp.expiresIn() > 0, 'expiresIn');
  const { payload } = await verify(resp.access_token);
  eq(payload.sub, ALICE_ID, 'sub');
  eq(payload.client_id, 'gw', 'client_id');
  eq(payload.scope.split(' ').sort(), ['read', 'write'], 'scope');
  eq(payload.roles, ['admin'], 'roles');
  eq(payload.preferred_username, 'alice', 'preferred_username');
  eq(payload.exp - payload.iat, resp.expires_in, 'exp - iat vs expires_in');
  tokens.password = resp;
});

await check('openid-client refreshTokenGrant (narrowed scope) + jose jwtVerify', async () => {
  const old = tokens.password;
  const resp = await client.refreshTokenGrant(configs.gw, old.refresh_token, { scope: 'read' });
  expect(resp.refresh_token && resp.refresh_token !== old.refresh_token, 'refresh token not rotated');
  expect(resp.access_token !== old.access_token, 'same access token');
  eq(resp.scope, 'read', 'granted scope');
  const { payload } = await verify(resp.access_token);
  eq(payload.sub, ALICE_ID, 'sub');
  eq(payload.scope, 'read', 'scope claim');
  eq(payload.roles, ['admin'], 'roles');
  // The family keeps its original scope: a later refresh may widen back to it (RFC 6749 §6).
  const again = await client.refreshTokenGrant(configs.gw, resp.refresh_token);
  eq(again.scope.split(' ').sort(), ['read', 'write'], 'scope of a refresh without a scope');
  tokens.refresh = again;
});

await check('openid-client clientCredentialsGrant (client_secret_post) + jose jwtVerify', async () => {
  const resp = await client.clientCredentialsGrant(configs.svc, { scope: 'jobs' });
  expect(!resp.refresh_token, 'client_credentials returned a refresh token');
  eq(resp.scope, 'jobs', 'granted scope');
  const { payload } = await verify(resp.access_token, 'tessera');
  eq(payload.sub, 'svc', 'sub');
  eq(payload.client_id, 'svc', 'client_id');
  eq(payload.scope, 'jobs', 'scope');
  expect(!('preferred_username' in payload), 'client token has preferred_username');
  tokens.cc = resp;
});

await check('jose jwtVerify rejects wrong typ, audience and issuer', async () => {
  const token = tokens.password.access_token;
  const cases = [
    [{ typ: 'JWT', issuer: ISSUER, audience: AUDIENCE }, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    [{ typ: 'at+jwt', issuer: ISSUER, audience: 'api://other' }, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    [{ typ: 'at+jwt', issuer: 'http://evil.example', audience: AUDIENCE }, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    [{ typ: 'at+jwt', issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'] }, 'ERR_JOSE_ALG_NOT_ALLOWED'],
  ];
  for (const [options, code] of cases) {
    let got = 'verified';
    try {
      await jose.jwtVerify(token, remote, options);
    } catch (err) {
      got = err.code;
    }
    eq(got, code, `jwtVerify with ${JSON.stringify(options)}`);
  }
});

await check('openid-client: invalid_scope, invalid_client and invalid_grant error codes', async () => {
  eq(await errorCode(client.clientCredentialsGrant(configs.svc, { scope: 'write' })), 'invalid_scope', 'svc asking for write');
  const bad = await client.discovery(issuerUrl, SVC[0], undefined, client.ClientSecretBasic('wrong'), discoveryOptions);
  eq(await errorCode(client.clientCredentialsGrant(bad)), 'invalid_client', 'wrong secret');
  eq(await errorCode(client.refreshTokenGrant(configs.gw, 'tsr_nope')), 'invalid_grant', 'unknown refresh token');
  eq(
    await errorCode(client.clientCredentialsGrant(configs.gw)),
    'unauthorized_client',
    'gw (not registered for client_credentials)',
  );
});

await check('openid-client tokenIntrospection: user and client tokens', async () => {
  const user = await client.tokenIntrospection(configs.rs, tokens.refresh.access_token);
  eq(user.active, true, 'active');
  eq(user.client_id, 'gw', 'client_id');
  eq(user.username, 'alice', 'username');
  eq(user.sub, ALICE_ID, 'sub');
  eq(user.scope.split(' ').sort(), ['read', 'write'], 'scope');
  const cc = await client.tokenIntrospection(configs.rs, tokens.cc.access_token);
  eq(cc.active, true, 'client token active');
  eq(cc.client_id, 'svc', 'client token client_id');
  eq(cc.sub, 'svc', 'client token sub');
  expect(!('username' in cc), 'client token introspected with a username');
  const garbage = await client.tokenIntrospection(configs.rs, 'eyJhbGciOiJub25lIn0.e30.');
  eq(garbage, { active: false }, 'a non-token');
});

await check('openid-client tokenRevocation: refresh token, then refreshTokenGrant is invalid_grant', async () => {
  const rt = tokens.refresh.refresh_token;
  eq((await client.tokenIntrospection(configs.rs, rt)).active, true, 'active before');
  await client.tokenRevocation(configs.gw, rt, { token_type_hint: 'refresh_token' });
  eq((await client.tokenIntrospection(configs.rs, rt)).active, false, 'active after');
  eq(await errorCode(client.refreshTokenGrant(configs.gw, rt)), 'invalid_grant', 'refresh after revocation');
});

await check('openid-client tokenRevocation: access token, then introspection is inactive', async () => {
  const at = tokens.refresh.access_token;
  await client.tokenRevocation(configs.gw, at, { token_type_hint: 'access_token' });
  eq(await client.tokenIntrospection(configs.rs, at), { active: false }, 'introspection after revocation');
  // A client-credentials token revoked by its own client (auth by client_secret_post).
  await client.tokenRevocation(configs.svc, tokens.cc.access_token);
  eq((await client.tokenIntrospection(configs.rs, tokens.cc.access_token)).active, false, 'svc token after revocation');
});

// --- key rotation seen from outside ----------------------------------------------------------

const execFileP = promisify(execFile);
const tessera = async (...args) =>
  (await execFileP(TESSERA_BIN, args, { env: process.env, timeout: 30_000 })).stdout;

async function svcToken() {
  return (await client.clientCredentialsGrant(configs.svc, { scope: 'jobs' })).access_token;
}

async function publishedKids() {
  const resp = await fetch(JWKS_URI, { cache: 'no-store' });
  return (await resp.json()).keys.map((k) => k.kid);
}

/** A jose verifier that never refreshes by itself: it shows what one cached copy holds. */
function cachedVerifier() {
  const counter = { n: 0 };
  const jwks = jose.createRemoteJWKSet(new URL(JWKS_URI), {
    cacheMaxAge: Infinity,
    cooldownDuration: 3_600_000,
    [jose.customFetch]: countingFetch(counter),
  });
  return { jwks, counter };
}

await check('key rotation: tokens signed before and after `tessera key rotate` both verify', async () => {
  const pinned = cachedVerifier(); // fetched before the rotation
  const before = await svcToken();
  const kidBefore = header(before).kid;
  await verify(before, 'tessera');
  await verify(before, 'tessera', pinned.jwks);
  eq(pinned.counter.n, 1, 'JWKS fetches of the pinned verifier');

  const t0 = Date.now();
  const out = await tessera('key', 'rotate');
  const m = /key (\S+) created: published now/.exec(out);
  expect(m, `unexpected output of tessera key rotate: ${JSON.stringify(out)}`);
  const kidNew = m[1];
  expect(kidNew !== kidBefore, 'rotate reused the active kid');
  const listed = JSON.parse(await tessera('key', 'list', '--json'));
  const entry = listed.find((k) => k.kid === kidNew);
  expect(entry, `tessera key list does not show ${kidNew}`);
  const activatesAt = Date.parse(entry.activates);
  expect(Number.isFinite(activatesAt), `unparsable activation time ${entry.activates}`);
  expect(activatesAt > t0, `new key activates (${entry.activates}) before the rotation began`);

  // The cached copy still verifies the old token without going back to the server.
  await verify(before, 'tessera', pinned.jwks);
  eq(pinned.counter.n, 1, 'JWKS fetches of the pinned verifier after rotation');

  // Published ahead: the new kid shows up in the JWKS (within a reload) before it signs.
  let seenAt = null;
  while (Date.now() < activatesAt + RELOAD_MS + 3000) {
    if ((await publishedKids()).includes(kidNew)) {
      seenAt = Date.now();
      break;
    }
    await sleep(50);
  }
  expect(seenAt !== null, `new kid ${kidNew} never appeared in the JWKS`);
  // A verifier that fetches the JWKS now, after publication...
  const primed = cachedVerifier();
  await verify(before, 'tessera', primed.jwks);
  const primedAt = Date.now();
  // ...and a token issued after that fetch: while it still carries the old kid, the new key was
  // not signing when the verifier took its copy.
  const early = await svcToken();
  const earlyKid = header(early).kid;
  const observedWindow = earlyKid === kidBefore;
  if (!observedWindow) {
    // Signing before activation would be a bug; being too slow to look is not.
    expect(primedAt >= activatesAt - 50, `a token issued ${activatesAt - primedAt} ms before activation carries the new kid`);
  }

  // Wait past publish_ahead for tokens signed by the new key.
  let after = earlyKid === kidNew ? early : null;
  while (!after && Date.now() < activatesAt + RELOAD_MS + 5000) {
    const t = await svcToken();
    if (header(t).kid === kidNew) after = t;
    else await sleep(100);
  }
  expect(after, `no token signed with ${kidNew} by ${RELOAD_MS + 5000} ms after its activation time`);
  const signingAt = Date.now();
  expect(signingAt >= activatesAt - 50, `the new key signed ${activatesAt - signingAt} ms before its activation time`);

  if (observedWindow) {
    // The copy taken between publication and activation verifies the new token by itself.
    await verify(after, 'tessera', primed.jwks);
    eq(primed.counter.n, 1, 'JWKS fetches of the verifier primed before activation');
  }
  // The max-age-honouring verifier refreshes and sees both keys: old tokens keep verifying.
  await verify(after, 'tessera');
  await verify(before, 'tessera');
  const kids = await publishedKids();
  expect(kids.includes(kidBefore) && kids.includes(kidNew), `JWKS after rotation: ${kids}`);
  eq((await client.tokenIntrospection(configs.rs, before)).active, true, 'introspection of the old-key token');
  eq((await client.tokenIntrospection(configs.rs, after)).active, true, 'introspection of the new-key token');
  // The pre-rotation cached copy cannot know the new key: the rotation really happened.
  let pinnedNew = 'verified';
  try {
    await verify(after, 'tessera', pinned.jwks);
  } catch (err) {
    pinnedNew = err.code;
  }
  eq(pinnedNew, 'ERR_JWKS_NO_MATCHING_KEY', 'pre-rotation cache on the new token');
  const rel = (t) => `${t - activatesAt >= 0 ? '+' : ''}${t - activatesAt} ms`;
  console.log(
    `NOTE rotation: relative to activation of ${kidNew}: rotate began ${rel(t0)}, in the JWKS ${rel(seenAt)}, ` +
      `verifier primed ${rel(primedAt)}, first new-kid token ${rel(signingAt)}; ` +
      (observedWindow ? 'primed copy verified the new token without a refetch' : 'publication window not observed'),
  );
  expect(observedWindow, 'never saw the new key published before it signed (machine too slow for publish_ahead?)');
});

const version = (name) => {
  try {
    const file = new URL(`./node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(readFileSync(file, 'utf8')).version;
  } catch {
    return '?';
  }
};
console.log(
  `node ${process.version}, jose ${version('jose')}, openid-client ${version('openid-client')}, ` +
    `oauth4webapi ${version('oauth4webapi')}`,
);
console.log(`node checks: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
