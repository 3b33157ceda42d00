//! Desired workloads (`workloads`, the generation in `meta`), what the executor observed of
//! them (`observed`), and operator restart requests (`restart_requests`).

use super::{now_ms, Result, Store};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warren_model::plan::{Desired, LastExit, Observed};
use warren_model::{DesiredState, WorkloadSpec};

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
            // Health lives in the engine's memory, not in the row.
            health: None,
        }
    }
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

impl Store {
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
}

pub(crate) fn generation(c: &Connection) -> Result<u64> {
    let v: String = c.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
        r.get(0)
    })?;
    Ok(v.parse().unwrap_or(0))
}
