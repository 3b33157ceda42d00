//! Imported OCI images by reference (`images`) and the built versions of Warrenfile recipes
//! (`recipe_builds`).

use super::{now_ms, Result, Store};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
