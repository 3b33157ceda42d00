//! NDJSON framing, shared by the daemon (which writes log, event and progress streams) and the
//! client (which reads them): one JSON value per line, each line ended by `\n`.
//!
//! [`NdjsonCodec`] is a `tokio-util` codec over [`LinesCodec`]: decoding yields typed values,
//! counts lines so a malformed one is named by its number, and refuses any line longer than
//! [`MAX_LINE`] bytes rather than buffering without bound. A final line without its newline is
//! still decoded; blank lines are skipped.

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

/// The longest line accepted, in bytes. The largest frame the daemon writes is a log record
/// (at most 16 KiB of text, up to six bytes each once escaped); 4 MiB leaves ample room while
/// bounding what a misbehaving peer can make the reader buffer.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// Why an NDJSON stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NdjsonError {
    #[error("NDJSON line {line} is longer than {max} bytes; refusing it")]
    TooLong { line: usize, max: usize },
    #[error("NDJSON line {line} is not valid: {source}")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("NDJSON line {line} is not UTF-8")]
    NotUtf8 { line: usize },
    #[error("cannot encode an NDJSON line: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("reading an NDJSON stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames values of type `T` as NDJSON lines (decoding) and any `Serialize` value as one line
/// (encoding).
#[derive(Debug)]
pub struct NdjsonCodec<T> {
    lines: LinesCodec,
    max: usize,
    line: usize,
    _item: PhantomData<fn() -> T>,
}

impl<T> NdjsonCodec<T> {
    /// A codec refusing lines longer than [`MAX_LINE`].
    pub fn new() -> Self {
        Self::with_max_length(MAX_LINE)
    }

    /// A codec refusing lines longer than `max` bytes.
    pub fn with_max_length(max: usize) -> Self {
        NdjsonCodec {
            lines: LinesCodec::new_with_max_length(max),
            max,
            line: 0,
            _item: PhantomData,
        }
    }

    fn decoded(
        &mut self,
        r: Result<Option<String>, LinesCodecError>,
    ) -> Result<Option<T>, NdjsonError>
    where
        T: DeserializeOwned,
    {
        // Line numbers count from 1; the error of a line is named with the number it would have.
        let number = self.line + 1;
        let text = match r {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(None),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                return Err(NdjsonError::TooLong {
                    line: number,
                    max: self.max,
                })
            }
            Err(LinesCodecError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(NdjsonError::NotUtf8 { line: number })
            }
            Err(LinesCodecError::Io(e)) => return Err(NdjsonError::Io(e)),
        };
        self.line = number;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| NdjsonError::Json {
                line: number,
                source,
            })
    }
}

impl<T> Default for NdjsonCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned> Decoder for NdjsonCodec<T> {
    type Item = T;
    type Error = NdjsonError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, NdjsonError> {
        // A blank line decodes to nothing; keep going while whole lines are buffered.
        loop {
            let r = self.lines.decode(src);
            let complete = matches!(r, Ok(Some(_)));
            match self.decoded(r)? {
                Some(v) => return Ok(Some(v)),
                None if complete => continue,
                None => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<T>, NdjsonError> {
        loop {
            let r = self.lines.decode_eof(src);
            let complete = matches!(r, Ok(Some(_)));
            match self.decoded(r)? {
                Some(v) => return Ok(Some(v)),
                None if complete => continue,
                None => return Ok(None),
            }
        }
    }
}

impl<T, V: Serialize> Encoder<V> for NdjsonCodec<T> {
    type Error = NdjsonError;

    fn encode(&mut self, item: V, dst: &mut BytesMut) -> Result<(), NdjsonError> {
        let mut w = dst.writer();
        serde_json::to_writer(&mut w, &item).map_err(NdjsonError::Encode)?;
        w.into_inner().put_u8(b'\n');
        Ok(())
    }
}

/// `v` as one NDJSON line (with its newline), ready to be a chunk of a streamed body.
pub fn line<V: Serialize>(v: V) -> Bytes {
    let mut buf = BytesMut::new();
    NdjsonCodec::<()>::new()
        .encode(v, &mut buf)
        .expect("a wire value serializes");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use serde::Deserialize;
    use tokio_util::codec::FramedRead;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        n: u32,
        text: String,
    }

    fn msg(n: u32, text: &str) -> Msg {
        Msg {
            n,
            text: text.to_string(),
        }
    }

    /// Reads `chunks` as one stream arriving in those pieces.
    async fn read_all(chunks: Vec<&'static [u8]>, max: usize) -> Vec<Result<Msg, NdjsonError>> {
        let mut b = tokio_test_reader(chunks);
        let mut framed = FramedRead::new(&mut b, NdjsonCodec::<Msg>::with_max_length(max));
        let mut out = Vec::new();
        while let Some(r) = framed.next().await {
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        out
    }

    fn tokio_test_reader(chunks: Vec<&'static [u8]>) -> impl tokio::io::AsyncRead + Unpin {
        let s = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        tokio_util::io::StreamReader::new(s)
    }

    #[tokio::test]
    async fn frames_split_across_reads_are_joined() {
        let got = read_all(
            vec![
                b"{\"n\":1,\"te",
                b"xt\":\"a\"}\n{\"n\":2,",
                b"\"text\":\"b\"}",
                b"\n",
                b"{\"n\":3,\"text\":\"c\"}\n",
            ],
            MAX_LINE,
        )
        .await;
        let got: Vec<Msg> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![msg(1, "a"), msg(2, "b"), msg(3, "c")]);
    }

    #[tokio::test]
    async fn a_final_line_without_newline_is_decoded() {
        let got = read_all(
            vec![b"{\"n\":1,\"text\":\"a\"}\n{\"n\":2,\"text\":\"b\"}"],
            MAX_LINE,
        )
        .await;
        let got: Vec<Msg> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![msg(1, "a"), msg(2, "b")]);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused_with_its_number() {
        let got = read_all(
            vec![
                b"{\"n\":1,\"text\":\"a\"}\n",
                b"{\"n\":2,\"text\":\"0123456789",
                b"0123456789\"}\n",
            ],
            32,
        )
        .await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap(), &msg(1, "a"));
        let err = got[1].as_ref().unwrap_err();
        assert!(
            matches!(err, NdjsonError::TooLong { line: 2, max: 32 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("longer than 32 bytes"), "{err}");
    }

    #[tokio::test]
    async fn invalid_json_names_the_line_number() {
        let got = read_all(
            vec![b"{\"n\":1,\"text\":\"a\"}\n\n{\"n\":2,\"text\":\"b\"}\n{\"n\":3,oops}\n"],
            MAX_LINE,
        )
        .await;
        assert_eq!(got.len(), 3);
        let err = got[2].as_ref().unwrap_err();
        assert!(matches!(err, NdjsonError::Json { line: 4, .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("NDJSON line 4 is not valid"),
            "{err}"
        );
    }

    #[test]
    fn encoding_writes_one_line_per_value_and_round_trips() {
        let a = line(msg(7, "x\ny"));
        assert_eq!(&a[..], b"{\"n\":7,\"text\":\"x\\ny\"}\n");
        let mut buf = BytesMut::from(&a[..]);
        buf.extend_from_slice(&line(msg(8, "z")));
        let mut c = NdjsonCodec::<Msg>::new();
        assert_eq!(c.decode(&mut buf).unwrap(), Some(msg(7, "x\ny")));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(msg(8, "z")));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
    }
}
