//! The file as a whole: its top-level tables (`[host]` is read in `host`), and the checks
//! across workloads (routed domains, published ports and volume mounts that collide; the start
//! order, in `order`).

use super::*;

impl Walker<'_> {
    pub(super) fn root(&mut self, root: &DeTable<'_>) -> SpecFile {
        let mut spec = SpecFile::default();
        // Names under `volume`, valid or not; `None` if `volume` is present but not a table.
        let mut declared = Some(BTreeSet::new());
        // Names under `workload`, valid or not, in file order.
        let mut workload_names: Vec<String> = Vec::new();
        for (key, value) in root.iter() {
            let top: &str = key.get_ref();
            let path = Path::root().key(top);
            self.record(&path, key, value);
            if !TOP_KEYS.contains(&top) {
                self.unknown_key(key, &path, TOP_KEYS);
                continue;
            }
            if top == "host" {
                spec.host = self.host(&path, value);
                continue;
            }
            let hint = if matches!(value.get_ref(), DeValue::Array(_)) {
                format!("; declare each {top} as `[{top}.NAME]`")
            } else {
                String::new()
            };
            let Some(entries) = self.table(&path, value, &hint) else {
                if top == "volume" {
                    declared = None;
                }
                continue;
            };
            for (name, body) in entries.iter() {
                if top == "workload" {
                    workload_names.push(name.get_ref().to_string());
                    if let Some(w) = self.workload(&path, name, body) {
                        spec.workloads.insert(w.name.clone(), w);
                    }
                } else {
                    if let Some(names) = declared.as_mut() {
                        names.insert(name.get_ref().to_string());
                    }
                    if let Some(v) = self.volume(&path, name, body) {
                        spec.volumes.insert(v.name.clone(), v);
                    }
                }
            }
        }
        self.check_mounts(declared.as_ref());
        self.check_routes();
        self.check_published();
        self.check_order(&workload_names, &spec.workloads);
        spec
    }

    /// No domain and path is routed twice across workloads and sites: the claim later in the
    /// file is reported, naming the earlier one.
    pub(super) fn check_routes(&mut self) {
        let mut routes = std::mem::take(&mut self.routes);
        routes.sort_by_key(|r| r.offset);
        let mut claimed: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for r in &routes {
            let key = (r.domain.as_str(), r.route_path.as_str());
            match claimed.get(&key) {
                Some(owner) if *owner != r.owner => self.error(
                    r.offset,
                    &r.path,
                    format!(
                        "domain {:?} (path {:?}) is already routed to {owner}",
                        r.domain, r.route_path
                    ),
                ),
                Some(_) => {}
                None => {
                    claimed.insert(key, &r.owner);
                }
            }
        }
    }

    /// No host port is published by two workloads: the mapping later in the file is reported,
    /// naming the earlier workload and both mappings.
    pub(super) fn check_published(&mut self) {
        let mut published = std::mem::take(&mut self.published);
        published.sort_by_key(|p| p.offset);
        let all: Vec<(&str, PortMapping)> = published
            .iter()
            .map(|p| (p.workload.as_str(), p.mapping))
            .collect();
        let mut reported = BTreeSet::new();
        for c in conflicts(&all) {
            // A workload's own mappings never overlap (that is refused earlier), so the
            // workload and mapping name one entry.
            let Some(i) = published
                .iter()
                .position(|p| p.workload == c.second && p.mapping == c.second_mapping)
            else {
                continue;
            };
            if !reported.insert(i) {
                continue;
            }
            let p = &published[i];
            self.error(
                p.offset,
                &p.path,
                format!(
                    "host port {}/{} ({}) is already published by workload {:?} ({})",
                    p.mapping.host_port, p.mapping.proto, p.mapping, c.first, c.first_mapping
                ),
            );
        }
    }

    /// The checks that need every workload and volume: each mounted volume is declared, and
    /// each volume has at most one read-write mount (the first workload in name order keeps
    /// it; any later one is reported).
    pub(super) fn check_mounts(&mut self, declared: Option<&BTreeSet<String>>) {
        let mut mounts = std::mem::take(&mut self.mounts);
        mounts.sort_by(|a, b| (&a.workload, a.index).cmp(&(&b.workload, b.index)));
        let mut writers: BTreeMap<&str, &str> = BTreeMap::new();
        for m in &mounts {
            let volume = m.mount.volume.as_str();
            if let Some(names) = declared {
                if !names.contains(volume) {
                    self.error(
                        m.offset,
                        &m.path,
                        format!("volume {volume:?} is not declared; add a [volume.{volume}] table"),
                    );
                    continue;
                }
            }
            if m.mount.readonly {
                continue;
            }
            match writers.get(volume) {
                Some(writer) if *writer != m.workload => self.error(
                    m.offset,
                    &m.path,
                    format!(
                        "volume {volume:?} is already mounted read-write by workload {writer:?}; \
                         only one writer at a time (mount it with :ro)"
                    ),
                ),
                Some(_) => {}
                None => {
                    writers.insert(volume, &m.workload);
                }
            }
        }
    }
}
