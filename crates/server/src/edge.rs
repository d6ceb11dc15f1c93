//! The origin's side of the edge caches (a CDN in front of the balancer, rung 6).
//!
//! - What an edge may keep: [`edge_headers`] runs every request in a surrogate-key scope
//!   (`crescendo_cache::surrogate`) and, on a 200 answer to an anonymous GET or HEAD that its
//!   handler marked [`Shareable`] and that sets no cookie, adds `Surrogate-Control:
//!   max-age={edge.ttl_secs}` (the edge keeps it), `Cache-Control: public,
//!   max-age={edge.browser_ttl_secs}` and `xkey` (the tokens of the cache keys it was made
//!   from). A partial answer, or a stale one (`X-Crescendo-Staleness`), gets
//!   `Cache-Control: no-store` and nothing for the edge.
//! - How writes reach it: [`HttpEdges`], the application's [`Edges`] seam over HTTP/1, sends
//!   `PURGE /` with `X-Purge-Token` and `xkey-softpurge: <tokens>` to every
//!   `edge.purge_urls` at once; an edge confirms with 200.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use crescendo_app::{EdgeFailure, Edges, PurgeError, Shareable};
use crescendo_config::EdgeSettings;
use crescendo_telemetry::names;
use std::sync::Arc;
use std::time::Duration;

/// How long one edge may take to confirm a purge (connection included).
const PURGE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most tokens one purge request carries: 17 bytes each keeps its header under 8 KB.
const TOKENS_PER_PURGE: usize = 400;

/// The most tokens an answer may be tagged with; one that depends on more keys is not
/// offered to the edge (its `xkey` header would outgrow what an edge reads).
const MAX_XKEY_TOKENS: usize = 400;

static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
static XKEY: HeaderName = HeaderName::from_static("xkey");
static XKEY_SOFTPURGE: HeaderName = HeaderName::from_static("xkey-softpurge");
static X_PURGE_TOKEN: HeaderName = HeaderName::from_static("x-purge-token");

/// The headers [`edge_headers`] gives a shareable answer, made once from the settings.
#[derive(Clone)]
pub(crate) struct EdgeHeaders {
    surrogate_control: HeaderValue,
    cache_control: HeaderValue,
}

impl EdgeHeaders {
    /// From the `edge` section.
    pub(crate) fn new(edge: &EdgeSettings) -> Self {
        let value = |s: String| HeaderValue::from_str(&s).expect("ASCII digits");
        Self {
            surrogate_control: value(format!("max-age={}", edge.ttl_secs)),
            cache_control: value(format!("public, max-age={}", edge.browser_ttl_secs)),
        }
    }
}

/// Collects the cache keys the answer depends on, then says what an edge and a browser may
/// keep of it (see the module docs).
pub(crate) async fn edge_headers(
    State(h): State<EdgeHeaders>,
    req: Request,
    next: Next,
) -> Response {
    let anonymous_read = matches!(*req.method(), Method::GET | Method::HEAD)
        && !req.headers().contains_key(header::AUTHORIZATION);
    let (mut res, noted) = crescendo_cache::surrogate::scope(next.run(req)).await;
    if res.headers().contains_key(&crate::http::X_PARTIAL)
        || res.headers().contains_key(&crate::http::X_STALENESS)
    {
        // gathered while a shard cluster was down, or read stale while the primary could
        // not be reached: nobody may keep it
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    let shareable = anonymous_read
        && res.status() == StatusCode::OK
        && res.extensions().get::<Shareable>().is_some()
        && !res.headers().contains_key(header::SET_COOKIE);
    if !shareable {
        return res;
    }
    let (xkey, count) = noted.header_value();
    if count > MAX_XKEY_TOKENS {
        return res;
    }
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, h.cache_control);
    headers.insert(SURROGATE_CONTROL.clone(), h.surrogate_control);
    if count > 0 {
        headers.insert(
            XKEY.clone(),
            HeaderValue::from_str(&xkey).expect("hex tokens"),
        );
    }
    res
}

/// One edge's purge listener.
struct Edge {
    /// As configured, for logs and errors.
    url: String,
    /// `host:port`, to connect to and to name in `Host`.
    authority: String,
}

