//! Declared volumes (`volumes`) and when each workload or volume last got an automatic
//! snapshot (`snapshot_marks`).

use super::{now_ms, Result, Store};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;
use warren_model::VolumeSpec;

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
