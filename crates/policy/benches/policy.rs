//! Policy selection over 10k and 100k realistic tags, per policy kind.
//!
//! Throughput is reported in tags (elements) per second; ns per tag is
//! 1e9 / throughput. The tag mix imitates a busy repository: releases with
//! and without `v`, prereleases, branch and sha tags, cosign signatures and
//! attestations, calver, timestamps, and a few odd ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tagrelay_policy::{compile, Choice, CompiledPolicy, FilterTags, Order, PolicyRules};

/// A small deterministic generator (no `rand` dependency for a bench).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }
}

fn mixed_tags(n: usize) -> Vec<String> {
    let mut rng = Lcg(42);
    (0..n)
        .map(|i| {
            let (major, minor, patch) = (rng.below(6), rng.below(30), rng.below(50));
            match rng.below(100) {
                0..=19 => format!("{major}.{minor}.{patch}"),
                20..=39 => format!("v{major}.{minor}.{patch}"),
                40..=49 => {
                    let kind = ["rc", "beta", "alpha"][rng.below(3) as usize];
                    format!("{major}.{minor}.{patch}-{kind}.{}", rng.below(20))
                }
                50..=54 => format!("{major}.{minor}.{patch}-rc{}", rng.below(20)),
                55..=64 => format!("main-{}", rng.hex(7)),
                65..=69 => format!("sha-{}", rng.hex(7)),
                70..=72 => format!("pr-{}", rng.below(5000)),
                73..=79 => format!("sha256-{}.sig", rng.hex(64)),
                80..=81 => format!("sha256-{}.att", rng.hex(64)),
                82..=86 => format!("2024.{:02}.{:02}", 1 + rng.below(12), 1 + rng.below(28)),
                87..=91 => format!("main-{}-{}", rng.hex(7), 1_700_000_000 + i),
                92..=94 => format!("{}", 1_700_000_000 + rng.below(10_000_000)),
                95 => "latest".to_string(),
                96 => "stable".to_string(),
                97 => format!("{major}.{minor}"),
                _ => format!("{major}.{minor}.{patch}-debian-12-r{}", rng.below(40)),
            }
        })
        .collect()
}

fn numeric_tags(n: usize) -> Vec<String> {
    let mut rng = Lcg(7);
    (0..n)
        .map(|_| match rng.below(10) {
            0 => format!("sha256-{}.sig", rng.hex(64)),
            1..=5 => format!("{}", 1_700_000_000 + rng.below(100_000_000)),
            _ => format!("{}", rng.below(100_000)),
        })
        .collect()
}

fn policy(choice: Choice, filter_tags: Option<FilterTags>) -> CompiledPolicy {
    match compile(&PolicyRules {
        choice,
        filter_tags,
        exclusion_list: None,
    }) {
        Ok(policy) => policy,
        Err(e) => panic!("bench policy does not compile: {e}"),
    }
}

/// One benchmarked policy and the tags it is fed.
struct Case {
    name: &'static str,
    policy: CompiledPolicy,
    tags: fn(usize) -> Vec<String>,
}

fn bench_policies(c: &mut Criterion) {
    let cases = [
        Case {
            name: "semver",
            policy: policy(
                Choice::Semver {
                    range: ">=1.0.0 <4.0.0".to_string(),
                },
                None,
            ),
            tags: mixed_tags,
        },
        Case {
            name: "semver_prerelease_or",
            policy: policy(
                Choice::Semver {
                    range: "^2.0.0-0 || ~3.1 || 1.2.3 - 1.9".to_string(),
                },
                None,
            ),
            tags: mixed_tags,
        },
        Case {
            name: "alphabetical",
            policy: policy(Choice::Alphabetical { order: Order::Asc }, None),
            tags: mixed_tags,
        },
        Case {
            name: "numerical",
            policy: policy(Choice::Numerical { order: Order::Asc }, None),
            tags: numeric_tags,
        },
        Case {
            name: "filter_extract_numerical",
            policy: policy(
                Choice::Numerical { order: Order::Asc },
                Some(FilterTags {
                    pattern: r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$".to_string(),
                    extract: Some("$ts".to_string()),
                }),
            ),
            tags: mixed_tags,
        },
    ];
    for case in &cases {
        let mut group = c.benchmark_group(case.name);
        group.sample_size(30);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for n in [10_000usize, 100_000] {
            // "shuffled": kinds of tags interleaved at random (worst case
            // for branch prediction); "sorted": byte order, as most
            // registries list tags.
            let shuffled = (case.tags)(n);
            let mut sorted = shuffled.clone();
            sorted.sort();
            for (order, tags) in [("shuffled", shuffled), ("sorted", sorted)] {
                // Every bench must choose something, or it measures an error.
                if let Err(e) = case.policy.select_tags(&tags) {
                    panic!("{} over {n} {order} tags chose nothing: {e}", case.name);
                }
                group.throughput(Throughput::Elements(n as u64));
                group.bench_with_input(BenchmarkId::new(order, n), &tags, |b, tags| {
                    b.iter(|| {
                        case.policy
                            .select_tags(black_box(tags))
                            .map(|s| s.tag.len())
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_policies);
criterion_main!(benches);
