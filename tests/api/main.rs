//! Black-box tests: the real server on a random port, real HTTP, a real database per test.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod health;
mod store_story;
mod token;
