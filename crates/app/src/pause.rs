//! A test hook: hold the next write that reaches a chosen step until the test lets it go,
//! so a test can cancel the request (drop its client, let its time-out fire) exactly there
//! and check that the write still runs to its end.
//!
//! Nothing in the HTTP surfaces can set it: a test sets it on its [`App`] with
//! [`App::pause_writes_at`]. Unset (as in production), each step costs one check of an
//! empty `OnceLock`.

use crate::App;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A step of a write where a [`Pause`] may hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// The store has committed the write; the cache keys it changes are not yet
    /// invalidated.
    Committed,
    /// The write has its outcome; the record of its `Idempotency-Key` still says `pending`.
    Answered,
}

/// Holds the first write that reaches its step: that write tells [`Pause::reached`] and
/// waits for [`Pause::release`]. Later writes, and other steps, pass.
#[derive(Debug)]
pub struct Pause {
    step: WriteStep,
    /// Whether the pause still waits for its write (the first one to arrive takes it).
    armed: AtomicBool,
    /// Holds one permit once the write is held, so the order of the calls does not matter.
    reached: Notify,
    /// Holds one permit once the test lets the write go.
    go: Notify,
}

impl Pause {
    /// A pause for the first write that reaches `step`.
    pub fn new(step: WriteStep) -> Arc<Self> {
        Arc::new(Self {
            step,
            armed: AtomicBool::new(true),
            reached: Notify::new(),
            go: Notify::new(),
        })
    }

    /// Resolves once a write is held at the step.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held write (or the one still to come) go on.
    pub fn release(&self) {
        self.go.notify_one();
    }

    async fn hold(&self, step: WriteStep) {
        if step == self.step && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.go.notified().await;
        }
    }
}

impl App {
    /// Installs `pause` for tests: the first write to reach its step waits there until the
    /// test releases it. Only the first call takes effect.
    pub fn pause_writes_at(&self, pause: Arc<Pause>) {
        let _ = self.inner.pause.set(pause);
    }

    /// A write reaching `step`: held there if a test asked for it.
    pub(crate) async fn reach(&self, step: WriteStep) {
        if let Some(p) = self.inner.pause.get() {
            p.hold(step).await;
        }
    }
}
