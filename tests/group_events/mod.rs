//! Helpers shared by the two-process transport tests (`cluster_transport.rs`,
//! `cluster_tls.rs`): waiting on a group's events with a deadline.
#![allow(dead_code)] // each test file uses its own subset

use herd::cluster::GroupEvent;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long any one wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Waits for the first event matching `pred`, failing the test after [`WAIT`].
pub(crate) async fn wait_event(
    rx: &mut mpsc::UnboundedReceiver<GroupEvent>,
    what: &str,
    pred: impl Fn(&GroupEvent) -> bool,
) -> GroupEvent {
    let wait = async {
        while let Some(e) = rx.recv().await {
            if pred(&e) {
                return e;
            }
        }
        panic!("event channel closed while waiting for {what}");
    };
    timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Matches a membership event listing exactly `names`.
pub(crate) fn members_are(names: &[&str]) -> impl Fn(&GroupEvent) -> bool {
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    move |e| matches!(e, GroupEvent::Members(m) if *m == want)
}

/// Matches a message from `from` carrying `text`.
pub(crate) fn message_is(from: &str, text: &str) -> impl Fn(&GroupEvent) -> bool {
    let (from, text) = (from.to_string(), text.as_bytes().to_vec());
    move |e| matches!(e, GroupEvent::Message { from: f, bytes } if *f == from && *bytes == text)
}

/// A port that was free a moment ago (small race: fine on loopback in tests).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
