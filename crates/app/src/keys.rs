//! Cache keys, in one place so every writer invalidates exactly what readers fill.
//!
//! Shared entries (same for every viewer): `article:{id}`, `profile:{id}`, `uname:{name}`,
//! the list heads `head:all`, `head:tag:{tag}`, `head:author:{id}`, `tags:popular`,
//! `comments:{article id}`. Per-viewer entries, under the viewer's own ID: `followees:{id}`,
//! `favs:{id}`.

use crescendo_domain::Id;

/// An article's record.
pub fn article(id: Id) -> String {
    format!("article:{id}")
}
/// A user's public profile.
pub fn profile(id: Id) -> String {
    format!("profile:{id}")
}
/// The username directory entry (lower-cased, since lookups ignore case).
pub fn username(name: &str) -> String {
    format!("uname:{}", name.to_lowercase())
}
/// Newest article IDs of the global list.
pub fn head_all() -> String {
    "head:all".into()
}
/// Newest article IDs with a tag.
pub fn head_tag(tag: &str) -> String {
    format!("head:tag:{tag}")
}
/// Newest article IDs by an author.
pub fn head_author(id: Id) -> String {
    format!("head:author:{id}")
}
/// The popular tags.
pub fn popular_tags() -> String {
    "tags:popular".into()
}
/// An article's comments.
pub fn comments(article: Id) -> String {
    format!("comments:{article}")
}
/// Whom a user follows (per viewer).
pub fn followees(user: Id) -> String {
    format!("followees:{user}")
}
/// What a user favourited (per viewer).
pub fn favorites(user: Id) -> String {
    format!("favs:{user}")
}
