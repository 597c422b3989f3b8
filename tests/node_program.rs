//! The node program as something to deploy: configuration from the environment, SIGTERM as
//! a graceful shutdown, a bad input line that does not end the session, and the products it
//! hosts (the configuration Agent, the registry) working across processes.

mod support;

use std::time::Duration;

use support::{Harness, WAIT};

#[test]
fn a_line_that_is_not_utf8_gets_an_error_and_the_node_carries_on() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    a.put("k", "before");
    // Before the fix, reading this line failed, the node quit and exited 0.
    a.process
        .send_bytes(b"put k \xff\xfe\n")
        .expect("write a bad line");
    let answer = a
        .process
        .recv("the answer to a bad line", WAIT)
        .expect("an answer");
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("UTF-8"),
        "{answer}"
    );
    assert_eq!(a.get("k").as_deref(), Some("before"));
    a.put("k", "after");
    assert_eq!(a.get("k").as_deref(), Some("after"));
}

#[test]
fn sigterm_flushes_hands_over_and_announces_the_leave() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.disk_spec("b").seed(a.listen()));
    for n in [&mut a, &mut b] {
        n.await_members(1);
    }
    b.put("written/by-b", "1");
    b.signal("TERM");
    let stopped = b
        .process
        .recv("the stopped line after SIGTERM", WAIT)
        .expect("a stopped line");
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["ok"], true, "{stopped}");
    b.close_input();
    // Peers saw an announced leave, not a crash.
    a.await_state("b", false);
    let events = a.events();
    assert!(
        events
            .iter()
            .any(|(e, n, r, _)| e == "down" && n == "b" && r.as_deref() == Some("left")),
        "{events:?}"
    );
    // The write was handed over, and it is on b's disk.
    assert_eq!(a.get("written/by-b").as_deref(), Some("1"));
    b.restart();
    assert_eq!(b.ready()["restored"], true);
    assert_eq!(b.get("written/by-b").as_deref(), Some("1"));
}

#[test]
fn the_cookie_can_come_from_the_environment() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").env("HERD_COOKIE", "from-env"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()).cookie("from-env"));
    a.await_members(1);
    b.await_members(1);
    // A node with the default cookie is refused by a (whose cookie came from HERD_COOKIE).
    let mut c = h.spawn(h.spec("c").seed(a.listen()));
    support::eventually(WAIT, "a refuses c", || {
        (support::number(&a.stats(), "/cluster/sessions_refused") > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.members(), Vec::<String>::new());
    assert_eq!(a.members(), ["b"]);
}

#[test]
fn a_config_change_on_one_node_arrives_on_the_other() {
    let h = Harness::new();
    let mut a = h.spawn(h.disk_spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    for n in [&mut a, &mut b] {
        n.await_members(1);
    }
    let set = a.ok("config-set max_conns 512");
    assert_eq!(set["config"]["max_conns"], 512, "{set}");
    let seen = b.wait("await-config max_conns 512");
    assert_eq!(seen["config"]["max_conns"], 512, "{seen}");
    // The other way, and a map entry the initial value does not have.
    b.ok("config-set features.beta true");
    let seen = a.wait("await-config /features/beta true");
    assert_eq!(seen["config"]["features"]["beta"], true, "{seen}");
    // Both changes kept: they touched different fields.
    let config = b.ok("config-get");
    assert_eq!(config["config"]["max_conns"], 512, "{config}");
    // A field the config does not have is an error answer, and changes nothing.
    let refused = a.request("config-set max_cons 1");
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(a.ok("config-get")["config"], config["config"]);
}

#[test]
fn a_name_registered_on_one_node_resolves_and_answers_from_the_other() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    for n in [&mut a, &mut b] {
        n.await_members(1);
    }
    a.ok("register greeter");
    b.wait("await-name greeter a");
    assert_eq!(b.ok("whereis greeter")["node"], "a");
    let call = b.ok("call greeter from b");
    assert_eq!(call["node"], "a", "{call}");
    assert_eq!(call["reply"], "hello, from b", "{call}");
    // The name is taken: b cannot register it too.
    let taken = b.request("register greeter");
    assert_eq!(taken["ok"], false, "{taken}");
    assert_eq!(taken["node"], "a", "{taken}");
    let missing = b.request("call nobody hi");
    assert_eq!(missing["ok"], false, "{missing}");
    // The claim shows only while its node is live.
    a.kill();
    b.wait("await-name greeter -");
    assert_eq!(b.ok("whereis greeter")["node"], serde_json::Value::Null);
    b.ok("register greeter");
    assert_eq!(b.ok("call greeter again")["node"], "b");
}

/// `HERD_METRICS_LISTEN` serves the replicas' counters to a Prometheus scraper: a write shows
/// up in the key gauge of the `kv` replica.
#[test]
fn the_node_serves_its_counters_to_prometheus() {
    use std::io::{Read, Write};
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").env("HERD_METRICS_LISTEN", "127.0.0.1:0"));
    let addr = a.ready()["metrics"]
        .as_str()
        .expect("the ready event names the metrics address")
        .to_string();
    a.put("k", "v");
    let scrape = || -> String {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut page = String::new();
        stream.read_to_string(&mut page).expect("response");
        page
    };
    // Counters are published every 20 ticks: wait for the key gauge to say 1.
    let page = support::eventually(WAIT, "the key gauge", || {
        let page = scrape();
        page.lines()
            .any(|l| l.starts_with("herd_replica_keys{replica=\"kv\"} 1"))
            .then_some(page)
    });
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("herd_replica_bytes_sent"), "{page}");
}

/// A supervised child runs exactly where the hashing puts it, and after its node is
/// SIGKILLed it runs again on the survivor.
#[test]
fn a_supervised_child_fails_over_when_its_node_is_killed() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    a.await_members(1);
    b.await_members(1);
    // Start children until one lands on b (rendezvous hashing spreads them).
    let mut on_b = None;
    for i in 0..32 {
        let id = format!("job-{i}");
        let answer = a.ok(&format!("start-child {id}"));
        if answer["owner"] == "b" {
            on_b = Some(id);
            break;
        }
    }
    let id = on_b.expect("one of 32 children is owned by b");
    let ms = WAIT.as_millis();
    a.process
        .ok(&format!("await-child {id} b {ms}"), WAIT * 2)
        .expect("the child runs on b");
    b.kill();
    a.process
        .ok(&format!("await-child {id} a {ms}"), WAIT * 2)
        .expect("the child runs again on a");
}

/// A cluster member that runs no registry (here a bare `Node` in this process) does not hold
/// a joining node's registry up: it holds no claim to wait for, so the joining node's
/// registry is ready (it used to wait out its whole ready timeout, then start unready).
#[test]
fn a_member_without_a_registry_does_not_hold_up_a_joining_node() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listen = "127.0.0.1:0".parse().expect("address");
    let plain = rt
        .block_on(herd::cluster::Node::start(
            herd::cluster::NodeConfig::new("plain").listen(listen),
        ))
        .expect("a bare node");
    let h = Harness::new();
    let mut b = h.spawn(h.spec("b").seed(plain.listen_addr().to_string()));
    assert_eq!(
        b.ready()["names_ready"],
        true,
        "b's registry waited for a member that runs none: {}",
        b.ready()
    );
    b.await_members(1);
    b.put("still", "works");
    rt.block_on(plain.shutdown());
}
