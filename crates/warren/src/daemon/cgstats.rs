//! A workload's resource use read from its cgroup: CPU seconds, memory bytes (the working
//! set: usage less inactive file cache), pids, and block I/O bytes read and written. Both
//! cgroup versions are read: v1 (one hierarchy per controller, `/sys/fs/cgroup/CONTROLLER/PATH`,
//! as on hybrid hosts) first, then the unified v2 tree (`/sys/fs/cgroup/PATH`). A value no
//! hierarchy has is `None`. The parsers are pure functions of the files' text.

use std::path::Path;

/// What a cgroup has used so far (`None`: not available on this host).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
}

/// The stats of the cgroup at `path` (absolute within the hierarchy, e.g.
/// `/warren-1a2b3c/web`) under the cgroup mount `root` (normally `/sys/fs/cgroup`).
pub fn read(root: &Path, path: &str) -> CgroupStats {
    let rel = path.trim_start_matches('/');
    let file = |controller: &str, name: &str| -> Option<String> {
        let dir = if controller.is_empty() {
            root.join(rel)
        } else {
            root.join(controller).join(rel)
        };
        std::fs::read_to_string(dir.join(name)).ok()
    };
    let num = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    // v1 controllers, then v2's unified files.
    let cpu_seconds = num(file("cpuacct", "cpuacct.usage"))
        .map(|ns| ns as f64 / 1e9)
        .or_else(|| {
            file("", "cpu.stat")
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(|us| us as f64 / 1e6)
        });
    let memory_bytes = match num(file("memory", "memory.usage_in_bytes")) {
        Some(usage) => Some(working_set(
            usage,
            file("memory", "memory.stat")
                .and_then(|t| keyed(&t, "total_inactive_file"))
                .unwrap_or(0),
        )),
        None => num(file("", "memory.current")).map(|usage| {
            working_set(
                usage,
                file("", "memory.stat")
                    .and_then(|t| keyed(&t, "inactive_file"))
                    .unwrap_or(0),
            )
        }),
    };
    let pids = num(file("pids", "pids.current")).or_else(|| num(file("", "pids.current")));
    let io = file("blkio", "blkio.throttle.io_service_bytes_recursive")
        .map(|t| blkio_v1(&t))
        .or_else(|| file("", "io.stat").map(|t| io_stat_v2(&t)));
    CgroupStats {
        cpu_seconds,
        memory_bytes,
        pids,
        io_read_bytes: io.map(|i| i.0),
        io_write_bytes: io.map(|i| i.1),
    }
}

/// Memory in use less the file cache the kernel may drop at once.
fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`: `KEY VALUE` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some(key))
            .then(|| f.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Bytes read and written from cgroup v1's `blkio.throttle.io_service_bytes_recursive`
/// (`MAJ:MIN Read N` lines per device, summed).
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => r += n,
                "Write" => w += n,
                _ => {}
            }
        }
    }
    (r, w)
}

/// Bytes read and written from cgroup v2's `io.stat` (`MAJ:MIN rbytes=N wbytes=N ...` lines
/// per device, summed).
pub fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        for kv in l.split_whitespace().skip(1) {
            match kv.split_once('=') {
                Some(("rbytes", n)) => r += n.parse::<u64>().unwrap_or(0),
                Some(("wbytes", n)) => w += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_blkio_and_v2_io_stat() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n\
                  8:16 Read 100\n8:16 Write 1\nTotal 12389\n";
        assert_eq!(blkio_v1(v1), (4196, 8193));
        assert_eq!(blkio_v1("Total 0\n"), (0, 0));
        let v2 = "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n\
                  259:0 rbytes=5 wbytes=7 rios=0 wios=0\n";
        assert_eq!(io_stat_v2(v2), (1005, 2007));
    }

    #[test]
    fn keyed_files() {
        let stat = "cache 4096\nrss 1000\ntotal_inactive_file 300\ninactive_file 12\n";
        assert_eq!(keyed(stat, "total_inactive_file"), Some(300));
        assert_eq!(keyed(stat, "inactive_file"), Some(12));
        assert_eq!(keyed(stat, "missing"), None);
        assert_eq!(
            keyed("usage_usec 2500000\nuser_usec 1\n", "usage_usec"),
            Some(2_500_000)
        );
    }

    /// Both layouts, built as files in a temporary tree.
    #[test]
    fn reads_v1_and_v2_trees() {
        let t = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| {
            let p = t.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("v1/cpuacct/w-1/web/cpuacct.usage", "2500000000\n");
        put("v1/memory/w-1/web/memory.usage_in_bytes", "10000\n");
        put(
            "v1/memory/w-1/web/memory.stat",
            "total_inactive_file 1000\n",
        );
        put("v1/pids/w-1/web/pids.current", "3\n");
        put(
            "v1/blkio/w-1/web/blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
        );
        let s = read(&t.path().join("v1"), "/w-1/web");
        assert_eq!(
            s,
            CgroupStats {
                cpu_seconds: Some(2.5),
                memory_bytes: Some(9000),
                pids: Some(3),
                io_read_bytes: Some(10),
                io_write_bytes: Some(20),
            }
        );
        put("v2/w-1/web/cpu.stat", "usage_usec 1500000\n");
        put("v2/w-1/web/memory.current", "5000\n");
        put("v2/w-1/web/memory.stat", "inactive_file 100\n");
        put("v2/w-1/web/pids.current", "7\n");
        put("v2/w-1/web/io.stat", "8:0 rbytes=1 wbytes=2\n");
        let s = read(&t.path().join("v2"), "/w-1/web");
        assert_eq!(
            s,
            CgroupStats {
                cpu_seconds: Some(1.5),
                memory_bytes: Some(4900),
                pids: Some(7),
                io_read_bytes: Some(1),
                io_write_bytes: Some(2),
            }
        );
        assert_eq!(read(t.path(), "/nothing"), CgroupStats::default());
    }
}
