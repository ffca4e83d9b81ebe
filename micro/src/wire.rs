//! The wire protocol's shared pieces, at the bottom of the crate: header
//! names, the request id, the deadline from `Timeout`, the error reply in
//! its three forms, and the panic message. docs/wire.md is the protocol;
//! client, server, streams and brokers all speak it through this module
//! and not through each other.

use std::any::Any;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::{Error, Result};

pub(crate) static MICRO_ENDPOINT: HeaderName = HeaderName::from_static("micro-endpoint");
pub(crate) static MICRO_METHOD: HeaderName = HeaderName::from_static("micro-method");
pub(crate) static MICRO_SERVICE: HeaderName = HeaderName::from_static("micro-service");
pub(crate) static MICRO_ID: HeaderName = HeaderName::from_static("micro-id");
pub(crate) static MICRO_ERROR: HeaderName = HeaderName::from_static("micro-error");
pub(crate) static TIMEOUT: HeaderName = HeaderName::from_static("timeout");
pub(crate) static MICRO_TOPIC: HeaderName = HeaderName::from_static("micro-topic");
/// The original caller's token, on a call a service makes on its behalf.
pub(crate) static MICRO_CALLER: HeaderName = HeaderName::from_static("micro-caller");
pub(crate) static MICRO_QUEUE: HeaderName = HeaderName::from_static("micro-queue");
pub(crate) static X_MICRO_TOPIC: HeaderName = HeaderName::from_static("x-micro-topic");
pub(crate) static X_MICRO_QUEUE: HeaderName = HeaderName::from_static("x-micro-queue");
pub(crate) static X_MICRO_ENDPOINT: HeaderName = HeaderName::from_static("x-micro-endpoint");
pub(crate) static X_MICRO_METHOD: HeaderName = HeaderName::from_static("x-micro-method");
pub(crate) static X_MICRO_ID: HeaderName = HeaderName::from_static("x-micro-id");

/// The first of `names` present in `headers`, as text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, names: &[&HeaderName]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .and_then(|v| v.to_str().ok())
}

/// The endpoint a request names, by `Micro-Endpoint` or an alias.
pub(crate) fn endpoint_header(headers: &HeaderMap) -> Option<&str> {
    header(
        headers,
        &[
            &MICRO_ENDPOINT,
            &MICRO_METHOD,
            &X_MICRO_ENDPOINT,
            &X_MICRO_METHOD,
        ],
    )
}

/// The request id: the caller's `Micro-Id` if it is non-empty visible
/// ASCII, or a new one. The header value is the id's storage, shared with
/// the reply's echo: no copy.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    [&MICRO_ID, &X_MICRO_ID]
        .into_iter()
        .find_map(|n| headers.get(n))
        .and_then(|v| valid_id(v).then(|| v.clone()))
        .unwrap_or_else(new_id_header)
}

/// Whether `value` can be a request id: non-empty visible ASCII.
pub(crate) fn valid_id(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|id| !id.is_empty())
}

/// The `Timeout` header's value for `budget`: decimal nanoseconds, made
/// in one allocation (`HeaderValue::from(u64)` takes two).
pub(crate) fn timeout_value(budget: Duration) -> HeaderValue {
    let mut nanos = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (nanos % 10) as u8;
        nanos /= 10;
        if nanos == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&digits[at..]).expect("digits are a valid header value")
}

/// How many headers a response's map has room for. hyper parses the
/// connection's next request into the map of the response it just sent,
/// so this is also room for that request's headers: a typed call sends
/// seven to nine, curl six, a browser a dozen. A smaller map would be
/// allocated again for each request with more.
const RESPONSE_HEADERS: usize = 12;

/// A response with `body` and a header map with room for
/// [`RESPONSE_HEADERS`].
pub(crate) fn response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADERS);
    response
}

/// The deadline from the `Timeout` header (decimal nanoseconds).
pub(crate) fn deadline(headers: &HeaderMap, now: Instant) -> Result<Option<Instant>> {
    let Some(value) = headers.get(&TIMEOUT) else {
        return Ok(None);
    };
    let nanos = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "invalid Timeout header {value:?}: expected decimal nanoseconds"
            ))
        })?;
    Ok(Some(now + Duration::from_nanos(nanos)))
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The error reply: status `code`, the JSON in the body and in
/// `Micro-Error`.
pub(crate) fn error_response(err: &Error) -> Response {
    let json = err.to_json();
    let header = error_header(&json);
    let mut response = response(Body::from(json));
    *response.status_mut() = err.http_status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(MICRO_ERROR.clone(), header);
    response
}

