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

use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use warren_model::event::EventKind;
use warren_model::plan::{Desired, LastExit, Observed};
use warren_model::{DesiredState, VolumeSpec, WorkloadSpec};

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

fn migrations() -> Migrations<'static> {
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

/// What the executor persists about one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObservedRow {
    pub provisioned: Option<String>,
    pub pid: Option<i32>,
    /// Unix ms when the current (or last) run started.
    pub started_ms: Option<u64>,
    pub last_exit: Option<LastExit>,
    pub failures: u32,
    pub restarts: u32,
    /// The operator restart generation the current (or last) run was started for.
    pub restart_generation: u64,
}

impl ObservedRow {
    /// The planner's view (not busy).
    pub fn to_observed(&self) -> Observed {
        Observed {
            provisioned: self.provisioned.clone(),
            pid: self.pid,
            last_exit: self.last_exit.clone(),
            failures: self.failures,
            restarts: self.restarts,
            restart_generation: self.restart_generation,
            busy: false,
        }
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub ts_ms: u64,
    pub workload: Option<String>,
    /// What happened, with its fields; the message is rendered from it.
    pub kind: EventKind,
}

/// An event row's kind: its JSON when it has one, else (an older row, or JSON this version
/// does not know) the legacy pair of kind word and message.
fn event_kind(data: Option<String>, kind: String, message: String) -> EventKind {
    data.and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or(EventKind::Legacy { kind, message })
}

/// What an apply changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub generation: u64,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

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
        migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current global generation.
    pub fn generation(&self) -> Result<u64> {
        let c = self.conn();
        generation(&c)
    }

