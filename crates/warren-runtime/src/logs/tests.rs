//! Tests of [`super`].
use super::*;

#[test]
fn timestamp_of_known_instants() {
    assert_eq!(
        format_timestamp(UNIX_EPOCH),
        "1970-01-01T00:00:00.000000000Z"
    );
    // 2024-02-29T23:59:59.123456789Z (a leap day).
    let t = UNIX_EPOCH + Duration::new(1_709_251_199, 123_456_789);
    assert_eq!(format_timestamp(t), "2024-02-29T23:59:59.123456789Z");
    let t = UNIX_EPOCH + Duration::new(951_782_400, 5);
    assert_eq!(format_timestamp(t), "2000-02-29T00:00:00.000000005Z");
    let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    assert_eq!(format_timestamp(t), "2100-01-01T00:00:00.000000000Z");
}

#[test]
fn format_and_parse_round_trip() {
    let ts = "2024-05-01T12:00:00.000000001Z";
    let raw = format_line(ts, Stream::Stderr, true, b"a b  c");
    assert_eq!(raw, b"2024-05-01T12:00:00.000000001Z stderr P a b  c\n");
    let l = parse_line(std::str::from_utf8(&raw).unwrap()).unwrap();
    assert_eq!(
        l,
        LogLine {
            ts: ts.into(),
            stream: Stream::Stderr,
            partial: true,
            text: "a b  c".into()
        }
    );
    let empty = parse_line("2024-05-01T12:00:00.000000001Z stdout F ").unwrap();
    assert_eq!(empty.text, "");
    assert!(!empty.partial);
}

#[test]
fn garbage_lines_are_skipped() {
    for g in [
        "",
        "hello",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z stdin F x",
        "2024-05-01T12:00:00Z stdout X x",
        "not-a-time stdout F x",
        "\u{0}\u{1} stdout F",
    ] {
        assert_eq!(parse_line(g), None, "{g:?}");
    }
}

fn texts(lines: &[LogLine]) -> Vec<(Stream, bool, String)> {
    lines
        .iter()
        .map(|l| (l.stream, l.partial, l.text.clone()))
        .collect()
}

#[test]
fn writer_splits_lines_streams_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(dir.path(), DEFAULT_MAX_BYTES, 3).unwrap();
    w.write(Stream::Stdout, b"hel").unwrap();
    w.write(Stream::Stderr, b"oops\nno newline").unwrap();
    w.write(Stream::Stdout, b"lo\nworld\n").unwrap();
    let long = vec![b'x'; MAX_LINE * 2 + 5];
    w.write(Stream::Stdout, &long).unwrap();
    w.write(Stream::Stdout, b"\n").unwrap();
    w.finish(Stream::Stderr).unwrap();
    w.finish(Stream::Stdout).unwrap();
    let lines = read_tail(dir.path(), None).unwrap();
    let x = |n| "x".repeat(n);
    assert_eq!(
        texts(&lines),
        vec![
            (Stream::Stderr, false, "oops".into()),
            (Stream::Stdout, false, "hello".into()),
            (Stream::Stdout, false, "world".into()),
            (Stream::Stdout, true, x(MAX_LINE)),
            (Stream::Stdout, true, x(MAX_LINE)),
            (Stream::Stdout, false, x(5)),
            (Stream::Stderr, true, "no newline".into()),
        ]
    );
    assert!(lines.iter().all(|l| l.ts.len() == 30));
    assert_eq!(read_tail(dir.path(), Some(2)).unwrap().len(), 2);
}

