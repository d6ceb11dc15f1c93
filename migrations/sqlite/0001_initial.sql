-- 0001: the social blogging schema for the single-server (SQLite) rung.
--
-- IDs are made by the application (crescendo_domain::IdGen): time-ordered 63-bit integers
-- whose middle bits name the owning logical shard. No AUTOINCREMENT anywhere, so rows can
-- later move between shard groups without renumbering. Times are ms since the Unix epoch.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    bio           TEXT    NOT NULL DEFAULT '',
    image         TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- The directory: usernames and emails are global, users are sharded. With several shard
-- groups these two tables live in the catalogue database; here they share the file.
-- Username uniqueness ignores case, so "Jake" cannot impersonate "jake".
CREATE TABLE usernames (
    username TEXT    NOT NULL PRIMARY KEY COLLATE NOCASE,
    user_id  INTEGER NOT NULL UNIQUE REFERENCES users (id)
) STRICT, WITHOUT ROWID;

CREATE TABLE emails (
    email   TEXT    NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL UNIQUE REFERENCES users (id)
) STRICT, WITHOUT ROWID;

-- A follow lives with the follower (whose feed reads it).
CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users (id),
    followee_id INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE articles (
    id              INTEGER PRIMARY KEY,
    author_id       INTEGER NOT NULL REFERENCES users (id),
    slug            TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    -- kept in the same transaction as each favorites row, so lists need no COUNT(*)
    favorites_count INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
-- "articles by author, newest first" and the feed's per-author scans
CREATE INDEX articles_author_id ON articles (author_id, id DESC);

CREATE TABLE article_tags (
    article_id INTEGER NOT NULL REFERENCES articles (id),
    tag        TEXT    NOT NULL,
    PRIMARY KEY (article_id, tag)
) STRICT, WITHOUT ROWID;
-- "articles with tag T, newest first" and tag counts
CREATE INDEX article_tags_tag ON article_tags (tag, article_id DESC);

-- A favourite lives with the user who made it.
CREATE TABLE favorites (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    article_id INTEGER NOT NULL REFERENCES articles (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, article_id)
) STRICT, WITHOUT ROWID;
-- deleting an article removes its favourites
CREATE INDEX favorites_article_id ON favorites (article_id);

-- Comments live with their article (they are read per article).
CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    article_id INTEGER NOT NULL REFERENCES articles (id),
    author_id  INTEGER NOT NULL REFERENCES users (id),
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
-- an article's comments in order
CREATE INDEX comments_article_id ON comments (article_id, id);
