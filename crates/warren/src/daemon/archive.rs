//! The export archive format: one self-checking stream holding a workload's spec, metadata and
//! dataset streams, suitable for files, pipes and ssh.
//!
//! ```text
//! magic      b"WARRENX2"
//! manifest   u32 length (BE) + JSON (Manifest)
//! sections   per dataset, in manifest order:
//!              u8 1, u8 dataset index,
//!              chunks: u32 length + zstd-compressed bytes of the driver's send stream,
//!              u32 0, then the sha256 of that section's compressed bytes (32 bytes)
//! trailer    u8 0, sha256 of every byte before this digest except the chunks' compressed
//!            bytes (32 bytes), b"WARRENX2END"
//! ```
//!
//! The trailer digest covers the magic, the manifest, every tag, index, chunk length and
//! section digest; each section digest covers that section's compressed bytes. So every byte
//! is covered once, and the compressed stream is hashed once (version 1 archives, `WARRENX1`
//! ... `WARRENX1END`, hashed every byte twice: once for its section and again for the
//! trailer; they are still read).
//!
//! Import reads the archive once, as it arrives ([`ArchiveReader`]): the manifest first (every
//! check that needs no data is done before anything is received), then each section is
//! decompressed straight into the storage driver's staged receive, its digest checked at its
//! end, and the trailer digest last. Only when the trailer matched are the staged datasets
//! installed; any failure before deletes them. So a truncated or corrupted archive is refused
//! with nothing created and nothing that existed changed, and no byte is written twice.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use warren_model::WorkloadSpec;

