//! What several `cli/tests/*.rs` binaries share.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `tagrelay` binary against `nats_url` with `args`, feeding it
/// `stdin` when given (`apply -f -`), and returns what it printed.
pub fn tagrelay(nats_url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .env("NATS_URL", nats_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tagrelay");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("tagrelay output")
}