#[test]
fn rotation_keeps_max_files_and_order() {
    let dir = tempfile::tempdir().unwrap();
    // Each record is 30 + 8 + 6 + 1 = 45 bytes: two fit in 100 bytes.
    let mut w = LogWriter::open(dir.path(), 100, 3).unwrap();
    for i in 0..10 {
        w.write(Stream::Stdout, format!("line{i:02}\n").as_bytes())
            .unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Rotations before line02, 04, 06 and 08: files 1 to 4, of which the newest two are kept.
    assert_eq!(
        names,
        vec![
            "container.log",
            "container.log.0000000003",
            "container.log.0000000004"
        ]
    );
    for f in &names {
        assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 100);
    }
    let all: Vec<String> = read_tail(dir.path(), None)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        all,
        vec!["line04", "line05", "line06", "line07", "line08", "line09"]
    );
    let last3: Vec<String> = read_tail(dir.path(), Some(3))
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(last3, vec!["line07", "line08", "line09"]);

    // One file only: rotation starts a fresh file.
    let dir1 = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(dir1.path(), 100, 1).unwrap();
    for i in 0..5 {
        w.write(Stream::Stdout, format!("line{i:02}\n").as_bytes())
            .unwrap();
    }
    let all: Vec<String> = read_tail(dir1.path(), None)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(all, vec!["line04"]);
    let names: Vec<String> = std::fs::read_dir(dir1.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["container.log"]);

    // Numbers go on from the newest rotated file when the writer is opened again.
    drop(w);
    let mut w = LogWriter::open(dir.path(), 100, 3).unwrap();
    for i in 10..12 {
        w.write(Stream::Stdout, format!("line{i:02}\n").as_bytes())
            .unwrap();
    }
    assert!(dir.path().join("container.log.0000000005").exists());
    assert!(!dir.path().join("container.log.0000000003").exists());
}

#[test]
fn older_layout_files_count_as_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |t: &str| {
        format_line(
            "2024-05-01T12:00:00.000000000Z",
            Stream::Stdout,
            false,
            t.as_bytes(),
        )
    };
    std::fs::write(dir.path().join("container.log.2"), rec("a")).unwrap();
    std::fs::write(dir.path().join("container.log.1"), rec("b")).unwrap();
    std::fs::write(dir.path().join("container.log"), rec("c")).unwrap();
    std::fs::write(dir.path().join("container.log.tmp"), rec("x")).unwrap();
    let text = |lines: Vec<LogLine>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
    assert_eq!(text(read_tail(dir.path(), None).unwrap()), ["a", "b", "c"]);
    // 45-byte records: `d` rotates `container.log` (which holds `c`) to number 1.
    let mut w = LogWriter::open(dir.path(), 60, 4).unwrap();
    w.write(Stream::Stdout, b"d\n").unwrap();
    assert!(dir.path().join("container.log.0000000001").exists());
    assert_eq!(
        text(read_tail(dir.path(), None).unwrap()),
        ["a", "b", "c", "d"]
    );
    // The next rotation drops the oldest, `.2`.
    w.write(Stream::Stdout, b"e\n").unwrap();
    assert!(!dir.path().join("container.log.2").exists());
    assert_eq!(
        text(read_tail(dir.path(), None).unwrap()),
        ["b", "c", "d", "e"]
    );
    let mut f = LogFollower::open(dir.path(), None).unwrap();
    assert_eq!(
        text(f.wait_next(Duration::from_secs(1)).unwrap()),
        ["b", "c", "d", "e"]
    );
}

#[test]
fn follower_sees_tail_then_new_lines_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    // Several rotations can happen between two reads; enough files are kept for the follower
    // to catch up.
    let mut w = LogWriter::open(dir.path(), 200, 200).unwrap();
    for i in 0..3 {
        w.write(Stream::Stdout, format!("pre{i}\n").as_bytes())
            .unwrap();
    }
    let mut f = LogFollower::open(dir.path(), Some(2)).unwrap();
    let first: Vec<String> = f
        .wait_next(Duration::from_secs(1))
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(first, vec!["pre1", "pre2"]);
    assert!(f.wait_next(Duration::from_millis(50)).unwrap().is_empty());

    const N: usize = 400;
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            w.write(Stream::Stdout, format!("n{i:04}\n").as_bytes())
                .unwrap();
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < N && Instant::now() < deadline {
        for l in f.wait_next(Duration::from_millis(500)).unwrap() {
            got.push(l.text);
        }
    }
    writer.join().unwrap();
    let want: Vec<String> = (0..N).map(|i| format!("n{i:04}")).collect();
    assert_eq!(got, want);
    assert!(dir.path().join("container.log.0000000003").exists());
    assert!(f.wait_next(Duration::from_millis(50)).unwrap().is_empty());
}

fn write_lines(w: &mut LogWriter, prefix: &str, range: std::ops::Range<usize>) {
    for i in range {
        w.write(Stream::Stdout, format!("{prefix}{i:02}\n").as_bytes())
            .unwrap();
    }
}

