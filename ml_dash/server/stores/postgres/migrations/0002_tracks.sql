-- ml-dash scale-out store, schema version 2: tracks (upstream's exp.tracks(topic).append).

-- One topic of an experiment; folder is the topic with '/' as '_' (upstream's folder name): two
-- topics may never share one, so that an export can lay them out.
CREATE TABLE tracks (
    id            bigserial PRIMARY KEY,
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    topic         text NOT NULL,
    folder        text NOT NULL,
    doc           bytea NOT NULL,   -- tracks/<folder>/metadata.json (orjson)
    UNIQUE (experiment_id, topic),
    UNIQUE (experiment_id, folder)
);

-- Entries in the order they were stored: {"timestamp", flattened fields...} (orjson). A batch's
-- entries with one timestamp are merged before they are stored; reads merge across batches.
CREATE TABLE track_entries (
    track_id  bigint NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    seq       bigint NOT NULL,
    timestamp double precision NOT NULL,
    entry     bytea NOT NULL,
    PRIMARY KEY (track_id, seq)
);
