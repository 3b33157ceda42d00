//! The export archive format: one self-checking stream holding a workload's spec, metadata and
//! dataset streams, suitable for files, pipes and ssh.
//!
//! ```text
//! magic      b"WARRENX1"
//! manifest   u32 length (BE) + JSON (Manifest)
//! sections   per dataset, in manifest order:
//!              u8 1, u8 dataset index,
//!              chunks: u32 length + zstd-compressed bytes of the driver's send stream,
//!              u32 0, then the sha256 of that section's compressed bytes (32 bytes)
//! trailer    u8 0, sha256 of every byte before this digest (32 bytes), b"WARRENX1END"
//! ```
//!
//! Import reads the whole archive and checks every digest and the trailer before anything is
//! created: a truncated or corrupted archive is refused with nothing changed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use warren_model::WorkloadSpec;

pub const MAGIC: &[u8; 8] = b"WARRENX1";
pub const END: &[u8; 11] = b"WARRENX1END";
/// Largest chunk written or accepted.
pub const CHUNK: usize = 1 << 20;
const MAX_MANIFEST: usize = 16 << 20;

/// What an archive holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub name: String,
    /// The workload's spec (workload archives).
    #[serde(default)]
    pub spec: Option<WorkloadSpec>,
    /// The volume's declaration (volume archives).
    #[serde(default)]
    pub volume: Option<warren_model::VolumeSpec>,
    /// The snapshot the streams were taken from (created on import too).
    pub label: String,
    /// Base snapshot of an incremental archive.
    pub since: Option<String>,
    /// Dataset kinds in section order: `rootfs`, `data` or `volume`.
    pub datasets: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Storage driver that wrote the streams (streams only import into the same driver).
    pub driver: String,
}

/// Errors reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a warren export archive (bad magic)")]
    Magic,
    #[error("archive is truncated ({0})")]
    Truncated(&'static str),
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    #[error("archive checksum mismatch in {0}")]
    Checksum(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes an archive incrementally while keeping the running digest.
pub struct ArchiveWriter<W: Write> {
    out: W,
    total: Sha256,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(mut out: W, manifest: &Manifest) -> std::io::Result<Self> {
        let json = serde_json::to_vec(manifest).expect("manifest serializes");
        let mut total = Sha256::new();
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&(json.len() as u32).to_be_bytes());
        head.extend_from_slice(&json);
        total.update(&head);
        out.write_all(&head)?;
        Ok(ArchiveWriter { out, total })
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.total.update(b);
        self.out.write_all(b)
    }

    /// Writes one dataset section: `fill` receives a writer for the raw (uncompressed) stream.
    pub fn section(
        &mut self,
        index: u8,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.put(&[1, index])?;
        let mut sec = SectionWriter {
            archive: self,
            buf: Vec::with_capacity(CHUNK),
            digest: Sha256::new(),
        };
        {
            let mut enc = zstd::Encoder::new(&mut sec, 3)?;
            // Compress on worker threads so compression overlaps the driver's send.
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            if workers > 1 {
                enc.multithread(workers)?;
            }
            fill(&mut enc)?;
            enc.finish()?;
        }
        sec.flush_chunk()?;
        let digest = sec.digest.finalize();
        self.put(&0u32.to_be_bytes())?;
        self.put(&digest)
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.put(&[0])?;
        let digest = self.total.clone().finalize();
        self.out.write_all(&digest)?;
        self.out.write_all(END)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

struct SectionWriter<'a, W: Write> {
    archive: &'a mut ArchiveWriter<W>,
    buf: Vec<u8>,
    digest: Sha256,
}

impl<W: Write> SectionWriter<'_, W> {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.digest.update(&buf);
        self.archive.put(&(buf.len() as u32).to_be_bytes())?;
        self.archive.put(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for SectionWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where one verified section's compressed bytes lie in the archive file.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub index: u8,
    /// (offset, length) of each chunk's payload.
    pub chunks: Vec<(u64, u32)>,
}

/// Reads and verifies a whole archive (every digest and the trailer). Returns the manifest and
/// the position of each section, for [`section_reader`].
pub fn verify(mut r: impl Read) -> Result<(Manifest, Vec<Section>), ArchiveError> {
    let mut total = Sha256::new();
    let mut pos: u64 = 0;
    let mut read = |buf: &mut [u8], what: &'static str, total: &mut Sha256, pos: &mut u64| {
        r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ArchiveError::Truncated(what),
            _ => ArchiveError::Io(e),
        })?;
        total.update(&*buf);
        *pos += buf.len() as u64;
        Ok::<(), ArchiveError>(())
    };
    let mut magic = [0u8; 8];
    read(&mut magic, "magic", &mut total, &mut pos).map_err(|_| ArchiveError::Magic)?;
    if &magic != MAGIC {
        return Err(ArchiveError::Magic);
    }
    let mut len = [0u8; 4];
    read(&mut len, "manifest length", &mut total, &mut pos)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MANIFEST {
        return Err(ArchiveError::Corrupt("manifest too large".into()));
    }
    let mut json = vec![0u8; len];
    read(&mut json, "manifest", &mut total, &mut pos)?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| ArchiveError::Corrupt(format!("manifest: {e}")))?;
    if manifest.version != 1 {
        return Err(ArchiveError::Corrupt(format!(
            "archive version {} is not supported",
            manifest.version
        )));
    }
    let mut sections = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let mut tag = [0u8; 1];
        read(&mut tag, "section tag", &mut total, &mut pos)?;
        match tag[0] {
            0 => break,
            1 => {}
            t => return Err(ArchiveError::Corrupt(format!("unknown section tag {t}"))),
        }
        let mut idx = [0u8; 1];
        read(&mut idx, "section index", &mut total, &mut pos)?;
        let index = idx[0];
        let name = manifest
            .datasets
            .get(index as usize)
            .cloned()
            .ok_or_else(|| {
                ArchiveError::Corrupt(format!("section {index} is not in the manifest"))
            })?;
        let mut digest = Sha256::new();
        let mut chunks = Vec::new();
        loop {
            let mut l = [0u8; 4];
            read(&mut l, "chunk length", &mut total, &mut pos)?;
            let l = u32::from_be_bytes(l);
            if l == 0 {
                break;
            }
            if l as usize > CHUNK {
                return Err(ArchiveError::Corrupt(format!("chunk of {l} bytes")));
            }
            let offset = pos;
            let buf = &mut chunk[..l as usize];
            read(buf, "stream data", &mut total, &mut pos)?;
            digest.update(&*buf);
            chunks.push((offset, l));
        }
        let mut want = [0u8; 32];
        read(&mut want, "section digest", &mut total, &mut pos)?;
        if digest.finalize().as_slice() != want {
            return Err(ArchiveError::Checksum(format!("the {name} stream")));
        }
        sections.push(Section { index, chunks });
    }
    let expected = total.finalize();
    let mut got = [0u8; 32];
    r.read_exact(&mut got)
        .map_err(|_| ArchiveError::Truncated("trailer"))?;
    let mut end = [0u8; 11];
    r.read_exact(&mut end)
        .map_err(|_| ArchiveError::Truncated("trailer"))?;
    if &end != END {
        return Err(ArchiveError::Corrupt("bad trailer".into()));
    }
    if expected.as_slice() != got {
        return Err(ArchiveError::Checksum("the archive".into()));
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra)? != 0 {
        return Err(ArchiveError::Corrupt("bytes after the trailer".into()));
    }
    if sections.len() != manifest.datasets.len() {
        return Err(ArchiveError::Corrupt(format!(
            "{} sections for {} datasets",
            sections.len(),
            manifest.datasets.len()
        )));
    }
    Ok((manifest, sections))
}

