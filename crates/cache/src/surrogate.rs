//! Surrogate keys: which cache keys an answer was made from, so that an edge cache (a CDN)
//! keeping the answer can be told to drop it when any of them changes.
//!
//! An answer's keys are collected in a task-local [`scope`] that the web tier opens per
//! request: the application calls [`note`] for every cache key it reads (hit or load) and
//! for every key its answer depends on beyond those (a list's own keys, read past its
//! cached head). The edge sees each key as a [`surrogate_key`] token (`xkey` header); a write
//! purges the tokens of the keys it invalidates. The scope lives here, beside the keys'
//! hash, because the keys are cache keys: any crate that reads through the cache can note
//! them without knowing of edges or HTTP.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    /// The hashes of the keys noted in this request so far (duplicates included).
    static NOTED: RefCell<Vec<u64>>;
}

/// FNV-1a, 64 bits: written out here so every node of every build gives a key the same
/// token (an edge holds tokens made by one node and purged by another).
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

fn token_of(hash: u64) -> String {
    format!("{hash:016x}")
}

/// The edge's token for cache key `key`: 16 lowercase hex digits of its FNV-1a 64 hash.
pub fn surrogate_key(key: &str) -> String {
    token_of(fnv1a64(key.as_bytes()))
}

/// The tokens of `keys`, sorted, each once.
pub fn tokens<S: AsRef<str>>(keys: &[S]) -> Vec<String> {
    sorted_tokens(
        keys.iter()
            .map(|k| fnv1a64(k.as_ref().as_bytes()))
            .collect(),
    )
}

fn sorted_tokens(mut hashes: Vec<u64>) -> Vec<String> {
    hashes.sort_unstable();
    hashes.dedup();
    hashes.into_iter().map(token_of).collect()
}

/// The keys a scope noted, kept as hashes until someone asks for their tokens (most
/// answers are never offered to an edge).
#[derive(Clone, Debug, Default)]
pub struct Noted(Vec<u64>);

impl Noted {
    /// The tokens, sorted, each once.
    pub fn tokens(self) -> Vec<String> {
        sorted_tokens(self.0)
    }

    /// The tokens, sorted, each once, separated by single spaces (an `xkey` header's
    /// value), and how many there are.
    pub fn header_value(mut self) -> (String, usize) {
        use std::fmt::Write;
        self.0.sort_unstable();
        self.0.dedup();
        let mut out = String::with_capacity(self.0.len() * 17);
        for (i, h) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{h:016x}");
        }
        (out, self.0.len())
    }
}

/// Runs `fut` in a fresh scope; returns its output and the keys noted in it.
pub async fn scope<F: Future>(fut: F) -> (F::Output, Noted) {
    NOTED
        .scope(RefCell::new(Vec::new()), async move {
            let out = fut.await;
            let noted = NOTED.with(|n| std::mem::take(&mut *n.borrow_mut()));
            (out, Noted(noted))
        })
        .await
}

/// Records that the current scope's answer depends on cache key `key` (no effect outside
/// a scope).
pub fn note(key: &str) {
    let _ = NOTED.try_with(|n| n.borrow_mut().push(fnv1a64(key.as_bytes())));
}

/// The tokens of the keys noted in the current scope so far, sorted, each once (empty
/// outside a scope).
pub fn keys() -> Vec<String> {
    NOTED
        .try_with(|n| sorted_tokens(n.borrow().clone()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_written_down_fnv1a_64() {
        // published FNV-1a 64 values: edges hold tokens made by other builds
        assert_eq!(surrogate_key(""), "cbf29ce484222325");
        assert_eq!(surrogate_key("a"), "af63dc4c8601ec8c");
        assert_eq!(surrogate_key("foobar"), "85944171f73967e8");
        assert_eq!(surrogate_key("head:all"), surrogate_key("head:all"));
        assert_eq!(surrogate_key("article:42").len(), 16);
    }

    #[tokio::test]
    async fn a_scope_collects_each_noted_key_once() {
        note("outside"); // no scope: ignored
        let ((), got) = scope(async {
            note("article:1");
            note("profile:2");
            note("article:1");
            assert_eq!(keys().len(), 2);
        })
        .await;
        let (header, n) = got.clone().header_value();
        let want = tokens(&["profile:2", "article:1"]);
        assert_eq!(got.tokens(), want);
        assert_eq!((header, n), (want.join(" "), 2));
        assert!(keys().is_empty());
    }
}
