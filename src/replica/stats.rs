//! [`ReplicaStats`]: a replica's counters, also published through the `metrics` facade.

use super::shared::Shared;
use super::view::MapView;
use serde::Serialize;
use std::sync::atomic::Ordering;

/// Counters and figures of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's name.
    pub name: String,
    /// Its id.
    pub replica_id: u64,
    /// Keys present.
    pub keys: usize,
    /// The Merkle root: equal roots mean equal states.
    pub root: u64,
    /// Current neighbours (node names).
    pub neighbours: Vec<String>,
    /// Sync bytes sent (payloads, before the cluster envelope).
    pub bytes_sent: u64,
    /// Sync bytes received.
    pub bytes_received: u64,
    /// Sync messages sent.
    pub messages_sent: u64,
    /// Sync messages received and accepted.
    pub messages_received: u64,
    /// Sync messages refused (malformed, oversized, future version, not from a neighbour).
    pub rejected_messages: u64,
    /// Frames refused by the cluster layer before reaching the replica (bad envelope).
    pub frames_rejected: u64,
    /// Bytes handed to the transport, the cluster's envelope included (not ractor's own
    /// framing or TCP headers).
    pub transport_bytes_sent: u64,
    /// Bytes received through the transport, envelope included.
    pub transport_bytes_received: u64,
    /// Deltas sent.
    pub deltas_sent: u64,
    /// Keys sent by the repair path.
    pub repair_keys_sent: u64,
    /// Times unacknowledged delta messages were sent again.
    pub delta_resends: u64,
    /// Keys too large for some neighbour's message limit (each counted once per neighbour).
    pub entries_too_large_for_peer: u64,
    /// Neighbours' notices of keys too large for this replica's message limit.
    pub entries_too_large_here: u64,
    /// Deltas not yet acknowledged by every neighbour.
    pub buffered_deltas: usize,
    /// Messages the transport could not send (the protocol resends or repairs).
    pub send_errors: u64,
    /// Storage commits (each one atomic batch; one fsync with durable storage).
    pub storage_commits: u64,
}

impl<C: MapView> Shared<C> {
    /// The counters now.
    pub(crate) fn stats(&self) -> ReplicaStats {
        let transport = self.outbox.get().map_or((0, 0), |o| o.transport_bytes());
        let frames_rejected = self.outbox.get().map_or(0, |o| o.frames_rejected());
        let core = self.lock();
        let s = core.sync.stats();
        ReplicaStats {
            name: self.name.clone(),
            replica_id: self.id.as_u64(),
            keys: core.sync.crdt().as_causal().store().key_count(),
            root: core.sync.root().0,
            neighbours: core.sync.neighbours().cloned().collect(),
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
            rejected_messages: s.rejected_messages,
            frames_rejected,
            transport_bytes_sent: transport.0,
            transport_bytes_received: transport.1,
            deltas_sent: s.deltas_sent,
            repair_keys_sent: s.repair_keys_sent,
            delta_resends: s.delta_resends,
            entries_too_large_for_peer: s.entries_too_large_for_peer,
            entries_too_large_here: s.entries_too_large_here,
            buffered_deltas: core.sync.buffered_deltas(),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            storage_commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

impl ReplicaStats {
    /// Publishes the counters through the [`metrics`] facade, labelled with the replica's
    /// name: counters `herd_replica_*_total` and gauges `herd_replica_keys`,
    /// `herd_replica_neighbours` and `herd_replica_buffered_deltas`. Without a recorder
    /// installed by the application (a Prometheus or OpenTelemetry exporter) this does
    /// nothing. The replica calls it every sync interval.
    pub fn publish_metrics(&self) {
        let name = self.name.clone();
        let counters: [(&'static str, u64); 15] = [
            ("herd_replica_bytes_sent_total", self.bytes_sent),
            ("herd_replica_bytes_received_total", self.bytes_received),
            ("herd_replica_messages_sent_total", self.messages_sent),
            (
                "herd_replica_messages_received_total",
                self.messages_received,
            ),
            (
                "herd_replica_rejected_messages_total",
                self.rejected_messages,
            ),
            ("herd_replica_frames_rejected_total", self.frames_rejected),
            (
                "herd_replica_transport_bytes_sent_total",
                self.transport_bytes_sent,
            ),
            (
                "herd_replica_transport_bytes_received_total",
                self.transport_bytes_received,
            ),
            ("herd_replica_deltas_sent_total", self.deltas_sent),
            ("herd_replica_repair_keys_sent_total", self.repair_keys_sent),
            ("herd_replica_delta_resends_total", self.delta_resends),
            (
                "herd_replica_entries_too_large_for_peer_total",
                self.entries_too_large_for_peer,
            ),
            (
                "herd_replica_entries_too_large_here_total",
                self.entries_too_large_here,
            ),
            ("herd_replica_send_errors_total", self.send_errors),
            ("herd_replica_storage_commits_total", self.storage_commits),
        ];
        for (metric, value) in counters {
            metrics::counter!(metric, "replica" => name.clone()).absolute(value);
        }
        metrics::gauge!("herd_replica_keys", "replica" => name.clone()).set(self.keys as f64);
        metrics::gauge!("herd_replica_neighbours", "replica" => name.clone())
            .set(self.neighbours.len() as f64);
        metrics::gauge!("herd_replica_buffered_deltas", "replica" => name)
            .set(self.buffered_deltas as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Remembers the last value of every counter and gauge, by name and labels.
    #[derive(Default)]
    struct Remember(Arc<Mutex<BTreeMap<String, f64>>>);

    struct Slot(String, Arc<Mutex<BTreeMap<String, f64>>>);

    impl CounterFn for Slot {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value as f64);
        }
    }

    impl GaugeFn for Slot {
        fn increment(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }
        fn decrement(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
        }
        fn set(&self, value: f64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    impl Remember {
        fn slot(&self, key: &Key) -> Arc<Slot> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Arc::new(Slot(name, self.0.clone()))
        }
    }

    impl Recorder for Remember {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.slot(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.slot(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn the_counters_reach_the_applications_recorder_labelled_by_replica() {
        let stats = ReplicaStats {
            name: "config".into(),
            keys: 3,
            bytes_sent: 1234,
            rejected_messages: 2,
            neighbours: vec!["b".into(), "c".into()],
            ..ReplicaStats::default()
        };
        let recorder = Remember::default();
        metrics::with_local_recorder(&recorder, || stats.publish_metrics());
        let seen = recorder.0.lock().unwrap().clone();
        assert_eq!(
            seen["herd_replica_bytes_sent_total{replica=config}"],
            1234.0
        );
        assert_eq!(
            seen["herd_replica_rejected_messages_total{replica=config}"],
            2.0
        );
        assert_eq!(seen["herd_replica_keys{replica=config}"], 3.0);
        assert_eq!(seen["herd_replica_neighbours{replica=config}"], 2.0);
        assert_eq!(seen.len(), 18, "{seen:?}");
    }
}
