//! A record as bytes, for the backends that store it whole: version,
//! expiry (Unix ms, 0 for none), the content type, the metadata (JSON) and
//! the value.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{Record, StoreError};
use crate::codec::ContentType;

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .max(1)
}

/// A record's bytes: version, expiry (Unix ms, 0 for none), the content
/// type, the metadata (JSON) and the value.
pub(super) fn encode(record: &Record) -> Vec<u8> {
    let content_type = record.content_type.as_str().as_bytes();
    let metadata = if record.metadata.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&record.metadata).unwrap_or_default()
    };
    let mut out = Vec::with_capacity(
        8 + 8 + 1 + content_type.len() + 4 + metadata.len() + record.value.len(),
    );
    out.extend_from_slice(&record.version.to_le_bytes());
    out.extend_from_slice(&record.expires_at.map_or(0, millis).to_le_bytes());
    out.push(u8::try_from(content_type.len()).unwrap_or(0));
    out.extend_from_slice(content_type);
    out.extend_from_slice(&u32::try_from(metadata.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&metadata);
    out.extend_from_slice(&record.value);
    out
}

/// The version and expiry of a stored record, without the rest.
pub(super) fn head(bytes: &[u8]) -> Option<(u64, Option<SystemTime>)> {
    let version = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let expires_at = (at != 0).then(|| UNIX_EPOCH + Duration::from_millis(at));
    Some((version, expires_at))
}

pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    let (mut record, at) = decode_head(key, bytes)?;
    record.value = Bytes::copy_from_slice(&bytes[at..]);
    Ok(record)
}

/// As [`decode`], with the value a slice of `bytes` instead of a copy.
#[cfg(any(feature = "nats", feature = "redis"))]
pub(super) fn decode_shared(key: &str, bytes: Bytes) -> Result<Record, StoreError> {
    let (mut record, at) = decode_head(key, &bytes)?;
    record.value = bytes.slice(at..);
    Ok(record)
}

/// A record without its value, and where the value starts in `bytes`.
fn decode_head(key: &str, bytes: &[u8]) -> Result<(Record, usize), StoreError> {
    let corrupt = || StoreError::Backend(format!("stored record \"{key}\" is corrupt"));
    let (version, expires_at) = head(bytes).ok_or_else(corrupt)?;
    let ct_len = usize::from(*bytes.get(16).ok_or_else(corrupt)?);
    let ct = std::str::from_utf8(bytes.get(17..17 + ct_len).ok_or_else(corrupt)?)
        .map_err(|_| corrupt())?;
    let at = 17 + ct_len;
    let md_len = u32::from_le_bytes(
        bytes
            .get(at..at + 4)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?,
    );
    let md_end = at + 4 + md_len as usize;
    let md = bytes.get(at + 4..md_end).ok_or_else(corrupt)?;
    let metadata = if md.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_slice(md).map_err(|_| corrupt())?
    };
    let record = Record {
        key: key.to_owned(),
        value: Bytes::new(),
        content_type: ContentType::from_header(ct).unwrap_or_default(),
        metadata,
        expires_at,
        version,
    };
    Ok((record, md_end))
}

pub(super) fn live_version(bytes: &[u8], now: SystemTime) -> Option<u64> {
    head(bytes).and_then(|(version, at)| (at.is_none_or(|at| at > now)).then_some(version))
}
