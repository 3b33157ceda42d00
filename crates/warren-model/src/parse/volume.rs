//! The `[volume.NAME]` table, a workload's volume mounts and snapshot policies.

use super::*;

impl Walker<'_> {
    pub(super) fn volume(
        &mut self,
        parent: &Path,
        name_key: &Key<'_>,
        body: &Value<'_>,
    ) -> Option<VolumeSpec> {
        let name: &str = name_key.get_ref();
        let (path, errors_before, table) = self.named_table(parent, name_key, body, "volume")?;
        let mut spec = VolumeSpec {
            name: name.to_string(),
            size: None,
            snapshots: None,
            site: None,
        };
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "size" => spec.size = self.bytes(&fpath, value, values::MIN_DISK),
                "snapshots" => spec.snapshots = self.snapshots(&fpath, key, value),
                "site" => spec.site = self.site(&fpath, key, value, name),
                _ => self.unknown_key(key, &fpath, VOLUME_KEYS),
            }
        }
        (self.diagnostics.len() == errors_before).then_some(spec)
    }

    /// The `volumes` array: each element parsed, and no two at the same path. Returns the
    /// well-formed mounts with their element paths and offsets (all of them, or none if the
    /// value is not an array).
    pub(super) fn volume_mounts(
        &mut self,
        path: &Path,
        value: &Value<'_>,
    ) -> Vec<(Path, usize, VolumeMount)> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of mounts",
                    r#"; e.g. volumes = ["media:/srv/media:ro"]"#,
                );
                return Vec::new();
            }
        };
        let mut mounts: Vec<(Path, usize, VolumeMount)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let DeValue::String(text) = item.get_ref() else {
                self.wrong_type(&ipath, item, "a string", r#"; e.g. "media:/srv/media:ro""#);
                continue;
            };
            let mount = match values::parse_mount(text) {
                Ok(mount) => mount,
                Err(reason) => {
                    self.error(at, &ipath, reason);
                    continue;
                }
            };
            let earlier = mounts.iter().position(|(_, _, m)| {
                values::path_components(&m.path) == values::path_components(&mount.path)
            });
            if let Some(j) = earlier {
                let message = format!(
                    "mount path {:?} is already used by {}",
                    mount.path, mounts[j].0
                );
                self.error(at, &ipath, message);
                continue;
            }
            mounts.push((ipath, at, mount));
        }
        mounts
    }

    /// A snapshot policy table: `every` (a duration of at least a minute) and `keep` (1 to
    /// 1000), both required.
    pub(super) fn snapshots(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
    ) -> Option<SnapshotPolicy> {
        let table = self.table(
            path,
            value,
            r#"; e.g. snapshots = { every = "6h", keep = 5 }"#,
        )?;
        let errors_before = self.diagnostics.len();
        let (mut every, mut keep) = (None, None);
        let (mut has_every, mut has_keep, mut misspelled) = (false, false, false);
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let spath = path.key(field);
            self.record(&spath, k, v);
            match field {
                "every" => {
                    has_every = true;
                    every = self.every(&spath, v);
                }
                "keep" => {
                    has_keep = true;
                    keep = self.keep(&spath, v);
                }
                _ => {
                    self.unknown_key(k, &spath, SNAPSHOT_KEYS);
                    misspelled = true;
                }
            }
        }
        // An unknown key is most likely the missing one misspelled; it is reported already.
        let missing = missing_pair(("every", has_every), ("keep", has_keep), misspelled);
        if let Some(missing) = missing {
            self.error(
                key.span().start,
                path,
                format!(r#"missing {missing}; e.g. snapshots = {{ every = "6h", keep = 5 }}"#),
            );
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        Some(SnapshotPolicy {
            every_secs: every?,
            keep: keep?,
        })
    }

    pub(super) fn every(&mut self, path: &Path, value: &Value<'_>) -> Option<u64> {
        let at = value.span().start;
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(path, value, r#"a duration such as "6h""#, "");
            return None;
        };
        match values::parse_duration(s) {
            Ok(secs) if secs < values::MIN_SNAPSHOT_EVERY => {
                self.error(
                    at,
                    path,
                    format!(
                        "{s:?} is below the minimum of {}",
                        values::human_duration(values::MIN_SNAPSHOT_EVERY)
                    ),
                );
                None
            }
            Ok(secs) => Some(secs),
            Err(reason) => {
                self.error(at, path, reason);
                None
            }
        }
    }

    pub(super) fn keep(&mut self, path: &Path, value: &Value<'_>) -> Option<u32> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(path, value, "an integer", "");
            return None;
        };
        let max = values::MAX_SNAPSHOT_KEEP;
        match integer(i) {
            Some(n) if (1..=i128::from(max)).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                self.error(at, path, format!("must be between 1 and {max}, found {n}"));
                None
            }
            None => {
                self.error(at, path, "integer out of range");
                None
            }
        }
    }
}
