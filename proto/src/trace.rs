//! W3C trace context across the bus, so one trace spans scanner → resolver
//! → committer.
//!
//! The publisher writes `traceparent` from the current span when an
//! OpenTelemetry layer is installed. When none is (tests, a CLI), it still
//! writes one derived from the envelope: the trace id is the chain's
//! correlation ULID (128 bits, the size of a trace id) and the span id comes
//! from the event id, so a chain keeps one trace id either way.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::event::Envelope;

/// The header name, lowercase as W3C specifies (NATS headers are
/// case-sensitive).
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` value to publish `envelope` with.
pub fn traceparent_for(envelope: &Envelope) -> String {
    let current = tracing::Span::current().context();
    let span = current.span();
    let context = span.span_context();
    if context.is_valid() {
        return format_traceparent(context);
    }
    let trace_id = ulid_bits(&envelope.correlation_id).unwrap_or(1);
    let span_id = ulid_bits(&envelope.id).map_or(1, |bits| bits as u64).max(1);
    format_traceparent(&SpanContext::new(
        TraceId::from(trace_id.max(1)),
        SpanId::from(span_id),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    ))
}

/// Parses a `traceparent` into a remote parent context, or `None` when the
/// header is absent or malformed (a bad header must never fail the work).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version == "ff"
        || trace_id.len() != 32
        || span_id.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes `span` a child of the remote context in `traceparent`, so the
/// consumer's work joins the publisher's trace.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = traceparent.and_then(parse_traceparent) {
        let parent = opentelemetry::Context::new().with_remote_span_context(context);
        let _ = span.set_parent(parent);
    }
}

fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

fn ulid_bits(id: &str) -> Option<u128> {
    ulid::Ulid::from_string(id).ok().map(u128::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{samples, Envelope};

    #[test]
    fn derived_traceparent_is_shared_by_a_chain_and_parses() {
        let root = Envelope::new("scanner/a", samples::all().remove(0));
        let child = Envelope::caused_by(&root, "resolver/a", samples::all().remove(1));
        let (a, b) = (traceparent_for(&root), traceparent_for(&child));
        let (ca, cb) = (
            parse_traceparent(&a).unwrap(),
            parse_traceparent(&b).unwrap(),
        );
        assert_eq!(ca.trace_id(), cb.trace_id());
        assert_ne!(ca.span_id(), cb.span_id());
        assert!(ca.is_sampled());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-abc-def-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(format_traceparent(&parse_traceparent(good).unwrap()), good);
    }
}
