//! Any bytes from the bus: decoding never panics, and what decodes
//! re-encodes to an equal event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagrelay_proto::event::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::from_json(data) {
        let Ok(bytes) = envelope.to_json() else { panic!("a decoded event must encode") };
        let again = Envelope::from_json(&bytes);
        assert_eq!(again.as_ref().ok(), Some(&envelope));
    }
});
