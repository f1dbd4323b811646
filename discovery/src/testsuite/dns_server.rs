//! [`DnsServer`]: an in-process authoritative DNS server for one zone, on loopback UDP.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// Records (and "no such name" answers) carry this TTL in seconds: long, as in production,
/// so a provider sees changes only as fast as its staleness bound allows.
const TTL: u32 = 3600;

/// An authoritative server for one zone whose records a test replaces while it serves.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    server: Option<Server<Catalog>>,
    serial: AtomicU32,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn name(name: &str) -> Name {
    Name::from_str(name).unwrap_or_else(|err| panic!("`{name}` is not a domain name: {err}"))
}

impl DnsServer {
    /// Serves the zone `origin` (such as `cache.test.`), with only its SOA record, on a free
    /// UDP port of 127.0.0.1.
    pub async fn start(origin: &str) -> Self {
        let origin = name(origin);
        let zone = Arc::new(InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(origin.clone(), origin.clone(), 1, 60, 60, 60, TTL);
        zone.upsert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1).await;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(origin), vec![zone.clone() as Arc<dyn ZoneHandler>]);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("a UDP port");
        let addr = socket.local_addr().expect("a bound address");
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        DnsServer { addr, zone, server: Some(server), serial: AtomicU32::new(2) }
    }

    /// Where the server answers (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `owner`'s A and AAAA records exactly `ips` (none removes them).
    pub async fn set_addresses(&self, owner: &str, ips: &[IpAddr]) {
        let owner = name(owner);
        let records = |v4: bool| {
            ips.iter()
                .filter(|ip| ip.is_ipv4() == v4)
                .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::from(*ip)))
                .collect()
        };
        self.replace(&owner, RecordType::A, records(true)).await;
        self.replace(&owner, RecordType::AAAA, records(false)).await;
    }

    /// Makes `owner`'s SRV records exactly `targets` (`(target name, port)`; none removes them).
    pub async fn set_srv(&self, owner: &str, targets: &[(&str, u16)]) {
        let owner = name(owner);
        let records = targets
            .iter()
            .map(|(target, port)| {
                let srv = SRV::new(0, 10, *port, name(target));
                Record::from_rdata(owner.clone(), TTL, RData::SRV(srv))
            })
            .collect();
        self.replace(&owner, RecordType::SRV, records).await;
    }

    /// Replaces one record set in a single step, so no query sees it half-changed.
    async fn replace(&self, owner: &Name, kind: RecordType, records: Vec<Record>) {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let key = RrKey::new(LowerName::from(owner.clone()), kind);
        let mut zone = self.zone.records_mut().await;
        if records.is_empty() {
            zone.remove(&key);
        } else {
            let mut set = RecordSet::new(owner.clone(), kind, serial);
            set.set_ttl(TTL);
            set.set_records(records);
            zone.insert(key, Arc::new(set));
        }
    }

    /// Stops answering: the port is closed when this returns.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown_token().cancel();
            if let Err(err) = server.shutdown_gracefully().await {
                tracing::debug!(%err, "test DNS server stopped with an error");
            }
        }
    }
}
