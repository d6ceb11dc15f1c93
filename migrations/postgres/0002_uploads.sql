-- 0002: uploaded images, articles' cover images, and the outbox of jobs written with the rows they concern.

CREATE TABLE uploads (
    id          BIGINT  PRIMARY KEY,
    owner_id    BIGINT  NOT NULL REFERENCES users (id),
    -- 'processing', 'ready' or 'failed'
    state       TEXT    NOT NULL DEFAULT 'processing',
    reason      TEXT,
    mime        TEXT    NOT NULL,
    -- where the original bytes are in the blob store (written before this row)
    original    TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Jobs committed in the same transaction as their data; a relay hands them to the queue
-- and then deletes them. A relay holds the entries it is publishing until lease_until.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    queue       TEXT    NOT NULL,
    payload     BYTEA   NOT NULL,
    lease_until BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);

-- an article's cover image: an upload's URL, or empty
ALTER TABLE articles ADD COLUMN cover_image TEXT NOT NULL DEFAULT '';
