//! herd::cluster with TLS, across two real processes on loopback.
//!
//! Like `tests/cluster_transport.rs`, the other nodes are child processes: this test binary
//! re-executes itself with `HERD_TLS_CHILD` set, which makes `tls_child_node_role` run a node
//! driven over stdin/stdout. The parent makes a CA and one certificate per node at test time
//! (rcgen, on the aws-lc-rs backend rustls already uses) into a temporary directory, which the
//! children read. TLS is mutual: every node presents its certificate and checks the peer's
//! against the CA, and all certificates carry the one cluster DNS name [`CLUSTER_NAME`] that
//! outbound connections verify.

mod group_events;
use group_events::{free_port, members_are, message_is, wait_event};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::cluster::{GroupEvent, Node, NodeConfig, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CHILD: &str = "HERD_TLS_CHILD";
const GROUP: &str = "tls-test";
const MAX: usize = 1024;
const WAIT: Duration = Duration::from_secs(20);
/// The DNS name in every node certificate; outbound connections verify the peer against it.
const CLUSTER_NAME: &str = "herd-cluster.test";

// ------------------------------------------------------------------------------------------
// Certificates
// ------------------------------------------------------------------------------------------

/// Makes a CA in `dir` (`ca.der`) and, for each node name, `{name}.der` (certificate) and
/// `{name}.key` (PKCS#8 key), valid for [`CLUSTER_NAME`] as server and as client.
fn make_pki(dir: &Path, ca_name: &str, nodes: &[&str]) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    std::fs::write(dir.join("ca.der"), ca_cert.der()).expect("write ca");
    let issuer = Issuer::new(ca, ca_key);
    for name in nodes {
        let mut leaf = CertificateParams::new(vec![CLUSTER_NAME.to_string()]).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, *name);
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("node key");
        let cert = leaf.signed_by(&key, &issuer).expect("node cert");
        std::fs::write(dir.join(format!("{name}.der")), cert.der()).expect("write cert");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_der()).expect("write key");
    }
}

/// The TLS settings of node `name`, from the files [`make_pki`] wrote to `dir`.
fn tls_config(dir: &Path, name: &str) -> TlsConfig {
    let read = |file: String| std::fs::read(dir.join(&file)).expect("read pki file");
    let ca = CertificateDer::from(read("ca.der".into()));
    let cert = CertificateDer::from(read(format!("{name}.der")));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read(format!("{name}.key"))));
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("add ca");
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder(Arc::clone(&roots))
        .build()
        .expect("client verifier");
    let server = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .expect("server config");
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .expect("client config");
    TlsConfig::new(
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
        ServerName::try_from(CLUSTER_NAME)
            .expect("dns name")
            .to_owned(),
    )
}

// ------------------------------------------------------------------------------------------
// Child side
// ------------------------------------------------------------------------------------------

