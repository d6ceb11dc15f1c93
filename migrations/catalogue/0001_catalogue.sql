-- 0001: the catalogue of a sharded deployment (rung 10): the shard map with its epoch,
-- and the directory that keeps usernames and emails unique across every cluster.
--
-- The map: each of the 4,096 logical shards with the name of the cluster that holds it.
-- Every change of the map raises the epoch in the same transaction; nodes reload the map
-- when they see a new epoch.
CREATE TABLE map_epoch (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch    bigint  NOT NULL
);

CREATE TABLE shard_homes (
    shard   integer PRIMARY KEY CHECK (shard BETWEEN 0 AND 4095),
    cluster text    NOT NULL
);

-- The directory. Sign-up reserves the name and the email here first (user_id NULL), then
-- creates the user on its shard, then fills in user_id. A reservation whose user never
-- appeared is swept (see the store's sweep), so a sign-up killed between the steps leaves
-- no name taken without a user. Usernames are unique regardless of case. While a user
-- changes their name or email, they hold the old and the new one for a moment, so user_id
-- is not unique.
CREATE TABLE usernames (
    username_key text    PRIMARY KEY,
    user_id      bigint,
    shard        integer NOT NULL,
    reserved_at  bigint  NOT NULL
);

CREATE TABLE emails (
    email       text    PRIMARY KEY,
    user_id     bigint,
    shard       integer NOT NULL,
    reserved_at bigint  NOT NULL
);

CREATE INDEX usernames_user_id ON usernames (user_id);
CREATE INDEX emails_user_id ON emails (user_id);
CREATE INDEX usernames_pending ON usernames (reserved_at) WHERE user_id IS NULL;
CREATE INDEX emails_pending ON emails (reserved_at) WHERE user_id IS NULL;
