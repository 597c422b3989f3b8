//! Tests of the sync protocol: a deterministic simulated network (`sim`), seeded schedules
//! of faults, named regressions, and the wire format's golden vectors.

mod events;
mod landing;
mod limits;
mod round_trip;
mod scale;
mod schedules;
mod sim;
mod streaming;
mod wire;
