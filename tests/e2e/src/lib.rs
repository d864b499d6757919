//! tagrelay's cross-crate tests live in `tests/` next to this file; this
//! library is empty on purpose (Cargo needs a target to hang them on).
//!
//! - `bus.rs`: the bus against a real nats-server and a 3-node cluster.
//! - `consume.rs`: the one consume loop (heartbeat, drain, terminate, retry).
//! - `nats_auth.rs`: the least-privilege NATS users of `deploy/nats/`.
//! - `registry.rs`: the testkit's registry and fault proxy themselves.
//! - `tidy.rs`: the layout rules (no service imports another, pure crates
//!   reach no I/O crate).
//!
//! Tests that drive the `tagrelay` binary live in `cli/tests/`, because only
//! the package that builds a binary can name it in its tests.
