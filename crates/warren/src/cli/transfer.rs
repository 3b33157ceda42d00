//! Helpers the commands that move bytes share: the transfer progress bar, a file, directory
//! or stdin as a streamed upload body, and human-readable sizes.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub(super) fn progress(what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}",
        )
        .expect("template is valid"),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

pub(super) type UploadBody = http_body_util::StreamBody<
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::io::Result<hyper::body::Frame<bytes::Bytes>>>
                + Send,
        >,
    >,
>;

/// `file` (`-` for stdin) as a request body, with an upload progress bar.
pub(super) async fn upload(file: &PathBuf) -> Result<(UploadBody, indicatif::ProgressBar)> {
    use tokio::io::AsyncRead;
    let reader: Box<dyn AsyncRead + Send + Unpin> = if file.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else if file.is_dir() {
        // A directory (an OCI layout) goes as a tar of its contents, written as it is read.
        let (r, w) = std::io::pipe().context("creating a pipe")?;
        let dir = file.clone();
        std::thread::spawn(move || {
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(false);
            let _ = b.append_dir_all(".", &dir).and_then(|_| b.finish());
        });
        Box::new(tokio::fs::File::from_std(std::fs::File::from(
            std::os::fd::OwnedFd::from(r),
        )))
    } else {
        Box::new(
            tokio::fs::File::open(file)
                .await
                .with_context(|| format!("opening {}", file.display()))?,
        )
    };
    let pb = progress("uploading");
    Ok((reader_body(reader, pb.clone()), pb))
}

/// What `reader` gives as a request body, read 1 MiB at a time, counted on `pb`.
pub(super) fn reader_body(
    reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    pb: indicatif::ProgressBar,
) -> UploadBody {
    let pb2 = pb;
    let stream = futures_util::stream::unfold((reader, 0u64), move |(mut r, sent)| {
        let pb = pb2.clone();
        async move {
            let mut buf = vec![0u8; 1 << 20];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    pb.set_position(sent + n as u64);
                    Some((
                        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(buf))),
                        (r, sent + n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (r, sent))),
            }
        }
    });
    http_body_util::StreamBody::new(Box::pin(stream))
}

pub(super) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}
