//! The top-level `[host]` table: what the host keeps for itself (`reserve_memory`,
//! `reserve_cpus`), the input of the resource budget ([`crate::budget`]).

use super::*;
use crate::budget::HostReserve;

impl Walker<'_> {
    pub(super) fn host(&mut self, path: &Path, value: &Value<'_>) -> Option<HostReserve> {
        let table = self.table(
            path,
            value,
            r#"; e.g. [host] with reserve_memory = "2G" and reserve_cpus = 1"#,
        )?;
        let mut reserve = HostReserve::default();
        let mut ok = true;
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "reserve_memory" => match self.bytes(&fpath, value, 0) {
                    Some(n) => reserve.reserve_memory = n,
                    None => ok = false,
                },
                "reserve_cpus" => match self.reserve_cpus(&fpath, value) {
                    Some(n) => reserve.reserve_cpus = n,
                    None => ok = false,
                },
                _ => {
                    self.unknown_key(key, &fpath, HOST_KEYS);
                    ok = false;
                }
            }
        }
        ok.then_some(reserve)
    }

    /// A number of CPUs from 0 to [`MAX_CPUS`] (fractions allowed).
    fn reserve_cpus(&mut self, path: &Path, value: &Value<'_>) -> Option<f64> {
        let at = value.span().start;
        let (n, shown) = match value.get_ref() {
            DeValue::Integer(i) => (
                integer(i).map_or(f64::INFINITY, |n| n as f64),
                i.to_string(),
            ),
            DeValue::Float(f) => (
                f.as_str().parse::<f64>().unwrap_or(f64::NAN),
                f.as_str().to_string(),
            ),
            _ => {
                self.wrong_type(path, value, "a number of CPUs", "");
                return None;
            }
        };
        if n.is_nan() || n < 0.0 {
            self.error(at, path, format!("must be 0 or more, found {shown}"));
            return None;
        }
        if n > MAX_CPUS {
            self.error(at, path, format!("must be at most 1024, found {shown}"));
            return None;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use crate::budget::HostReserve;
    use crate::parse_spec;

    fn errors(text: &str) -> Vec<String> {
        match parse_spec(text, "t.toml") {
            Ok(p) => panic!("expected errors, got {:?}", p.spec),
            Err(e) => e.diagnostics.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_host_table() {
        let p = parse_spec(
            "[host]\nreserve_memory = \"2G\"\nreserve_cpus = 1\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            p.spec.host,
            Some(HostReserve {
                reserve_memory: 2 << 30,
                reserve_cpus: 1.0
            })
        );
        assert_eq!(p.locate("host.reserve_cpus"), (3, 16));
        let p = parse_spec(
            "[host]\nreserve_memory = 1048576\nreserve_cpus = 0.5\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(p.spec.host.unwrap().reserve_memory, 1 << 20);
        assert_eq!(p.spec.host.unwrap().reserve_cpus, 0.5);
        let p = parse_spec("[host]\n", "t.toml").unwrap();
        assert_eq!(p.spec.host, Some(HostReserve::default()));
        assert_eq!(parse_spec("", "t.toml").unwrap().spec.host, None);
    }

    #[test]
    fn bad_host_values_are_located() {
        assert_eq!(
            errors("[host]\nreserve_memory = \"2 lots\"\nreserve_cpus = -1\nreserve_disk = 1\n"),
            [
                "t.toml:2:18: host.reserve_memory: unknown unit \"lots\" in \"2 lots\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\"",
                "t.toml:3:16: host.reserve_cpus: must be 0 or more, found -1",
                "t.toml:4:1: host.reserve_disk: unknown key; expected one of reserve_memory, reserve_cpus",
            ]
        );
        assert_eq!(
            errors("[host]\nreserve_cpus = \"one\"\n"),
            ["t.toml:2:16: host.reserve_cpus: expected a number of CPUs, found string"]
        );
        assert_eq!(
            errors("host = 3\n"),
            ["t.toml:1:8: host: expected a table, found integer; e.g. [host] with reserve_memory = \"2G\" and reserve_cpus = 1"]
        );
    }
}