/// A node when run as a child; a no-op in a normal test run.
///
/// Env: `HERD_TLS_CHILD` = node name, `HERD_TLS_LISTEN`, optional `HERD_TLS_SEED`, optional
/// `HERD_TLS_DIR` (a [`make_pki`] directory: run with TLS; without it, plain TCP). Prints
/// `HERD ...` lines: `READY`, `MEMBERS [..]` on every group change, `MSG from=.. text=..`
/// and echoes each message back as `echo:<text>`. A `stats` line on stdin prints
/// `STATS opened=.. authenticated=.. refused=.. members=[..]`. Exits when stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_child_node_role() {
    let Ok(name) = std::env::var(CHILD) else {
        return;
    };
    let listen = std::env::var("HERD_TLS_LISTEN").expect("HERD_TLS_LISTEN");
    let mut config = NodeConfig::new(name.clone())
        .listen(listen.parse().expect("listen addr"))
        .max_message_size(MAX);
    if let Ok(seed) = std::env::var("HERD_TLS_SEED") {
        config = config.seed(seed);
    }
    if let Ok(dir) = std::env::var("HERD_TLS_DIR") {
        config = config.tls(tls_config(Path::new(&dir), &name));
    }
    let node = Node::start(config).await.expect("child node start");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let group = node
        .join_group(
            GROUP,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )
        .await
        .expect("child join");
    println!("HERD READY {}", node.listen_addr());

    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if stdin_tx.send(line).is_err() {
                break;
            }
        }
        // Dropping the sender tells the node to stop.
    });

    loop {
        tokio::select! {
            line = stdin_rx.recv() => match line.as_deref() {
                None => break,
                Some("stats") => {
                    let s = node.stats();
                    println!(
                        "HERD STATS opened={} authenticated={} refused={} members=[{}]",
                        s.sessions_opened,
                        s.sessions_authenticated,
                        s.sessions_refused,
                        node.members().join(","),
                    );
                }
                Some(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(120)) => break,
            Some(event) = rx.recv() => match event {
                GroupEvent::Members(m) => {
                    let m: Vec<String> = m.into_iter().collect();
                    println!("HERD MEMBERS [{}]", m.join(","));
                }
                GroupEvent::Message { from, bytes } => {
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    println!("HERD MSG from={from} text={text}");
                    let mut echo = b"echo:".to_vec();
                    echo.extend_from_slice(&bytes);
                    if let Err(e) = group.send(&from, echo) {
                        println!("HERD SEND_ERR {e}");
                    }
                }
            },
        }
    }
    node.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Parent side
// ------------------------------------------------------------------------------------------

/// A child process running a node; killed on drop so a failing test leaves nothing behind.
struct ChildNode {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildNode {
    fn spawn(name: &str, seed: Option<&str>, pki: Option<&Path>) -> ChildNode {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "tls_child_node_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name)
        .env("HERD_TLS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(seed) = seed {
            cmd.env("HERD_TLS_SEED", seed);
        }
        if let Some(dir) = pki {
            cmd.env("HERD_TLS_DIR", dir);
        }
        let mut child = cmd.spawn().expect("spawn child node");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test tls_child_node_role ... " without a newline first.
                if let Some(at) = line.find("HERD ") {
                    let rest = &line[at + 5..];
                    println!("[{tag}] {rest}");
                    if tx.send(rest.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        ChildNode {
            child,
            stdin,
            lines,
        }
    }

    /// Waits for a line starting with `prefix`.
    async fn expect(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("child exited before printing {prefix:?}");
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for child line {prefix:?}"))
    }

    /// Asks the child for its node counters: `opened`, `authenticated`, `refused` and
    /// `members` (comma-separated, without brackets).
    async fn stats(&mut self) -> HashMap<String, String> {
        let stdin = self.stdin.as_mut().expect("child stdin");
        stdin
            .write_all(b"stats\n")
            .and_then(|()| stdin.flush())
            .expect("write to child");
        let line = self.expect("STATS ").await;
        line["STATS ".len()..]
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['[', ']']).to_string()))
            .collect()
    }

    /// Polls [`ChildNode::stats`] until `counter` reaches `at_least`; returns the last stats.
    async fn wait_counter(&mut self, counter: &str, at_least: u64) -> HashMap<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.stats().await;
            let value: u64 = stats[counter].parse().expect("counter value");
            if value >= at_least {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {counter} >= {at_least}: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A (this process, TLS) and B (a child, TLS, seeded with A) join, see each other in a group
/// and exchange messages both ways. Then two nodes that must not get in dial A and keep
/// redialing it: C without TLS, and D with TLS but a certificate from another CA. Each is
/// refused (its own count of sessions that closed before authenticating grows, twice, so A
/// refused at least two dials), never becomes a member of A, and A's view stays `[b]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_join_and_plain_or_untrusted_nodes_are_refused() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let started = Instant::now();
    let pki = tempfile::tempdir().expect("temp dir");
    make_pki(pki.path(), "herd test CA", &["a", "b"]);
    let rogue = tempfile::tempdir().expect("temp dir");
    make_pki(rogue.path(), "rogue CA", &["d"]);
    // D trusts the real CA (so it accepts A's certificate) but presents a rogue certificate.
    std::fs::copy(pki.path().join("ca.der"), rogue.path().join("ca.der")).expect("copy ca");

    let a = Node::start(
        NodeConfig::new("a")
            .max_message_size(MAX)
            .tls(tls_config(pki.path(), "a")),
    )
    .await
    .expect("start a");
    let a_addr = a.listen_addr().to_string();
    let (tx, mut events) = mpsc::unbounded_channel();
    let group = a
        .join_group(
            GROUP,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )
        .await
        .expect("join");
    wait_event(&mut events, "initial empty members", members_are(&[])).await;

    // 0. A connection that opens a socket and sends nothing. ractor_cluster 0.16.5 runs the
    // inbound TLS handshake inline in its accept loop with no timeout, so before herd
    // accepted connections itself this stopped A from accepting anyone (B below).
    let silent = std::net::TcpStream::connect(&a_addr).expect("silent connection");

    // 1. Two TLS nodes: B dials A.
    let mut b = ChildNode::spawn("b", Some(&a_addr), Some(pki.path()));
    b.expect("READY").await;
    wait_event(&mut events, "b joins", members_are(&["b"])).await;
    b.expect("MEMBERS [a]").await;
    assert_eq!(a.members(), ["b"]);
    group.send("b", b"ping".to_vec()).expect("send ping");
    b.expect("MSG from=a text=ping").await;
    wait_event(&mut events, "echo of ping", message_is("b", "echo:ping")).await;
    let b_stats = b.stats().await;
    assert_eq!(b_stats["members"], "a", "{b_stats:?}");
    assert_eq!(b_stats["refused"], "0", "{b_stats:?}");
    let joined = started.elapsed();
    drop(silent);

    // 2. A node without TLS dials A: the TLS handshake fails on A's listener, before ractor
    // opens a session there, so A counts nothing; C's session closes unauthenticated.
    let a_before = a.stats();
    let mut c = ChildNode::spawn("c", Some(&a_addr), None);
    c.expect("READY").await;
    let c_stats = c.wait_counter("refused", 2).await;
    assert_eq!(c_stats["authenticated"], "0", "{c_stats:?}");
    assert_eq!(c_stats["members"], "", "{c_stats:?}");

    // 3. A TLS node whose certificate A does not trust: refused the same way.
    let mut d = ChildNode::spawn("d", Some(&a_addr), Some(rogue.path()));
    d.expect("READY").await;
    let d_stats = d.wait_counter("refused", 2).await;
    assert_eq!(d_stats["authenticated"], "0", "{d_stats:?}");
    assert_eq!(d_stats["members"], "", "{d_stats:?}");

    // Neither ever reached A (checked after both were refused at least twice): a failed TLS
    // handshake never becomes a ractor session on A, so A has not even counted one opened.
    let a_after = a.stats();
    assert_eq!(
        a_after.sessions_opened, a_before.sessions_opened,
        "{a_after:?}"
    );
    assert_eq!(
        a_after.sessions_authenticated, a_before.sessions_authenticated,
        "{a_after:?}"
    );
    assert_eq!(a.members(), ["b"]);
    assert_eq!(group.members(), BTreeSet::from(["b".to_string()]));
    // B's session was never disturbed, and it still works.
    assert_eq!(a_after.disconnects, 0, "{a_after:?}");
    group.send("b", b"still-here".to_vec()).expect("send");
    wait_event(
        &mut events,
        "echo of still-here",
        message_is("b", "echo:still-here"),
    )
    .await;
    let c_stats = c.stats().await;
    assert_eq!(c_stats["authenticated"], "0", "{c_stats:?}");

    group.leave().await;
    b.expect("MEMBERS []").await;
    a.shutdown().await;
    drop((b, c, d));
    println!(
        "TLS join + messages: {joined:?}; whole test: {:?}",
        started.elapsed()
    );
}
