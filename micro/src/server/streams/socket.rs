//! One open stream's WebSocket, shared by the reader, the writer and the
//! handler's two halves: [`Conn`], and the [`Inbound`] and [`Outbound`]
//! halves a handler's `Streaming` and `Sender` run on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::ReadEnd;
use crate::stream::{FrameSink, FrameSource, Socket, error_close};
use crate::{Error, Result};

/// Messages the reader may hold for a handler that has not asked for them
/// yet; beyond that the reader stops reading and TCP pushes back.
const INBOUND_BUFFER: usize = 32;

/// One stream's socket, shared by the handler's halves and the stream's
/// driver. The lock is only taken inside `poll_*` calls, never across an
/// await.
///
/// The driver polls the reader first and the handler second in every pass
/// (a biased `select!`), so a frame the reader buffers reaches a handler in
/// the same task without a wake-up; halves moved to other tasks are woken.
pub(crate) struct Conn {
    state: std::sync::Mutex<ConnState>,
}

struct ConnState {
    socket: Socket,
    /// Messages read and not yet received by the handler.
    inbound: VecDeque<Bytes>,
    /// The client has half-closed: after `inbound`, the receive ends.
    ended: bool,
    /// The reader has stopped: the client closed or broke the connection.
    gone: bool,
    /// The handler dropped its receiver: messages are read and dropped.
    unwanted: bool,
    /// The driver has sent the close: sends fail.
    finished: bool,
    /// The handler has sent the empty frame itself.
    sent_end: bool,
    /// When the last frame arrived from the client, for the idle timeout.
    last_read: Instant,
    /// A receiver waiting for a message.
    recv_waker: Option<Waker>,
    /// The reader, paused while `inbound` is full.
    read_waker: Option<Waker>,
    /// A sender waiting on the socket.
    send_waker: Option<Waker>,
}

impl Conn {
    pub(super) fn new(socket: Socket) -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::Mutex::new(ConnState {
                socket,
                inbound: VecDeque::new(),
                ended: false,
                gone: false,
                unwanted: false,
                finished: false,
                sent_end: false,
                last_read: Instant::now(),
                recv_waker: None,
                read_waker: None,
                send_waker: None,
            }),
        })
    }

    /// When the client last sent a frame.
    pub(super) fn last_read(&self) -> Instant {
        self.lock().last_read
    }

    /// Whether the handler's side already sent the end of the stream.
    pub(super) fn sent_end(&self) -> bool {
        self.lock().sent_end
    }

    /// From now on, what the client sends is read and thrown away.
    pub(super) fn stop_wanting(&self) {
        self.lock().unwanted = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads frames into `inbound` until the socket has nothing more or
    /// the buffer is full; ready when the client is gone or broke the
    /// protocol.
    pub(super) fn poll_read(&self, cx: &mut TaskContext<'_>) -> Poll<ReadEnd> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut woke = false;
        let outcome = loop {
            if state.inbound.len() >= INBOUND_BUFFER {
                set_waker(&mut state.read_waker, cx);
                break Poll::Pending;
            }
            let polled = state.socket.poll_next_unpin(cx);
            if polled.is_ready() {
                state.last_read = Instant::now();
            }
            let bytes = match polled {
                Poll::Pending => break Poll::Pending,
                Poll::Ready(None) => break Poll::Ready(ReadEnd::Gone),
                Poll::Ready(Some(Ok(message))) => match message {
                    Message::Text(text) => Bytes::from(text),
                    Message::Binary(bytes) => bytes,
                    Message::Close(_) => break Poll::Ready(ReadEnd::Gone),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                },
                Poll::Ready(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                    size,
                    max_size,
                })))) => {
                    break Poll::Ready(ReadEnd::Failed(error_close(&Error::payload_too_large(
                        format!(
                            "stream message of {size} bytes is larger than the limit of {max_size} bytes"
                        ),
                    ))));
                }
                Poll::Ready(Some(Err(WsError::Protocol(e)))) => {
                    break Poll::Ready(ReadEnd::Failed(error_close(&Error::bad_request(format!(
                        "websocket protocol: {e}"
                    )))));
                }
                // RFC 6455 section 7.4.1: 1007 for data that is not what
                // its frame type says, here a text frame that is not UTF-8.
                Poll::Ready(Some(Err(WsError::Utf8(_)))) => {
                    break Poll::Ready(ReadEnd::Failed(CloseFrame {
                        code: CloseCode::Invalid,
                        reason: Utf8Bytes::from_static("text message is not valid UTF-8"),
                    }));
                }
                Poll::Ready(Some(Err(_))) => break Poll::Ready(ReadEnd::Gone),
            };
            if state.ended {
                break Poll::Ready(ReadEnd::Failed(error_close(&Error::bad_request(
                    "message after the half-close: an empty frame ends the client's messages",
                ))));
            }
            if bytes.is_empty() {
                state.ended = true;
            } else if !state.unwanted {
                state.inbound.push_back(bytes);
            }
            woke = true;
        };
        if outcome.is_ready() {
            state.gone = true;
            woke = true;
        }
        if woke {
            wake_other(&mut state.recv_waker, cx);
        }
        outcome
    }

    /// Writes `frame` (after the empty frame, for a normal end the
    /// handler did not already send) and flushes; later sends fail.
    pub(super) fn poll_finish(
        &self,
        cx: &mut TaskContext<'_>,
        pending: &mut Vec<Message>,
    ) -> Poll<std::result::Result<(), WsError>> {
        let mut state = self.lock();
        let state = &mut *state;
        state.finished = true;
        while !pending.is_empty() {
            std::task::ready!(state.socket.poll_ready_unpin(cx))?;
            state.socket.start_send_unpin(pending.remove(0))?;
        }
        let flushed = state.socket.poll_flush_unpin(cx);
        if flushed.is_ready() {
            // A sender in another task may be waiting on the socket.
            if let Some(waker) = state.send_waker.take() {
                waker.wake();
            }
        }
        flushed
    }
}