    /// Every desired workload.
    pub fn desired(&self) -> Result<BTreeMap<String, Desired>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT w.name, w.spec, w.generation, w.hash, r.generation FROM workloads w
             LEFT JOIN restart_requests r ON r.name = w.name ORDER BY w.name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, spec, generation, hash, restart) = row?;
            let spec: WorkloadSpec = serde_json::from_str(&spec)?;
            out.insert(
                name,
                Desired {
                    spec,
                    generation: generation as u64,
                    hash,
                    restart_generation: restart.unwrap_or(0) as u64,
                },
            );
        }
        Ok(out)
    }

    /// One desired workload.
    pub fn get_desired(&self, name: &str) -> Result<Option<Desired>> {
        let c = self.conn();
        let row = c
            .query_row(
                "SELECT w.spec, w.generation, w.hash, r.generation FROM workloads w
                 LEFT JOIN restart_requests r ON r.name = w.name WHERE w.name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((spec, generation, hash, restart)) => Ok(Some(Desired {
                spec: serde_json::from_str(&spec)?,
                generation: generation as u64,
                hash,
                restart_generation: restart.unwrap_or(0) as u64,
            })),
        }
    }

    /// Records an operator restart request for `name` and returns its new restart generation.
    /// Any name may be asked for (the routing workload has no stored spec).
    pub fn request_restart(&self, name: &str) -> Result<u64> {
        let c = self.conn();
        let g: i64 = c.query_row(
            "INSERT INTO restart_requests (name, generation) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET generation = generation + 1
             RETURNING generation",
            [name],
            |r| r.get(0),
        )?;
        Ok(g as u64)
    }

    /// The restart generation of `name` (0 when no restart was ever requested).
    pub fn restart_generation(&self, name: &str) -> Result<u64> {
        let g: Option<i64> = self
            .conn()
            .query_row(
                "SELECT generation FROM restart_requests WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(g.unwrap_or(0) as u64)
    }

    /// Stores `specs` (creating or updating) and removes `remove`, in one transaction. Rows whose
    /// content is unchanged keep their generation. Returns what changed.
    pub fn apply(&self, specs: &[WorkloadSpec], remove: &[String]) -> Result<ApplyOutcome> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let next = generation(&tx)? + 1;
        let mut out = ApplyOutcome::default();
        let now = now_ms() as i64;
        for spec in specs {
            let json = serde_json::to_string(spec)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT spec FROM workloads WHERE name = ?1",
                    [&spec.name],
                    |r| r.get(0),
                )
                .optional()?;
            match existing {
                Some(old) if old == json => out.unchanged.push(spec.name.clone()),
                other => {
                    tx.execute(
                        "INSERT INTO workloads (name, spec, generation, hash, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(name) DO UPDATE SET spec = ?2, generation = ?3, hash = ?4,
                         updated_ms = ?5",
                        params![spec.name, json, next as i64, spec.hash(), now],
                    )?;
                    if other.is_some() {
                        out.updated.push(spec.name.clone());
                    } else {
                        out.created.push(spec.name.clone());
                    }
                }
            }
        }
        for name in remove {
            tx.execute("DELETE FROM restart_requests WHERE name = ?1", [name])?;
            if tx.execute("DELETE FROM workloads WHERE name = ?1", [name])? > 0 {
                out.removed.push(name.clone());
            }
        }
        let changed = !(out.created.is_empty() && out.updated.is_empty() && out.removed.is_empty());
        out.generation = if changed {
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'generation'",
                [next.to_string()],
            )?;
            next
        } else {
            next - 1
        };
        tx.commit()?;
        Ok(out)
    }

    /// Changes only the desired running/stopped state. Returns false if the workload is unknown.
    pub fn set_state(&self, name: &str, state: DesiredState) -> Result<bool> {
        let Some(mut d) = self.get_desired(name)? else {
            return Ok(false);
        };
        if d.spec.state != state {
            d.spec.state = state;
            self.apply(&[d.spec], &[])?;
        }
        Ok(true)
    }

    /// Every observed row.
    pub fn observed(&self) -> Result<BTreeMap<String, ObservedRow>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT name, provisioned, pid, started_ms, last_exit, failures, restarts,
             restart_generation FROM observed",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i32>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, provisioned, pid, started, last_exit, failures, restarts, restart_gen) =
                row?;
            let last_exit = match last_exit {
                Some(s) => Some(serde_json::from_str(&s)?),
                None => None,
            };
            out.insert(
                name,
                ObservedRow {
                    provisioned,
                    pid,
                    started_ms: started.map(|v| v as u64),
                    last_exit,
                    failures: failures as u32,
                    restarts: restarts as u32,
                    restart_generation: restart_gen as u64,
                },
            );
        }
        Ok(out)
    }

    /// Writes one observed row.
    pub fn put_observed(&self, name: &str, row: &ObservedRow) -> Result<()> {
        let last_exit = row
            .last_exit
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.conn().execute(
            "INSERT INTO observed (name, provisioned, pid, started_ms, last_exit, failures, restarts,
             restart_generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(name) DO UPDATE SET provisioned = ?2, pid = ?3, started_ms = ?4,
             last_exit = ?5, failures = ?6, restarts = ?7, restart_generation = ?8",
            params![
                name,
                row.provisioned,
                row.pid,
                row.started_ms.map(|v| v as i64),
                last_exit,
                row.failures as i64,
                row.restarts as i64,
                row.restart_generation as i64
            ],
        )?;
        Ok(())
    }

    /// Forgets a workload's observed row.
    pub fn delete_observed(&self, name: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM observed WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Appends an event and prunes the log past [`EVENT_LIMIT`].
    pub fn add_event(&self, workload: Option<&str>, kind: &EventKind) -> Result<Event> {
        let data = serde_json::to_string(kind)?;
        let c = self.conn();
        let ts = now_ms();
        c.execute(
            "INSERT INTO events (ts_ms, workload, kind, message, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts as i64, workload, kind.category(), kind.to_string(), data],
        )?;
        let id = c.last_insert_rowid();
        if id % 100 == 0 {
            c.execute("DELETE FROM events WHERE id <= ?1", [id - EVENT_LIMIT])?;
        }
        Ok(Event {
            id,
            ts_ms: ts,
            workload: workload.map(str::to_string),
            kind: kind.clone(),
        })
    }

    /// Events with id greater than `after`, optionally for one workload, oldest first, at most
    /// `limit` (the newest ones when more match).
    pub fn events(&self, after: i64, workload: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, ts_ms, workload, kind, message, data FROM events
             WHERE id > ?1 AND (?2 IS NULL OR workload = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![after, workload, limit as i64], |r| {
            Ok(Event {
                id: r.get(0)?,
                ts_ms: r.get::<_, i64>(1)? as u64,
                workload: r.get(2)?,
                kind: event_kind(r.get(5)?, r.get(3)?, r.get(4)?),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }
}

impl Store {
    /// Every declared volume.
    pub fn volumes(&self) -> Result<BTreeMap<String, VolumeSpec>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT name, spec FROM volumes ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, spec) = row?;
            out.insert(name, serde_json::from_str(&spec)?);
        }
        Ok(out)
    }

    /// Stores volume declarations and forgets `remove`, in one transaction.
    pub fn put_volumes(&self, specs: &[VolumeSpec], remove: &[String]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let now = now_ms() as i64;
        for v in specs {
            tx.execute(
                "INSERT INTO volumes (name, spec, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET spec = ?2, updated_ms = ?3",
                params![v.name, serde_json::to_string(v)?, now],
            )?;
        }
        for name in remove {
            tx.execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When `target` (e.g. `workload/web`, `volume/media`) last got an automatic snapshot.
    pub fn last_auto_snapshot(&self, target: &str) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn()
            .query_row(
                "SELECT last_auto_ms FROM snapshot_marks WHERE target = ?1",
                [target],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.map(|v| v as u64))
    }

    /// Records an automatic snapshot of `target` at `at_ms`.
    pub fn mark_auto_snapshot(&self, target: &str, at_ms: u64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO snapshot_marks (target, last_auto_ms) VALUES (?1, ?2)
             ON CONFLICT(target) DO UPDATE SET last_auto_ms = ?2",
            params![target, at_ms as i64],
        )?;
        Ok(())
    }
}

impl Store {
    /// Every workload's bridge address (the IPAM table), by name.
    pub fn addresses(&self) -> Result<BTreeMap<String, std::net::Ipv4Addr>> {
        let c = self.conn();
        read_addresses(&c)
    }

    /// The address of `name`: the stored one if `pick` keeps it, otherwise a new one chosen by
    /// `pick` from every address already taken (name → address), stored in the same
    /// transaction so two allocations never hand out one address.
    pub fn assign_address<E>(
        &self,
        name: &str,
        pick: impl FnOnce(
            &BTreeMap<String, std::net::Ipv4Addr>,
        ) -> std::result::Result<std::net::Ipv4Addr, E>,
    ) -> Result<std::result::Result<std::net::Ipv4Addr, E>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let taken = read_addresses(&tx)?;
        let addr = match pick(&taken) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if taken.get(name) != Some(&addr) {
            tx.execute(
                "INSERT INTO addresses (name, address) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET address = ?2",
                params![name, addr.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(Ok(addr))
    }

    /// Releases `name`'s address; returns whether it held one.
    pub fn release_address(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM addresses WHERE name = ?1", [name])?
            > 0)
    }
}

impl Store {
    /// Every workload's user-namespace slot, by name.
    pub fn userns_slots(&self) -> Result<BTreeMap<String, u32>> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT name, slot FROM userns_slots")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The slot of `name`, if it holds one.
    pub fn userns_slot(&self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT slot FROM userns_slots WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The slot of `name`: the one it holds, or the lowest free one below `slots`, stored in
    /// the same transaction. None when every slot is taken.
    pub fn assign_userns_slot(&self, name: &str, slots: u32) -> Result<Option<u32>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let held: Option<u32> = tx
            .query_row(
                "SELECT slot FROM userns_slots WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(slot) = held {
            return Ok(Some(slot));
        }
        let taken: std::collections::BTreeSet<u32> = {
            let mut stmt = tx.prepare("SELECT slot FROM userns_slots")?;
            let rows = stmt.query_map([], |r| r.get::<_, u32>(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let Some(slot) = (0..slots).find(|s| !taken.contains(s)) else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO userns_slots (name, slot) VALUES (?1, ?2)",
            params![name, slot],
        )?;
        tx.commit()?;
        Ok(Some(slot))
    }

    /// Releases `name`'s slot; returns whether it held one.
    pub fn release_userns_slot(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM userns_slots WHERE name = ?1", [name])?
            > 0)
    }
}

/// One stored image: what `image = "REF"` resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference it is stored under (`app:v1`, `registry:5000/app:1.2`).
    pub reference: String,
    /// The image id: the digest of its config (`sha256:...`).
    pub id: String,
    /// The manifest digest, when the source had one.
    #[serde(default)]
    pub manifest_digest: Option<String>,
    /// The image config (entrypoint, cmd, env, ...) as imported.
    pub config: serde_json::Value,
    /// The storage worlds of its layer chain, lowest first; the last is its root filesystem.
    pub layers: Vec<String>,
    /// Bytes of all layers, uncompressed.
    pub size: u64,
    /// Unix milliseconds of the import.
    pub created_ms: u64,
}

impl ImageRecord {
    /// The world a workload's rootfs is a snapshot of.
    pub fn top(&self) -> Option<&str> {
        self.layers.last().map(String::as_str)
    }
}

impl Store {
    /// Every stored image, by reference.
    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT reference, record FROM images ORDER BY reference")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (reference, record) = row?;
            out.insert(reference, serde_json::from_str(&record)?);
        }
        Ok(out)
    }

    /// The image stored under `reference`.
    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let record: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM images WHERE reference = ?1",
                [reference],
                |r| r.get(0),
            )
            .optional()?;
        Ok(record.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    /// Stores (or moves) `record.reference` to `record`.
    pub fn put_image(&self, record: &ImageRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO images (reference, id, record, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(reference) DO UPDATE SET id = ?2, record = ?3, updated_ms = ?4",
            params![
                record.reference,
                record.id,
                serde_json::to_string(record)?,
                now_ms() as i64
            ],
        )?;
        Ok(())
    }

    /// Forgets the image stored under `reference`; returns whether there was one.
    pub fn remove_image(&self, reference: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM images WHERE reference = ?1", [reference])?
            > 0)
    }
}

