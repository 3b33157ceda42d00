//! `warren cp SRC DST`: files and directories in and out of a workload as tar streams, with
//! Docker's `cp` rules. One side is `NAME:PATH`, the other a local path or `-` (a tar stream
//! on stdin or stdout). The local side is read and written by the same code as the daemon's
//! ([`warren_image::copy`]), so an archive from a workload that holds `..`, links leading
//! outside or device nodes is refused here too, with nothing written.

use super::exit::Exit;
use super::transfer::{progress, reader_body};
use crate::client::{routes, Client};
use anyhow::{bail, Context, Result};
use std::io::Write;
use warren_image::copy::{CopyPath, PutOptions, Shape, Tree};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Side {
    /// A path on this machine.
    Local(String),
    /// A tar stream on stdin or stdout.
    Stdio,
    /// A path inside a workload.
    Workload { name: String, path: String },
}

impl Side {
    /// `-`, `NAME:PATH` (NAME a DNS label; a path inside a workload must be absolute), or a
    /// local path (one starting with `/` or `.` is always local, so `./a:b` names a file).
    pub(super) fn parse(s: &str) -> Result<Side> {
        if s == "-" {
            return Ok(Side::Stdio);
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Side::Local(s.to_string()));
        }
        match s.split_once(':') {
            Some((name, path))
                if !name.contains('/') && warren_model::names::check_dns_label(name).is_ok() =>
            {
                if !path.starts_with('/') {
                    bail!("{s}: the path inside {name} must be absolute (NAME:/PATH)");
                }
                Ok(Side::Workload {
                    name: name.to_string(),
                    path: path.to_string(),
                })
            }
            _ => Ok(Side::Local(s.to_string())),
        }
    }
}

/// A local path made absolute against the working directory, its trailing `/` or `/.` kept.
fn local(path: &str) -> Result<CopyPath> {
    let abs = if path.starts_with('/') {
        path.to_string()
    } else {
        let cwd = std::env::current_dir().context("finding the working directory")?;
        format!("{}/{path}", cwd.display())
    };
    Ok(CopyPath::parse(&abs)?)
}

fn shape_of(p: &CopyPath) -> Shape {
    if p.contents {
        Shape::Contents
    } else {
        Shape::Entry
    }
}

pub(super) async fn cp(client: &Client, src: &str, dst: &str, archive: bool) -> Result<Exit> {
    match (Side::parse(src)?, Side::parse(dst)?) {
        (Side::Workload { .. }, Side::Workload { .. }) => {
            bail!("both SRC and DST are in workloads: copy out to a local path, then in")
        }
        (Side::Workload { name, path }, to) => copy_out(client, &name, &path, to, archive).await,
        (from, Side::Workload { name, path }) => copy_in(client, from, &name, &path, archive).await,
        _ => bail!("one of SRC and DST must be NAME:/PATH inside a workload"),
    }
}

async fn copy_out(
    client: &Client,
    name: &str,
    path: &str,
    to: Side,
    archive: bool,
) -> Result<Exit> {
    use http_body_util::BodyExt;
    let src = CopyPath::parse(path)?;
    let target = match &to {
        Side::Local(p) => Some(local(p)?),
        _ => None,
    };
    let call = routes::WORKLOAD_ARCHIVE_GET.at(&[name]).query("path", path);
    let mut body = client.get_stream(&call).await?;
    let pb = progress(&format!("copying from {name}"));
    let Some(target) = target else {
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("receiving the archive")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)?;
                pb.inc(data.len() as u64);
            }
        }
        out.flush()?;
        pb.finish_and_clear();
        return Ok(Exit::Success);
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let opts = PutOptions {
        shape: shape_of(&src),
        require_dir: false,
        keep_owners: archive,
        ids: None,
        owner: None,
        max_bytes: None,
    };
    let writer = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: &mut rx,
            current: bytes::Bytes::new(),
        };
        let r = warren_image::copy::put(&Tree::root("/"), &target, reader, &opts);
        // Let the sender finish whatever happened.
        while rx.blocking_recv().is_some() {}
        r
    });
    let mut received: Result<()> = Ok(());
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(data) = f.data_ref() {
                    pb.inc(data.len() as u64);
                    if tx.send(data.clone()).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                received = Err(anyhow::anyhow!(e).context("receiving the archive"));
                break;
            }
        }
    }
    drop(tx);
    let placed = writer.await?;
    pb.finish_and_clear();
    received?;
    placed.with_context(|| format!("copying {name}:{path}"))?;
    Ok(Exit::Success)
}

/// Reads the chunks of a channel (the response body) as a blocking `Read`.
struct ChannelReader<'a> {
    rx: &'a mut tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

async fn copy_in(
    client: &Client,
    from: Side,
    name: &str,
    path: &str,
    archive: bool,
) -> Result<Exit> {
    let mut call = routes::WORKLOAD_ARCHIVE_PUT.at(&[name]).query("path", path);
    if archive {
        call = call.query("archive", "true");
    }
    let pb = progress(&format!("copying to {name}"));
    let (reader, producer): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, _) = match from {
        Side::Stdio => {
            call = call.query("directory", "true");
            (Box::new(tokio::io::stdin()), None)
        }
        Side::Local(p) => {
            let src = local(&p)?;
            std::fs::symlink_metadata(&p).with_context(|| p.clone())?;
            if src.contents {
                call = call.query("contents", "true");
            }
            let (r, w) = std::io::pipe().context("creating a pipe")?;
            let producer = std::thread::spawn(move || {
                warren_image::copy::get(
                    &Tree::root("/"),
                    &src,
                    None,
                    std::io::BufWriter::with_capacity(1 << 20, w),
                )
            });
            (
                Box::new(tokio::fs::File::from_std(std::fs::File::from(
                    std::os::fd::OwnedFd::from(r),
                ))),
                Some(producer),
            )
        }
        Side::Workload { .. } => unreachable!("checked by the caller"),
    };
    let body = reader_body(reader, pb.clone());
    let sent: Result<crate::wire::CopiedIn> = client.post_stream(&call, body).await;
    pb.finish_and_clear();
    if let Some(p) = producer {
        // A local failure (unreadable file) explains a refused upload better.
        match p.join() {
            Ok(Err(e)) => return Err(anyhow::anyhow!(e).context("reading the local side")),
            Ok(Ok(_)) => {}
            Err(_) => bail!("the local reader panicked"),
        }
    }
    sent?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_told_apart() {
        assert_eq!(Side::parse("-").unwrap(), Side::Stdio);
        assert_eq!(
            Side::parse("web:/etc/app").unwrap(),
            Side::Workload {
                name: "web".into(),
                path: "/etc/app".into()
            }
        );
        assert_eq!(
            Side::parse("./web:/x").unwrap(),
            Side::Local("./web:/x".into())
        );
        assert_eq!(
            Side::parse("/tmp/a:b").unwrap(),
            Side::Local("/tmp/a:b".into())
        );
        assert_eq!(
            Side::parse("dir/file").unwrap(),
            Side::Local("dir/file".into())
        );
        assert!(Side::parse("web:etc").is_err());
    }
}
