//! Published ports, routes (domains, port, TLS) and `[volume.NAME.site]` static sites.

use super::*;

impl Walker<'_> {
    /// The `ports` array: each element a mapping, no two of them overlapping. Returns the
    /// well-formed mappings with their element paths and offsets.
    pub(super) fn ports(&mut self, path: &Path, value: &Value<'_>) -> Vec<Element<PortMapping>> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of port mappings",
                    r#"; e.g. ports = ["8080:80/tcp"]"#,
                );
                return Vec::new();
            }
        };
        let mut out: Vec<Element<PortMapping>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let DeValue::String(text) = item.get_ref() else {
                self.wrong_type(&ipath, item, "a string", r#"; e.g. "8080:80/tcp""#);
                continue;
            };
            let mapping = match PortMapping::parse(text) {
                Ok(m) => m,
                Err(e) => {
                    self.error(at, &ipath, e);
                    continue;
                }
            };
            if let Some((epath, _, earlier)) = out.iter().find(|(_, _, m)| m.overlaps(&mapping)) {
                let message = format!(
                    "host port {}/{} ({mapping}) is already published by {epath} ({earlier})",
                    mapping.host_port, mapping.proto
                );
                self.error(at, &ipath, message);
                continue;
            }
            out.push((ipath, at, mapping));
        }
        out
    }

    /// A `domains` array: DNS names (see [`values::check_domain`]), at least one, none twice.
    /// Returns the well-formed domains with their element paths and offsets.
    pub(super) fn domains(&mut self, path: &Path, value: &Value<'_>) -> Vec<Element<String>> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::String(_) => {
                self.wrong_type(
                    path,
                    value,
                    "an array of domain names",
                    r#"; use an array, e.g. domains = ["git.home.arpa"]"#,
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of domain names",
                    r#"; e.g. domains = ["git.home.arpa"]"#,
                );
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error(
                value.span().start,
                path,
                r#"must list at least one domain, e.g. domains = ["git.home.arpa"]"#,
            );
        }
        let mut out: Vec<Element<String>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let Some(domain) = self.checked_string(&ipath, item, values::check_domain) else {
                continue;
            };
            if let Some((epath, _, _)) = out.iter().find(|(_, _, d)| *d == domain) {
                let message = format!("domain {domain:?} is already listed at {epath}");
                self.error(at, &ipath, message);
                continue;
            }
            out.push((ipath, at, domain));
        }
        out
    }

    /// The workload port a route targets: 1 to 65535.
    pub(super) fn route_port(&mut self, path: &Path, value: &Value<'_>) -> Option<u16> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(path, value, "a port number", "; e.g. port = 3000");
            return None;
        };
        match integer(i) {
            Some(n) if (1..=65535).contains(&n) => u16::try_from(n).ok(),
            Some(n) => {
                self.error(at, path, format!("must be between 1 and 65535, found {n}"));
                None
            }
            None => {
                self.error(at, path, "integer out of range");
                None
            }
        }
    }

    /// `tls = "none" | "local"`, or a table of the operator's own `cert` and `key` files.
    pub(super) fn tls(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
    ) -> Option<TlsChoice> {
        let at = value.span().start;
        let table = match value.get_ref() {
            DeValue::String(s) => {
                let s: &str = s.as_ref();
                return match s {
                    "none" => Some(TlsChoice::None),
                    "local" => Some(TlsChoice::Local),
                    _ => {
                        let message = match suggest::did_you_mean(s, &["none", "local"]) {
                            Some(close) => format!("unknown value {s:?}; did you mean {close:?}?"),
                            None => format!(
                                "unknown value {s:?}; expected \"none\", \"local\" or a table \
                                 such as {TLS_EXAMPLE}"
                            ),
                        };
                        self.error(at, path, message);
                        None
                    }
                };
            }
            DeValue::Table(t) => t,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    r#""none", "local" or a table { cert, key }"#,
                    "",
                );
                return None;
            }
        };
        let errors_before = self.diagnostics.len();
        let (mut cert, mut key_file) = (None, None);
        let (mut has_cert, mut has_key, mut misspelled) = (false, false, false);
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let tpath = path.key(field);
            self.record(&tpath, k, v);
            match field {
                "cert" => {
                    has_cert = true;
                    cert = self.checked_string(&tpath, v, values::check_tls_file);
                }
                "key" => {
                    has_key = true;
                    key_file = self.checked_string(&tpath, v, values::check_tls_file);
                }
                _ => {
                    self.unknown_key(k, &tpath, TLS_KEYS);
                    misspelled = true;
                }
            }
        }
        // An unknown key is most likely the missing one misspelled; it is reported already.
        let missing = missing_pair(("cert", has_cert), ("key", has_key), misspelled);
        if let Some(missing) = missing {
            self.error(
                key.span().start,
                path,
                format!("missing {missing}; e.g. {TLS_EXAMPLE}"),
            );
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        Some(TlsChoice::Files {
            cert: cert?,
            key: key_file?,
        })
    }

    /// A volume's `site` table: `domains` (required), `path`, `autoindex` and `tls`.
    pub(super) fn site(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
        volume: &str,
    ) -> Option<SiteSpec> {
        let table = self.table(
            path,
            value,
            r#"; e.g. site = { domains = ["www.home.arpa"], autoindex = true }"#,
        )?;
        let errors_before = self.diagnostics.len();
        let mut site = SiteSpec::default();
        let mut domains: Option<Vec<Element<String>>> = None;
        let mut path_ok = true;
        let mut misspelled = false;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let spath = path.key(field);
            self.record(&spath, k, v);
            match field {
                "domains" => domains = Some(self.domains(&spath, v)),
                "path" => match self.checked_string(&spath, v, values::check_route_path) {
                    Some(p) => site.path = p,
                    None => path_ok = false,
                },
                "autoindex" => {
                    if let Some(b) = self.boolean(&spath, v) {
                        site.autoindex = b;
                    }
                }
                "tls" => {
                    if let Some(t) = self.tls(&spath, k, v) {
                        site.tls = t;
                    }
                }
                _ => {
                    self.unknown_key(k, &spath, SITE_KEYS);
                    misspelled = true;
                }
            }
        }
        match domains {
            Some(names) => {
                for (dpath, at, domain) in names {
                    site.domains.push(domain.clone());
                    if path_ok {
                        self.routes.push(RouteUse {
                            owner: format!("volume {volume:?}"),
                            domain,
                            route_path: site.path.clone(),
                            path: dpath,
                            offset: at,
                        });
                    }
                }
            }
            // A misspelled key is most likely `domains`; it is reported already.
            None if misspelled => {}
            None => self.error(
                key.span().start,
                path,
                r#"missing `domains`; e.g. site = { domains = ["www.home.arpa"] }"#,
            ),
        }
        (self.diagnostics.len() == errors_before).then_some(site)
    }
}