/// The [`Edges`] seam over HTTP/1: one connection per edge and purge, all edges at once.
pub(crate) struct HttpEdges {
    edges: Vec<Edge>,
    /// `X-Purge-Token`, when the edges require one.
    token: Option<HeaderValue>,
}

/// The edges of `edge.purge_urls`, or `None` when there are none.
///
/// # Errors
/// A URL that is not `http://host[:port][/]`, or a token that is not a header value.
pub(crate) fn from_settings(edge: &EdgeSettings) -> anyhow::Result<Option<Arc<dyn Edges>>> {
    Ok(http_edges(edge)?.map(|e| Arc::new(e) as Arc<dyn Edges>))
}

/// [`from_settings`], as the concrete type.
fn http_edges(edge: &EdgeSettings) -> anyhow::Result<Option<HttpEdges>> {
    if edge.purge_urls.is_empty() {
        return Ok(None);
    }
    let mut edges = Vec::with_capacity(edge.purge_urls.len());
    for url in &edge.purge_urls {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("edge.purge_urls: {url:?} is not a URL: {e}"))?;
        let (Some("http"), Some(a)) = (uri.scheme_str(), uri.authority()) else {
            anyhow::bail!("edge.purge_urls: {url:?} is not an http://host:port URL");
        };
        edges.push(Edge {
            url: url.clone(),
            authority: format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)),
        });
    }
    let token = match &edge.purge_token {
        Some(t) => {
            let mut v = HeaderValue::from_str(t.expose())
                .map_err(|_| anyhow::anyhow!("edge.purge_token is not a header value"))?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    Ok(Some(HttpEdges { edges, token }))
}

/// Purge requests by outcome, registered once.
static PURGES_OK: std::sync::LazyLock<metrics::Counter> =
    std::sync::LazyLock::new(|| metrics::counter!(names::EDGE_PURGES, "outcome" => "ok"));
static PURGES_FAILED: std::sync::LazyLock<metrics::Counter> =
    std::sync::LazyLock::new(|| metrics::counter!(names::EDGE_PURGES, "outcome" => "failed"));

#[async_trait::async_trait]
impl Edges for HttpEdges {
    async fn purge(&self, tokens: &[String]) -> Result<(), PurgeError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let all = self.edges.iter().map(|edge| async move {
            let outcome = tokio::time::timeout(PURGE_TIMEOUT, self.purge_one(edge, tokens))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {PURGE_TIMEOUT:?}")));
            // the request that failed (or the one that could not be sent)
            outcome.err().map(|reason| {
                PURGES_FAILED.increment(1);
                EdgeFailure {
                    edge: edge.url.clone(),
                    reason,
                }
            })
        });
        let failed: Vec<EdgeFailure> = futures_util::future::join_all(all)
            .await
            .into_iter()
            .flatten()
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PurgeError::Failed(failed))
        }
    }
}

/// Tells every edge of `edge.purge_urls`, every `edge.heartbeat_ms`, that this node is
/// still heard (a `PURGE` of no keys), until `stop` turns true. An edge that hears from no
/// node for a while although the origin answers drops what it kept (it may have missed
/// purges). Nothing to do without edges or with `heartbeat_ms = 0`.
///
/// # Errors
/// As [`from_settings`].
pub(crate) fn heartbeats(
    edge: &EdgeSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<impl std::future::Future<Output = ()> + use<>>> {
    let Some(edges) = http_edges(edge)? else {
        return Ok(None);
    };
    if edge.heartbeat_ms == 0 {
        return Ok(None);
    }
    let every = Duration::from_millis(edge.heartbeat_ms);
    Ok(Some(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silent = vec![false; edges.edges.len()];
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let beats = edges.edges.iter().map(|e| async {
                tokio::time::timeout(PURGE_TIMEOUT, edges.send(e, &[None]))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {PURGE_TIMEOUT:?}")))
            });
            let outcomes = futures_util::future::join_all(beats).await;
            for ((e, was_silent), outcome) in edges.edges.iter().zip(&mut silent).zip(outcomes) {
                // one line when an edge stops or starts answering, not one per beat
                match (outcome, *was_silent) {
                    (Err(reason), false) => {
                        tracing::warn!(edge = %e.url, %reason, "an edge does not answer its heartbeat");
                        *was_silent = true;
                    }
                    (Ok(()), true) => {
                        tracing::info!(edge = %e.url, "an edge answers its heartbeat again");
                        *was_silent = false;
                    }
                    _ => {}
                }
            }
        }
    }))
}

