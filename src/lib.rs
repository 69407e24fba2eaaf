//! Tessera: a small OAuth 2.0 authorization server.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod http;
pub mod keys;
pub mod maintenance;
pub mod oauth;
pub mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
