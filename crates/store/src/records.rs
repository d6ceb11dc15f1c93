//! Records that cross the `Store` seam. Times are milliseconds since the Unix epoch.

use crescendo_domain::{CommentId, Id};
use serde::{Deserialize, Serialize};

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's ID; its shard bits say where the user's rows live.
    pub id: Id,
    /// Username as typed at sign-up (unique regardless of case).
    pub username: String,
    /// Lower-cased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Free text; empty when unset.
    pub bio: String,
    /// Image URL; empty when unset.
    pub image: String,
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Validated username.
    pub username: String,
    /// Validated, lower-cased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// Fields of a user to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    /// New username.
    pub username: Option<String>,
    /// New lower-cased email.
    pub email: Option<String>,
    /// New password hash.
    pub password_hash: Option<String>,
    /// New bio (empty clears it).
    pub bio: Option<String>,
    /// New image URL (empty clears it).
    pub image: Option<String>,
}

impl NewUser {
    /// The record of this user once stored under `id`: bio and image start empty.
    pub fn into_record(self, id: Id) -> UserRecord {
        UserRecord {
            id,
            username: self.username,
            email: self.email,
            password_hash: self.password_hash,
            bio: String::new(),
            image: String::new(),
        }
    }
}

impl UserChanges {
    /// Sets the given fields on `u` (the record a backend writes back).
    pub fn apply_to(self, u: &mut UserRecord) {
        let UserChanges {
            username,
            email,
            password_hash,
            bio,
            image,
        } = self;
        for (field, value) in [
            (&mut u.username, username),
            (&mut u.email, email),
            (&mut u.password_hash, password_hash),
            (&mut u.bio, bio),
            (&mut u.image, image),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
    }
}

/// A stored article with what every viewer sees of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleRecord {
    /// The article's ID (carries its author's shard).
    pub id: Id,
    /// The author's ID.
    pub author_id: Id,
    /// `title-words-<id base 36>`.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Short description.
    pub description: String,
    /// Markdown body.
    pub body: String,
    /// Tags in alphabetical order.
    pub tags: Vec<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_at: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at: i64,
    /// How many users favourited it.
    pub favorites_count: i64,
    /// The URL of its cover image (an upload's), empty when it has none.
    #[serde(default)]
    pub cover_image: String,
}

/// An article to create.
#[derive(Clone, Debug)]
pub struct NewArticle {
    /// The author; the article is created on the author's shard.
    pub author_id: Id,
    /// Validated title.
    pub title: String,
    /// Validated description.
    pub description: String,
    /// Validated body.
    pub body: String,
    /// Validated tags (duplicates are dropped by the store).
    pub tags: Vec<String>,
    /// Validated cover image URL, empty for none.
    pub cover_image: String,
}

/// Fields of an article to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ArticleChanges {
    /// New title (moves the slug).
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New body.
    pub body: Option<String>,
    /// New tag list, replacing the old one.
    pub tags: Option<Vec<String>>,
    /// New cover image URL (empty removes it).
    pub cover_image: Option<String>,
}

impl NewArticle {
    /// The record of this article once stored under `id` at `now_ms`: its slug carries the
    /// ID, tags are sorted and unique, and nobody has favourited it yet.
    pub fn into_record(self, id: Id, now_ms: i64) -> ArticleRecord {
        let mut tags = self.tags;
        tags.sort();
        tags.dedup();
        ArticleRecord {
            id,
            author_id: self.author_id,
            slug: crescendo_domain::Slug::format(&self.title, id),
            title: self.title,
            description: self.description,
            body: self.body,
            tags,
            created_at: now_ms,
            updated_at: now_ms,
            favorites_count: 0,
            cover_image: self.cover_image,
        }
    }
}

