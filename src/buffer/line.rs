//! Reading lines (`evbuffer_readln`), with or without a length limit.

use bytes::Bytes;

use super::search::{Cursor, Eol};
use super::{EvBuffer, EvBufferError};

/// What ends a line (`enum evbuffer_eol_style`).
///
/// | style | terminator | `"a\r\nb"` gives |
/// |---|---|---|
/// | [`Any`](Self::Any) | any run of CR and LF bytes | `"a"`, then `"b"` once terminated |
/// | [`Crlf`](Self::Crlf) | LF, optionally preceded by one CR | `"a"` |
/// | [`CrlfStrict`](Self::CrlfStrict) | exactly CR LF | `"a"` |
/// | [`Lf`](Self::Lf) | LF; a CR before it stays in the line | `"a\r"` |
/// | [`Nul`](Self::Nul) | one 0 byte | nothing yet |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EolStyle {
    /// Any sequence of CR and LF characters; blank lines are swallowed. A CR
    /// at the very end of the buffer ends the line, so a LF arriving later gives an
    /// extra empty line.
    Any,
    /// A LF, optionally preceded by a single CR; a lone CR is data.
    Crlf,
    /// Exactly the pair CR LF; lone CRs and LFs are data.
    CrlfStrict,
    /// A single LF.
    Lf,
    /// A single NUL byte.
    Nul,
}

