//! The site's stylesheet, script and icon, compiled into the binary and served under names
//! that carry a hash of their content (`/assets/app.3f9a1c2e.css`). A name never changes
//! meaning, so responses are `Cache-Control: public, max-age=31536000, immutable` with an
//! `ETag` (a matching `If-None-Match` gets 304): a CDN or browser keeps them for a year, and a
//! new release is new names. Each is compressed once at start-up, with brotli and gzip, and
//! served in the best encoding the client accepts (`Vary: Accept-Encoding`). Pages link them
//! through `web.asset_base_url`, so a CDN edge can serve them from its own origin.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");
const ICON: &str = include_str!("../assets/icon.svg");

/// One embedded file, with its compressed forms.
#[derive(Debug)]
struct Asset {
    name: String,
    body: &'static str,
    gzip: Vec<u8>,
    brotli: Vec<u8>,
    content_type: &'static str,
    etag: HeaderValue,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut std::io::Cursor::new(data), &mut out, &params)
        .expect("writing to memory");
    out
}

impl Asset {
    fn new(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Asset {
            name: format!("{stem}.{hash}.{ext}"),
            body,
            gzip: gzip(body.as_bytes()),
            brotli: brotli(body.as_bytes()),
            content_type,
            etag: HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a valid header"),
        }
    }
}

/// Whether `accept_encoding` names `coding` with a non-zero quality.
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut it = part.split(';');
        let name = it.next().unwrap_or("").trim();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        name.eq_ignore_ascii_case(coding) && q > 0.0
    })
}

/// The embedded assets and where pages link them.
#[derive(Debug)]
pub struct Assets {
    css: Asset,
    js: Asset,
    icon: Asset,
    base: String,
}

impl Assets {
    /// The embedded assets, linked under `base_url` (empty: this site's `/assets/`).
    pub fn new(base_url: &str) -> Self {
        let base = if base_url.is_empty() {
            "/assets".to_string()
        } else {
            format!("{}/assets", base_url.trim_end_matches('/'))
        };
        Assets {
            css: Asset::new("app", "css", CSS, "text/css; charset=utf-8"),
            js: Asset::new("app", "js", JS, "text/javascript; charset=utf-8"),
            icon: Asset::new("icon", "svg", ICON, "image/svg+xml"),
            base,
        }
    }

    /// The icon's URL.
    pub fn icon_href(&self) -> String {
        format!("{}/{}", self.base, self.icon.name)
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
pub async fn serve(
    State(assets): State<Arc<Assets>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(a) = [&assets.css, &assets.js, &assets.icon]
        .into_iter()
        .find(|a| a.name == name)
    else {
        return (
            StatusCode::NOT_FOUND,
            [(CACHE_CONTROL, "no-store")],
            "no such asset",
        )
            .into_response();
    };
    let cache = [
        (
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (ETAG, a.etag.clone()),
        (VARY, HeaderValue::from_static("Accept-Encoding")),
    ];
    if headers.get(IF_NONE_MATCH) == Some(&a.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let accept = headers
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = [(CONTENT_TYPE, a.content_type)];
    if accepts(accept, "br") {
        (
            cache,
            content_type,
            [(CONTENT_ENCODING, "br")],
            a.brotli.clone(),
        )
            .into_response()
    } else if accepts(accept, "gzip") {
        (
            cache,
            content_type,
            [(CONTENT_ENCODING, "gzip")],
            a.gzip.clone(),
        )
            .into_response()
    } else {
        (cache, content_type, a.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_chosen_by_accept_encoding_and_compress() {
        assert!(accepts("gzip, deflate, br", "br") && accepts("gzip, deflate, br", "gzip"));
        assert!(!accepts("gzip;q=0, identity", "gzip") && !accepts("identity", "br"));
        assert!(accepts("GZIP;q=0.5", "gzip"));
        let a = Asset::new("app", "css", CSS, "text/css");
        assert!(
            a.brotli.len() < CSS.len() / 2 && a.gzip.len() < CSS.len() / 2,
            "{} {} {}",
            CSS.len(),
            a.gzip.len(),
            a.brotli.len()
        );
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&a.gzip[..]), &mut back)
            .unwrap();
        assert_eq!(back, CSS);
    }

    #[test]
    fn a_changed_asset_gets_a_new_name() {
        let v1 = Asset::new("app", "css", "body { color: black }", "text/css");
        let v2 = Asset::new("app", "css", "body { color: navy }", "text/css");
        let again = Asset::new("app", "css", "body { color: black }", "text/css");
        assert_ne!(
            v1.name, v2.name,
            "a cache keeping the old name never serves the new file"
        );
        assert_eq!(v1.name, again.name, "the same content keeps its name");
        assert_ne!(v1.etag, v2.etag);
    }

    #[test]
    fn names_carry_a_content_hash_and_links_follow_the_base_url() {
        let local = Assets::new("");
        assert!(local.css_href().starts_with("/assets/app.") && local.css_href().ends_with(".css"));
        assert_eq!(local.origin(), None);
        let cdn = Assets::new("https://cdn.example.com/");
        assert!(
            cdn.js_href()
                .starts_with("https://cdn.example.com/assets/app.")
        );
        assert_eq!(cdn.origin(), Some("https://cdn.example.com"));
    }
}
