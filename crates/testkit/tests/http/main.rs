//! HTTP tests: every endpoint and every error class, and the web pages, against a real
//! server on port 0.

mod anonymous;
mod articles;
mod comments;
mod connections;
mod edge;
mod errors;
mod finish;
mod full_state;
mod given_up;
mod idempotency;
mod ops;
mod public;
mod settings;
mod shed;
mod signin;
mod uploads;
mod users;
mod web;
