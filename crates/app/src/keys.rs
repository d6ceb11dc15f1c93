//! Cache keys, in one place so every writer invalidates exactly what readers fill.
//!
//! Shared entries (same for every viewer): `article:{id}`, `profile:{id}`, `uname:{name}`,
//! the list heads `head:all`, `head:tag:{tag}`, `head:author:{id}`, `tags:popular`,
//! `comments:{article id}`, `cred:{id}` (a keyed digest of the password hash, never the hash),
//! and on a store with timelines `celebrities`. Per-viewer entries, under the viewer's own
//! ID: `followees:{id}`, `favs:{id}`, and on a store with timelines `timeline:{id}`.

use crescendo_domain::Id;

/// `prefix` then the ID in decimal, without the formatting machinery: these two keys are
/// built dozens of times per list request.
fn with_id(prefix: &str, id: Id) -> String {
    let mut digits = [0u8; 20];
    let mut n = id.as_i64().unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(prefix.len() + 21);
    s.push_str(prefix);
    if id.as_i64() < 0 {
        s.push('-');
    }
    s.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
    s
}

/// An article's record.
pub fn article(id: Id) -> String {
    with_id("article:", id)
}
/// A user's credential stamp (see `Tokens::stamp`), checked on every authenticated request.
pub fn credentials(id: Id) -> String {
    with_id("cred:", id)
}
/// A user's public profile.
pub fn profile(id: Id) -> String {
    with_id("profile:", id)
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
/// The newest article IDs of a user's timeline (per viewer; a store with timelines).
pub fn timeline(user: Id) -> String {
    with_id("timeline:", user)
}
/// Every user above the celebrity threshold (a store with timelines).
pub fn celebrities() -> String {
    "celebrities".into()
}
/// What a user favourited (per viewer).
pub fn favorites(user: Id) -> String {
    format!("favs:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_match_their_formatted_form() {
        for v in [0i64, 7, 10, 123_456_789_012_345, i64::MAX, -42] {
            let id = Id::from_i64(v);
            assert_eq!(article(id), format!("article:{v}"));
            assert_eq!(profile(id), format!("profile:{v}"));
        }
    }
}
