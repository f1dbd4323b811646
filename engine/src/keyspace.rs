//! What a keyspace is: a name, a byte budget, a data source and its expiry policy.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::protect::{CircuitBreaker, RateLimit};
use crate::source::DataSource;

/// How long a stored value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// Lives until evicted for space, deleted or replaced.
    Never,
    /// Expires this long after it is stored.
    After(Duration),
    /// Expires at this wall-clock instant (converted to a relative TTL when stored).
    At(SystemTime),
}

impl Expiration {
    /// The time left from now, `None` for no expiry; an instant in the past gives zero.
    pub(crate) fn ttl(self) -> Option<Duration> {
        match self {
            Expiration::Never => None,
            Expiration::After(ttl) => Some(ttl),
            Expiration::At(at) => {
                Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
            }
        }
    }
}

/// Chooses a value's expiry from its key and the fetched (or put) value.
pub type ExpiryFn = Arc<dyn Fn(&str, &Bytes) -> Expiration + Send + Sync>;

/// The eviction policy of a keyspace's store once it reaches its byte budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Eviction {
    /// TinyLFU admission with LRU eviction: resists scans, may refuse a cold newcomer when full.
    #[default]
    TinyLfu,
    /// Plain least-recently-used: always admits, evicts the oldest.
    Lru,
}

/// The definition of a keyspace.
///
/// Build one with [`KeySpace::new`] and the `with_*` methods; the engine validates it when it
/// starts or when the keyspace is updated. Cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use distcache_engine::{source_fn, Expiration, KeySpace};
///
/// let users = KeySpace::new("users", 64 << 20, source_fn(|key: String| async move {
///     Ok(Bytes::from(format!("profile of {key}")))
/// }))
/// .with_default_ttl(Duration::from_secs(300))
/// .with_negative_ttl(Duration::from_secs(10))
/// // Values that say they are permanent never expire; everything else gets the default.
/// .with_expiry(|_key, value| {
///     if value.starts_with(b"permanent") { Expiration::Never } else { Expiration::After(Duration::from_secs(300)) }
/// });
/// assert_eq!(users.name(), "users");
/// ```
#[derive(Clone)]
pub struct KeySpace {
    name: String,
    max_bytes: u64,
    source: Arc<dyn DataSource>,
    default_ttl: Option<Duration>,
    expiry: Option<ExpiryFn>,
    negative_ttl: Option<Duration>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    eviction: Eviction,
    rate_limit: Option<RateLimit>,
    circuit_breaker: Option<CircuitBreaker>,
    stale_for: Option<Duration>,
    refresh_ahead: Option<Duration>,
    warm_keys: Arc<[String]>,
}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpace")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("default_ttl", &self.default_ttl)
            .field("expiry", &self.expiry.as_ref().map(|_| "fn"))
            .field("negative_ttl", &self.negative_ttl)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("eviction", &self.eviction)
            .field("rate_limit", &self.rate_limit)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("stale_for", &self.stale_for)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("warm_keys", &self.warm_keys.len())
            .finish_non_exhaustive()
    }
}

impl KeySpace {
    /// A keyspace named `name` holding at most `max_bytes` (keys, values and per-entry overhead)
    /// on each node, loading misses from `source`. Values never expire until a TTL is set.
    pub fn new(name: impl Into<String>, max_bytes: u64, source: Arc<dyn DataSource>) -> Self {
        KeySpace {
            name: name.into(),
            max_bytes,
            source,
            default_ttl: None,
            expiry: None,
            negative_ttl: None,
            read_timeout: None,
            write_timeout: None,
            eviction: Eviction::default(),
            rate_limit: None,
            circuit_breaker: None,
            stale_for: None,
            refresh_ahead: None,
            warm_keys: Arc::from([]),
        }
    }

    /// Values expire this long after they are stored, unless [`with_expiry`](Self::with_expiry)
    /// or the put says otherwise.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Chooses each value's expiry from its key and value; takes precedence over the default TTL.
    pub fn with_expiry(
        mut self,
        expiry: impl Fn(&str, &Bytes) -> Expiration + Send + Sync + 'static,
    ) -> Self {
        self.expiry = Some(Arc::new(expiry));
        self
    }