pub const MAGIC: &[u8; 8] = b"WARRENX2";
pub const END: &[u8; 11] = b"WARRENX2END";
/// The version 1 format's magic and end marker (read, no longer written).
pub const MAGIC_V1: &[u8; 8] = b"WARRENX1";
pub const END_V1: &[u8; 11] = b"WARRENX1END";
/// zstd worker threads per section.
const COMPRESS_WORKERS: u32 = 1;
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
    /// Version 1: the trailer digest covers the compressed bytes too.
    v1: bool,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W, manifest: &Manifest) -> std::io::Result<Self> {
        Self::with_format(out, manifest, false)
    }

    fn with_format(mut out: W, manifest: &Manifest, v1: bool) -> std::io::Result<Self> {
        let json = serde_json::to_vec(manifest).expect("manifest serializes");
        let mut total = Sha256::new();
        let mut head = if v1 { MAGIC_V1 } else { MAGIC }.to_vec();
        head.extend_from_slice(&(json.len() as u32).to_be_bytes());
        head.extend_from_slice(&json);
        total.update(&head);
        out.write_all(&head)?;
        Ok(ArchiveWriter { out, total, v1 })
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
            // Compress on a worker thread so compression overlaps reading the driver's send
            // stream and hashing and writing what was compressed.
            enc.multithread(COMPRESS_WORKERS)?;
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
        self.out.write_all(if self.v1 { END_V1 } else { END })?;
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
        if self.archive.v1 {
            self.archive.total.update(&buf);
        }
        self.archive.out.write_all(&buf)?;
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

/// Reads an archive as it arrives, without holding it anywhere: [`ArchiveReader::new`] reads
/// the manifest, [`ArchiveReader::next_section`] gives each section in turn as a [`Read`] of
/// its decompressed stream, and [`ArchiveReader::finish`] checks the trailer.
///
/// A section reader reports a truncated or corrupt section (a bad chunk length, a digest that
/// does not match) as an I/O error, at the latest instead of its end of stream: whoever
/// consumes it never sees a clean end of a damaged section. Only with the trailer digest is
/// every byte checked, so the archive is only known to be intact once
/// [`ArchiveReader::finish`] succeeded.
pub struct ArchiveReader<R: Read> {
    r: R,
    total: Sha256,
    manifest: Manifest,
    /// Sections started so far.
    sections: usize,
    /// The digest of the section being read, until its end was read.
    open: Option<Sha256>,
    /// Bytes of the current chunk not read yet.
    chunk_left: u32,
    /// The section list ended (tag 0 read).
    ended: bool,
    /// The first error a section reader reported.
    failure: Option<String>,
    /// A version 1 archive: the trailer digest covers the compressed bytes too.
    v1: bool,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks the magic and the manifest.
    pub fn new(r: R) -> Result<Self, ArchiveError> {
        let mut a = ArchiveReader {
            r,
            total: Sha256::new(),
            manifest: Manifest {
                version: 0,
                name: String::new(),
                spec: None,
                volume: None,
                label: String::new(),
                since: None,
                datasets: Vec::new(),
                created_at: 0,
                driver: String::new(),
            },
            sections: 0,
            open: None,
            chunk_left: 0,
            ended: false,
            failure: None,
            v1: false,
        };
        let mut magic = [0u8; 8];
        a.read_hashed(&mut magic, "magic")
            .map_err(|_| ArchiveError::Magic)?;
        if &magic == MAGIC_V1 {
            a.v1 = true;
        } else if &magic != MAGIC {
            return Err(ArchiveError::Magic);
        }
        let mut len = [0u8; 4];
        a.read_hashed(&mut len, "manifest length")?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MANIFEST {
            return Err(ArchiveError::Corrupt("manifest too large".into()));
        }
        let mut json = vec![0u8; len];
        a.read_hashed(&mut json, "manifest")?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| ArchiveError::Corrupt(format!("manifest: {e}")))?;
        if manifest.version != 1 {
            return Err(ArchiveError::Corrupt(format!(
                "archive version {} is not supported",
                manifest.version
            )));
        }
        if manifest.datasets.len() > usize::from(u8::MAX) + 1 {
            return Err(ArchiveError::Corrupt("too many datasets".into()));
        }
        a.manifest = manifest;
        Ok(a)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The first error a section reader reported (a damaged archive rather than a failing
    /// consumer), if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn read_hashed(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), ArchiveError> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ArchiveError::Truncated(what),
            _ => ArchiveError::Io(e),
        })?;
        self.total.update(&*buf);
        Ok(())
    }

    fn section_name(&self) -> String {
        let kind = self
            .sections
            .checked_sub(1)
            .and_then(|i| self.manifest.datasets.get(i))
            .map_or("?", String::as_str);
        format!("the {kind} stream")
    }

    /// Reads compressed bytes of the open section; Ok(0) once its end marker and digest were
    /// read and the digest matched (and for no open section).
    fn section_read(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        if self.open.is_none() || buf.is_empty() {
            return Ok(0);
        }
        if self.chunk_left == 0 {
            let mut l = [0u8; 4];
            self.read_hashed(&mut l, "chunk length")?;
            let l = u32::from_be_bytes(l);
            if l == 0 {
                let mut want = [0u8; 32];
                self.read_hashed(&mut want, "section digest")?;
                let got = self.open.take().expect("open section").finalize();
                if got.as_slice() != want {
                    return Err(ArchiveError::Checksum(self.section_name()));
                }
                return Ok(0);
            }
            if l as usize > CHUNK {
                return Err(ArchiveError::Corrupt(format!("chunk of {l} bytes")));
            }
            self.chunk_left = l;
        }
        let want = buf.len().min(self.chunk_left as usize);
        let n = loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => return Err(ArchiveError::Truncated("stream data")),
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::Io(e)),
            }
        };
        if self.v1 {
            self.total.update(&buf[..n]);
        }
        self.open.as_mut().expect("open section").update(&buf[..n]);
        self.chunk_left -= n as u32;
        Ok(n)
    }

    /// Reads (and checks) what is left of the open section without decompressing it.
    fn skip_section(&mut self) -> Result<(), ArchiveError> {
        let mut scratch = vec![0u8; 256 << 10];
        while self.section_read(&mut scratch)? > 0 {}
        Ok(())
    }

    /// The next section, in manifest order: its index and a reader of its decompressed
    /// stream; None once the sections ended (their count checked against the manifest). What
    /// the previous section's reader left unread is read and checked first.
    pub fn next_section(&mut self) -> Result<Option<(usize, SectionReader<'_, R>)>, ArchiveError> {
        if self.open.is_some() {
            self.skip_section()?;
        }
        if self.ended {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.read_hashed(&mut tag, "section tag")?;
        match tag[0] {
            0 => {
                self.ended = true;
                if self.sections != self.manifest.datasets.len() {
                    return Err(ArchiveError::Corrupt(format!(
                        "{} sections for {} datasets",
                        self.sections,
                        self.manifest.datasets.len()
                    )));
                }
                return Ok(None);
            }
            1 => {}
            t => return Err(ArchiveError::Corrupt(format!("unknown section tag {t}"))),
        }
        let mut idx = [0u8; 1];
        self.read_hashed(&mut idx, "section index")?;
        let index = usize::from(idx[0]);
        if index >= self.manifest.datasets.len() {
            return Err(ArchiveError::Corrupt(format!(
                "section {index} is not in the manifest"
            )));
        }
        if index != self.sections {
            return Err(ArchiveError::Corrupt(format!(
                "section {index} where section {} belongs",
                self.sections
            )));
        }
        self.sections += 1;
        self.open = Some(Sha256::new());
        self.chunk_left = 0;
        let decoder = zstd::stream::read::Decoder::with_buffer(std::io::BufReader::with_capacity(
            READ_BUF,
            Chunks(self),
        ))?;
        Ok(Some((index, SectionReader { decoder })))
    }

    /// Reads the rest (skipping sections not read), then checks the trailer: its digest (see
    /// the module docs), the end marker, and that nothing follows. Returns the manifest.
    pub fn finish(mut self) -> Result<Manifest, ArchiveError> {
        while self.next_section()?.is_some() {}
        let expected = self.total.clone().finalize();
        let mut got = [0u8; 32];
        self.r
            .read_exact(&mut got)
            .map_err(|_| ArchiveError::Truncated("trailer"))?;
        let mut end = [0u8; 11];
        self.r
            .read_exact(&mut end)
            .map_err(|_| ArchiveError::Truncated("trailer"))?;
        if &end != if self.v1 { END_V1 } else { END } {
            return Err(ArchiveError::Corrupt("bad trailer".into()));
        }
        if expected.as_slice() != got {
            return Err(ArchiveError::Checksum("the archive".into()));
        }
        let mut extra = [0u8; 1];
        if self.r.read(&mut extra)? != 0 {
            return Err(ArchiveError::Corrupt("bytes after the trailer".into()));
        }
        Ok(self.manifest)
    }
}

