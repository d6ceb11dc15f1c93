//! Typed jobs: each kind of background work names its queue and owns its payload's wire
//! format here, once. The store backends encode a job into the outbox in the transaction that
//! makes its data; the worker decodes it; nothing else reads or writes payload bytes.
//!
//! The wire formats are stable: jobs already waiting in a queue (or in the outbox) when a
//! new version starts must still decode.

use crescendo_domain::Id;

/// The queue of image-variant jobs ([`ImageVariants`]).
pub const IMAGES_QUEUE: &str = "images.variants";

/// Make the variants of an upload. Wire format: the upload's ID in decimal ASCII (`"42"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageVariants {
    /// The upload whose variants are to be made.
    pub upload: Id,
}

/// Why a job's payload could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is not UTF-8 text.
    #[error("{queue} job payload is not text")]
    NotText {
        /// The queue whose format was expected.
        queue: &'static str,
    },
    /// The payload is text but not an ID in decimal.
    #[error("{queue} job payload {payload:?} is not an upload ID")]
    NotAnId {
        /// The queue whose format was expected.
        queue: &'static str,
        /// The payload as received (at most 64 characters of it).
        payload: String,
    },
    /// The payload is text but not an edge purge (a time, then tokens).
    #[error("edge-purge job payload {payload:?} is not a time and tokens")]
    NotAnEdgePurge {
        /// The payload as received (at most 64 characters of it).
        payload: String,
    },
    /// The payload is text but not a feed job (a kind, then IDs).
    #[error("feed job payload {payload:?} is not a kind and IDs")]
    NotAFeedJob {
        /// The payload as received (at most 64 characters of it).
        payload: String,
    },
}

impl ImageVariants {
    /// The queue these jobs go to.
    pub const QUEUE: &'static str = IMAGES_QUEUE;

    /// The job's payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.upload.as_i64().to_string().into_bytes()
    }

    /// Reads a payload made by [`ImageVariants::encode`].
    ///
    /// # Errors
    /// [`PayloadError`] when the payload is not an upload ID in decimal.
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| PayloadError::NotText { queue: Self::QUEUE })?;
        let id = text.parse::<i64>().map_err(|_| PayloadError::NotAnId {
            queue: Self::QUEUE,
            payload: text.chars().take(64).collect(),
        })?;
        Ok(Self {
            upload: Id::from_i64(id),
        })
    }
}

/// The queue of edge purges ([`EdgePurge`]): a write's outbox entry becomes one when the node
/// that wrote could not send its purges itself (it died, or an edge missed them).
pub const EDGE_PURGE_QUEUE: &str = "edge-purge";

/// Purge surrogate-key tokens on every edge cache again, no sooner than `not_before_ms`.
/// Wire format: the time in milliseconds since the Unix epoch, then each token, separated by
/// single spaces (`"1767225600000 0123456789abcdef fedcba9876543210"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgePurge {
    /// When the purge may be sent, milliseconds since the Unix epoch.
    pub not_before_ms: u64,
    /// The tokens: 16 lowercase hex digits each.
    pub tokens: Vec<String>,
}

impl EdgePurge {
    /// The queue these jobs go to.
    pub const QUEUE: &'static str = EDGE_PURGE_QUEUE;

    /// The job's payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.not_before_ms.to_string();
        for t in &self.tokens {
            out.push(' ');
            out.push_str(t);
        }
        out.into_bytes()
    }

    /// Reads a payload made by [`EdgePurge::encode`].
    ///
    /// # Errors
    /// [`PayloadError`] when the payload is not a time followed by tokens.
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| PayloadError::NotText { queue: Self::QUEUE })?;
        let bad = || PayloadError::NotAnEdgePurge {
            payload: text.chars().take(64).collect(),
        };
        let mut words = text.split(' ');
        let not_before_ms = words
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let tokens = words
            .map(|w| {
                (w.len() == 16 && w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .then(|| w.to_string())
                    .ok_or_else(bad)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            not_before_ms,
            tokens,
        })
    }
}

/// The queue of feed jobs ([`FeedJob`]): the fan-out on write of a store that keeps
/// timelines.
pub const FEED_QUEUE: &str = "feed";

/// Work on the followers' side of a follow and on timelines, written to the outbox in the
/// transaction of the write it follows from, for a relay at once. Wire format: the kind,
/// then the IDs in decimal, separated by single spaces (`"follow 12 34"`,
/// `"publish 56 12"`, `"unpublish 56"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedJob {
    /// `follower` followed or unfollowed `followee`: sync the followee's side, and back-fill
    /// the followee's newest articles into the follower's timeline if the follow stands.
    Follow {
        /// Who (un)followed.
        follower: Id,
        /// Whom.
        followee: Id,
    },
    /// `author` published `article`: add it to each follower's timeline, unless the author
    /// is a celebrity (their articles are merged in at read time).
    Publish {
        /// The new article.
        article: Id,
        /// Its author.
        author: Id,
    },
    /// `article` was deleted: remove it from every timeline.
    Unpublish {
        /// The deleted article.
        article: Id,
    },
}