    /// Remembers "not found" for this long, so missing keys do not hit the data source on
    /// every get. Off unless set.
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Bounds each `get` (including the data-source fetch); overrides the engine default.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Bounds each `put` and `delete`; overrides the engine default.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Sets the eviction policy (TinyLFU by default).
    pub fn with_eviction(mut self, eviction: Eviction) -> Self {
        self.eviction = eviction;
        self
    }

    /// Limits data-source fetches (not cache hits) on each node; overrides the engine default.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Stops calling a failing data source for a while; overrides the engine default.
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.circuit_breaker = Some(breaker);
        self
    }

    /// Keeps expired values for `grace` and serves them when a reload fails (the data source
    /// errs or times out, the breaker is open, the rate limit refuses).
    pub fn with_stale_for(mut self, grace: Duration) -> Self {
        self.stale_for = Some(grace);
        self
    }

    /// Reloads a value in the background when a get finds less than `window` of its lifetime
    /// left, so hot keys do not expire under load. Only the key's owner refreshes (once per key).
    pub fn with_refresh_ahead(mut self, window: Duration) -> Self {
        self.refresh_ahead = Some(window);
        self
    }

    /// Keys to load ahead of demand when this node becomes their owner (start, membership change).
    pub fn with_warm_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.warm_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The rate limit, if the keyspace sets its own.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }

    /// The circuit breaker, if the keyspace sets its own.
    pub fn circuit_breaker(&self) -> Option<CircuitBreaker> {
        self.circuit_breaker
    }

    /// How long expired values are kept to be served stale, if at all.
    pub fn stale_for(&self) -> Option<Duration> {
        self.stale_for
    }

    /// The refresh-ahead window, if any.
    pub fn refresh_ahead(&self) -> Option<Duration> {
        self.refresh_ahead
    }

    /// Keys loaded ahead of demand.
    pub fn warm_keys(&self) -> &[String] {
        &self.warm_keys
    }

    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The byte budget on each node.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The data source misses are loaded from.
    pub fn source(&self) -> &Arc<dyn DataSource> {
        &self.source
    }

    /// The default TTL, if any.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl
    }

    /// How long "not found" is remembered, if at all.
    pub fn negative_ttl(&self) -> Option<Duration> {
        self.negative_ttl
    }

    /// The keyspace's own read timeout, if it overrides the engine default.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The keyspace's own write timeout, if it overrides the engine default.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The eviction policy.
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }

    /// This keyspace with every setting that travels between nodes replaced.
    pub(crate) fn with_settings(
        mut self,
        max_bytes: u64,
        default_ttl: Option<Duration>,
        negative_ttl: Option<Duration>,
        read_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
    ) -> Self {
        self.max_bytes = max_bytes;
        self.default_ttl = default_ttl;
        self.negative_ttl = negative_ttl;
        self.read_timeout = read_timeout;
        self.write_timeout = write_timeout;
        self
    }

    /// A stable description of the settings, for comparing definitions across nodes.
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}",
            self.name,
            self.max_bytes,
            self.default_ttl,
            self.negative_ttl,
            self.read_timeout,
            self.write_timeout,
            self.eviction,
            self.expiry.is_some(),
            self.rate_limit,
            self.circuit_breaker,
            self.stale_for,
            self.refresh_ahead,
        )
    }

    /// The expiry a value gets from this keyspace's policy when stored now.
    pub(crate) fn expiration_of(&self, key: &str, value: &Bytes) -> Expiration {
        match (&self.expiry, self.default_ttl) {
            (Some(expiry), _) => expiry(key, value),
            (None, Some(ttl)) => Expiration::After(ttl),
            (None, None) => Expiration::Never,
        }
    }

    /// Checks what the engine needs of a definition, naming the field to fix.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("a keyspace name must not be empty"));
        }
        if self.max_bytes == 0 {
            return Err(Error::invalid(format!(
                "keyspace `{}` has max_bytes 0: give it a byte budget above zero",
                self.name
            )));
        }
        let durations = [
            ("default_ttl", self.default_ttl),
            ("negative_ttl", self.negative_ttl),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("stale_for", self.stale_for),
            ("refresh_ahead", self.refresh_ahead),
        ];
        for (field, value) in durations {
            if value == Some(Duration::ZERO) {
                return Err(Error::invalid(format!(
                    "keyspace `{}` has {field} 0: use a positive duration or leave it unset",
                    self.name
                )));
            }
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate(&self.name)?;
        }
        if let Some(breaker) = &self.circuit_breaker {
            breaker.validate(&self.name)?;
        }
        Ok(())
    }
}
