//! What both sides of a stream share: the socket and its settings, data
//! frames, the close frames that carry errors, and where frames come from
//! and go to.

use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use crate::codec::ContentType;
use crate::{Error, Result};

/// A WebSocket on an upgraded HTTP/1.1 connection, either side.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A stream socket's read buffer, on both sides. tungstenite's default
/// (128 KiB, zero-filled on the first read) made an idle stream cost
/// about 140 KiB; larger messages still arrive whole, in more reads.
pub(crate) const READ_BUFFER: usize = 8 * 1024;

/// The socket settings of both sides: small buffers, and `limit` on a
/// message and a frame.
pub(crate) fn socket_config(limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(READ_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Close codes from here up carry an error: `4000 + code`.
pub(crate) const ERROR_CLOSE_BASE: u16 = 4000;

/// The longest close reason a close frame can carry, in bytes.
const MAX_REASON: usize = 123;

/// A data frame: text for JSON, binary otherwise. The empty frame is the
/// half-close marker.
pub(crate) fn data_frame(content_type: ContentType, bytes: Bytes) -> Message {
    if content_type == ContentType::Json {
        // Cloning `Bytes` only counts a reference.
        match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        }
    } else {
        Message::Binary(bytes)
    }
}

/// The close frame that carries `err`: code `4000 + code` (codes outside
/// 0–999 become 4500), the detail as the reason, cut to fit.
pub(crate) fn error_close(err: &Error) -> CloseFrame {
    let code = match err.code() {
        c @ 0..=999 => ERROR_CLOSE_BASE + c,
        _ => ERROR_CLOSE_BASE + 500,
    };
    let mut reason = err.detail();
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason = &reason[..end];
    }
    CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    }
}

/// The error a close frame carries, if it carries one: `4000 + code` is a
/// micro error; a close without a code, or a normal close, is none; any
/// other code is reported as the peer sent it.
pub(crate) fn close_error(frame: Option<&CloseFrame>, id: &str) -> Option<Error> {
    let frame = frame?;
    let code = u16::from(frame.code);
    let reason = frame.reason.as_str();
    match code {
        1000 => None,
        4000..=4999 => Some(Error::new(
            id.to_owned(),
            code - ERROR_CLOSE_BASE,
            reason.to_owned(),
        )),
        _ => Some(Error::unavailable(format!(
            "stream closed with code {code}{}{reason}",
            if reason.is_empty() { "" } else { ": " }
        ))),
    }
}

/// Where a stream's encoded messages come from: the server's reader or the
/// client's half of the socket, each in its own module.
pub(crate) trait FrameSource: Send + Sync + 'static {
    /// The next message; `None` is the end of the peer's direction.
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>>;

    /// The error for a message that does not decode.
    fn undecodable(&self, err: crate::codec::CodecError) -> Error;
}

/// Where a stream's encoded messages go.
pub(crate) trait FrameSink: Send + Sync + 'static {
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>>;
    fn start_send(&mut self, message: Message) -> Result<()>;
    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>>;

    /// Sends one message that `encode` writes straight into the sink's
    /// own buffer, saving the message a buffer of its own; `None` for a
    /// sink that takes whole frames (a WebSocket).
    fn start_send_into(
        &mut self,
        _encode: &mut dyn FnMut(
            &mut bytes::BytesMut,
        ) -> std::result::Result<(), crate::codec::CodecError>,
    ) -> Option<Result<()>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_close_codes_and_reasons() {
        let frame = error_close(&Error::not_found("no such thing"));
        assert_eq!(u16::from(frame.code), 4404);
        assert_eq!(frame.reason.as_str(), "no such thing");

        let long = "é".repeat(100);
        let frame = error_close(&Error::internal(long));
        assert_eq!(u16::from(frame.code), 4500);
        assert!(frame.reason.len() <= MAX_REASON);
        assert_eq!(frame.reason.len(), 122, "cut at a char boundary");

        let frame = error_close(&Error::new("x", 1200, "odd"));
        assert_eq!(u16::from(frame.code), 4500);
    }

    #[test]
    fn close_frames_to_errors() {
        assert!(close_error(None, "svc").is_none());
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static(""),
        };
        assert!(close_error(Some(&normal), "svc").is_none());
        let err = close_error(Some(&error_close(&Error::timeout("too slow"))), "svc").unwrap();
        assert_eq!(
            (err.id(), err.code(), err.detail()),
            ("svc", 408, "too slow")
        );
        let away = CloseFrame {
            code: CloseCode::Away,
            reason: Utf8Bytes::from_static("bye"),
        };
        let err = close_error(Some(&away), "svc").unwrap();
        assert_eq!(err.code(), 503);
        assert_eq!(err.detail(), "stream closed with code 1001: bye");
    }

    #[test]
    fn frames_by_codec() {
        assert!(matches!(
            data_frame(ContentType::Json, Bytes::from_static(b"{}")),
            Message::Text(_)
        ));
        assert!(matches!(
            data_frame(ContentType::MsgPack, Bytes::from_static(b"\x80")),
            Message::Binary(_)
        ));
    }
}