impl FeedJob {
    /// The queue these jobs go to.
    pub const QUEUE: &'static str = FEED_QUEUE;

    /// The job's payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Follow { follower, followee } => format!("follow {follower} {followee}"),
            Self::Publish { article, author } => format!("publish {article} {author}"),
            Self::Unpublish { article } => format!("unpublish {article}"),
        }
        .into_bytes()
    }

    /// Reads a payload made by [`FeedJob::encode`].
    ///
    /// # Errors
    /// [`PayloadError`] when the payload is not a known kind with its IDs.
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| PayloadError::NotText { queue: Self::QUEUE })?;
        let bad = || PayloadError::NotAFeedJob {
            payload: text.chars().take(64).collect(),
        };
        let mut words = text.split(' ');
        let kind = words.next().ok_or_else(bad)?;
        let ids: Vec<Id> = words
            .map(|w| w.parse::<i64>().map(Id::from_i64).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match (kind, ids.as_slice()) {
            ("follow", &[follower, followee]) => Ok(Self::Follow { follower, followee }),
            ("publish", &[article, author]) => Ok(Self::Publish { article, author }),
            ("unpublish", &[article]) => Ok(Self::Unpublish { article }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_jobs_round_trip_through_their_payload() {
        let (a, b) = (Id::from_i64(12), Id::from_i64(34));
        for job in [
            FeedJob::Follow {
                follower: a,
                followee: b,
            },
            FeedJob::Publish {
                article: b,
                author: a,
            },
            FeedJob::Unpublish { article: b },
        ] {
            assert_eq!(FeedJob::decode(&job.encode()), Ok(job));
        }
        assert_eq!(
            FeedJob::Follow {
                follower: a,
                followee: b
            }
            .encode(),
            b"follow 12 34".to_vec()
        );
        for bad in [
            &b""[..],
            b"follow 1",
            b"publish 1 x",
            b"unpublish 1 2",
            b"other 1",
        ] {
            assert!(FeedJob::decode(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn edge_purges_round_trip_through_their_payload() {
        let job = EdgePurge {
            not_before_ms: 1_767_225_600_000,
            tokens: vec!["0123456789abcdef".into(), "fedcba9876543210".into()],
        };
        assert_eq!(
            job.encode(),
            b"1767225600000 0123456789abcdef fedcba9876543210".to_vec()
        );
        assert_eq!(EdgePurge::decode(&job.encode()), Ok(job));
        for bad in [
            &b""[..],
            b"x 0123456789abcdef",
            b"1 0123",
            b"1 0123456789ABCDEF",
        ] {
            assert!(EdgePurge::decode(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn image_variants_round_trip_through_their_payload() {
        for id in [1, 42, 7_123_456_789_012_345, i64::MAX] {
            let job = ImageVariants {
                upload: Id::from_i64(id),
            };
            assert_eq!(ImageVariants::decode(&job.encode()), Ok(job));
        }
    }

    #[test]
    fn image_variants_payload_is_the_upload_id_in_decimal() {
        // jobs already in queues were written in this format: it must not change
        let job = ImageVariants {
            upload: Id::from_i64(7_123_456_789),
        };
        assert_eq!(job.encode(), b"7123456789".to_vec());
        assert_eq!(
            ImageVariants::decode(b"7123456789").map(|j| j.upload.as_i64()),
            Ok(7_123_456_789)
        );
    }

    #[test]
    fn image_variants_refuse_garbage_payloads() {
        assert_eq!(
            ImageVariants::decode(&[0xff, 0xfe]),
            Err(PayloadError::NotText {
                queue: IMAGES_QUEUE
            })
        );
        for bad in [&b""[..], b"abc", b"12 ", b"1.5", b"99999999999999999999"] {
            assert!(
                matches!(
                    ImageVariants::decode(bad),
                    Err(PayloadError::NotAnId { .. })
                ),
                "{bad:?} was taken"
            );
        }
        let long = vec![b'x'; 1000];
        let Err(PayloadError::NotAnId { payload, .. }) = ImageVariants::decode(&long) else {
            panic!("a long garbage payload was taken");
        };
        assert_eq!(payload.len(), 64, "the error keeps a bounded excerpt");
    }
}
