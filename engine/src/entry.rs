//! A value the application writes.

use bytes::Bytes;

use crate::keyspace::Expiration;

/// A key and value to `put`, with an optional expiry of its own.
///
/// Without one, the keyspace's policy applies (its expiry function, else its default TTL).
/// `(key, value)` tuples convert into entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The entry's own expiry, overriding the keyspace policy.
    pub expiration: Option<Expiration>,
}

impl Entry {
    /// An entry that follows the keyspace's expiry policy.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Entry { key: key.into(), value: value.into(), expiration: None }
    }

    /// Gives the entry its own expiry.
    pub fn with_expiration(mut self, expiration: Expiration) -> Self {
        self.expiration = Some(expiration);
        self
    }

    /// Shorthand for `with_expiration(Expiration::After(ttl))`.
    pub fn with_ttl(self, ttl: std::time::Duration) -> Self {
        self.with_expiration(Expiration::After(ttl))
    }
}

impl<K: Into<String>, V: Into<Bytes>> From<(K, V)> for Entry {
    fn from((key, value): (K, V)) -> Self {
        Entry::new(key, value)
    }
}