/// An enrolled operator key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OperatorKeyRow {
    pub fingerprint: String,
    /// Raw Ed25519 public key, unpadded base64url.
    pub public_key: String,
    /// A label (`alice@laptop`).
    pub name: String,
    pub added_ms: u64,
}

impl Store {
    /// A `meta` value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets (`Some`) or deletes (`None`) `meta` values, in one transaction.
    pub fn set_meta(&self, values: &[(&str, Option<&str>)]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for (key, value) in values {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = ?2",
                    params![key, v],
                )?,
                None => tx.execute("DELETE FROM meta WHERE key = ?1", [key])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Every enrolled operator key.
    pub fn operator_keys(&self) -> Result<Vec<OperatorKeyRow>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT fingerprint, public_key, name, added_ms FROM operator_keys ORDER BY added_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok(OperatorKeyRow {
                fingerprint: r.get(0)?,
                public_key: r.get(1)?,
                name: r.get(2)?,
                added_ms: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Enrolls a key; false if it was enrolled already. `close` meta keys are deleted in the
    /// same transaction (the claim window, when enrolling with a claim code).
    pub fn add_operator_key(&self, key: &OperatorKeyRow, close: &[&str]) -> Result<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO operator_keys (fingerprint, public_key, name, added_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.fingerprint,
                key.public_key,
                key.name,
                key.added_ms as i64
            ],
        )? > 0;
        for k in close {
            tx.execute("DELETE FROM meta WHERE key = ?1", [k])?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Revokes a key; false if it was not enrolled.
    pub fn revoke_operator_key(&self, fingerprint: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM operator_keys WHERE fingerprint = ?1",
            [fingerprint],
        )? > 0)
    }
}

/// One built version of a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecipeBuild {
    /// `namespace/name`.
    pub name: String,
    pub version: String,
    /// The build cache key (also names the world).
    pub key: String,
    /// The sealed world the build produced.
    pub world: String,
    /// What it was built on (`world W`, `recipe NS/NAME VERSION`, `image REF`).
    pub parent: String,
    pub created_ms: u64,
}

