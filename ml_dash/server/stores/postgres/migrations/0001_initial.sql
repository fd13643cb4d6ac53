-- ml-dash scale-out store, schema version 1.
-- Documents (experiment, params, metric metadata, file entries) are kept in the shapes the local
-- layout's JSON files have, so reads answer the same bodies and an export writes the same files.
-- Whatever holds a client's strings is stored as orjson bytes (bytea), not text or jsonb: JSON may
-- carry "\u0000", which PostgreSQL's text and jsonb refuse, and one bad value must never fail a batch.

CREATE TABLE experiments (
    id           bigserial PRIMARY KEY,
    prefix       text NOT NULL UNIQUE,
    owner        text NOT NULL,
    project      text NOT NULL,
    doc          bytea,                     -- experiment.json (orjson)
    next_log_seq bigint NOT NULL DEFAULT 0, -- the next log sequence number (contiguous, per experiment)
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL
);
CREATE INDEX experiments_owner_project ON experiments (owner, project);

-- A writer session and the highest seq stored with everything before it (PROTOCOL.md).
CREATE TABLE sessions (
    session    text PRIMARY KEY,
    prefix     text NOT NULL,
    acked_seq  bigint NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);

CREATE TABLE tokens (
    hash       text PRIMARY KEY,  -- sha256 of the token; the token itself is never stored
    owner      text NOT NULL,
    label      text,
    created_at double precision NOT NULL
);

-- Every params event makes a version; the newest holds the merged parameters (parameters.json).
CREATE TABLE params (
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    doc           bytea NOT NULL,  -- parameters.json (orjson)
    PRIMARY KEY (experiment_id, version)
);

CREATE TABLE logs (
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    ts            double precision NOT NULL,
    level         text NOT NULL,
    message       bytea NOT NULL,  -- UTF-8
    metadata      bytea,           -- orjson
    PRIMARY KEY (experiment_id, seq)
);

-- One metric of an experiment; name '' is the unnamed metric (no valid name is empty).
CREATE TABLE metrics (
    id            bigserial PRIMARY KEY,
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    name          text NOT NULL,
    next_index    bigint NOT NULL DEFAULT 0,  -- contiguous indices, per metric
    doc           bytea NOT NULL,             -- metrics/<name>/metadata.json (orjson)
    -- per field, over every row: orjson {field: {"count", "numeric", "min", "max", "last",
    -- "last_number", "sorted"}} (the dashboard's summary and table, kept with each batch)
    summary       bytea NOT NULL DEFAULT '\x7b7d',
    UNIQUE (experiment_id, name)
);

-- Metric rows in chunks of columns (at most 4,096 rows; a chunk never spans two batches).
--   layout: orjson {"keys": [every column, in the rows' order], "floats": [positions in keys],
--           "ints": [positions in keys]}
--   ts:     n float64 (little-endian), the rows' _ts
--   floats: n float64 per column of only floats, in the order of layout.floats
--   ints:   n int64 per column of only integers (no bool), in the order of layout.ints
--   json:   orjson {key: [n values]} for every other column; rows lacking a key are listed
--           under the key "\u0000absent" as {key: [row offsets]}
--   stats:  orjson {key: [rows with the key, numeric rows, min, max, last value]} (JSON values)
--   num_stats: per key of layout.keys, 5 float64: [rows with a number, rows with a non-NaN number,
--           min, max, last number] (numbers: ints, floats, bools, "NaN"/"Infinity" strings), the
--           summaries a chart's buckets are made of
CREATE TABLE metric_chunks (
    metric_id   bigint NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    first_index bigint NOT NULL,
    n           integer NOT NULL,
    created_at  double precision NOT NULL,
    layout      bytea NOT NULL,
    ts          bytea NOT NULL,
    floats      bytea NOT NULL,
    ints        bytea NOT NULL,
    json        bytea,
    stats       bytea NOT NULL,
    num_stats   bytea NOT NULL,
    PRIMARY KEY (metric_id, first_index)
);
-- Column bytes are floats and integers, which compress poorly and are read in bulk by charts:
-- kept out of line uncompressed (pglz decompression was most of a 1M-row read), so a read costs
-- a copy and a part of one (substring) reads only its own pages.
ALTER TABLE metric_chunks ALTER COLUMN ts SET STORAGE EXTERNAL;
ALTER TABLE metric_chunks ALTER COLUMN floats SET STORAGE EXTERNAL;
ALTER TABLE metric_chunks ALTER COLUMN ints SET STORAGE EXTERNAL;

CREATE TABLE files (
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    id            text NOT NULL,
    seq           bigserial,      -- the order entries were stored in
    entry         bytea NOT NULL, -- an entry of files/.files_metadata.json (orjson)
    deleted       boolean NOT NULL DEFAULT false,
    place         text NOT NULL,  -- the normalized path and the file name: a new live file replaces an older one there
    PRIMARY KEY (experiment_id, id)
);

CREATE INDEX files_live_place ON files (experiment_id, place) WHERE NOT deleted;

-- Blobs the blob store holds (written after the bytes are stored and checked): a file event may
-- link one only when it is listed here.
CREATE TABLE blobs (
    checksum   text PRIMARY KEY,
    size       bigint NOT NULL,
    created_at double precision NOT NULL
);

-- Settings every server process must share (the dashboard's cookie secret).
CREATE TABLE server_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
