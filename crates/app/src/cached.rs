//! `Cached<T>`: a shared, immutable record as the cache holds it, with room for its renderings.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Which rendering of a record a [`Renders`] slot holds. Surfaces name their own uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderSlot {
    /// The record as a list item shows it (e.g. an article without its body).
    Summary = 0,
    /// The record in full.
    Full = 1,
}

/// Renderings of one immutable record, made at most once each.
///
/// A cached record never changes: a write replaces it with a new one (and invalidation
/// drops the old), so a rendering kept beside it can never be stale. A surface that turns
/// the same record into the same bytes for every viewer (the JSON API does) renders it once
/// and splices the bytes into every answer after that.
#[derive(Debug, Default)]
pub struct Renders([OnceLock<Box<[u8]>>; 2]);

impl Renders {
    /// The rendering in `slot`, made by `render` the first time it is asked for.
    pub fn get_or_render(&self, slot: RenderSlot, render: impl FnOnce() -> Vec<u8>) -> &[u8] {
        self.0[slot as usize].get_or_init(|| render().into_boxed_slice())
    }
}

/// A shared record as the cache holds it: the value, and its [`Renders`].
/// Serialises as the bare value; renderings are never stored in a shared cache.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cached<T> {
    value: T,
    #[serde(skip)]
    renders: Renders,
}

impl<T> Cached<T> {
    /// Wraps a value with no renderings yet.
    pub fn new(value: T) -> Self {
        Self {
            value,
            renders: Renders::default(),
        }
    }

    /// Renderings of this value.
    pub fn renders(&self) -> &Renders {
        &self.renders
    }
}

impl<T> std::ops::Deref for Cached<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Cached<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Cached<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendering_is_made_once_and_never_serialised() {
        let c = Cached::new(vec![1u8, 2]);
        let mut calls = 0;
        for _ in 0..3 {
            assert_eq!(
                c.renders().get_or_render(RenderSlot::Full, || {
                    calls += 1;
                    b"full".to_vec()
                }),
                b"full"
            );
        }
        assert_eq!(calls, 1);
        assert_eq!(
            c.renders()
                .get_or_render(RenderSlot::Summary, || b"sum".to_vec()),
            b"sum"
        );
        assert_eq!(serde_json::to_string(&c).unwrap(), "[1,2]");
        let back: Cached<Vec<u8>> = serde_json::from_str("[1,2]").unwrap();
        assert_eq!(back, c);
    }
}
