-- 0006: follows stored on both sides, and timelines (rung 10's feed by fan-out on write).
--
-- `followers` is the followee's side of a follow: who follows a user, on the user's logical
-- shard (its key starts with the followee, so a publication filtered by logical shard may
-- filter on it). The follower's side (`follows`) is the truth; a job from the follow's
-- transaction brings this side in line with it, idempotently. Only a sharded store writes
-- it: on one database `follows` answers both questions.
CREATE TABLE followers (
    followee_id bigint NOT NULL,
    follower_id bigint NOT NULL,
    PRIMARY KEY (followee_id, follower_id)
);

-- A user's timeline: the articles of the authors they follow, written by the fan-out job of
-- each article (except for authors above the celebrity threshold, merged in at read time),
-- on the owner's logical shard. An article ID is time-ordered, so the key reads newest first.
CREATE TABLE timelines (
    owner_id   bigint NOT NULL,
    article_id bigint NOT NULL,
    author_id  bigint NOT NULL,
    PRIMARY KEY (owner_id, article_id)
);
-- an article's deletion removes its rows on every cluster; an unfollow removes an author's
CREATE INDEX timelines_article_id ON timelines (article_id);
CREATE INDEX timelines_owner_author ON timelines (owner_id, author_id);
