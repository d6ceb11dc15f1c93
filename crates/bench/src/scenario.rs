//! Scenarios: what a load sends, request by request.

use crate::seed::{Rng, Seeded, username};
use serde_json::json;

/// A named mix of requests.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// `GET /api/articles?limit=20`, anonymous.
    List,
    /// `GET /api/articles/{slug}` for random seeded articles, anonymous.
    Article,
    /// `GET /api/articles/feed` as random seeded users.
    Feed,
    /// `GET /api/profiles/{username}` for random seeded users, signed in.
    Profile,
    /// Writes: new articles, comments, favourites and follows, a quarter each.
    Write,
    /// After DeathStarBench's social network: 60 % home feeds, 30 % author timelines and
    /// article reads, 10 % writes.
    Social,
    /// The social mix for signed-in users (70 % of requests) with anonymous readers beside
    /// them (30 %: article reads, author timelines and the home list, without a token), as a
    /// site with visitors sees it: what an edge cache can answer.
    Visitors,
    /// `POST /api/uploads` of an 800 × 600 PNG photo, as random seeded users; a probe
    /// measures how long each upload takes to become ready.
    Upload,
}

/// The multipart body of the upload scenario's image: (content type, bytes), made once.
pub fn upload_body() -> &'static (String, bytes::Bytes) {
    static BODY: std::sync::OnceLock<(String, bytes::Bytes)> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        let mut x: u32 = 0x9e37_79b9;
        // a photo-like image: smooth gradients with a little noise (compresses like a photo)
        let img = image::RgbImage::from_fn(800, 600, |px, py| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x % 24) as u8;
            image::Rgb([(px / 4) as u8 ^ n, (py / 3) as u8 ^ n, ((px + py) / 6) as u8])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).expect("a PNG encodes");
        let boundary = "crescendo-bench-upload";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(png.get_ref());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), bytes::Bytes::from(body))
    })
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Request {
    /// What kind of request it is, for per-kind statistics (`feed`, `article`, …).
    pub kind: &'static str,
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path and query, from the origin (`/api/…`).
    pub path: String,
    /// Token of the user sending it, if signed in.
    pub token: Option<String>,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// A body that is not JSON: (content type, bytes).
    pub raw: Option<&'static (String, bytes::Bytes)>,
}

fn get(kind: &'static str, path: String, token: Option<String>) -> Request {
    Request {
        kind,
        method: reqwest::Method::GET,
        path,
        token,
        body: None,
        raw: None,
    }
}

/// A `POST` with an optional JSON body.
fn post(
    kind: &'static str,
    path: String,
    token: Option<String>,
    body: Option<serde_json::Value>,
) -> Request {
    Request {
        method: reqwest::Method::POST,
        body,
        ..get(kind, path, token)
    }
}

