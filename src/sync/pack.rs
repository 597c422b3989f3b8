//! Packing whole keys into repair messages that fit a neighbour's limit, a burst at a time.

use super::config::max_entry_size;
use super::keys::key_hash;
use super::message::{DotRange, Message};
use super::state::ENVELOPE;
use crate::codec;
use crate::crdt::{CausalContext, Dot, DotStore};
use crate::merkle::KeyHash;
use serde::Serialize;
use std::fmt::Debug;
use std::hash::Hash;

/// Where [`RepairPacker::add`] put a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    /// In the first message of the burst (the one that carries the seen ranges).
    First,
    /// In a later message.
    Later,
    /// Nowhere: its entries alone exceed the neighbour's limit.
    Oversized,
    /// Nowhere: the burst is full; it goes in a later round.
    Full,
}

/// Builds the repair messages of one burst for one neighbour: whole keys with all their
/// entries, each message within `limit`, the burst within `window` bytes of entries.
///
/// A key too large to travel with the context goes in two messages: its entries with no
/// context (which removes nothing), and a `Removals` with the context and the dots it holds
/// (which decides what the context would have). So a key fits when its entries alone fit,
/// however large the context has grown: every write `put` accepted can be repaired.
pub(super) struct RepairPacker<K, S> {
    limit: usize,
    ctx: CausalContext,
    ctx_len: usize,
    window: usize,
    total: usize,
    current: Vec<(K, S)>,
    current_used: usize,
    messages: Vec<Message<K, S>>,
    /// Messages with context and entries closed so far; the first of them is `first`.
    closed: usize,
    first: Option<usize>,
    oversized: Vec<(KeyHash, usize)>,
}

impl<K, S> RepairPacker<K, S>
where
    K: Hash + Eq + Clone + Debug + Serialize,
    S: DotStore + Serialize,
{
    /// A burst for a neighbour taking messages of `limit` bytes, carrying `ctx` (whose encoding
    /// is `ctx_len` bytes) with the entries, and at most `window` bytes of entries (at least
    /// one key).
    pub(super) fn new(limit: usize, ctx: CausalContext, ctx_len: usize, window: usize) -> Self {
        RepairPacker {
            limit,
            ctx,
            ctx_len,
            window,
            total: 0,
            current: Vec::new(),
            current_used: 0,
            messages: Vec::new(),
            closed: 0,
            first: None,
            oversized: Vec::new(),
        }
    }

    /// Adds `key` with all its entries `store`.
    pub(super) fn add(&mut self, key: &K, store: &S) -> Placed {
        let size = codec::encoded_len(&(key, store)).unwrap_or(usize::MAX);
        if size > max_entry_size(self.limit) {
            self.oversized.push((key_hash(key), size));
            return Placed::Oversized;
        }
        if self.total > 0 && self.total.saturating_add(size) > self.window {
            return Placed::Full;
        }
        self.total += size;
        let room = self.limit.saturating_sub(ENVELOPE + self.ctx_len);
        if size > room {
            let mut live: Vec<Dot> = Vec::new();
            store.for_each_dot(&mut |d| live.push(d));
            live.sort_unstable();
            self.messages.push(Message::Removals {
                ctx: self.ctx.clone(),
                keys: vec![(key.clone(), live)],
            });
            self.messages.push(Message::Repair {
                ctx: CausalContext::new(),
                entries: vec![(key.clone(), store.clone())],
                seen: Vec::new(),
            });
            return Placed::Later;
        }
        if !self.current.is_empty() && self.current_used + size > room {
            self.close();
        }
        self.current.push((key.clone(), store.clone()));
        self.current_used += size;
        if self.closed == 0 {
            Placed::First
        } else {
            Placed::Later
        }
    }

    /// Keys found too large for the neighbour, with their encoded sizes.
    pub(super) fn take_oversized(&mut self) -> Vec<(KeyHash, usize)> {
        std::mem::take(&mut self.oversized)
    }

    /// The messages, the first carrying `seen` (ranges valid for what the keys placed
    /// [`Placed::First`] carry). With no key but some ranges, one message carries just them.
    pub(super) fn finish(mut self, seen: Vec<DotRange>) -> Vec<Message<K, S>> {
        if !self.current.is_empty() {
            self.close();
        }
        let limit = self.limit;
        match self.first {
            Some(i) => {
                if let Some(Message::Repair { seen: slot, .. }) = self.messages.get_mut(i) {
                    *slot = seen;
                }
                // The ranges only save a later context exchange: when they do not fit (many
                // replica ids, a small limit), the message goes without them.
                if let Some(msg) = self.messages.get_mut(i)
                    && codec::encoded_len(msg).unwrap_or(usize::MAX) > limit
                    && let Message::Repair { seen: slot, .. } = msg
                {
                    slot.clear();
                }
            }
            None if !seen.is_empty() => self.messages.push(Message::Repair {
                ctx: self.ctx.clone(),
                entries: Vec::new(),
                seen,
            }),
            None => {}
        }
        self.messages
    }

    fn close(&mut self) {
        self.messages.push(Message::Repair {
            ctx: self.ctx.clone(),
            entries: std::mem::take(&mut self.current),
            seen: Vec::new(),
        });
        if self.closed == 0 {
            self.first = Some(self.messages.len() - 1);
        }
        self.closed += 1;
        self.current_used = 0;
    }
}
