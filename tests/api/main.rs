//! Black-box tests: the real server on a random port, real HTTP, a real database per test.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod audit_log;
mod browser;
mod client_changes;
mod health;
mod hostile;
mod key_changes;
mod lifecycle;
mod oauth2_client;
mod openapi;
mod operations;
mod refresh;
mod revoked_sessions;
mod store_story;
mod token;
mod token_errors;