impl ArticleChanges {
    /// Sets the given fields on `a`: a new title moves the slug, tags are stored sorted and
    /// unique, and `updated_at` becomes `now_ms` (never earlier than it was). Returns whether
    /// the tags were replaced.
    pub fn apply_to(self, a: &mut ArticleRecord, now_ms: i64) -> bool {
        if let Some(t) = self.title {
            a.slug = crescendo_domain::Slug::format(&t, a.id);
            a.title = t;
        }
        if let Some(d) = self.description {
            a.description = d;
        }
        if let Some(b) = self.body {
            a.body = b;
        }
        if let Some(c) = self.cover_image {
            a.cover_image = c;
        }
        a.updated_at = now_ms.max(a.updated_at);
        match self.tags {
            Some(mut tags) => {
                tags.sort();
                tags.dedup();
                a.tags = tags;
                true
            }
            None => false,
        }
    }
}

/// A stored comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentRecord {
    /// The comment's ID (≤ 2^53 − 1).
    pub id: CommentId,
    /// The article it belongs to.
    pub article_id: Id,
    /// Who wrote it.
    pub author_id: Id,
    /// Text.
    pub body: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at: i64,
}

/// Where an upload's processing stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Its variants are being made.
    Processing,
    /// Its variants exist.
    Ready,
    /// It could not be processed; the record says why.
    Failed,
}

impl UploadState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Processing => "processing",
            UploadState::Ready => "ready",
            UploadState::Failed => "failed",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "processing" => UploadState::Processing,
            "ready" => UploadState::Ready,
            "failed" => UploadState::Failed,
            _ => return None,
        })
    }
}

/// An uploaded image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Its ID.
    pub id: Id,
    /// Who uploaded it.
    pub owner_id: Id,
    /// Where its processing stands.
    pub state: UploadState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Its MIME type, from its content.
    pub mime: String,
    /// The blob key of the original bytes.
    pub original: String,
    /// Width in pixels, as stored.
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_at: i64,
}

/// What [`crate::Store::create_upload`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUpload {
    /// Who uploads it.
    pub owner_id: Id,
    /// Its MIME type.
    pub mime: String,
    /// The blob key of the original bytes, stored before the upload is recorded.
    pub original: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl NewUpload {
    /// The record of this upload once stored under `id` at `now_ms`: still processing.
    pub fn into_record(self, id: Id, now_ms: i64) -> UploadRecord {
        UploadRecord {
            id,
            owner_id: self.owner_id,
            state: UploadState::Processing,
            reason: None,
            mime: self.mime,
            original: self.original,
            width: self.width,
            height: self.height,
            created_at: now_ms,
        }
    }
}

/// A job waiting in the outbox to be handed to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its ID in the outbox.
    pub id: i64,
    /// The queue it goes to.
    pub queue: String,
    /// The job's payload.
    pub payload: Vec<u8>,
}

/// Which articles a list shows.
///
/// On a sharded store, lists by an author stay on the author's cluster; the others are
/// scatter-gather merges over every cluster (favourites live with their articles, so
/// `FavoritedBy` is one of them), and the feed asks the clusters of the reader's followees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArticleFilter {
    /// Every article.
    All,
    /// Articles with this tag.
    Tag(String),
    /// Articles by this author.
    Author(Id),
    /// Articles this user favourited.
    FavoritedBy(Id),
    /// Articles by the users this user follows.
    Feed(Id),
    /// Articles matching every filter given (a request that combines filters).
    Match {
        /// With this tag.
        tag: Option<String>,
        /// By this author.
        author: Option<Id>,
        /// Favourited by this user.
        favorited_by: Option<Id>,
    },
}

/// A window of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// At most this many items.
    pub limit: u32,
    /// Skip this many items first.
    pub offset: u32,
}

/// One window of article IDs and the size of the whole list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdPage {
    /// IDs, newest first.
    pub ids: Vec<Id>,
    /// How many articles match in all.
    pub total: u64,
}

/// One article in one user's timeline (the feed by fan-out on write of a sharded store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Whose timeline: a follower of `author`.
    pub owner: Id,
    /// The article.
    pub article: Id,
    /// Its author.
    pub author: Id,
}
