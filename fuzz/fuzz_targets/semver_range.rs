//! Any range text: compiling never panics, and a compiled range selects
//! only from the offered tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagrelay_policy::{compile, Choice, PolicyRules, V1Filter};

const TAGS: [&str; 12] = [
    "1.0.0", "1.2.3", "v1.10.0", "2.0.0-rc.1", "2.0.0", "0.0.1", "1.2", "10.20.30+build.1",
    "1.0.0-rc9", "1.0.0-rc10", "v2025.07.03", "latest",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for choice in [
        Choice::Semver { range: text.to_string() },
        Choice::FluxV1(V1Filter::parse(text)),
    ] {
        if let Ok(policy) = compile(&PolicyRules::new(choice)) {
            if let Ok(selected) = policy.select_tags(TAGS.iter().copied()) {
                assert!(TAGS.contains(&selected.tag));
            }
        }
    }
});
