//! Any bytes as a push notification of any provider: parsing never panics,
//! never yields an empty repository, and a forged proof never authenticates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagrelay_scanner::webhook::payload::{authenticate, parse, Proof, Provider};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    for name in ["distribution", "dockerhub", "harbor", "quay", "ghcr"] {
        let Some(provider) = Provider::from_path(name) else { continue };
        if let Ok(pushes) = parse(provider, data) {
            for push in pushes {
                assert!(!push.repository.is_empty(), "{name}: empty repository");
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let proof = Proof {
        authorization: Some(&text),
        signature: Some(&text),
        token: Some(&text),
    };
    if authenticate(SECRET, &proof, data) {
        assert!(text.contains("fuzz-secret"), "authenticated without the secret");
    }
});