impl Store {
    /// Every built version of every recipe.
    pub fn recipe_builds(&self) -> Result<Vec<RecipeBuild>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT record FROM recipe_builds ORDER BY name, version")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        Ok(out)
    }

    /// Records (or replaces) a built version.
    pub fn put_recipe_build(&self, b: &RecipeBuild) -> Result<()> {
        self.conn().execute(
            "INSERT INTO recipe_builds (name, version, record) VALUES (?1, ?2, ?3)
             ON CONFLICT(name, version) DO UPDATE SET record = ?3",
            params![b.name, b.version, serde_json::to_string(b)?],
        )?;
        Ok(())
    }

    /// Forgets a built version; returns whether it was known.
    pub fn remove_recipe_build(&self, name: &str, version: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM recipe_builds WHERE name = ?1 AND version = ?2",
            params![name, version],
        )? > 0)
    }
}

fn read_addresses(c: &Connection) -> Result<BTreeMap<String, std::net::Ipv4Addr>> {
    let mut stmt = c.prepare("SELECT name, address FROM addresses")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, addr) = row?;
        let addr = addr.parse().map_err(|_| {
            StoreError::Invalid(format!("stored address of {name} is not IPv4: {addr:?}"))
        })?;
        out.insert(name, addr);
    }
    Ok(out)
}

