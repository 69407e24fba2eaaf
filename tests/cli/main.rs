//! The `tessera` binary run as a process, against SQLite and Postgres.

#[path = "../common/mod.rs"]
mod common;
