//! W3C Trace Context: which trace a request belongs to, carried from
//! service to service in the `traceparent` header.
//!
//! A service continues the trace of a request that comes with a valid
//! `traceparent` (version `00`), and starts one for a request without.
//! Each call, stream and delivered message it serves runs in a `tracing`
//! span (`micro.call`, `micro.stream`, `micro.message`, `micro.event`)
//! that names the trace and span ids, so every log line a handler writes
//! carries them; a call made for the request's [`Context`](crate::Context)
//! sends the trace on, with that span as the parent. With the
//! `opentelemetry` feature the spans join the trace as OpenTelemetry spans,
//! for a `tracing-opentelemetry` layer to export.
//!
//! ```
//! use micro::trace::Trace;
//!
//! let trace = Trace::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .unwrap();
//! assert_eq!(trace.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! // This hop's own span, in the same trace.
//! let child = trace.child();
//! assert_eq!(child.trace_id(), trace.trace_id());
//! assert_ne!(child.span_id(), trace.span_id());
//! assert!(Trace::from_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! ```

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent` (W3C Trace Context).
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A trace and one span in it: what a `traceparent` header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    trace_id: TraceId,
    span_id: SpanId,
    /// The span this one continues, when it came from a caller.
    parent: Option<SpanId>,
    sampled: bool,
}

/// A trace's 16-byte id; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

/// A span's 8-byte id; shown as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().hash_one(0u64) | 1);
}

/// A random non-zero 64-bit number (splitmix64 on a per-thread seed): ids
/// need to be unique, not secret.
fn random() -> u64 {
    RANDOM.with(|state| {
        loop {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    })
}

impl Trace {
    /// A new trace, with its first span.
    pub fn root() -> Self {
        Self {
            trace_id: TraceId((u128::from(random()) << 64) | u128::from(random())),
            span_id: SpanId(random()),
            parent: None,
            sampled: true,
        }
    }

    /// The trace and parent span a `traceparent` value names; `None` for
    /// one that is not version `00` of W3C Trace Context, or has an
    /// all-zero id.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version 00 has exactly four fields; a later version may add more.
        if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            parent: None,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace a request with `headers` belongs to, with a new span for
    /// this hop: the incoming trace continued, or a new one.
    pub(crate) fn serving(headers: &HeaderMap) -> Self {
        headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::from_traceparent)
            .map_or_else(Self::root, |t| t.child())
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId(random()),
            parent: Some(self.span_id),
            ..*self
        }
    }

    /// The span this one continues: the caller's, for a request that came
    /// with a `traceparent`.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent
    }

    /// Records this trace in `span`'s `trace_id` and `span_id` fields and
    /// returns the trace to hand on. With the `opentelemetry` feature the
    /// span first joins the trace as an OpenTelemetry span (the caller's
    /// span as its remote parent), and when a tracing-opentelemetry layer
    /// records it, its OpenTelemetry ids are the ones used, so exported
    /// spans and the `traceparent` sent on agree.
    pub(crate) fn in_span(self, span: &tracing::Span) -> Self {
        #[cfg(feature = "opentelemetry")]
        let trace = otel::linked(span, self);
        #[cfg(not(feature = "opentelemetry"))]
        let trace = self;
        span.record("trace_id", tracing::field::display(trace.trace_id));
        span.record("span_id", tracing::field::display(trace.span_id));
        trace
    }

    /// The trace's id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Whether the trace's origin asked for it to be recorded.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The `traceparent` value that names this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// As [`traceparent`](Self::traceparent), as a header value.
    pub(crate) fn header(&self) -> HeaderValue {
        HeaderValue::try_from(self.traceparent()).unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        })
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
        TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{SpanId, Trace, TraceId};

    /// `span` in `trace` as OpenTelemetry sees it.
    pub(super) fn linked(span: &tracing::Span, trace: Trace) -> Trace {
        if let Some(parent) = trace.parent {
            let flags = if trace.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let remote = SpanContext::new(
                OtelTraceId::from_bytes(trace.trace_id.0.to_be_bytes()),
                OtelSpanId::from_bytes(parent.0.to_be_bytes()),
                flags,
                true,
                TraceState::default(),
            );
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        let context = span.context();
        let otel = context.span().span_context().clone();
        if !otel.is_valid() {
            return trace;
        }
        Trace {
            trace_id: TraceId(u128::from_be_bytes(otel.trace_id().to_bytes())),
            span_id: SpanId(u64::from_be_bytes(otel.span_id().to_bytes())),
            parent: trace.parent,
            sampled: otel.is_sampled(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_goes_round() {
        let t = Trace::root();
        let back = Trace::from_traceparent(&t.traceparent()).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.traceparent().len(), 55);
    }

    #[test]
    fn bad_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(Trace::from_traceparent(bad).is_none(), "{bad}");
        }
        // A later version with more fields is read for what 00 defines.
        assert!(
            Trace::from_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some_and(|t| !t.sampled())
        );
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static("garbage"));
        let fresh = Trace::serving(&headers);
        assert_ne!(fresh.trace_id().0, 0);
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let continued = Trace::serving(&headers);
        assert_eq!(
            continued.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(continued.span_id().to_string(), "00f067aa0ba902b7");
    }
}