impl Conn {
    /// After a close sent for a read failure: ends the sending direction
    /// of the connection (TCP FIN after the close frame) and reads and
    /// throws away what the client still sends, until it closes. The
    /// WebSocket framing cannot be trusted any more (an oversized frame's
    /// payload is still on the wire), so the bytes are read raw. Closing
    /// while the client is still sending would reset the connection, and
    /// a reset can destroy the close frame before the client reads it.
    pub(super) fn poll_drain(
        &self,
        cx: &mut TaskContext<'_>,
        shut: &mut bool,
        left: &mut usize,
    ) -> Poll<std::io::Result<()>> {
        use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
        let mut state = self.lock();
        let io = state.socket.get_mut();
        if !*shut {
            std::task::ready!(std::pin::Pin::new(&mut *io).poll_shutdown(cx))?;
            *shut = true;
        }
        let mut scratch = [0u8; 8192];
        while *left > 0 {
            let mut buf = ReadBuf::new(&mut scratch);
            std::task::ready!(std::pin::Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            *left = left.saturating_sub(buf.filled().len());
        }
        Poll::Ready(Ok(()))
    }
}

/// Keeps `cx`'s waker in `slot`, cloning only when it changed.
fn set_waker(slot: &mut Option<Waker>, cx: &TaskContext<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Wakes the waker in `slot` unless it is the current task's, which the
/// driver polls next in this same pass.
fn wake_other(slot: &mut Option<Waker>, cx: &TaskContext<'_>) {
    if let Some(w) = slot.take() {
        if !w.will_wake(cx.waker()) {
            w.wake();
        }
    }
}

/// The handler's receiving half.
pub(crate) struct Inbound {
    pub(super) conn: Arc<Conn>,
}

impl FrameSource for Inbound {
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        let mut state = self.conn.lock();
        let state = &mut *state;
        if let Some(bytes) = state.inbound.pop_front() {
            // The reader paused on a full buffer; it ran before the
            // handler in this pass, so it needs a wake even in this task.
            if let Some(w) = state.read_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(bytes)));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        if state.gone {
            // The stream is ending and this handler is about to be
            // dropped.
            return Poll::Ready(Some(Err(Error::unavailable(
                "the stream ended before the client half-closed it",
            ))));
        }
        set_waker(&mut state.recv_waker, cx);
        Poll::Pending
    }

    fn undecodable(&self, err: crate::codec::CodecError) -> Error {
        Error::bad_request(format!("stream message does not decode: {err}"))
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        let mut state = self.conn.lock();
        state.unwanted = true;
        state.inbound.clear();
        if let Some(w) = state.read_waker.take() {
            w.wake();
        }
    }
}

/// The handler's sending half: it writes to the socket itself.
pub(crate) struct Outbound {
    pub(super) conn: Arc<Conn>,
}

fn finished() -> Error {
    Error::unavailable("the stream is closed: the client went away or the stream ended")
}

fn write_error(err: WsError) -> Error {
    match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => finished(),
        e => Error::unavailable(format!("writing to the stream: {e}")),
    }
}

impl Outbound {
    fn poll_socket(
        &mut self,
        cx: &mut TaskContext<'_>,
        op: impl FnOnce(&mut Socket, &mut TaskContext<'_>) -> Poll<std::result::Result<(), WsError>>,
    ) -> Poll<Result<()>> {
        let mut state = self.conn.lock();
        if state.finished {
            return Poll::Ready(Err(finished()));
        }
        let polled = op(&mut state.socket, cx);
        if polled.is_pending() {
            set_waker(&mut state.send_waker, cx);
        }
        polled.map_err(write_error)
    }
}

impl FrameSink for Outbound {
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.poll_socket(cx, |s, cx| s.poll_ready_unpin(cx))
    }

    fn start_send(&mut self, message: Message) -> Result<()> {
        let mut state = self.conn.lock();
        if state.finished {
            return Err(finished());
        }
        let end = match &message {
            Message::Text(t) => t.is_empty(),
            Message::Binary(b) => b.is_empty(),
            _ => false,
        };
        state
            .socket
            .start_send_unpin(message)
            .map_err(write_error)?;
        state.sent_end |= end;
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.poll_socket(cx, |s, cx| s.poll_flush_unpin(cx))
    }
}
