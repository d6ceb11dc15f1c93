//! What the templates show: plain values, formatted here, so templates hold no logic
//! beyond loops and conditions. Askama escapes every value; only [`markdown`]'s output,
//! already sanitised, is inserted as HTML.

use crescendo_app::{ArticleView, CommentView, ProfileView};

/// An article as a card in a list.
#[derive(Clone, Debug)]
pub struct Card {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<TagLink>,
    pub author: String,
    pub author_image: String,
    pub date: String,
    pub favorites: u32,
    pub favorited: bool,
    /// The cover image's URL, empty when none.
    pub cover: String,
}

impl From<&ArticleView> for Card {
    fn from(v: &ArticleView) -> Self {
        let a = &v.article;
        Card {
            slug: a.slug.clone(),
            title: a.title.clone(),
            description: a.description.clone(),
            tags: a.tags.iter().map(|t| TagLink::new(t)).collect(),
            author: v.author.profile.username.clone(),
            author_image: image_url(&v.author.profile.image),
            date: date(a.created_at),
            favorites: a.favorites_count.max(0) as u32,
            favorited: v.favorited,
            cover: image_url(&a.cover_image),
        }
    }
}

/// A tag and the home page's list of its articles.
#[derive(Clone, Debug)]
pub struct TagLink {
    pub name: String,
    pub href: String,
}

impl TagLink {
    pub fn new(name: &str) -> Self {
        TagLink {
            name: name.to_string(),
            href: format!("/?tag={}", urlencode(name)),
        }
    }
}

/// Percent-encodes everything but unreserved characters (for a URL's path or query).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A profile header.
#[derive(Clone, Debug)]
pub struct Person {
    pub username: String,
    pub bio: String,
    pub image: String,
    pub following: bool,
}

impl From<&ProfileView> for Person {
    fn from(p: &ProfileView) -> Self {
        Person {
            username: p.profile.username.clone(),
            bio: p.profile.bio.clone(),
            image: image_url(&p.profile.image),
            following: p.following,
        }
    }
}

/// A comment under an article.
#[derive(Clone, Debug)]
pub struct Remark {
    pub id: String,
    pub body: String,
    pub author: String,
    pub author_image: String,
    pub date: String,
    pub mine: bool,
}

impl Remark {
    pub fn new(c: &CommentView, viewer: Option<&str>) -> Self {
        let author = c.author.profile.username.clone();
        Remark {
            id: c.comment.id.as_i64().to_string(),
            body: c.comment.body.clone(),
            mine: viewer == Some(author.as_str()),
            author,
            author_image: image_url(&c.author.profile.image),
            date: date(c.comment.created_at),
        }
    }
}

/// One link of a pager.
#[derive(Clone, Debug)]
pub struct PageLink {
    pub number: u32,
    pub href: String,
    pub current: bool,
}

/// Links to every page of a list of `total` items, `per_page` a page; `href` makes a
/// page's URL.
pub fn pager(
    total: u64,
    per_page: u32,
    current: u32,
    href: impl Fn(u32) -> String,
) -> Vec<PageLink> {
    let pages = total.div_ceil(u64::from(per_page)).min(1000) as u32;
    if pages <= 1 {
        return Vec::new();
    }
    (1..=pages)
        .map(|n| PageLink {
            number: n,
            href: href(n),
            current: n == current,
        })
        .collect()
}

/// A user-given picture URL if it is `http(s)://`, else nothing: no `javascript:`, `data:`
/// or other scheme reaches a page.
pub fn image_url(url: &str) -> String {
    let u = url.trim();
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    // http(s), or a path on this site (uploads under /media), never `//host` or a scheme
    let local = u.starts_with('/') && !u.starts_with("//");
    if lower.starts_with("https://") || lower.starts_with("http://") || local {
        u.to_string()
    } else {
        String::new()
    }
}

/// "November 28, 2026" for milliseconds since the epoch.
pub fn date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{} {}, {}", t.month(), t.day(), t.year())
}

/// Markdown to HTML that is safe to insert: rendered by pulldown-cmark, then cleaned by
/// ammonia (no scripts, event handlers, `javascript:` links or unknown tags survive).
pub fn markdown(src: &str) -> String {
    use pulldown_cmark::{Options, Parser};
    let mut html = String::with_capacity(src.len() * 3 / 2);
    pulldown_cmark::html::push_html(
        &mut html,
        Parser::new_ext(src, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH),
    );
    ammonia::clean(&html)
}

/// Tags typed into one field, separated by spaces or commas.
pub fn split_tags(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in s
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_formatting_and_drops_scripts() {
        let h = markdown(
            "# Hi\n\n**bold** [x](javascript:alert(1)) <script>alert(1)</script> <img src=x onerror=alert(1)>",
        );
        assert!(
            h.contains("<h1>Hi</h1>") && h.contains("<strong>bold</strong>"),
            "{h}"
        );
        assert!(
            !h.contains("<script") && !h.contains("onerror") && !h.contains("javascript:"),
            "{h}"
        );
    }

    #[test]
    fn pagers_link_every_page_and_mark_the_current_one() {
        assert!(pager(20, 20, 1, |n| n.to_string()).is_empty());
        let p = pager(41, 20, 2, |n| format!("?page={n}"));
        assert_eq!(p.len(), 3);
        assert!(p[1].current && !p[0].current);
        assert_eq!(p[2].href, "?page=3");
    }

    #[test]
    fn tags_split_on_spaces_and_commas_once_each() {
        assert_eq!(
            split_tags(" rust, web  rust,\ntests "),
            ["rust", "web", "tests"]
        );
    }

    #[test]
    fn tag_links_encode_what_urls_reserve() {
        assert_eq!(TagLink::new("c# & go?").href, "/?tag=c%23%20%26%20go%3F");
    }

    #[test]
    fn only_web_urls_are_pictures() {
        assert_eq!(
            image_url(" https://x.example/a.png "),
            "https://x.example/a.png"
        );
        assert_eq!(
            image_url("HTTP://x.example/a.png"),
            "HTTP://x.example/a.png"
        );
        for bad in [
            "javascript:alert(1)",
            "data:image/svg+xml;base64,AAAA",
            "//evil.example/x",
            "vbscript:x",
            "",
        ] {
            assert_eq!(image_url(bad), "", "{bad}");
        }
    }

    #[test]
    fn markdown_drops_data_urls() {
        let h = markdown(
            "![x](data:image/svg+xml;base64,PHN2Zz4=) [y](data:text/html,<script>alert(1)</script>)",
        );
        assert!(!h.contains("data:"), "{h}");
    }

    #[test]
    fn dates_read_like_dates() {
        assert_eq!(date(1_795_824_000_000), "November 28, 2026");
    }
}