impl Scenario {
    /// The next request of this scenario, drawn with `rng` over the seeded data. `n` numbers
    /// requests so that written titles differ.
    pub fn next(self, rng: &mut Rng, data: &Seeded, n: u64) -> Request {
        let user = rng.below(data.tokens.len().max(1));
        let token = data.tokens.get(user).cloned();
        let any_slug = |rng: &mut Rng| {
            data.slugs
                .get(rng.below(data.slugs.len().max(1)))
                .cloned()
                .unwrap_or_default()
        };
        match self {
            Scenario::List => get("list", "/api/articles?limit=20".into(), None),
            Scenario::Article => get("article", format!("/api/articles/{}", any_slug(rng)), None),
            Scenario::Feed => get("feed", "/api/articles/feed?limit=20".into(), token),
            Scenario::Profile => get(
                "profile",
                format!(
                    "/api/profiles/{}",
                    username(rng.below(data.tokens.len().max(1)))
                ),
                token,
            ),
            Scenario::Write => {
                let target = any_slug(rng);
                let other = username(rng.below(data.tokens.len().max(1)));
                let favorite = format!("/api/articles/{target}/favorite");
                match rng.below(4) {
                    0 => {
                        let article = json!({"article": {
                            "title": format!("Written under load {n}"),
                            "description": "a benchmark write",
                            "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
                            "tagList": ["bench", "load"]
                        }});
                        post(
                            "write.article",
                            "/api/articles".into(),
                            token,
                            Some(article),
                        )
                    }
                    1 => {
                        let path = format!("/api/articles/{target}/comments");
                        let comment = json!({"comment": {"body": format!("comment {n}")}});
                        post("write.comment", path, token, Some(comment))
                    }
                    2 => post("write.favorite", favorite, token, None),
                    _ if other != username(user) => {
                        let path = format!("/api/profiles/{other}/follow");
                        post("write.follow", path, token, None)
                    }
                    _ => post("write.favorite", favorite, token, None),
                }
            }
            Scenario::Upload => Request {
                raw: Some(upload_body()),
                ..post("upload", "/api/uploads".into(), token, None)
            },
            Scenario::Social => match rng.below(100) {
                0..60 => get("feed", "/api/articles/feed?limit=20".into(), token),
                60..75 => get(
                    "timeline",
                    format!(
                        "/api/articles?author={}&limit=10",
                        username(rng.below(data.tokens.len().max(1)))
                    ),
                    token,
                ),
                75..90 => get("article", format!("/api/articles/{}", any_slug(rng)), token),
                _ => Scenario::Write.next(rng, data, n),
            },
            Scenario::Visitors => match rng.below(100) {
                0..15 => get(
                    "anonymous.article",
                    format!("/api/articles/{}", any_slug(rng)),
                    None,
                ),
                15..25 => get(
                    "anonymous.timeline",
                    format!(
                        "/api/articles?author={}&limit=10",
                        username(rng.below(data.tokens.len().max(1)))
                    ),
                    None,
                ),
                25..30 => get("anonymous.list", "/api/articles?limit=20".into(), None),
                _ => Scenario::Social.next(rng, data, n),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Seeded {
        Seeded {
            tokens: (0..10).map(|i| format!("t{i}")).collect(),
            slugs: (0..10).map(|i| format!("s-{i}")).collect(),
        }
    }

    #[test]
    fn the_social_mix_is_sixty_thirty_ten() {
        let (mut rng, d) = (Rng(7), data());
        let mut counts = std::collections::HashMap::new();
        for n in 0..20_000 {
            let r = Scenario::Social.next(&mut rng, &d, n);
            let group = match r.kind {
                "feed" => "feed",
                "timeline" | "article" => "read",
                k if k.starts_with("write.") => "write",
                other => panic!("unexpected kind {other}"),
            };
            *counts.entry(group).or_insert(0) += 1;
        }
        let share = |g: &str| f64::from(counts[g]) / 20_000.0;
        assert!((share("feed") - 0.60).abs() < 0.02, "{counts:?}");
        assert!((share("read") - 0.30).abs() < 0.02, "{counts:?}");
        assert!((share("write") - 0.10).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn visitors_are_thirty_percent_anonymous_readers_beside_the_social_mix() {
        let (mut rng, d) = (Rng(11), data());
        let mut anonymous = 0;
        for n in 0..20_000 {
            let r = Scenario::Visitors.next(&mut rng, &d, n);
            if r.kind.starts_with("anonymous.") {
                assert!(r.token.is_none() && r.method == reqwest::Method::GET);
                anonymous += 1;
            } else {
                assert!(r.token.is_some(), "{}", r.kind);
            }
        }
        let share = f64::from(anonymous) / 20_000.0;
        assert!((share - 0.30).abs() < 0.02, "{share}");
    }

    #[test]
    fn signed_in_scenarios_send_a_token_and_writes_a_body_or_target() {
        let (mut rng, d) = (Rng(1), data());
        for n in 0..100 {
            let r = Scenario::Feed.next(&mut rng, &d, n);
            assert!(r.token.is_some());
            let w = Scenario::Write.next(&mut rng, &d, n);
            assert_eq!(w.method, reqwest::Method::POST);
            assert!(w.token.is_some());
            if w.kind == "write.follow" {
                assert_ne!(w.path, format!("/api/profiles/{}/follow", "nobody"));
            }
        }
        assert!(Scenario::List.next(&mut rng, &d, 0).token.is_none());
    }
}
