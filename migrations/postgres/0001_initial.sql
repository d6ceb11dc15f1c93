-- 0001: the social blogging schema on PostgreSQL (rungs 2 and up).
--
-- Same tables as the SQLite schema. IDs are made by the database, Instagram-style, so every
-- web node writing to this primary gets unique ones without a central counter per request:
-- milliseconds since 2026-01-01, 10 bits of a sequence, and the 12-bit logical shard
-- (crescendo_domain::Id). Comment IDs are 53 bits: milliseconds and 12 bits of a sequence.

CREATE SEQUENCE id_seq;
CREATE SEQUENCE comment_id_seq;

CREATE FUNCTION next_id(shard integer) RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1767225600000) << 22)
         | ((nextval('id_seq') % 1024) << 12)
         | (shard & 4095)
$$;

CREATE FUNCTION next_comment_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1767225600000) << 12)
         | (nextval('comment_id_seq') % 4096)
$$;

CREATE TABLE users (
    id            bigint PRIMARY KEY,
    username      text   NOT NULL,
    email         text   NOT NULL,
    password_hash text   NOT NULL,
    bio           text   NOT NULL DEFAULT '',
    image         text   NOT NULL DEFAULT '',
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL
);

-- The directory (the catalogue once users spread over shard groups). Usernames are unique
-- regardless of case: the key is the lower-cased name.
CREATE TABLE usernames (
    username_key text   PRIMARY KEY,
    user_id      bigint NOT NULL UNIQUE REFERENCES users (id)
);

CREATE TABLE emails (
    email   text   PRIMARY KEY,
    user_id bigint NOT NULL UNIQUE REFERENCES users (id)
);

-- A follow lives with the follower (whose feed reads it).
CREATE TABLE follows (
    follower_id bigint NOT NULL REFERENCES users (id),
    followee_id bigint NOT NULL REFERENCES users (id),
    created_at  bigint NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);

CREATE TABLE articles (
    id              bigint PRIMARY KEY,
    author_id       bigint NOT NULL REFERENCES users (id),
    slug            text   NOT NULL,
    title           text   NOT NULL,
    description     text   NOT NULL,
    body            text   NOT NULL,
    -- kept in the same transaction as each favorites row, so lists need no COUNT(*)
    favorites_count bigint NOT NULL DEFAULT 0,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
-- "articles by author, newest first" and the feed's per-author scans
CREATE INDEX articles_author_id ON articles (author_id, id DESC);

CREATE TABLE article_tags (
    article_id bigint NOT NULL REFERENCES articles (id),
    tag        text   NOT NULL,
    PRIMARY KEY (article_id, tag)
);
-- "articles with tag T, newest first" and tag counts
CREATE INDEX article_tags_tag ON article_tags (tag, article_id DESC);

CREATE TABLE favorites (
    user_id    bigint NOT NULL REFERENCES users (id),
    article_id bigint NOT NULL REFERENCES articles (id),
    created_at bigint NOT NULL,
    PRIMARY KEY (user_id, article_id)
);
-- deleting an article removes its favourites
CREATE INDEX favorites_article_id ON favorites (article_id);

CREATE TABLE comments (
    id         bigint PRIMARY KEY,
    article_id bigint NOT NULL REFERENCES articles (id),
    author_id  bigint NOT NULL REFERENCES users (id),
    body       text   NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
-- an article's comments in order
CREATE INDEX comments_article_id ON comments (article_id, id);
