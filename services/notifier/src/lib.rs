//! The tagrelay notifier: a plain durable subscriber of the event log that
//! delivers notifications the way Flux's notification-controller does
//! (its `Provider` and `Alert` kinds, its payloads), and announces policies
//! and automations that have stopped doing their job.
//!
//! It uses nothing but the public event contract and the configuration
//! bucket, which is what keeps the events a public API.
//!
//! - `flux_event` (pure): a tagrelay event as Flux's `eventv1.Event`;
//! - `routing` (pure): which Providers an event goes to;
//! - `payload` (pure): what each provider type sends;
//! - `stale` (pure): which objects are stuck;
//! - `deliver`: HTTP and NATS sends, Secrets;
//! - `service`: the consume loop's handler, the once-per-Provider record,
//!   the stuck-policy sweep;
//! - `process`: flags.

pub mod deliver;
pub mod flux_event;
pub mod payload;
pub mod process;
pub mod routing;
pub mod service;
pub mod stale;