fn next_texts(f: &mut LogFollower) -> Vec<String> {
    f.wait_next(Duration::from_secs(1))
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect()
}

#[test]
fn follower_resumes_at_oldest_kept_file_after_too_many_rotations() {
    let dir = tempfile::tempdir().unwrap();
    // 45-byte records, two per file; two rotated files kept.
    let mut w = LogWriter::open(dir.path(), 100, 3).unwrap();
    w.write(Stream::Stdout, b"pre\n").unwrap();
    let mut f = LogFollower::open(dir.path(), None).unwrap();
    assert_eq!(next_texts(&mut f), ["pre"]);

    // The held file gets l00 and becomes number 1; numbers 2 to 10 hold l01 to l18 in pairs,
    // `container.log` l19. Only 9 and 10 are kept.
    write_lines(&mut w, "l", 0..20);
    let want = ["l00", "l15", "l16", "l17", "l18", "l19"];
    assert_eq!(next_texts(&mut f), want);

    // Again, now that the follower knows which numbers it has read: the held file (l19, m00)
    // becomes 11, m01 to m18 go to 12 to 20, of which 19 and 20 are kept.
    write_lines(&mut w, "m", 0..20);
    let want = ["m00", "m15", "m16", "m17", "m18", "m19"];
    assert_eq!(next_texts(&mut f), want);

    // And it goes on normally.
    write_lines(&mut w, "n", 0..5);
    assert_eq!(next_texts(&mut f), ["n00", "n01", "n02", "n03", "n04"]);
    assert!(f.wait_next(Duration::from_millis(50)).unwrap().is_empty());
}

#[test]
fn follower_keeps_up_with_fast_rotation_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    const MAX_BYTES: u64 = 200;
    const MAX_FILES: u32 = 50;
    const N: usize = 3000;
    // Records are 30 + 8 + 6 + 1 = 45 bytes: four per file. The writer stays at most this many
    // records ahead of what the reader has returned, so fewer than MAX_FILES rotations happen
    // between two reads.
    const AHEAD: usize = 4 * (MAX_FILES as usize - 10);

    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
            })
        })
        .collect();

    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), MAX_BYTES, MAX_FILES).unwrap();
        let mut f = LogFollower::open(dir.path(), None).unwrap();
        let consumed = Arc::new(AtomicUsize::new(0));
        let writer = {
            let consumed = consumed.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    while i >= consumed.load(Ordering::Acquire) + AHEAD {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    w.write(Stream::Stdout, format!("n{i:05}\n").as_bytes())
                        .unwrap();
                }
            })
        };
        let mut got = Vec::with_capacity(N);
        let mut biggest = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < N && Instant::now() < deadline {
            // A slow reader: the writer rotates several times between two reads.
            std::thread::sleep(Duration::from_millis(2 + (got.len() % 3) as u64));
            let batch = f.wait_next(Duration::from_millis(500)).unwrap();
            biggest = biggest.max(batch.len());
            got.extend(batch.into_iter().map(|l| l.text));
            consumed.store(got.len(), Ordering::Release);
        }
        consumed.store(usize::MAX / 2, Ordering::Release);
        writer.join().unwrap();
        let want: Vec<String> = (0..N).map(|i| format!("n{i:05}")).collect();
        if got != want {
            let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "round {round}: got {} lines, first difference at {first_bad:?}: {:?}",
                got.len(),
                first_bad.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())])
            );
        }
        assert!(
            biggest > 8,
            "round {round}: never two rotations between reads"
        );
        assert!(f.wait_next(Duration::from_millis(20)).unwrap().is_empty());
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
}

#[test]
fn stream_spellings() {
    use strum::VariantNames;
    for (stream, name) in [(Stream::Stdout, "stdout"), (Stream::Stderr, "stderr")] {
        assert_eq!(stream.as_str(), name);
        assert_eq!(stream.to_string(), name);
        assert_eq!(name.parse::<Stream>().ok(), Some(stream));
        assert_eq!(serde_json::to_value(stream).unwrap(), name);
    }
    assert_eq!(Stream::VARIANTS, ["stdout", "stderr"]);
    assert!("STDOUT".parse::<Stream>().is_err());
}
