//! Tests of volumes: disk limits, `[volume.NAME]` tables, mounts, one writer per volume and
//! snapshot policies.

use super::*;

#[test]
fn disk_rules() {
    let w =
        web("[workload.web]\nworld = \"host\"\nresources = { memory = \"256M\", disk = \"2G\" }\n");
    assert_eq!(w.resources.disk, Some(2 << 30));
    let w = web("[workload.web]\nworld = \"host\"\nresources.disk = 1048576\n");
    assert_eq!(w.resources.disk, Some(1 << 20));
    assert_eq!(
        web_error("resources = { disk = \"512K\" }"),
        "3:22: workload.web.resources.disk: 512 KiB is below the minimum of 1 MiB"
    );
    assert_eq!(
        web_error("resources = { disk = \"2Q\" }"),
        "3:22: workload.web.resources.disk: unknown unit \"Q\" in \"2Q\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\""
    );
    assert_eq!(
        web_error("resources = { disk = true }"),
        "3:22: workload.web.resources.disk: expected a number of bytes or a size such as \"256M\", found boolean"
    );
    // Disk is not part of memory's minimum: 1 MiB is fine for disk, not for memory.
    assert_eq!(
        web_error("resources = { disk = \"1M\", memory = \"1M\" }"),
        "3:37: workload.web.resources.memory: 1 MiB is below the minimum of 4 MiB"
    );
}

