//! warren's persistent state in SQLite.
//!
//! One database file (`<state-dir>/warren.db`, WAL mode) holds:
//! - `workloads`: the desired specs, each with the generation that last changed it and its
//!   drift hash. The global generation counter lives in `meta`.
//! - `observed`: what the executor last recorded per workload (provisioned hash, main PID, last
//!   exit, failure and restart counters). Runtime facts that the daemon re-verifies on start.
//! - `events`: a bounded event log (oldest rows pruned past [`EVENT_LIMIT`]). Each row keeps
//!   its [`EventKind`] as JSON (`data`) beside its kind word and rendered message; rows from
//!   before `data` existed read back as [`EventKind::Legacy`].
//! - `volumes`: declared volumes (their data lives in the storage driver).
//! - `snapshot_marks`: when each workload or volume last got an automatic snapshot.
//! - `addresses`: each bridge workload's address (IPAM), unique.
//! - `images`: imported OCI images by reference (`app:v1`), each with its image id, config
//!   and the layer-chain worlds its root filesystem is made of.
//! - `recipe_builds`: each built version of a Warrenfile recipe and the world it produced.
//! - `operator_keys`: the operator public keys the remote API accepts, by fingerprint. The
//!   claim window and code live in `meta`.
//! - `userns_slots`: each user-namespaced workload's slot in the host id pool, unique; kept
//!   while its data dataset may be owned by that range (released when the data is purged or
//!   shifted back).
//! - `restart_requests`: each workload's operator restart generation (see
//!   [`Desired::restart_generation`]); the observed row keeps the generation its run was started
//!   for. Kept by name, so the routing workload (never a stored spec) is restarted the same way.
//!
//! Invariants: every multi-row change runs in one transaction, so an apply is all or nothing;
//! generations only grow; a spec row is rewritten only when its content changed.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
#[cfg(doc)]
use warren_model::{event::EventKind, plan::Desired};

/// Events kept in the log; older ones are pruned.
pub const EVENT_LIMIT: i64 = 10_000;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("stored record is invalid: {0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

mod auth;
mod events;
mod ids;
mod images;
mod migrations;
mod volumes;
mod workloads;

pub use auth::OperatorKeyRow;
pub use events::Event;
pub use images::{ImageRecord, RecipeBuild};
pub use workloads::{ApplyOutcome, ObservedRow};

/// The database handle. Cheap operations; callers may use it from async code.
pub struct Store {
    conn: Mutex<Connection>,
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and runs migrations.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
