//! Article slugs that carry the article's ID.
//!
//! A slug is `<title words>-<id in base 36>`, e.g. `how-to-train-your-dragon-3k2m9x0a1b`.
//! The suffix decides which article a slug names, so any node can route a slug to the
//! owning shard without a global lookup, and an old slug (from before a title change)
//! still finds its article.

use crate::Id;

/// A parsed slug: the article ID it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slug {
    id: Id,
}

impl Slug {
    /// The slug text for an article with this title and ID.
    pub fn format(title: &str, id: Id) -> String {
        let words = slugify(title);
        if words.is_empty() {
            id.to_base36()
        } else {
            format!("{words}-{}", id.to_base36())
        }
    }

    /// Reads the article ID from a slug's last `-`-separated part; `None` if there is none.
    pub fn parse(s: &str) -> Option<Self> {
        let suffix = s.rsplit('-').next()?;
        Id::parse_base36(suffix).map(|id| Self { id })
    }

    /// The article ID the slug names.
    pub fn id(self) -> Id {
        self.id
    }
}

/// Lower-case ASCII words of `title` joined by `-`, at most 60 bytes, cut on a word edge.
/// Letters outside ASCII are kept when alphanumeric, so non-Latin titles still read well.
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    let mut pending_dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            if out.len() + c.len_utf8() > 60 {
                break;
            }
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_read_well_and_end_with_the_id() {
        let id = Id::from_i64(123_456_789_012);
        let s = Slug::format("How to train  your Dragon!", id);
        assert_eq!(s, format!("how-to-train-your-dragon-{}", id.to_base36()));
        assert_eq!(Slug::parse(&s).map(Slug::id), Some(id));
    }

    #[test]
    fn an_old_title_prefix_still_finds_the_article() {
        let id = Id::from_i64(99);
        assert_eq!(
            Slug::parse(&format!("old-title-{}", id.to_base36())).map(Slug::id),
            Some(id)
        );
    }

    #[test]
    fn titles_without_letters_give_the_bare_id() {
        let id = Id::from_i64(42);
        assert_eq!(Slug::format("!!!", id), id.to_base36());
        assert_eq!(Slug::parse(&id.to_base36()).map(Slug::id), Some(id));
    }

    #[test]
    fn slugs_without_an_id_do_not_parse() {
        assert_eq!(Slug::parse("hello-"), None);
        assert_eq!(Slug::parse("hello-WORLD"), None);
        assert_eq!(Slug::parse(""), None);
    }

    proptest! {
        #[test]
        fn any_title_round_trips_its_id(title in ".{0,200}", v in 0i64..i64::MAX) {
            let id = Id::from_i64(v);
            let s = Slug::format(&title, id);
            prop_assert!(s.len() <= 60 + 1 + 13 + 4);
            prop_assert_eq!(Slug::parse(&s).map(Slug::id), Some(id));
        }
    }
}