#[test]
fn volumes_parse() {
    let p = ok(r#"
[volume.media]
size = "10G"
snapshots = { every = "6h", keep = 5 }

[volume.cache]

[workload.web]
world = "host"
volumes = ["media:/srv/media:ro", "cache:/var/cache", "media:/srv/more:ro"]

[workload.worker]
world = "host"
volumes = ["media:/media:rw", "cache:/cache:ro"]
"#);
    let media = &p.spec.volumes["media"];
    assert_eq!(media.name, "media");
    assert_eq!(media.size, Some(10 << 30));
    assert_eq!(
        media.snapshots,
        Some(SnapshotPolicy {
            every_secs: 6 * 3600,
            keep: 5
        })
    );
    assert_eq!(
        p.spec.volumes["cache"],
        VolumeSpec {
            name: "cache".into(),
            size: None,
            snapshots: None,
            site: None,
        }
    );
    let mount = |volume: &str, path: &str, readonly| VolumeMount {
        volume: volume.into(),
        path: path.into(),
        readonly,
    };
    assert_eq!(
        p.spec.workloads["web"].volumes,
        [
            mount("media", "/srv/media", true),
            mount("cache", "/var/cache", false),
            mount("media", "/srv/more", true),
        ]
    );
    assert_eq!(
        p.spec.workloads["worker"].volumes,
        [
            mount("media", "/media", false),
            mount("cache", "/cache", true)
        ]
    );
}

#[test]
fn volume_tables() {
    assert!(ok("[volume]\n").spec.volumes.is_empty());
    assert_eq!(
        errors("[volume.Media]\n"),
        ["1:9: volume.Media: invalid volume name: name \"Media\" must start with a lowercase letter"]
    );
    assert_eq!(
        errors("[volume.media]\nsise = \"1G\"\n"),
        ["2:1: volume.media.sise: unknown key; did you mean `size`?"]
    );
    assert_eq!(
        errors("[volume.media]\nowner = \"me\"\n"),
        ["2:1: volume.media.owner: unknown key; expected one of size, snapshots, site"]
    );
    assert_eq!(
        errors("[volume.media]\nsize = \"100K\"\n"),
        ["2:8: volume.media.size: 100 KiB is below the minimum of 1 MiB"]
    );
    assert_eq!(
        errors("[volume]\nmedia = \"10G\"\n"),
        ["2:9: volume.media: expected a table, found string"]
    );
    assert_eq!(
        errors("[[volume.media]]\n"),
        ["1:1: volume.media: expected a table, found array of tables; write `[volume.media]`, not `[[volume.media]]`"]
    );
    assert_eq!(
        errors("volume = 1\n"),
        ["1:10: volume: expected a table, found integer"]
    );
    // A volume with a bad body still counts as declared: no second error at the mount.
    assert_eq!(
        errors("[volume.media]\nsize = 0\n[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n"),
        ["2:8: volume.media.size: 0 bytes is below the minimum of 1 MiB"]
    );
    // Nor when `volume` itself is malformed.
    assert_eq!(
        errors("volume = 1\n[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n"),
        ["1:10: volume: expected a table, found integer"]
    );
}

#[test]
fn mount_strings() {
    let with_media = |mounts: &str| {
        let errs = errors(&format!(
            "[volume.media]\n[workload.web]\nworld = \"host\"\nvolumes = {mounts}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    };
    assert_eq!(
        with_media("\"media:/srv\""),
        "4:11: workload.web.volumes: expected an array of mounts, found string; e.g. volumes = [\"media:/srv/media:ro\"]"
    );
    assert_eq!(
        with_media("[7]"),
        "4:12: workload.web.volumes[0]: expected a string, found integer; e.g. \"media:/srv/media:ro\""
    );
    assert_eq!(
        with_media("[\"media\"]"),
        "4:12: workload.web.volumes[0]: expected \"VOLUME:/PATH\", \"VOLUME:/PATH:ro\" or \"VOLUME:/PATH:rw\", found \"media\""
    );
    assert_eq!(
        with_media("[\"media:/a\", \"media:srv\"]"),
        "4:24: workload.web.volumes[1]: mount path must be an absolute path, found \"srv\""
    );
    assert_eq!(
        with_media("[\"media:/\"]"),
        "4:12: workload.web.volumes[0]: mount path must not be the root directory"
    );
    assert_eq!(
        with_media("[\"media:/srv/../etc\"]"),
        "4:12: workload.web.volumes[0]: mount path must not contain '..', found \"/srv/../etc\""
    );
    assert_eq!(
        with_media("[\"media:/srv:readonly\"]"),
        "4:12: workload.web.volumes[0]: unknown mount mode \"readonly\" in \"media:/srv:readonly\"; expected ro or rw"
    );
    assert_eq!(
        with_media("[\"Media:/srv\"]"),
        "4:12: workload.web.volumes[0]: invalid volume name: name \"Media\" must start with a lowercase letter"
    );
    assert_eq!(
        with_media("[\"media:/srv:ro\", \"media:/srv/:ro\"]"),
        "4:29: workload.web.volumes[1]: mount path \"/srv/\" is already used by workload.web.volumes[0]"
    );
    assert!(
        web("[volume.media]\n[workload.web]\nworld = \"host\"\nvolumes = []\n")
            .volumes
            .is_empty()
    );
}

#[test]
fn mounts_stay_clear_of_data_path() {
    let with_media = |body: &str| {
        let errs = errors(&format!(
            "[volume.media]\n[workload.web]\nworld = \"host\"\n{body}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    };
    assert_eq!(
        with_media("volumes = [\"media:/data\"]"),
        "4:12: workload.web.volumes[0]: mount path \"/data\" is the workload's data_path"
    );
    assert_eq!(
        with_media("volumes = [\"media:/data/media\"]"),
        "4:12: workload.web.volumes[0]: mount path \"/data/media\" is inside the workload's data_path \"/data\""
    );
    // `data_path` after `volumes` still applies.
    assert_eq!(
        with_media("volumes = [\"media:/var\"]\ndata_path = \"/var/lib/web/\""),
        "4:12: workload.web.volumes[0]: mount path \"/var\" contains the workload's data_path \"/var/lib/web/\""
    );
    assert_eq!(
        with_media("data_path = \"/srv\"\nvolumes = [\"media:/srv/./\"]"),
        "5:12: workload.web.volumes[0]: mount path \"/srv/./\" is the workload's data_path"
    );
    // A bad data_path is reported once, not again at each mount.
    assert_eq!(
        with_media("data_path = \"/\"\nvolumes = [\"media:/srv\"]"),
        "4:13: workload.web.data_path: must not be the root directory"
    );
    let w = web("[volume.media]\n[workload.web]\nworld = \"host\"\ndata_path = \"/data\"\nvolumes = [\"media:/data2\", \"media:/dat\"]\n");
    assert_eq!(w.volumes.len(), 2);
}

#[test]
fn undeclared_volume() {
    assert_eq!(
        errors("[workload.web]\nworld = \"host\"\nvolumes = [\"media:/srv/media:ro\"]\n"),
        ["3:12: workload.web.volumes[0]: volume \"media\" is not declared; add a [volume.media] table"]
    );
    // Declared after use is fine.
    let p = ok("[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[volume.media]\n");
    assert_eq!(p.spec.workloads["web"].volumes[0].volume, "media");
}

#[test]
fn one_writer_per_volume() {
    // The error is at the later workload in name order, wherever it is in the file.
    let text = "[volume.media]\n\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m:rw\"]\n";
    assert_eq!(
        errors(text),
        ["5:12: workload.b.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)"]
    );
    // A third writer names the first, too.
    let text = "[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[workload.c]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n";
    assert_eq!(
        errors(text),
        [
            "7:12: workload.b.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)",
            "10:12: workload.c.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)",
        ]
    );
    // A mount refused for its own workload does not claim the volume.
    let text = "[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/data\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n";
    assert_eq!(
        errors(text),
        ["4:12: workload.a.volumes[0]: mount path \"/data\" is the workload's data_path"]
    );
    // Any number of readers next to one writer, and one workload may mount its volume twice.
    let p = ok("[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m:ro\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\", \"media:/n\"]\n[workload.c]\nworld = \"host\"\nvolumes = [\"media:/m:ro\"]\n");
    assert_eq!(p.spec.workloads.len(), 3);
    assert!(!p.spec.workloads["b"].volumes[1].readonly);
}

#[test]
fn snapshot_policies() {
    let w = web("[workload.web]\nworld = \"host\"\nsnapshots = { every = \"30m\", keep = 10 }\n");
    assert_eq!(
        w.snapshots,
        Some(SnapshotPolicy {
            every_secs: 1800,
            keep: 10
        })
    );
    let w = web("[workload.web]\nworld = \"host\"\n[workload.web.snapshots]\nevery = \"1h30m\"\nkeep = 1000\n");
    assert_eq!(
        w.snapshots,
        Some(SnapshotPolicy {
            every_secs: 5400,
            keep: 1000
        })
    );
    let w =
        web("[workload.web]\nworld = \"host\"\nsnapshots.every = \"60s\"\nsnapshots.keep = 1\n");
    assert_eq!(w.snapshots.map(|s| s.every_secs), Some(60));
    assert_eq!(
        web_error("snapshots = { every = \"30s\", keep = 5 }"),
        "3:23: workload.web.snapshots.every: \"30s\" is below the minimum of 1m"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6x\", keep = 5 }"),
        "3:23: workload.web.snapshots.every: unknown unit \"x\" in \"6x\"; use s, m, h, d or w, e.g. \"90s\", \"6h\" or \"1h30m\""
    );
    assert_eq!(
        web_error("snapshots = { every = 3600, keep = 5 }"),
        "3:23: workload.web.snapshots.every: expected a duration such as \"6h\", found integer"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 0 }"),
        "3:36: workload.web.snapshots.keep: must be between 1 and 1000, found 0"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 1001 }"),
        "3:36: workload.web.snapshots.keep: must be between 1 and 1000, found 1001"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = \"5\" }"),
        "3:36: workload.web.snapshots.keep: expected an integer, found string"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", kep = 5 }"),
        "3:29: workload.web.snapshots.kep: unknown key; did you mean `keep`?"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 5, at = \"03:00\" }"),
        "3:39: workload.web.snapshots.at: unknown key; expected one of every, keep"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\" }"),
        "3:1: workload.web.snapshots: missing `keep`; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        web_error("snapshots = {}"),
        "3:1: workload.web.snapshots: missing `every` and `keep`; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        web_error("snapshots = { evry = \"6h\", keep = 5 }"),
        "3:15: workload.web.snapshots.evry: unknown key; did you mean `every`?"
    );
    assert_eq!(
        web_error("snapshots = \"6h\""),
        "3:13: workload.web.snapshots: expected a table, found string; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        errors("[volume.media]\n[volume.media.snapshots]\nkeep = 3\n"),
        ["2:15: volume.media.snapshots: missing `every`; e.g. snapshots = { every = \"6h\", keep = 5 }"]
    );
}