/// Reads a verified section's compressed chunks back out of the archive file.
pub struct ChunkReader<'a> {
    file: &'a std::fs::File,
    chunks: std::collections::VecDeque<(u64, u32)>,
    current: Option<(u64, u32)>,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            if self.current.is_none() {
                self.current = self.chunks.pop_front();
            }
            let Some((off, len)) = self.current else {
                return Ok(0);
            };
            if len == 0 {
                self.current = None;
                continue;
            }
            let n = (len as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], off)?;
            self.current = Some((off + n as u64, len - n as u32));
            return Ok(n);
        }
    }
}

/// The decompressed dataset stream of a verified section.
pub fn section_reader<'a>(
    file: &'a std::fs::File,
    section: &Section,
) -> std::io::Result<impl Read + 'a> {
    zstd::Decoder::new(ChunkReader {
        file,
        chunks: section.chunks.iter().copied().collect(),
        current: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::Source;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            name: "web".into(),
            spec: Some(WorkloadSpec::new("web", Source::World("busybox".into()))),
            volume: None,
            label: "export-1".into(),
            since: None,
            datasets: vec!["rootfs".into(), "data".into()],
            created_at: 1,
            driver: "btrfs".into(),
        }
    }

    fn build(rootfs: &[u8], data: &[u8]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), &manifest()).unwrap();
        w.section(0, |o| o.write_all(rootfs)).unwrap();
        w.section(1, |o| o.write_all(data)).unwrap();
        w.finish().unwrap()
    }

    fn roundtrip(bytes: &[u8]) -> Result<(Manifest, Vec<Vec<u8>>), ArchiveError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, bytes).unwrap();
        let (m, secs) = verify(std::fs::File::open(&p).unwrap())?;
        let f = std::fs::File::open(&p).unwrap();
        let mut out = Vec::new();
        for s in &secs {
            let mut v = Vec::new();
            section_reader(&f, s).unwrap().read_to_end(&mut v).unwrap();
            out.push(v);
        }
        Ok((m, out))
    }

    #[test]
    fn round_trip_large_and_empty_sections() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytes = build(&big, b"");
        let (m, secs) = roundtrip(&bytes).unwrap();
        assert_eq!(m, manifest());
        assert_eq!(secs[0], big);
        assert!(secs[1].is_empty());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = build(b"rootfs stream bytes", b"data stream bytes");
        for cut in 0..bytes.len() {
            assert!(
                roundtrip(&bytes[..cut]).is_err(),
                "truncated at {cut} of {} was accepted",
                bytes.len()
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = build(b"rootfs stream bytes", b"data stream bytes");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(roundtrip(&b).is_err(), "flipped byte {i} was accepted");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(roundtrip(&extra).is_err());
    }

    #[test]
    fn garbage_is_not_an_archive() {
        assert!(matches!(
            roundtrip(b"hello world, not an archive"),
            Err(ArchiveError::Magic)
        ));
        assert!(matches!(roundtrip(b""), Err(ArchiveError::Magic)));
    }
}