fn generation(c: &Connection) -> Result<u64> {
    let v: String = c.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
        r.get(0)
    })?;
    Ok(v.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::Source;

    fn spec(name: &str) -> WorkloadSpec {
        WorkloadSpec::new(name, Source::World("busybox".into()))
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("warren.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn apply_tracks_generations_and_changes() {
        let (_d, s) = open();
        let o = s.apply(&[spec("a"), spec("b")], &[]).unwrap();
        assert_eq!(o.generation, 1);
        assert_eq!(o.created, ["a", "b"]);
        // Same content: nothing changes, generation stays.
        let o = s.apply(&[spec("a"), spec("b")], &[]).unwrap();
        assert_eq!(o.generation, 1);
        assert_eq!(o.unchanged, ["a", "b"]);
        let mut a2 = spec("a");
        a2.command = vec!["true".into()];
        let o = s.apply(&[a2.clone()], &["b".into(), "zz".into()]).unwrap();
        assert_eq!(o.generation, 2);
        assert_eq!(o.updated, ["a"]);
        assert_eq!(o.removed, ["b"]);
        let d = s.desired().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d["a"].generation, 2);
        assert_eq!(d["a"].hash, a2.hash());
        assert_eq!(d["a"].spec, a2);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.db");
        {
            let s = Store::open(&path).unwrap();
            s.apply(&[spec("a")], &[]).unwrap();
            s.set_state("a", DesiredState::Stopped).unwrap();
            s.put_observed(
                "a",
                &ObservedRow {
                    provisioned: Some("h".into()),
                    pid: Some(7),
                    last_exit: Some(LastExit::Exited {
                        code: 3,
                        signal: None,
                        oom_killed: true,
                        at_ms: 9,
                    }),
                    failures: 2,
                    restarts: 4,
                    started_ms: Some(1),
                    restart_generation: 5,
                },
            )
            .unwrap();
            s.add_event(
                Some("a"),
                &EventKind::Started {
                    pid: 7,
                    generation: 2,
                },
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.generation().unwrap(), 2);
        assert_eq!(
            s.get_desired("a").unwrap().unwrap().spec.state,
            DesiredState::Stopped
        );
        let o = &s.observed().unwrap()["a"];
        assert_eq!(o.pid, Some(7));
        assert_eq!(o.restarts, 4);
        assert_eq!(o.restart_generation, 5);
        assert!(matches!(
            o.last_exit,
            Some(LastExit::Exited { code: 3, .. })
        ));
        let ev = s.events(0, Some("a"), 10).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].kind,
            EventKind::Started {
                pid: 7,
                generation: 2
            }
        );
        assert!(s.events(0, Some("other"), 10).unwrap().is_empty());
    }

    #[test]
    fn restart_requests_grow_and_go_with_the_workload() {
        let (_d, s) = open();
        s.apply(&[spec("a")], &[]).unwrap();
        let generation = s.generation().unwrap();
        assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 0);
        assert_eq!(s.request_restart("a").unwrap(), 1);
        assert_eq!(s.request_restart("a").unwrap(), 2);
        // A restart request is not a spec change.
        assert_eq!(s.generation().unwrap(), generation);
        assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 2);
        assert_eq!(s.desired().unwrap()["a"].restart_generation, 2);
        // Names without a stored spec (the routing workload) are counted too.
        assert_eq!(s.request_restart("router").unwrap(), 1);
        assert_eq!(s.restart_generation("router").unwrap(), 1);
        s.apply(&[], &["a".to_string()]).unwrap();
        s.apply(&[spec("a")], &[]).unwrap();
        assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 0);
    }

    #[test]
    fn volumes_and_snapshot_marks_persist() {
        let (_d, s) = open();
        let v = VolumeSpec {
            name: "media".into(),
            size: Some(1 << 30),
            snapshots: None,
            site: None,
        };
        s.put_volumes(std::slice::from_ref(&v), &[]).unwrap();
        assert_eq!(s.volumes().unwrap()["media"], v);
        s.put_volumes(&[], &["media".into()]).unwrap();
        assert!(s.volumes().unwrap().is_empty());
        assert_eq!(s.last_auto_snapshot("workload/web").unwrap(), None);
        s.mark_auto_snapshot("workload/web", 42).unwrap();
        s.mark_auto_snapshot("workload/web", 43).unwrap();
        assert_eq!(s.last_auto_snapshot("workload/web").unwrap(), Some(43));
    }

    #[test]
    fn addresses_are_unique_stable_and_released() {
        let (d, s) = open();
        let next =
            |taken: &BTreeMap<String, std::net::Ipv4Addr>| -> Result<std::net::Ipv4Addr, String> {
                let used: Vec<u32> = taken.values().map(|a| u32::from(*a)).collect();
                let mut n = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 2));
                while used.contains(&n) {
                    n += 1;
                }
                Ok(n.into())
            };
        let keep = |name: &'static str| {
            move |taken: &BTreeMap<String, std::net::Ipv4Addr>| match taken.get(name) {
                Some(a) => Ok(*a),
                None => next(taken),
            }
        };
        let a = s.assign_address("a", keep("a")).unwrap().unwrap();
        let b = s.assign_address("b", keep("b")).unwrap().unwrap();
        assert_ne!(a, b);
        assert_eq!(s.assign_address("a", keep("a")).unwrap().unwrap(), a);
        let failed: Result<std::net::Ipv4Addr, String> =
            s.assign_address("c", |_| Err("full".to_string())).unwrap();
        assert_eq!(failed.unwrap_err(), "full");
        assert!(!s.addresses().unwrap().contains_key("c"));
        // The same address for a second name is refused by the table itself.
        assert!(s.assign_address("c", |_| Ok::<_, String>(a)).is_err());
        drop(s);
        let s = Store::open(&d.path().join("warren.db")).unwrap();
        assert_eq!(s.addresses().unwrap()["b"], b);
        assert!(s.release_address("a").unwrap());
        assert!(!s.release_address("a").unwrap());
        assert_eq!(s.assign_address("c", keep("c")).unwrap().unwrap(), a);
    }

    #[test]
    fn userns_slots_are_unique_stable_and_released() {
        let (d, s) = open();
        assert_eq!(s.assign_userns_slot("a", 3).unwrap(), Some(0));
        assert_eq!(s.assign_userns_slot("b", 3).unwrap(), Some(1));
        assert_eq!(s.assign_userns_slot("a", 3).unwrap(), Some(0));
        assert_eq!(s.assign_userns_slot("c", 3).unwrap(), Some(2));
        assert_eq!(s.assign_userns_slot("d", 3).unwrap(), None);
        assert_eq!(s.userns_slot("d").unwrap(), None);
        drop(s);
        let s = Store::open(&d.path().join("warren.db")).unwrap();
        assert_eq!(s.userns_slot("b").unwrap(), Some(1));
        assert!(s.release_userns_slot("b").unwrap());
        assert!(!s.release_userns_slot("b").unwrap());
        assert_eq!(s.assign_userns_slot("d", 3).unwrap(), Some(1));
        assert_eq!(
            s.userns_slots().unwrap(),
            BTreeMap::from([("a".into(), 0), ("c".into(), 2), ("d".into(), 1)])
        );
        // The table itself refuses one slot for two names.
        let dup = s
            .conn()
            .execute("INSERT INTO userns_slots (name, slot) VALUES ('e', 0)", []);
        assert!(dup.is_err());
    }

    #[test]
    fn images_are_stored_moved_and_removed() {
        let (d, s) = open();
        let rec = |reference: &str, id: &str| ImageRecord {
            reference: reference.into(),
            id: id.into(),
            manifest_digest: None,
            config: serde_json::json!({"cmd": ["/bin/sh"]}),
            layers: vec!["oci-a".into(), format!("oci-{id}")],
            size: 10,
            created_ms: 1,
        };
        assert!(s.image("app:v1").unwrap().is_none());
        s.put_image(&rec("app:v1", "1")).unwrap();
        s.put_image(&rec("app:v2", "2")).unwrap();
        assert_eq!(s.image("app:v1").unwrap().unwrap().top(), Some("oci-1"));
        // Re-importing a tag moves it.
        s.put_image(&rec("app:v1", "3")).unwrap();
        drop(s);
        let s = Store::open(&d.path().join("warren.db")).unwrap();
        let all = s.images().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["app:v1", "app:v2"]);
        assert_eq!(all["app:v1"].id, "3");
        assert!(s.remove_image("app:v2").unwrap());
        assert!(!s.remove_image("app:v2").unwrap());
        assert_eq!(s.images().unwrap().len(), 1);
    }

    #[test]
    fn recipe_builds_are_recorded_per_version() {
        let (_d, s) = open();
        let b = |v: &str, key: &str| RecipeBuild {
            name: "lang/ruby".into(),
            version: v.into(),
            key: key.into(),
            world: format!("rcp-{key}"),
            parent: "world busybox".into(),
            created_ms: 1,
        };
        s.put_recipe_build(&b("2.1.0", "a")).unwrap();
        s.put_recipe_build(&b("2.1.1", "b")).unwrap();
        s.put_recipe_build(&b("2.1.0", "c")).unwrap();
        let all = s.recipe_builds().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, "c");
        assert!(s.remove_recipe_build("lang/ruby", "2.1.1").unwrap());
        assert!(!s.remove_recipe_build("lang/ruby", "2.1.1").unwrap());
        assert_eq!(s.recipe_builds().unwrap().len(), 1);
    }

    #[test]
    fn operator_keys_and_meta() {
        let (_d, s) = open();
        s.set_meta(&[("claim_code", Some("ABC")), ("claim_opened_at", Some("10"))])
            .unwrap();
        assert_eq!(s.meta("claim_code").unwrap().as_deref(), Some("ABC"));
        let k = OperatorKeyRow {
            fingerprint: "SHA256:x".into(),
            public_key: "pk".into(),
            name: "alice".into(),
            added_ms: 5,
        };
        assert!(s
            .add_operator_key(&k, &["claim_code", "claim_opened_at"])
            .unwrap());
        assert_eq!(
            s.meta("claim_code").unwrap(),
            None,
            "enrolment closes the window"
        );
        assert!(!s.add_operator_key(&k, &[]).unwrap());
        assert_eq!(s.operator_keys().unwrap(), std::slice::from_ref(&k));
        assert!(s.revoke_operator_key("SHA256:x").unwrap());
        assert!(!s.revoke_operator_key("SHA256:x").unwrap());
        assert!(s.operator_keys().unwrap().is_empty());
        assert_eq!(s.meta("generation").unwrap().as_deref(), Some("0"));
    }

    #[test]
    fn events_are_bounded_and_ordered() {
        let (_d, s) = open();
        for i in 0..(EVENT_LIMIT + 250) {
            s.add_event(None, &EventKind::error(i.to_string())).unwrap();
        }
        let c = s.conn();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        drop(c);
        assert!(n <= EVENT_LIMIT + 100, "{n} events kept");
        let last = s.events(0, None, 3).unwrap();
        assert_eq!(
            last.iter().map(|e| e.kind.to_string()).collect::<Vec<_>>(),
            ["10247", "10248", "10249"]
        );
    }

    #[test]
    fn events_round_trip_with_their_fields() {
        let (_d, s) = open();
        let crash = EventKind::Exited {
            code: 137,
            signal: Some(9),
            oom_killed: true,
        };
        let added = s.add_event(Some("web"), &crash).unwrap();
        s.add_event(None, &EventKind::WorldCreated { name: "w".into() })
            .unwrap();
        let ev = s.events(0, None, 10).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0], added);
        assert_eq!(ev[0].kind, crash);
        assert_eq!(ev[0].workload.as_deref(), Some("web"));
        assert_eq!(ev[1].kind, EventKind::WorldCreated { name: "w".into() });
        // The kind word and the rendered message are stored beside the JSON.
        let (kind, message, data): (String, String, String) = s
            .conn()
            .query_row(
                "SELECT kind, message, data FROM events WHERE id = ?1",
                [added.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kind, "exited");
        assert_eq!(message, "killed by the memory limit (code 137)");
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["type"], "exited");
        assert_eq!(v["signal"], 9);
        assert_eq!(v["oom_killed"], true);
    }

    #[test]
    fn events_from_before_typed_events_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.db");
        {
            // A database at the schema before the `data` column, with an event in it.
            let mut c = Connection::open(&path).unwrap();
            migrations().to_version(&mut c, 7).unwrap();
            c.execute(
                "INSERT INTO events (ts_ms, workload, kind, message)
                 VALUES (5, 'a', 'exited', 'exit code 3')",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        // A row whose JSON this version does not know falls back the same way.
        s.conn()
            .execute(
                "INSERT INTO events (ts_ms, workload, kind, message, data)
                 VALUES (6, 'a', 'future', 'later', '{\"type\":\"not-yet\"}')",
                [],
            )
            .unwrap();
        s.add_event(Some("a"), &EventKind::Lost { pid: 4 }).unwrap();
        let ev = s.events(0, Some("a"), 10).unwrap();
        let kinds: Vec<&EventKind> = ev.iter().map(|e| &e.kind).collect();
        assert_eq!(
            kinds,
            [
                &EventKind::Legacy {
                    kind: "exited".into(),
                    message: "exit code 3".into()
                },
                &EventKind::Legacy {
                    kind: "future".into(),
                    message: "later".into()
                },
                &EventKind::Lost { pid: 4 },
            ]
        );
        assert_eq!(ev[0].kind.category(), "exited");
        assert_eq!(ev[0].kind.to_string(), "exit code 3");
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let (_d, s) = open();
        s.apply(&[spec("a")], &[]).unwrap();
        {
            let c = s.conn();
            c.execute_batch("CREATE TRIGGER boom BEFORE INSERT ON workloads WHEN NEW.name = 'bad' BEGIN SELECT RAISE(ABORT, 'boom'); END;")
                .unwrap();
        }
        let mut a2 = spec("a");
        a2.command = vec!["x".into()];
        assert!(s.apply(&[a2, spec("bad")], &[]).is_err());
        let d = s.desired().unwrap();
        assert_eq!(d.len(), 1);
        assert!(d["a"].spec.command.is_empty());
        assert_eq!(s.generation().unwrap(), 1);
    }
}