/// How much compressed input a section reader buffers per read.
const READ_BUF: usize = 1 << 20;

/// The compressed bytes of the open section, as the decompressor reads them.
struct Chunks<'a, R: Read>(&'a mut ArchiveReader<R>);

impl<R: Read> Read for Chunks<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.section_read(buf).map_err(|e| {
            let kind = match &e {
                ArchiveError::Truncated(_) => std::io::ErrorKind::UnexpectedEof,
                ArchiveError::Io(io) => io.kind(),
                _ => std::io::ErrorKind::InvalidData,
            };
            self.0.failure.get_or_insert_with(|| e.to_string());
            std::io::Error::new(kind, e)
        })
    }
}

/// One section's decompressed stream (see [`ArchiveReader`]).
pub struct SectionReader<'a, R: Read> {
    decoder: zstd::stream::read::Decoder<'static, std::io::BufReader<Chunks<'a, R>>>,
}

impl<R: Read> Read for SectionReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.decoder.read(buf) {
            Ok(0) if !buf.is_empty() => {
                // The decompressor reads its input to the end (another frame could follow),
                // so the section's digest was checked; anything else means more bytes than
                // frames.
                let archive = &mut *self.decoder.get_mut().get_mut().0;
                if archive.open.is_some() {
                    let e = ArchiveError::Corrupt(format!(
                        "{} holds bytes after its compressed data",
                        archive.section_name()
                    ));
                    archive.failure.get_or_insert_with(|| e.to_string());
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                Ok(0)
            }
            Err(e) => {
                let archive = &mut *self.decoder.get_mut().get_mut().0;
                if archive.failure.is_none() && e.kind() != std::io::ErrorKind::Interrupted {
                    // A decompression error: the compressed bytes are damaged.
                    archive.failure = Some(
                        ArchiveError::Corrupt(format!("{}: {e}", archive.section_name()))
                            .to_string(),
                    );
                }
                Err(e)
            }
            ok => ok,
        }
    }
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
        build_format(rootfs, data, false)
    }

    fn build_format(rootfs: &[u8], data: &[u8], v1: bool) -> Vec<u8> {
        let mut w = ArchiveWriter::with_format(Vec::new(), &manifest(), v1).unwrap();
        w.section(0, |o| o.write_all(rootfs)).unwrap();
        w.section(1, |o| o.write_all(data)).unwrap();
        w.finish().unwrap()
    }

    fn roundtrip(bytes: &[u8]) -> Result<(Manifest, Vec<Vec<u8>>), ArchiveError> {
        let mut a = ArchiveReader::new(bytes)?;
        let mut out = Vec::new();
        loop {
            let next = a.next_section()?;
            let Some((i, mut r)) = next else { break };
            assert_eq!(i, out.len());
            let mut v = Vec::new();
            if let Err(e) = r.read_to_end(&mut v) {
                drop(r);
                assert!(a.failure().is_some(), "{e}: not recorded as a failure");
                return Err(ArchiveError::Io(e));
            }
            out.push(v);
        }
        let m = a.finish()?;
        Ok((m, out))
    }

    /// Skipping sections (reading none, or only part of one) still checks them.
    fn verify_only(bytes: &[u8], partly: bool) -> Result<Manifest, ArchiveError> {
        let mut a = ArchiveReader::new(bytes)?;
        if partly {
            if let Some((_, mut r)) = a.next_section()? {
                let _ = r.read(&mut [0u8; 3]);
            }
        }
        a.finish()
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
    fn both_formats_round_trip_and_the_current_one_is_written() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for v1 in [false, true] {
            let bytes = build_format(b"rootfs", &big, v1);
            let (magic, end) = if v1 { (MAGIC_V1, END_V1) } else { (MAGIC, END) };
            assert!(bytes.starts_with(magic) && bytes.ends_with(end));
            let (m, secs) = roundtrip(&bytes).unwrap();
            assert_eq!(m, manifest());
            assert_eq!(secs, [b"rootfs".to_vec(), big.clone()]);
        }
        assert!(build(b"", b"").starts_with(MAGIC));
    }

    #[test]
    fn every_truncation_is_refused() {
        for v1 in [false, true] {
            truncations_are_refused(&build_format(
                b"rootfs stream bytes",
                b"data stream bytes",
                v1,
            ));
        }
    }

    fn truncations_are_refused(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            for partly in [false, true] {
                assert!(
                    verify_only(&bytes[..cut], partly).is_err(),
                    "truncated at {cut} of {} was accepted",
                    bytes.len()
                );
            }
            assert!(
                roundtrip(&bytes[..cut]).is_err(),
                "truncated at {cut} of {} was accepted",
                bytes.len()
            );
        }
        verify_only(bytes, true).unwrap();
        verify_only(bytes, false).unwrap();
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        for v1 in [false, true] {
            flipped_bytes_are_refused(&build_format(
                b"rootfs stream bytes",
                b"data stream bytes",
                v1,
            ));
        }
    }

    fn flipped_bytes_are_refused(bytes: &[u8]) {
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x40;
            assert!(roundtrip(&b).is_err(), "flipped byte {i} was accepted");
            assert!(
                verify_only(&b, false).is_err(),
                "flipped byte {i} was accepted"
            );
        }
        let mut extra = bytes.to_vec();
        extra.push(0);
        assert!(roundtrip(&extra).is_err());
    }

    #[test]
    fn a_damaged_section_fails_its_reader_not_only_the_trailer() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let big: Vec<u8> = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let bytes = build(b"rootfs", &big);
        // A byte inside the data section's compressed chunk: its reader fails before it
        // reports the end of the stream.
        let at = bytes.len() - 11 - 32 - 1 - 32 - 4 - 100;
        for damaged in [
            {
                let mut b = bytes.clone();
                b[at] ^= 1;
                b
            },
            bytes[..at].to_vec(),
        ] {
            let mut a = ArchiveReader::new(&damaged[..]).unwrap();
            let (_, mut r) = a.next_section().unwrap().unwrap();
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            assert_eq!(v, b"rootfs");
            drop(r);
            let (_, mut r) = a.next_section().unwrap().unwrap();
            let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
            drop(r);
            let failure = a.failure().expect("recorded").to_string();
            assert!(
                failure.contains("data stream") || failure.contains("truncated"),
                "{failure}: {err}"
            );
        }
    }

    #[test]
    fn sections_out_of_order_are_refused() {
        let mut w = ArchiveWriter::new(Vec::new(), &manifest()).unwrap();
        w.section(1, |o| o.write_all(b"data")).unwrap();
        w.section(0, |o| o.write_all(b"rootfs")).unwrap();
        let bytes = w.finish().unwrap();
        let err = roundtrip(&bytes).unwrap_err().to_string();
        assert!(err.contains("where section 0 belongs"), "{err}");
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
