//! What the test binaries share: a database per test ([`db`]), `tessera serve` and the CLI run
//! as processes ([`server`]), and typed HTTP requests with what to read from their answers
//! ([`http`]). Each binary includes this with `#[path = "../common/mod.rs"] mod common;` and
//! uses what it needs.
#![allow(dead_code)]

pub mod db;
pub mod http;
pub mod server;

pub use db::{Backend, TestDb};
