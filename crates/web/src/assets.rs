//! The site's stylesheet and script, compiled into the binary and served under names that
//! carry a hash of their content (`/assets/app.3f9a1c2e.css`). A name never changes meaning,
//! so responses are `Cache-Control: public, max-age=31536000, immutable`: a CDN or browser
//! keeps them for a year, and a new release is new names. Pages link them through
//! `web.asset_base_url`, so a CDN edge can serve them from its own origin.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: String,
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Asset {
            name: format!("{stem}.{hash}.{ext}"),
            body,
            content_type,
            etag: HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a valid header"),
        }
    }
}

/// The embedded assets and where pages link them.
#[derive(Debug)]
pub struct Assets {
    css: Asset,
    js: Asset,
    base: String,
}

impl Assets {
    /// The embedded assets, linked under `base_url` (empty: this site's `/assets/`).
    pub fn new(base_url: &str) -> Self {
        let base = if base_url.is_empty() { "/assets".to_string() } else { format!("{}/assets", base_url.trim_end_matches('/')) };
        Assets { css: Asset::new("app", "css", CSS, "text/css; charset=utf-8"), js: Asset::new("app", "js", JS, "text/javascript; charset=utf-8"), base }
    }

    /// The stylesheet's URL.
    pub fn css_href(&self) -> String {
        format!("{}/{}", self.base, self.css.name)
    }

    /// The script's URL.
    pub fn js_href(&self) -> String {
        format!("{}/{}", self.base, self.js.name)
    }

    /// The origin assets come from, for the Content-Security-Policy (empty: this site).
    pub fn origin(&self) -> Option<&str> {
        let rest = self.base.split_once("://")?.1;
        let end = rest.find('/').unwrap_or(rest.len());
        Some(&self.base[..self.base.len() - rest.len() + end])
    }
}

/// `GET /assets/{name}`: an embedded asset by its hashed name, cacheable for a year.
pub async fn serve(State(assets): State<Arc<Assets>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = [&assets.css, &assets.js].into_iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, [(CACHE_CONTROL, "no-store")], "no such asset").into_response();
    };
    let cache = [(CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")), (ETAG, a.etag.clone())];
    if headers.get(IF_NONE_MATCH) == Some(&a.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(CONTENT_TYPE, a.content_type)], a.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_content_hash_and_links_follow_the_base_url() {
        let local = Assets::new("");
        assert!(local.css_href().starts_with("/assets/app.") && local.css_href().ends_with(".css"));
        assert_eq!(local.origin(), None);
        let cdn = Assets::new("https://cdn.example.com/");
        assert!(cdn.js_href().starts_with("https://cdn.example.com/assets/app."));
        assert_eq!(cdn.origin(), Some("https://cdn.example.com"));
    }
}