/// The `Micro-Error` copy of the error JSON. A header value cannot hold
/// DEL or other control bytes, and non-ASCII is read differently by
/// different clients, so those characters are written as JSON `\u`
/// escapes: the same JSON value, in printable ASCII.
pub(crate) fn error_header(json: &str) -> HeaderValue {
    if json.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        if let Ok(v) = HeaderValue::from_str(json) {
            return v;
        }
    }
    let mut ascii = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    HeaderValue::from_str(&ascii).expect("printable ASCII is a valid header value")
}

/// A JSON reply with `status`, as the health endpoints send.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A new request id: a version 4 UUID.
///
/// Request ids need to be unique, not unpredictable, so they come from a
/// per-thread xorshift generator seeded from the OS once, rather than a
/// system call per request.
pub(crate) fn new_id() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    new_id_into(&mut buf).to_owned()
}

/// A fresh request id as a header value, with no `String` on the way.
pub(crate) fn new_id_header() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = new_id_into(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// Writes a fresh random (v4) UUID into `buf`, hyphenated, lower case.
fn new_id_into(buf: &mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &str {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};

    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let seed = RandomState::new();
            (seed.hash_one(1u8) | 1, seed.hash_one(2u8) | 1)
        });
    }
    let bits = STATE.with(|state| {
        let (mut s0, mut s1) = state.get();
        let mut next = || {
            // xorshift128+
            let (mut x, y) = (s0, s1);
            s0 = y;
            x ^= x << 23;
            s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
            s1.wrapping_add(y)
        };
        let bits = (u128::from(next()) << 64) | u128::from(next());
        state.set((s0, s1));
        bits
    });
    uuid::Builder::from_random_bytes(bits.to_le_bytes())
        .into_uuid()
        .hyphenated()
        .encode_lower(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header() {
        let now = Instant::now();
        let mut h = HeaderMap::new();
        assert_eq!(deadline(&h, now).unwrap(), None);
        h.insert(&TIMEOUT, HeaderValue::from_static("1500000000"));
        assert_eq!(
            deadline(&h, now).unwrap(),
            Some(now + Duration::from_millis(1500))
        );
        h.insert(&TIMEOUT, HeaderValue::from_static("5s"));
        assert_eq!(
            deadline(&h, now).unwrap_err().detail(),
            "invalid Timeout header \"5s\": expected decimal nanoseconds"
        );
    }

    #[test]
    fn timeout_values_are_decimal_nanoseconds() {
        for (budget, text) in [
            (Duration::ZERO, "0"),
            (Duration::from_nanos(7), "7"),
            (Duration::from_millis(1500), "1500000000"),
            (Duration::MAX, "18446744073709551615"),
        ] {
            let value = timeout_value(budget);
            assert_eq!(value.to_str().unwrap(), text);
        }
        let mut h = HeaderMap::new();
        h.insert(&TIMEOUT, timeout_value(Duration::from_secs(2)));
        let now = Instant::now();
        assert_eq!(
            deadline(&h, now).unwrap(),
            Some(now + Duration::from_secs(2))
        );
    }

    #[test]
    fn request_id_aliases() {
        let mut h = HeaderMap::new();
        h.insert(&X_MICRO_ID, HeaderValue::from_static("abc"));
        assert_eq!(request_id(&h), "abc");
        h.insert(&MICRO_ID, HeaderValue::from_static("def"));
        assert_eq!(request_id(&h), "def");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
        h.insert(
            &MICRO_ID,
            HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 36, "a non-ASCII id is replaced");
    }

    #[test]
    fn error_header_escapes_what_a_header_cannot_hold() {
        let err = Error::bad_request("endpoint Chat.\u{7f} caf\u{e9} \u{1f600}").with_id("svc");
        let r = error_response(&err);
        let header = r.headers()[&MICRO_ERROR].to_str().unwrap();
        assert_eq!(
            header,
            r#"{"id":"svc","code":400,"detail":"endpoint Chat.\u007f caf\u00e9 \ud83d\ude00","status":"Bad Request"}"#
        );
        let back = Error::from_json(header.as_bytes()).unwrap();
        assert_eq!(back.detail(), err.detail());
    }

    #[test]
    fn error_response_carries_json_three_ways() {
        let r = error_response(&Error::not_found("nope").with_id("svc"));
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            r.headers()[&MICRO_ERROR],
            r#"{"id":"svc","code":404,"detail":"nope","status":"Not Found"}"#
        );
    }
}
