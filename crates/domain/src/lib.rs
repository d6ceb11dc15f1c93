//! Crescendo's domain types, free of I/O.
//!
//! - [`Id`]: 64-bit time-ordered IDs for users and articles that carry a logical shard
//!   number, and [`CommentId`]: 53-bit time-ordered IDs that stay exact in JavaScript.
//! - [`IdGen`] makes both without a central counter per request.
//! - [`Username`], [`Email`], [`Password`], [`Tag`], [`Slug`]: `parse`d newtypes whose
//!   errors name what is wrong, so the API can report field errors.
//! - [`Redacted`]: a value (a key) that `Debug` does not show.
//! - [`stable_hash`]: the hash that places cache keys and logical shards, fixed in code.
//!
//! This crate must not depend on storage, HTTP or async runtimes.

mod hash;
mod id;
mod redacted;
mod slug;
mod text;

pub use hash::stable_hash;
pub use id::{CommentId, Id, IdGen, LogicalShard, SHARD_COUNT};
pub use redacted::Redacted;
pub use slug::{Slug, slugify};
pub use text::{Email, FieldError, Password, Tag, Text, Username};