impl EvBuffer {
    /// Removes the next line and returns it without its terminator
    /// (`evbuffer_readln`); `None` when no complete line is buffered, in which case
    /// nothing is removed.
    ///
    /// The line is returned as [`Bytes`] sharing the buffer's memory when it lies in one
    /// chunk (no copy), and may contain NUL bytes. See [`EolStyle`] for what ends a
    /// line. To bound how long a line may grow, use [`readln_max`](Self::readln_max) or
    /// a [`LineReader`].
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen (libevent
    /// returns `NULL`); [`EvBufferError::Io`] (the read error's kind) if a file segment
    /// cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::{EolStyle, EvBuffer};
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"a\r\n\r\nb\rc")?;
    /// assert_eq!(buf.readln(EolStyle::Any)?.as_deref(), Some(&b"a"[..]));
    /// assert_eq!(buf.readln(EolStyle::Any)?.as_deref(), Some(&b"b"[..]));
    /// assert_eq!(buf.readln(EolStyle::Any)?, None); // "c" is not terminated yet
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_readline")]
    #[doc(alias = "evbuffer_readln")]
    pub fn readln(&mut self, style: EolStyle) -> Result<Option<Bytes>, EvBufferError> {
        self.check_front()?;
        match self.next_line(style)? {
            Some((line, eol)) => self.take_line(line, eol).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`readln`](Self::readln), but refuses a line longer than `max` bytes (not
    /// counting its terminator).
    ///
    /// The limit also applies to a line still being received: once more than `max`
    /// bytes are buffered with no terminator, the line is known to be too long. A
    /// trailing CR that may yet turn out to start a CR LF is not counted.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::LineTooLong`] (kind
    /// [`InvalidData`](std::io::ErrorKind::InvalidData)) for a line over the limit; the
    /// buffer is left unchanged. To skip the long line and go on, drain through its
    /// terminator, or let a [`LineReader`] do so. Otherwise as
    /// [`readln`](Self::readln).
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::{EolStyle, EvBuffer, EvBufferError};
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"0123456789\nok\n")?;
    /// let err = buf.readln_max(EolStyle::Lf, 4).unwrap_err();
    /// assert!(matches!(err, EvBufferError::LineTooLong { max: 4, len: 10 }));
    /// assert_eq!(buf.len(), 14); // untouched
    /// # Ok::<(), EvBufferError>(())
    /// ```
    pub fn readln_max(
        &mut self,
        style: EolStyle,
        max: usize,
    ) -> Result<Option<Bytes>, EvBufferError> {
        self.check_front()?;
        match self.next_line(style)? {
            Some((line, _)) if line > max => Err(EvBufferError::LineTooLong { max, len: line }),
            Some((line, eol)) => self.take_line(line, eol).map(Some),
            None => {
                let pending = self.unterminated_len(style)?;
                if pending > max {
                    Err(EvBufferError::LineTooLong { max, len: pending })
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// The length of the next line and of its terminator, if a whole line is there
    /// (for readers that take the line with its terminator, and may put it back).
    #[inline]
    pub(crate) fn line_extent(
        &self,
        style: EolStyle,
    ) -> Result<Option<(usize, usize)>, EvBufferError> {
        self.next_line(style)
    }

    fn next_line(&self, style: EolStyle) -> Result<Option<(usize, usize)>, EvBufferError> {
        // Most lines end inside the first chunk: settle those without the general walk.
        let first = self.seg_data(0)?;
        let quick = match style {
            EolStyle::Lf => memchr::memchr(b'\n', first).map(|i| (i, 1)),
            EolStyle::Nul => memchr::memchr(0, first).map(|i| (i, 1)),
            EolStyle::Crlf | EolStyle::CrlfStrict => match memchr::memchr(b'\n', first) {
                Some(i) if i > 0 && first[i - 1] == b'\r' => Some((i - 1, 2)),
                Some(i) if style == EolStyle::Crlf => Some((i, 1)),
                _ => None,
            },
            EolStyle::Any => memchr::memchr2(b'\r', b'\n', first).and_then(|i| {
                let run = first[i..].iter().position(|&b| b != b'\r' && b != b'\n')?;
                Some((i, run))
            }),
        };
        if quick.is_some() {
            return Ok(quick);
        }
        let front = Cursor {
            abs: 0,
            seg: 0,
            off: 0,
        };
        Ok(self
            .find_eol(front, style)?
            .map(|Eol { at, len }| (at.abs, len)))
    }

    /// Removes a line of `line` bytes and its `eol`-byte terminator; returns the line.
    fn take_line(&mut self, line: usize, eol: usize) -> Result<Bytes, EvBufferError> {
        let out = if line == 0 {
            Bytes::new()
        } else {
            self.take_front(line)?
        };
        self.consume(eol);
        self.changed(0, line + eol);
        Ok(out)
    }

    /// How long the unterminated line at the front is, leaving out a final CR that a
    /// LF may still join.
    pub(crate) fn unterminated_len(&self, style: EolStyle) -> Result<usize, EvBufferError> {
        let ends_in_cr =
            matches!(style, EolStyle::Crlf | EolStyle::CrlfStrict) && self.len > 0 && {
                let mut last = [0];
                let pos = self.position(self.len - 1)?;
                self.copy_from(pos.seg, pos.off, &mut last)?;
                last[0] == b'\r'
            };
        Ok(self.len - usize::from(ends_in_cr))
    }
}

/// Reads lines of at most a given length and skips the ones that are longer, the way
/// `tokio_util::codec::LinesCodec` does.
///
/// [`read_line`](Self::read_line) reports a line over the limit once, as
/// [`EvBufferError::LineTooLong`], and from the next call on discards that line's bytes
/// (also the ones still to arrive) through its terminator, then goes on with the next
/// line. A peer that sends an endless line costs at most `max` bytes of buffer.
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::buffer::{EolStyle, EvBuffer, EvBufferError, LineReader};
///
/// let mut buf = EvBuffer::new();
/// let mut lines = LineReader::new(EolStyle::Lf, 8);
/// buf.add(b"far too long for the limit")?;
/// assert!(matches!(lines.read_line(&mut buf), Err(EvBufferError::LineTooLong { .. })));
/// assert_eq!(lines.read_line(&mut buf)?, None); // discarding
/// buf.add(b" still\nshort\n")?;
/// assert_eq!(lines.read_line(&mut buf)?.as_deref(), Some(&b"short"[..]));
/// # Ok::<(), EvBufferError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LineReader {
    style: EolStyle,
    max: usize,
    discarding: bool,
}

impl LineReader {
    /// A reader of lines ended by `style` and at most `max` bytes long (not counting
    /// the terminator).
    #[doc(alias = "evbuffer_new")]
    pub fn new(style: EolStyle, max: usize) -> Self {
        Self {
            style,
            max,
            discarding: false,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max_length(&self) -> usize {
        self.max
    }

    /// Whether the reader is skipping the rest of a line that was too long.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Removes and returns the next line of at most the limit from `buf`, or `None`
    /// if no complete line is buffered yet.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::LineTooLong`] (kind
    /// [`InvalidData`](std::io::ErrorKind::InvalidData)) once for each line over the
    /// limit (its bytes are discarded by the following calls);
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if `buf`'s front is frozen;
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment cannot be read.
    pub fn read_line(&mut self, buf: &mut EvBuffer) -> Result<Option<Bytes>, EvBufferError> {
        buf.check_front()?;
        if self.discarding {
            match buf.next_line(self.style)? {
                Some((line, eol)) => {
                    buf.drain(line + eol)?;
                    self.discarding = false;
                }
                None => {
                    let pending = buf.unterminated_len(self.style)?;
                    buf.drain(pending)?;
                    return Ok(None);
                }
            }
        }
        let line = buf.readln_max(self.style, self.max);
        if let Err(EvBufferError::LineTooLong { .. }) = line {
            self.discarding = true;
        }
        line
    }
}