impl HttpEdges {
    /// Sends the purge of `tokens` to `edge` over one connection (several requests when
    /// there are many tokens); `Err` says why the edge did not confirm it.
    async fn purge_one(&self, edge: &Edge, tokens: &[String]) -> Result<(), String> {
        let requests: Vec<Option<String>> = tokens
            .chunks(TOKENS_PER_PURGE)
            .map(|chunk| Some(chunk.join(" ")))
            .collect();
        self.send(edge, &requests).await?;
        PURGES_OK.increment(requests.len() as u64);
        Ok(())
    }

    /// Sends one `PURGE` per entry of `requests` to `edge` over one connection, each naming
    /// its keys in `xkey-softpurge` (none: a heartbeat); `Err` says why the edge did not
    /// confirm one.
    async fn send(&self, edge: &Edge, requests: &[Option<String>]) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(&edge.authority)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let exchange = async {
            for keys in requests {
                let mut req = http::Request::builder()
                    .method(Method::from_bytes(b"PURGE").expect("a method name"))
                    .uri("/")
                    .header(header::HOST, &edge.authority)
                    .body(Body::empty())
                    .map_err(|e| format!("request: {e}"))?;
                if let Some(keys) = keys {
                    let keys = HeaderValue::from_str(keys).map_err(|e| format!("keys: {e}"))?;
                    req.headers_mut().insert(XKEY_SOFTPURGE.clone(), keys);
                }
                if let Some(t) = &self.token {
                    req.headers_mut().insert(X_PURGE_TOKEN.clone(), t.clone());
                }
                send.ready().await.map_err(|e| format!("connection: {e}"))?;
                let res = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = res.status();
                // read the rest of the answer, so the connection can carry the next request
                let _ = axum::body::to_bytes(Body::new(res.into_body()), 64 * 1024).await;
                if status != StatusCode::OK {
                    return Err(format!("answered {status}"));
                }
            }
            Ok(())
        };
        let conn = std::pin::pin!(conn);
        tokio::select! {
            r = exchange => r,
            r = conn => Err(match r {
                Ok(()) => "the edge closed the connection".to_string(),
                Err(e) => format!("connection: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    /// A router whose `/{what}` answers a shareable 200 that read `article:1`, marked
    /// partial when `what` is `partial`, setting a cookie when it is `cookie`.
    fn router() -> Router {
        let answer = |axum::extract::Path(what): axum::extract::Path<String>| async move {
            crescendo_cache::surrogate::note("article:1");
            let mut res = "ok".into_response();
            res.extensions_mut().insert(Shareable);
            match what.as_str() {
                "partial" => {
                    res.headers_mut().insert(
                        crate::http::X_PARTIAL.clone(),
                        HeaderValue::from_static("true"),
                    );
                }
                "stale" => {
                    res.headers_mut().insert(
                        crate::http::X_STALENESS.clone(),
                        crate::http::staleness_value(std::time::Duration::from_millis(2345)),
                    );
                }
                "cookie" => {
                    res.headers_mut()
                        .insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
                }
                _ => {}
            }
            res
        };
        Router::new()
            .route("/{what}", get(answer))
            .layer(axum::middleware::from_fn_with_state(
                EdgeHeaders::new(&EdgeSettings::default()),
                edge_headers,
            ))
    }

    async fn headers(path: &str, authorization: bool) -> http::HeaderMap {
        let mut req = http::Request::get(path);
        if authorization {
            req = req.header(header::AUTHORIZATION, "Token x");
        }
        let res = router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        res.headers().clone()
    }

    /// A stand-in for an edge's purge listener answering every request with `status`;
    /// each request's headers go to the returned channel.
    async fn listener(
        status: &'static str,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<Vec<(String, String)>>,
    ) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (read, mut write) = conn.into_split();
                    let mut lines = tokio::io::BufReader::new(read).lines();
                    while let Ok(Some(_request_line)) = lines.next_line().await {
                        let mut headers = Vec::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line.is_empty() {
                                break;
                            }
                            let (k, v) = line.split_once(':').unwrap();
                            headers.push((k.to_lowercase(), v.trim().to_string()));
                        }
                        let _ = tx.send(headers);
                        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn edges(urls: Vec<String>) -> Arc<dyn Edges> {
        from_settings(&EdgeSettings {
            purge_urls: urls,
            purge_token: Some(crescendo_config::Secret::new("tok")),
            ..EdgeSettings::default()
        })
        .unwrap()
        .expect("edges")
    }

    #[tokio::test]
    async fn many_tokens_are_purged_in_requests_whose_headers_stay_under_8_kb() {
        let (addr, mut got) = listener("200 OK").await;
        let tokens: Vec<String> = (0..1000)
            .map(|i| crescendo_cache::surrogate_key(&format!("article:{i}")))
            .collect();
        edges(vec![format!("http://{addr}/")])
            .purge(&tokens)
            .await
            .unwrap();
        let mut purged = Vec::new();
        while let Ok(headers) = got.try_recv() {
            let size: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            assert!(size < 8 * 1024, "{size} bytes of headers");
            let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            assert_eq!(get("x-purge-token").unwrap(), "tok");
            purged.extend(get("xkey-softpurge").unwrap().split(' ').map(String::from));
        }
        assert_eq!(purged, tokens, "every token once, over several requests");
    }

    #[tokio::test]
    async fn a_purge_names_each_edge_that_refused_it_or_was_down() {
        let (ok, _got) = listener("200 OK").await;
        let (refusing, _refused) = listener("403 Forbidden").await;
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let urls = [ok, refusing, down].map(|a| format!("http://{a}"));
        let Err(PurgeError::Failed(failed)) = edges(urls.to_vec())
            .purge(&["0123456789abcdef".to_string()])
            .await
        else {
            panic!("two edges failed");
        };
        let named: Vec<&str> = failed.iter().map(|f| f.edge.as_str()).collect();
        assert_eq!(named, [urls[1].as_str(), urls[2].as_str()]);
        assert!(failed[0].reason.contains("403"), "{failed:?}");
    }

    #[test]
    fn purge_urls_must_be_plain_http() {
        for bad in ["https://edge:8091", "edge:8091", "not a url"] {
            let s = EdgeSettings {
                purge_urls: vec![bad.into()],
                ..EdgeSettings::default()
            };
            assert!(from_settings(&s).is_err(), "{bad} was taken");
        }
        assert!(from_settings(&EdgeSettings::default()).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_shareable_answer_is_tagged_for_the_edge() {
        let h = headers("/plain", false).await;
        assert_eq!(h["surrogate-control"], "max-age=60");
        assert_eq!(h["cache-control"], "public, max-age=5");
        assert_eq!(
            h["xkey"],
            crescendo_cache::surrogate_key("article:1").as_str()
        );
    }

    #[tokio::test]
    async fn partial_answers_are_kept_by_nobody() {
        let h = headers("/partial", false).await;
        assert_eq!(h["cache-control"], "no-store");
        assert!(!h.contains_key("surrogate-control"));
        assert!(!h.contains_key("xkey"));
    }

    #[tokio::test]
    async fn stale_answers_are_kept_by_nobody() {
        let h = headers("/stale", false).await;
        assert_eq!(h["x-crescendo-staleness"], "2.4");
        assert_eq!(h["cache-control"], "no-store");
        assert!(!h.contains_key("surrogate-control"));
        assert!(!h.contains_key("xkey"));
    }

    #[tokio::test]
    async fn answers_with_credentials_or_cookies_are_not_offered_to_the_edge() {
        for h in [
            headers("/plain", true).await,
            headers("/cookie", false).await,
        ] {
            assert!(!h.contains_key("surrogate-control"), "{h:?}");
            assert!(!h.contains_key("cache-control"), "{h:?}");
        }
    }
}