#[test]
fn locate_volume_fields() {
    let p = ok(r#"[volume.media]
size = "10G"
snapshots = { every = "6h", keep = 5 }

[workload.web]
world = "host"
volumes = ["media:/srv/media:ro",
  "media:/srv/other:ro"]
snapshots = { every = "30m", keep = 10 }
resources = { disk = "2G" }
"#);
    assert_eq!(p.locate("volume"), (1, 2));
    assert_eq!(p.locate("volume.media"), (1, 9));
    assert_eq!(p.locate("volume.media.size"), (2, 8));
    assert_eq!(p.locate("volume.media.snapshots"), (3, 1));
    assert_eq!(p.locate("volume.media.snapshots.keep"), (3, 36));
    assert_eq!(p.locate("workload.web.volumes"), (7, 11));
    assert_eq!(p.locate("workload.web.volumes[0]"), (7, 12));
    assert_eq!(p.locate("workload.web.volumes[1]"), (8, 3));
    assert_eq!(p.locate("workload.web.snapshots.every"), (9, 23));
    assert_eq!(p.locate("workload.web.resources.disk"), (10, 22));
    assert_eq!(p.locate("workload.web.volumes[5]"), (7, 11));
    assert_eq!(p.locate("volume.other.size"), (1, 2));
}
