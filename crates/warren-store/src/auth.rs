//! The remote API's state: enrolled operator keys (`operator_keys`) and `meta` values (the
//! claim window and code among them).

use super::{Result, Store};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

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
