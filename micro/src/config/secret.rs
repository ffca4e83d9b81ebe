//! Secret values: read like any other, never shown.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::REDACTED;

/// A value that is never shown: its `Debug`, `Display` and `Serialize`
/// give `<redacted>`. Reads from a config like the `T` inside; use
/// [`expose`](Self::expose) where the value itself is needed.
///
/// ```
/// use micro::config::Secret;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Database {
///     url: String,
///     password: Secret<String>,
/// }
///
/// let db: Database = serde_json::from_str(r#"{"url": "db", "password": "hunter2"}"#).unwrap();
/// assert_eq!(format!("{db:?}"), r#"Database { url: "db", password: <redacted> }"#);
/// assert_eq!(db.password.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value itself, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Whether a key is named like a secret: containing `password`, `secret`
/// or `token`, or ending in `api_key` or `private_key`.
pub(super) fn named_like_one(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|w| key.contains(w))
        || key.ends_with("api_key")
        || key.ends_with("apikey")
        || key.ends_with("private_key")
}
