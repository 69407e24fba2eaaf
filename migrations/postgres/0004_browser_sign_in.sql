-- Clients of redirect-based flows: the redirect URIs they may be sent back to (matched
-- exactly), where RP-initiated logout may send the user, and whether the user is asked for
-- consent (first-party clients are not). Space-separated lists, as grant_types and scopes.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN first_party BIGINT NOT NULL DEFAULT 0;

-- What OpenID Connect tells a client about a user (the email and profile scopes): optional,
-- set by `tessera user add/update --email --name`; an email is unverified until said so.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN display_name TEXT;
