//! Errors that cross the wire, and malformed peer messages.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_variants_survive_the_wire() {
    let owner_timeout = Duration::from_millis(400);
    let mut cluster =
        TestCluster::new(Options { read_timeout: owner_timeout, ..Options::default() });
    // The caller waits longer than the owner, so the owner's timeout is what crosses the wire;
    // and it has a keyspace its peers lack.
    cluster
        .add_node_with(|mut node| {
            node.keyspaces[0] = node.keyspaces[0].clone().with_read_timeout(owner_timeout * 4);
            node.keyspaces.push(KeySpace::new("only-on-0", 1 << 20, node.source.clone()));
            node
        })
        .await;
    cluster.add_node().await;
    cluster.wait_converged().await;
    let (caller, owner) = (0, 1);
    let remote = |prefix: &str| cluster.key_owned_by(owner, prefix);

    // Each error as the owner gives it locally, and as the caller gets it over the wire.
    let local = cluster.engine(owner).get(KEYSPACE, &remote("missing-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("missing")).await;
    assert!(matches!(local, Err(Error::NotFound)), "{local:?}");
    assert!(matches!(wire, Err(Error::NotFound)), "{wire:?}");

    let local = cluster.engine(owner).get(KEYSPACE, &remote("failing-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("failing")).await;
    assert!(
        matches!(&local, Err(Error::DataSource(e)) if e.to_string().contains("the database is down"))
    );
    assert!(
        matches!(&wire, Err(Error::DataSource(e)) if e.to_string().contains("the database is down")),
        "{wire:?}"
    );

    let key = cluster.key_owned_by(owner, "elsewhere");
    let local = cluster.engine(owner).get("only-on-0", &key).await;
    let wire = cluster.engine(caller).get("only-on-0", &key).await;
    assert!(matches!(&local, Err(Error::KeySpaceNotFound(name)) if name == "only-on-0"));
    assert!(matches!(&wire, Err(Error::KeySpaceNotFound(name)) if name == "only-on-0"), "{wire:?}");
    assert_eq!(cluster.stats(caller).fallback_loads, 0, "a refusal is final, not retried here");

    let local = cluster.engine(owner).get(KEYSPACE, &remote("slow-local")).await;
    let wire = cluster.engine(caller).get(KEYSPACE, &remote("slow")).await;
    assert!(matches!(local, Err(Error::Timeout(after)) if after == owner_timeout), "{local:?}");
    assert!(matches!(wire, Err(Error::Timeout(after)) if after == owner_timeout), "{wire:?}");

    assert_eq!(cluster.fetches(caller), 0, "the caller never loaded an owner's key itself");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_out_of_time_gets_its_own_timeout_and_still_trusts_the_owner() {
    let caller_timeout = Duration::from_millis(300);
    let mut cluster = TestCluster::new(Options::default());
    cluster
        .add_node_with(|mut node| {
            node.keyspaces[0] = node.keyspaces[0].clone().with_read_timeout(caller_timeout);
            node
        })
        .await;
    cluster.add_node().await;
    cluster.wait_converged().await;
    let (caller, owner) = (0, 1);

    // More slow gets than the breaker's threshold (3): each ends at the caller's deadline,
    // without a local load, and none counts against the owner, which is only slow.
    let slow: Vec<String> =
        (0..5).map(|i| cluster.key_owned_by(owner, &format!("slow-{i}"))).collect();
    let gets = slow.iter().map(|key| cluster.engine(caller).get(KEYSPACE, key));
    for result in futures::future::join_all(gets).await {
        assert!(
            matches!(result, Err(Error::Timeout(after)) if after == caller_timeout),
            "{result:?}"
        );
    }
    let breakers: Vec<_> =
        cluster.engine(caller).peers().into_iter().filter_map(|p| p.breaker).collect();
    assert_eq!(breakers, vec![BreakerState::Closed]);
    let key = cluster.key_owned_by(owner, "quick");
    let value = cluster.engine(caller).get(KEYSPACE, &key).await.unwrap();
    assert_eq!(value, value_of(&key).as_bytes());
    assert_eq!(cluster.fetches(caller), 0, "the caller never loaded an owner's key itself");
    assert_eq!(cluster.stats(caller).fallback_loads, 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_oversized_peer_messages_get_an_error_not_a_panic() {
    let options =
        Options { configure: |config| config.with_max_message_bytes(1024), ..Options::default() };
    let cluster = TestCluster::start_with(2, options).await;
    let node = 0;
    let mut client = peer_client(&cluster, node).await;

    // Bigger than the node accepts.
    let huge = "k".repeat(4096);
    let status = raw_get(&mut client, vec![key_ref(KEYSPACE, &huge)]).await.unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "{status:?}"
    );

    // Not protobuf: a length-delimited field longer than the message.
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let status = send_raw(channel(&cluster, node).await, "/distcache.peer.v1.Peer/Get", garbage);
    let status = status.await;
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");

    // Not even HTTP/2: the node hangs up.
    let addr = cluster.engine(node).peer_addr().unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"\x16\x03\x01\x00garbage that is not a preface\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let closed = timeout(WITHIN, socket.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the connection was closed");

    // Well-formed requests for keys that cannot be served fail per key, in the body.
    let keys = vec![
        key_ref(KEYSPACE, ""),
        key_ref("no-such-keyspace", "k"),
        key_ref(KEYSPACE, "fine"),
        key_ref(KEYSPACE, "missing-k"),
    ];
    let outcomes = raw_get(&mut client, keys).await.unwrap();
    let codes: Vec<Option<Code>> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [Some(Code::InvalidArgument), Some(Code::KeyspaceNotFound), None, Some(Code::NotFound)]
    );

    // The node still serves, raw clients and peers alike.
    let outcomes = raw_get(&mut client, vec![key_ref(KEYSPACE, "after")]).await.unwrap();
    assert!(matches!(&outcomes[0], Outcome::Value(v) if v.value == value_of("after")));
    let key = cluster.key_owned_by(node, "peer-after");
    assert_eq!(cluster.engine(1).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    cluster.stop().await;
}

/// A pipe frame: length, id, kind, protobuf body (see the engine's `pipe::frame`).
fn pipe_frame(id: u32, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = ((body.len() + 5) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&id.to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

fn pipe_get(id: u32, key: &str) -> Vec<u8> {
    let request = pb::GetRequest { keys: vec![key_ref(KEYSPACE, key)], forwarded: true };
    pipe_frame(id, 1, &prost::Message::encode_to_vec(&request))
}

/// Reads one answer frame: its id and response.
async fn read_answer(socket: &mut tokio::net::TcpStream) -> (u32, pb::GetResponse) {
    let mut header = [0u8; 9];
    timeout(WITHIN, socket.read_exact(&mut header)).await.unwrap().unwrap();
    let length = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let id = u32::from_be_bytes(header[4..8].try_into().unwrap());
    assert_eq!(header[8], 3, "an answer frame");
    let mut body = vec![0u8; length - 5];
    timeout(WITHIN, socket.read_exact(&mut body)).await.unwrap().unwrap();
    (id, prost::Message::decode(&body[..]).unwrap())
}

async fn open_pipe(cluster: &TestCluster, node: usize) -> tokio::net::TcpStream {
    let addr = cluster.engine(node).peer_addr().unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"DCP\x01").await.unwrap();
    socket
}

async fn assert_hangs_up(mut socket: tokio::net::TcpStream, bytes: &[u8]) {
    socket.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    let closed = timeout(WITHIN, socket.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the node hung up: {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_past_the_thread_slots_are_served_by_the_runtime() {
    // One connection gets a thread of its own; the others are served by runtime tasks.
    let options = Options { configure: |config| config.with_pipe_threads(1), ..Options::default() };
    let cluster = TestCluster::start_with(2, options).await;
    let node = 0;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(open_pipe(&cluster, node).await);
    }
    for round in 0..2u32 {
        for (index, socket) in sockets.iter_mut().enumerate() {
            let id = round * 10 + index as u32;
            let key = format!("key-{id}");
            let mut requests = pipe_get(id, &key);
            requests.extend(pipe_get(id + 100, "missing-y"));
            socket.write_all(&requests).await.unwrap();
            let mut answers = std::collections::HashMap::new();
            for _ in 0..2 {
                let (id, response) = read_answer(socket).await;
                answers.insert(id, response.outcomes.into_iter().next().and_then(|o| o.outcome));
            }
            let value = answers[&id].as_ref().unwrap();
            assert!(matches!(value, Outcome::Value(v) if v.value == value_of(&key)), "{value:?}");
            assert_eq!(code(answers[&(id + 100)].as_ref().unwrap()), Some(Code::NotFound));
        }
        // The threaded connection closes: the next one is served either way (on the freed
        // slot once the node has seen the close, else by the runtime).
        if round == 0 {
            sockets.remove(0);
            sockets.push(open_pipe(&cluster, node).await);
        }
    }
    let key = cluster.key_owned_by(node, "from-a-peer");
    assert_eq!(cluster.engine(1).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_pipe_answers_pipelined_requests_and_hangs_up_on_bad_frames() {
    let options =
        Options { configure: |config| config.with_max_message_bytes(1024), ..Options::default() };
    let cluster = TestCluster::start_with(2, options).await;
    let node = 0;

    // Three requests in one write: a key to load, a key that is missing, an empty key; each
    // answer carries its request's id.
    let mut socket = open_pipe(&cluster, node).await;
    let mut requests = pipe_get(7, "a");
    requests.extend(pipe_get(8, "missing-x"));
    requests.extend(pipe_get(9, ""));
    socket.write_all(&requests).await.unwrap();
    let mut answers = std::collections::HashMap::new();
    for _ in 0..3 {
        let (id, response) = read_answer(&mut socket).await;
        let outcome = response.outcomes.into_iter().next().and_then(|o| o.outcome).unwrap();
        answers.insert(id, outcome);
    }
    assert!(matches!(&answers[&7], Outcome::Value(v) if v.value == value_of("a")));
    assert_eq!(code(&answers[&8]), Some(Code::NotFound));
    assert_eq!(code(&answers[&9]), Some(Code::InvalidArgument));

    // Frames the node cannot read end the connection, and nothing else.
    let oversized = pipe_get(1, &"k".repeat(2048));
    assert_hangs_up(open_pipe(&cluster, node).await, &oversized).await;
    assert_hangs_up(open_pipe(&cluster, node).await, &pipe_frame(1, 99, b"")).await;
    assert_hangs_up(open_pipe(&cluster, node).await, &pipe_frame(1, 1, &[0x0a, 0xff, 0x0f])).await;
    assert_hangs_up(open_pipe(&cluster, node).await, &pipe_frame(1, 3, b"")).await;
    assert_hangs_up(open_pipe(&cluster, node).await, &[0, 0, 0, 1, 0]).await;

    // A batch over the limit is refused before it leaves the caller: its keys are loaded
    // around the owner, and the caller's pipe to it keeps serving.
    let big = cluster.keys_owned_by(node, &"b".repeat(200), 8);
    let before = cluster.stats(1);
    let values = cluster.engine(1).get_many(KEYSPACE, &big).await.unwrap();
    for (key, value) in big.iter().zip(values) {
        assert_eq!(value.unwrap(), value_of(key));
    }
    assert_eq!(cluster.stats(1).fallback_loads, before.fallback_loads + 8);

    // The first connection, and peers, are served as before.
    socket.write_all(&pipe_get(10, "b")).await.unwrap();
    let (id, response) = read_answer(&mut socket).await;
    assert_eq!(id, 10);
    assert!(
        matches!(&response.outcomes[0].outcome, Some(Outcome::Value(v)) if v.value == value_of("b"))
    );
    let key = cluster.key_owned_by(node, "peer-after");
    assert_eq!(cluster.engine(1).get(KEYSPACE, &key).await.unwrap(), value_of(&key));
    assert_eq!(cluster.stats(1).peer_loads, before.peer_loads + 1);
    cluster.stop().await;
}
