-- 0003: a number for each cluster, given the first time a node is configured with it and
-- never changed: it tags the cluster's WAL positions in read fences (crescendo_store's
-- fence module), so every node must agree on it, whatever order its settings list the
-- clusters in.
CREATE TABLE cluster_numbers (
    name   text     PRIMARY KEY,
    number smallint NOT NULL UNIQUE CHECK (number BETWEEN 1 AND 255)
);
