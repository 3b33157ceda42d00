//! The schema, as the ordered list of migrations `Store::open` runs to the latest version.
//! Append only: a released migration is never edited.

use rusqlite_migration::{Migrations, M};

pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta (key, value) VALUES ('generation', '0');
         CREATE TABLE workloads (
             name TEXT PRIMARY KEY,
             spec TEXT NOT NULL,
             generation INTEGER NOT NULL,
             hash TEXT NOT NULL,
             updated_ms INTEGER NOT NULL
         );
         CREATE TABLE observed (
             name TEXT PRIMARY KEY,
             provisioned TEXT,
             pid INTEGER,
             started_ms INTEGER,
             last_exit TEXT,
             failures INTEGER NOT NULL DEFAULT 0,
             restarts INTEGER NOT NULL DEFAULT 0
         );
         CREATE TABLE events (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             ts_ms INTEGER NOT NULL,
             workload TEXT,
             kind TEXT NOT NULL,
             message TEXT NOT NULL
         );
         CREATE INDEX events_workload ON events (workload, id);",
        ),
        M::up(
            "CREATE TABLE volumes (
                 name TEXT PRIMARY KEY,
                 spec TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             CREATE TABLE snapshot_marks (
                 target TEXT PRIMARY KEY,
                 last_auto_ms INTEGER NOT NULL
             );",
        ),
        M::up(
            "CREATE TABLE addresses (
                 name TEXT PRIMARY KEY,
                 address TEXT NOT NULL UNIQUE
             );",
        ),
        M::up(
            "CREATE TABLE images (
                 reference TEXT PRIMARY KEY,
                 id TEXT NOT NULL,
                 record TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL
             );",
        ),
        M::up(
            "CREATE TABLE recipe_builds (
                 name TEXT NOT NULL,
                 version TEXT NOT NULL,
                 record TEXT NOT NULL,
                 PRIMARY KEY (name, version)
             );",
        ),
        M::up(
            "CREATE TABLE operator_keys (
                 fingerprint TEXT PRIMARY KEY,
                 public_key TEXT NOT NULL,
                 name TEXT NOT NULL,
                 added_ms INTEGER NOT NULL
             );",
        ),
        M::up(
            "CREATE TABLE userns_slots (
                 name TEXT PRIMARY KEY,
                 slot INTEGER NOT NULL UNIQUE
             );",
        ),
        M::up(
            "CREATE TABLE restart_requests (
                 name TEXT PRIMARY KEY,
                 generation INTEGER NOT NULL
             );
             ALTER TABLE observed ADD COLUMN restart_generation INTEGER NOT NULL DEFAULT 0;",
        ),
        // Typed events: the kind and its fields as JSON; NULL in rows recorded before.
        M::up("ALTER TABLE events ADD COLUMN data TEXT;"),
    ])
}
