//! Per-workload identities handed out from host pools: bridge addresses (`addresses`) and
//! user-namespace slots (`userns_slots`), each unique.

use super::StoreError;
use super::{Result, Store};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

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
