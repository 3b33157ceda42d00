//! The `[workload.NAME.jail]` table: FreeBSD jail options.

use super::*;

impl Walker<'_> {
    /// The `jail` table: `allow` (known `allow.*` names, each once), `vnet` and
    /// `jailed_dataset` (booleans). Returns the options when well-formed, and where a
    /// `vnet = true` is (checked against `network` by the caller).
    pub(super) fn jail(
        &mut self,
        path: &Path,
        value: &Value<'_>,
    ) -> (Option<JailOptions>, Option<usize>) {
        let example = r#"; e.g. [workload.NAME.jail] with allow = ["raw_sockets"], vnet = true"#;
        let Some(table) = self.table(path, value, example) else {
            return (None, None);
        };
        let errors_before = self.diagnostics.len();
        let mut options = JailOptions::default();
        let mut vnet_at = None;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let jpath = path.key(field);
            self.record(&jpath, k, v);
            match field {
                "allow" => {
                    if let Some(a) = self.jail_allow(&jpath, v) {
                        options.allow = a;
                    }
                }
                "vnet" => {
                    if let Some(b) = self.boolean(&jpath, v) {
                        options.vnet = Some(b);
                        if b {
                            vnet_at = Some(v.span().start);
                        }
                    }
                }
                "jailed_dataset" => {
                    if let Some(b) = self.boolean(&jpath, v) {
                        options.jailed_dataset = b;
                    }
                }
                _ => self.unknown_key(k, &jpath, JAIL_KEYS),
            }
        }
        let ok = self.diagnostics.len() == errors_before;
        (ok.then_some(options), vnet_at)
    }

    /// `allow = ["raw_sockets", ...]`: jail(8) permission names without `allow.`, each once;
    /// returned sorted.
    pub(super) fn jail_allow(&mut self, path: &Path, value: &Value<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                path,
                value,
                "an array of strings",
                r#"; e.g. allow = ["raw_sockets", "sysvipc"]"#,
            );
            return None;
        };
        let mut seen = BTreeSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let Some(name) = self.string(&ipath, item) else {
                ok = false;
                continue;
            };
            let bare = name.strip_prefix("allow.").unwrap_or(name);
            if !crate::spec::JAIL_ALLOW.contains(&bare) {
                let message = match suggest::did_you_mean(bare, crate::spec::JAIL_ALLOW) {
                    Some(s) => format!("unknown jail permission {name:?}; did you mean {s:?}?"),
                    None => format!(
                        "unknown jail permission {name:?}; expected one of {}",
                        crate::spec::JAIL_ALLOW.join(", ")
                    ),
                };
                self.error(item.span().start, &ipath, message);
                ok = false;
            } else if bare != name {
                self.error(
                    item.span().start,
                    &ipath,
                    format!("write {bare:?}, without the \"allow.\" prefix"),
                );
                ok = false;
            } else if !seen.insert(bare.to_string()) {
                self.error(
                    item.span().start,
                    &ipath,
                    format!("jail permission {name:?} is listed twice"),
                );
                ok = false;
            }
        }
        ok.then(|| seen.into_iter().collect())
    }
}
