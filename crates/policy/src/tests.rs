//! Whole-policy tests: compile, then select, as the resolver and CLI will.

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn semver(range: &str) -> CompiledPolicy {
    compile(&PolicyRules::new(Choice::Semver {
        range: range.to_string(),
    }))
    .unwrap()
}

fn pick<'a>(policy: &CompiledPolicy, tags: &[&'a str]) -> Result<&'a str, SelectError> {
    policy.select_tags(tags.iter().copied()).map(|s| s.tag)
}

/// What each stage of `policy` sets aside among `tags`.
fn funnel_of(policy: &CompiledPolicy, tags: &[&str]) -> Funnel {
    policy.funnel(tags.iter().map(|tag| Candidate::from(*tag)))
}

fn alphabetical(order: Order) -> CompiledPolicy {
    compile(&PolicyRules::new(Choice::Alphabetical { order })).unwrap()
}

fn numerical(order: Order) -> CompiledPolicy {
    compile(&PolicyRules::new(Choice::Numerical { order })).unwrap()
}

fn with_filter(choice: Choice, pattern: &str, extract: Option<&str>) -> CompiledPolicy {
    compile(&PolicyRules {
        choice,
        filter_tags: Some(FilterTags {
            pattern: pattern.to_string(),
            extract: extract.map(str::to_string),
        }),
        exclusion_list: None,
    })
    .unwrap()
}

fn v1(filter: &str) -> CompiledPolicy {
    compile(&PolicyRules::new(Choice::FluxV1(V1Filter::parse(filter)))).unwrap()
}

fn at(seconds: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).single()
}

fn cand(tag: &str, created: Option<DateTime<Utc>>) -> Candidate<'_> {
    Candidate { tag, created }
}

// ---- semver -------------------------------------------------------------

#[test]
fn flux_semver_latest_table() {
    // fluxcd image-reflector-controller semver_test.go TestSemVer_Latest.
    assert_eq!(
        pick(
            &semver("1.0.x"),
            &["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"]
        ),
        Ok("1.0.1")
    );
    assert_eq!(
        pick(&semver("1.0.x"), &["v1.2.3", "v1.0.0", "v0.1.0"]),
        Ok("v1.0.0")
    );
    assert!(pick(&semver("1.0.x"), &["b1.2.3", "b1.0.0", "b0.1.0"]).is_err());
    assert_eq!(pick(&semver("1.0.x"), &[]), Err(SelectError::NoTags));
    assert!(matches!(
        pick(&semver("1.0.x"), &["1.2.0"]),
        Err(SelectError::NoneQualify { .. })
    ));
}

#[test]
fn semver_candidates_need_two_dots() {
    // `1.2` and `1` never count, even though the range reads them.
    assert!(matches!(
        pick(&semver(">=1"), &["1", "1.2", "v2"]),
        Err(SelectError::NoneQualify { .. })
    ));
    assert_eq!(pick(&semver(">=1"), &["1.2", "1.1.0", "v3"]), Ok("1.1.0"));
    // `1.2-rc.1` has two dots and reads as 1.2.0-rc.1.
    assert_eq!(
        pick(&semver(">=1.0.0-0"), &["1.2-rc.1", "1.1.9"]),
        Ok("1.2-rc.1")
    );
}

#[test]
fn semver_calver_with_leading_zeros() {
    let tags = ["v2025.06.30", "v2025.07.03", "v2025.07.01", "2024.12.31"];
    assert_eq!(pick(&semver(">=2025.0.0"), &tags), Ok("v2025.07.03"));
    assert_eq!(pick(&semver("<2025.07.02"), &tags), Ok("v2025.07.01"));
}

#[test]
fn semver_returns_the_registry_spelling() {
    assert_eq!(pick(&semver("^1"), &["v1.4.0", "1.3.0"]), Ok("v1.4.0"));
    assert_eq!(pick(&semver("^1"), &["01.04.00", "1.3.0"]), Ok("01.04.00"));
}

#[test]
fn semver_prereleases_only_when_the_branch_names_one() {
    let tags = ["1.0.0", "1.1.0-rc.1", "2.0.0-beta.1", "1.0.5"];
    assert_eq!(pick(&semver(">=1.0.0"), &tags), Ok("1.0.5"));
    assert_eq!(pick(&semver(">=1.0.0-0"), &tags), Ok("2.0.0-beta.1"));
    // 2.0.0-beta.1 is below 2.0.0, so `<2.0.0` lets it in once the branch
    // allows prereleases (Masterminds); `<2.0.0-0` keeps it out.
    assert_eq!(pick(&semver(">=1.0.0-0 <2.0.0"), &tags), Ok("2.0.0-beta.1"));
    assert_eq!(pick(&semver(">=1.0.0-0 <2.0.0-0"), &tags), Ok("1.1.0-rc.1"));
    // The prerelease-naming branch does not open the other one.
    assert_eq!(pick(&semver("~1.1.0-0 || >=2"), &tags), Ok("1.1.0-rc.1"));
}

#[test]
fn semver_rc9_above_rc10() {
    let tags = ["1.0.0-rc10", "1.0.0-rc9", "1.0.0-rc.10", "1.0.0-rc.9"];
    assert_eq!(pick(&semver(">=1.0.0-0"), &tags[..2]), Ok("1.0.0-rc9"));
    // Dotted numeric identifiers do compare as numbers.
    assert_eq!(pick(&semver(">=1.0.0-0"), &tags[2..]), Ok("1.0.0-rc.10"));
}

#[test]
fn semver_build_metadata_does_not_order() {
    // `+` is outside the OCI tag grammar, so build metadata only reaches a
    // policy through extract. Equal precedence: the tag last in byte order
    // wins, in any input order.
    let policy = with_filter(
        Choice::Semver {
            range: "1.0.0".to_string(),
        },
        r"^([0-9.]+)_?(.*)$",
        Some("$1+b$2"),
    );
    let tags = ["1.0.0_20240201", "1.0.0_20240101", "1.0.0"];
    assert_eq!(pick(&policy, &tags), Ok("1.0.0_20240201"));
    let reversed = ["1.0.0", "1.0.0_20240101", "1.0.0_20240201"];
    assert_eq!(pick(&policy, &reversed), Ok("1.0.0_20240201"));
    assert_eq!(pick(&semver("^1"), &["1.0.0", "v1.0.0"]), Ok("v1.0.0"));
    assert_eq!(pick(&semver("^1"), &["v1.0.0", "1.0.0"]), Ok("v1.0.0"));
    // `=1.0.0` matches whatever the build; a higher version beats any build.
    assert_eq!(
        pick(&policy, &["1.0.0_99999999", "1.0.1"]),
        Ok("1.0.0_99999999")
    );
    let any = with_filter(
        Choice::Semver {
            range: "^1".to_string(),
        },
        r"^([0-9.]+)_?(.*)$",
        Some("$1+b$2"),
    );
    assert_eq!(pick(&any, &["1.0.0_99999999", "1.0.1"]), Ok("1.0.1"));
    // And a tag with `+` is never a candidate.
    let tags = ["1.0.0+b", "1.0.0"];
    assert_eq!(pick(&semver("^1"), &tags), Ok("1.0.0"));
    assert_eq!(funnel_of(&semver("^1"), &tags).invalid, 1);
}

#[test]
fn semver_funnel_explains_an_empty_result() {
    let tags = [
        "sha256-abc.sig",
        "bad tag",
        "main",
        "1.2",
        "3.0.0",
        "0.9.0",
        "2.0.0-rc.1",
    ];
    let err = pick(&semver("^1"), &tags).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no tag qualifies for semver range \"^1\": 7 tags, of which 1 excluded by exclusionList, \
         1 not valid OCI tags, 2 not versions, 3 outside the range"
    );
    let tags = ["1.0.0", "main", "x.sig"];
    let ok = semver(">=0").select_tags(tags).unwrap();
    assert_eq!(ok.extracted, None);
    let funnel = funnel_of(&semver(">=0"), &tags);
    assert_eq!(funnel.qualified, 1);
    assert_eq!(funnel.not_version, 1);
    assert_eq!(funnel.excluded, 1);
}

#[test]
fn bad_range_names_field_and_part() {
    let err = compile(&PolicyRules::new(Choice::Semver {
        range: ">=1.0 <2.x.q".to_string(),
    }))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.policy.semver.range: invalid range \">=1.0 <2.x.q\" at \"2.x.q\": \
         is not a version: each part must be a number or x, X, *"
    );
    let err = compile(&PolicyRules::new(Choice::Semver {
        range: String::new(),
    }))
    .unwrap_err();
    assert!(matches!(
        err,
        PolicyError::Range {
            field: SEMVER_RANGE_FIELD,
            ..
        }
    ));
}

// ---- alphabetical -------------------------------------------------------

#[test]
fn flux_alphabetical_table() {
    // fluxcd image-reflector-controller alphabetical_test.go.
    let calver = ["16.04", "16.04.1", "16.10", "20.04", "20.10"];
    assert_eq!(pick(&alphabetical(Order::Asc), &calver), Ok("20.10"));
    assert_eq!(pick(&alphabetical(Order::Desc), &calver), Ok("16.04"));
    let names = ["xenial", "yakkety", "zesty", "artful", "bionic"];
    assert_eq!(pick(&alphabetical(Order::Asc), &names), Ok("zesty"));
    assert_eq!(pick(&alphabetical(Order::Desc), &names), Ok("artful"));
    let stamps = [
        "1606234201",
        "1606364286",
        "1606334092",
        "1606334284",
        "1606334201",
    ];
    assert_eq!(pick(&alphabetical(Order::Asc), &stamps), Ok("1606364286"));
    assert_eq!(pick(&alphabetical(Order::Desc), &stamps), Ok("1606234201"));
    let prefixed = [
        "rel-1606234201",
        "rel-1606364286",
        "rel-1606334092",
        "rel-1606334284",
        "rel-1606334201",
    ];
    assert_eq!(
        pick(&alphabetical(Order::Asc), &prefixed),
        Ok("rel-1606364286")
    );
    assert_eq!(
        pick(&alphabetical(Order::Asc), &[]),
        Err(SelectError::NoTags)
    );
}

#[test]
fn alphabetical_is_byte_order() {
    // Uppercase sorts before lowercase; no locale, no natural order.
    assert_eq!(pick(&alphabetical(Order::Asc), &["a", "B", "Z"]), Ok("a"));
    assert_eq!(pick(&alphabetical(Order::Desc), &["a", "B", "Z"]), Ok("B"));
    assert_eq!(pick(&alphabetical(Order::Asc), &["v9", "v10"]), Ok("v9"));
}

#[test]
fn order_parse_like_flux() {
    assert_eq!(Order::parse(ALPHABETICAL_ORDER_FIELD, ""), Ok(Order::Asc));
    assert_eq!(
        Order::parse(ALPHABETICAL_ORDER_FIELD, "asc"),
        Ok(Order::Asc)
    );
    assert_eq!(
        Order::parse(ALPHABETICAL_ORDER_FIELD, "ASC"),
        Ok(Order::Asc)
    );
    assert_eq!(Order::parse(NUMERICAL_ORDER_FIELD, "desc"), Ok(Order::Desc));
    assert_eq!(Order::parse(NUMERICAL_ORDER_FIELD, "Desc"), Ok(Order::Desc));
    let err = Order::parse(NUMERICAL_ORDER_FIELD, "invalid").unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.policy.numerical.order: invalid order \"invalid\": must be asc or desc"
    );
}

// ---- numerical ----------------------------------------------------------

#[test]
fn flux_numerical_table() {
    // fluxcd image-reflector-controller numerical_test.go (the shuffles
    // there are fixed permutations here, plus their reversals).
    let cases: &[(&[&str], Order, &str)] = &[
        (
            &[
                "-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91",
            ],
            Order::Asc,
            "73",
        ),
        (
            &["5", "-8", "-78", "25", "70", "-4", "80", "92", "-20", "-24"],
            Order::Desc,
            "-78",
        ),
        (
            &[
                "47.40896403322944",
                "-27.8520927455902",
                "-27.930666514224427",
                "-31.352485948094568",
                "-50.41072694704882",
                "-21.962849842263736",
                "24.71884721436865",
                "-39.99177354004344",
                "53.47333823144817",
                "3.2008658570411086",
            ],
            Order::Asc,
            "53.47333823144817",
        ),
        (
            &[
                "-65.27202780220686",
                "57.82948329142309",
                "22.40184684363291",
                "-86.36934305697784",
                "-90.29082099756083",
                "-12.041712603564264",
                "77.70488240399305",
                "-38.98425003883552",
                "16.06867070412028",
                "53.735674335181216",
            ],
            Order::Desc,
            "-90.29082099756083",
        ),
        (
            &[
                "1606234201",
                "1606364286",
                "1606334092",
                "1606334284",
                "1606334201",
            ],
            Order::Asc,
            "1606364286",
        ),
        (
            &[
                "1606234201",
                "1606364286",
                "1606334092",
                "1606334284",
                "1606334201",
            ],
            Order::Desc,
            "1606234201",
        ),
        (&["1"], Order::Asc, "1"),
        (&["1"], Order::Desc, "1"),
    ];
    for &(tags, order, want) in cases {
        // Tags starting with '-' are not OCI tags; Flux's table feeds
        // Latest() directly, so do that through filterTags + extract.
        let policy = with_filter(Choice::Numerical { order }, "^n(.*)$", Some("$1"));
        let prefixed: Vec<String> = tags.iter().map(|t| format!("n{t}")).collect();
        let got = policy.select_tags(&prefixed).unwrap();
        assert_eq!(got.tag, format!("n{want}"), "{tags:?} {order:?}");
        let reversed: Vec<String> = prefixed.iter().rev().cloned().collect();
        assert_eq!(policy.select_tags(&reversed).unwrap().tag, got.tag);
    }
}

#[test]
fn numerical_fails_naming_the_tag() {
    // Flux table: ["0", "1a", "b"] is an error.
    let err = pick(&numerical(Order::Asc), &["0", "1a", "b"]).unwrap_err();
    assert_eq!(
        err,
        SelectError::NotANumber {
            tag: "1a".to_string(),
            extracted: None,
            others: 1,
        }
    );
    assert_eq!(
        err.to_string(),
        "numerical policy: tag \"1a\" is not a number (and 1 other tag); \
         use spec.filterTags to keep only numeric tags"
    );
    let err = pick(&numerical(Order::Asc), &["1", "latest"]).unwrap_err();
    assert!(
        err.to_string().contains("tag \"latest\" is not a number;"),
        "{err}"
    );
    // Flux's float parser would take these; we refuse them as numbers.
    for tag in ["inf", "NaN", "Infinity"] {
        assert!(matches!(
            pick(&numerical(Order::Asc), &["1", tag]),
            Err(SelectError::NotANumber { .. })
        ));
    }
    // Excluded and filtered tags are not candidates, so they cannot fail it.
    assert_eq!(pick(&numerical(Order::Asc), &["5", "x.sig"]), Ok("5"));
    let filtered = with_filter(Choice::Numerical { order: Order::Asc }, "^[0-9]+$", None);
    assert_eq!(pick(&filtered, &["5", "latest", "12"]), Ok("12"));
}

#[test]
fn numerical_extracted_value_named_in_error() {
    let policy = with_filter(
        Choice::Numerical { order: Order::Asc },
        r"^build-(?P<n>.*)$",
        Some("$n"),
    );
    let err = pick(&policy, &["build-3", "build-x"]).unwrap_err();
    assert_eq!(
        err,
        SelectError::NotANumber {
            tag: "build-x".to_string(),
            extracted: Some("x".to_string()),
            others: 0,
        }
    );
    assert!(err.to_string().contains("(extracted value \"x\")"), "{err}");
}

#[test]
fn numerical_is_exact_and_ties_are_deterministic() {
    let stamps = ["1700000000000000001", "1700000000000000000"];
    assert_eq!(
        pick(&numerical(Order::Asc), &stamps),
        Ok("1700000000000000001")
    );
    assert_eq!(
        pick(&numerical(Order::Desc), &stamps),
        Ok("1700000000000000000")
    );
    // 1, 01 and 1.0 are one number: the tag last in byte order wins.
    assert_eq!(pick(&numerical(Order::Asc), &["1.0", "01", "1"]), Ok("1.0"));
    assert_eq!(pick(&numerical(Order::Asc), &["1", "01", "1.0"]), Ok("1.0"));
    assert_eq!(pick(&numerical(Order::Desc), &["1", "1.0", "2"]), Ok("1.0"));
}

// ---- filterTags ---------------------------------------------------------

#[test]
fn filter_then_rank_by_extracted_value_returning_the_original_tag() {
    let tags = [
        "main-abc1234-1700000300",
        "main-def5678-1700000100",
        "pr-12-1700000900",
        "main-0a0a0a0-1700000200",
        "1.0.0",
    ];
    let policy = with_filter(
        Choice::Numerical { order: Order::Asc },
        r"^main-[a-f0-9]+-(?P<ts>[0-9]+)",
        Some("$ts"),
    );
    let got = policy.select_tags(tags).unwrap();
    assert_eq!(got.tag, "main-abc1234-1700000300");
    assert_eq!(got.extracted.as_deref(), Some("1700000300"));
    let funnel = funnel_of(&policy, &tags);
    assert_eq!(funnel.unmatched, 2);
    assert_eq!(funnel.qualified, 3);

    let semver_on_extract = with_filter(
        Choice::Semver {
            range: "^1".to_string(),
        },
        r"^app-(v?[0-9.]+)$",
        Some("$1"),
    );
    assert_eq!(
        pick(
            &semver_on_extract,
            &["app-1.2.0", "app-v1.10.0", "app-2.0.0", "1.99.0"]
        ),
        Ok("app-v1.10.0")
    );

    let alpha = with_filter(
        Choice::Alphabetical { order: Order::Desc },
        r"^rel-(.+)$",
        Some("${1}"),
    );
    assert_eq!(pick(&alpha, &["rel-b", "rel-a", "a"]), Ok("rel-a"));
}

#[test]
fn extract_collisions_resolve_to_the_greatest_original_tag() {
    // Both extract to 100; in either input order the same tag wins.
    let policy = with_filter(
        Choice::Numerical { order: Order::Asc },
        r"^main-[a-z]+-(\d+)$",
        Some("$1"),
    );
    let tags = ["main-abc-100", "main-def-100", "main-zzz-99"];
    assert_eq!(pick(&policy, &tags), Ok("main-def-100"));
    let reversed = ["main-zzz-99", "main-def-100", "main-abc-100"];
    assert_eq!(pick(&policy, &reversed), Ok("main-def-100"));
    // Also for alphabetical and semver.
    let alpha = with_filter(
        Choice::Alphabetical { order: Order::Asc },
        r"-(\w)$",
        Some("$1"),
    );
    assert_eq!(pick(&alpha, &["x-b", "y-b", "z-a"]), Ok("y-b"));
    let alpha_desc = with_filter(
        Choice::Alphabetical { order: Order::Desc },
        r"-(\w)$",
        Some("$1"),
    );
    assert_eq!(pick(&alpha_desc, &["x-a", "y-a", "z-b"]), Ok("y-a"));
    let sem = with_filter(
        Choice::Semver {
            range: "*".to_string(),
        },
        r"^[a-z]+-(.*)$",
        Some("$1"),
    );
    assert_eq!(pick(&sem, &["b-1.0.0", "a-1.0.0"]), Ok("b-1.0.0"));
}

#[test]
fn filter_errors_name_the_field() {
    let err = compile(&PolicyRules {
        choice: Choice::Alphabetical { order: Order::Asc },
        filter_tags: Some(FilterTags {
            pattern: "main-(".to_string(),
            extract: None,
        }),
        exclusion_list: None,
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("spec.filterTags.pattern: invalid regular expression \"main-(\""),
        "{err}"
    );
    let err = compile(&PolicyRules {
        choice: Choice::Alphabetical { order: Order::Asc },
        filter_tags: Some(FilterTags {
            pattern: "main-(.*)".to_string(),
            extract: Some("$name".to_string()),
        }),
        exclusion_list: None,
    })
    .unwrap_err();
    assert!(matches!(err, PolicyError::Extract { .. }), "{err}");
    assert!(
        err.to_string().starts_with("spec.filterTags.extract:"),
        "{err}"
    );
}

// ---- exclusionList and the OCI grammar ----------------------------------

#[test]
fn exclusion_list_defaults_to_signatures_and_applies_first() {
    let tags = ["sha256-0123.sig", "1.0.0"];
    // Alphabetically "sha256-..." would win; the default excludes it.
    assert_eq!(pick(&alphabetical(Order::Asc), &tags), Ok("1.0.0"));
    // An explicit empty list excludes nothing.
    let none = compile(&PolicyRules {
        choice: Choice::Alphabetical { order: Order::Asc },
        filter_tags: None,
        exclusion_list: Some(Vec::new()),
    })
    .unwrap();
    assert_eq!(pick(&none, &tags), Ok("sha256-0123.sig"));
    // A custom list replaces the default; it applies before filterTags.
    let custom = compile(&PolicyRules {
        choice: Choice::Alphabetical { order: Order::Asc },
        filter_tags: Some(FilterTags {
            pattern: "^v".to_string(),
            extract: None,
        }),
        exclusion_list: Some(vec!["-dev$".to_string()]),
    })
    .unwrap();
    let tags = ["v2-dev", "v1", "z.sig"];
    assert_eq!(pick(&custom, &tags), Ok("v1"));
    let funnel = funnel_of(&custom, &tags);
    assert_eq!(funnel.excluded, 1);
    assert_eq!(funnel.unmatched, 1);
    let err = compile(&PolicyRules {
        choice: Choice::NewestBuild,
        filter_tags: None,
        exclusion_list: Some(vec!["[".to_string()]),
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with("spec.exclusionList[0]:"),
        "{err}"
    );
}

#[test]
fn tags_outside_the_oci_grammar_are_never_chosen() {
    let long = format!("z{}", "a".repeat(128));
    let tags = ["zz\ninjected", "z z", "-z", ".z", long.as_str(), "éz", "a"];
    assert_eq!(pick(&alphabetical(Order::Asc), &tags), Ok("a"));
    assert_eq!(funnel_of(&alphabetical(Order::Asc), &tags).invalid, 6);
    assert!(matches!(
        pick(&alphabetical(Order::Asc), &["bad tag"]),
        Err(SelectError::NoneQualify { .. })
    ));
}

/// The same semver policy twice: plain (its own pass, counting nothing) and
/// with `.*` as a tag filter, which sends it down the counting pass.
fn plain_and_counted(range: &str, exclusion_list: Option<Vec<String>>) -> [CompiledPolicy; 2] {
    let rules = |filter_tags| PolicyRules {
        choice: Choice::Semver {
            range: range.to_string(),
        },
        filter_tags,
        exclusion_list: exclusion_list.clone(),
    };
    [
        compile(&rules(None)).unwrap(),
        compile(&rules(Some(FilterTags {
            pattern: ".*".to_string(),
            extract: None,
        })))
        .unwrap(),
    ]
}

#[test]
fn plain_semver_chooses_and_explains_as_the_counting_pass_does() {
    let long_version = format!("1.0.0-{}", "a".repeat(130));
    let tags = [
        "1.2.3",
        "v1.9.0",
        "1.9.0",
        "1.9.0+build.1",
        long_version.as_str(),
        "2.0.0-rc.1",
        "5.0.0",
        "0.9.0",
        "1.2",
        "latest",
        "bad tag",
        "bad\ntag.sig",
        "sha256-abc.sig",
        "éz",
        "v",
    ];
    let [plain, counted] = plain_and_counted(">=1.0.0 <4.0.0", None);
    assert_eq!(
        pick(&plain, &tags),
        Ok("v1.9.0"),
        "equal versions: last in byte order"
    );
    assert_eq!(pick(&counted, &tags), Ok("v1.9.0"));
    let expected = Funnel {
        total: 15,
        excluded: 1,
        invalid: 5,
        not_version: 3,
        out_of_range: 3,
        qualified: 3,
        ..Funnel::default()
    };
    assert_eq!(funnel_of(&plain, &tags), expected);
    // Nothing qualifies: the plain pass hands over to the counting pass,
    // whose error says why.
    let err = pick(&plain, &["5.0.0", "main", "1.0.0+b"]).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "3 tags, of which 1 not valid OCI tags, 1 not versions, 1 outside the range"
        ),
        "{err}"
    );
}

#[test]
fn plain_semver_agrees_with_the_counting_pass_on_random_tag_sets() {
    // Ties, prereleases, build metadata, leading zeros, excluded versions,
    // too-long and invalid tags, in random subsets and orders, under ranges
    // of every operator and under default, empty and custom exclusion lists.
    let long_version = format!("1.0.0-{}", "a".repeat(130));
    let pool = [
        "1.2.3",
        "v1.2.3",
        "01.2.3",
        "1.2.3-rc.1",
        "1.2.3-rc.9",
        "1.2.3-rc.10",
        "1.2.3-rc9",
        "1.2.3+b",
        "v2.0.0",
        "2.0.0-0",
        "2.0.0-alpha.beta",
        "3.1.4",
        "3.1.4-x-y",
        "3.99.99",
        "4.0.0",
        "0.0.1",
        "1.10.0",
        "1.9.9-beta",
        "2024.01.02",
        "1.2",
        "1",
        "v",
        "latest",
        "1.2.3.sig",
        "v3.1.4.sig",
        "sha256-abc.sig",
        "bad tag",
        "1.2.3_4",
        long_version.as_str(),
    ];
    let ranges = [
        ">=1.0.0 <4.0.0",
        "^2.0.0-0 || ~3.1 || 1.2.3 - 1.9",
        "*",
        ">=0.0.0-0",
        "~1.2",
        "!=1.2.3",
        "<1.2.3-rc.10",
        "1.x",
    ];
    let exclusion_lists = [
        None,
        Some(vec![]),
        Some(vec!["^v".to_string(), "rc".to_string()]),
    ];
    let mut seed: u64 = 7;
    let mut next = |below: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % below
    };
    let mut compared = 0;
    for range in ranges {
        for exclusions in &exclusion_lists {
            let [plain, counted] = plain_and_counted(range, exclusions.clone());
            for _ in 0..300 {
                let tags: Vec<&str> = (0..next(12)).map(|_| pool[next(pool.len())]).collect();
                let fast = pick(&plain, &tags);
                let slow = pick(&counted, &tags);
                assert_eq!(
                    fast.as_ref().ok(),
                    slow.as_ref().ok(),
                    "{range:?} {exclusions:?} {tags:?}"
                );
                assert_eq!(
                    fast.as_ref().err().map(std::mem::discriminant),
                    slow.as_ref().err().map(std::mem::discriminant),
                    "{range:?} {exclusions:?} {tags:?}"
                );
                compared += usize::from(fast.is_ok());
            }
        }
    }
    // Most sets must have had a winner, or the comparison proves little.
    assert!(compared > 3000, "only {compared} selections chose a tag");
}

// ---- Flux v1 ------------------------------------------------------------

#[test]
fn v1_semver_filter_is_lenient_and_ordered_by_version() {
    // fluxcd/flux pattern_test.go TestSemverPattern_Matches, as selections.
    assert_eq!(
        pick(&v1("semver:*"), &["1", "1.0", "v1.0.3", "latest"]),
        Ok("v1.0.3")
    );
    assert!(matches!(
        pick(&v1("semver:*"), &["latest", "2.0.1-alpha.1"]),
        Err(SelectError::NoneQualify { .. })
    ));
    assert_eq!(pick(&v1("semver:~1"), &["v1", "1.2", "2.0.0"]), Ok("1.2"));
    assert_eq!(pick(&v1("semver:~1"), &["v1"]), Ok("v1"));
    assert_eq!(
        pick(&v1("semver:2.0.1-alpha.1"), &["2.0.1", "2.0.1-alpha.1"]),
        Ok("2.0.1-alpha.1")
    );
    // Equal versions: the tag last in byte order (NewerBySemver: 1.10.0
    // over 1.10).
    assert_eq!(pick(&v1("semver:^1"), &["1.10.0", "1.10"]), Ok("1.10.0"));
    assert_eq!(pick(&v1("semver:^1"), &["1.10", "1.10.0"]), Ok("1.10.0"));
    // Creation times play no part.
    let got = v1("semver:^1")
        .select([cand("1.2.0", at(0)), cand("1.1.0", at(100))])
        .unwrap();
    assert_eq!(got.tag, "1.2.0");
    assert!(!v1("semver:^1").needs_created());
}

#[test]
fn v1_glob_and_regex_order_by_creation_time() {
    let images = [
        cand("master-a", at(10)),
        cand("master-b", at(30)),
        cand("master-c", at(20)),
        cand("dev-x", at(99)),
    ];
    let glob = v1("glob:master-*");
    assert!(glob.needs_created());
    assert_eq!(glob.select(images).unwrap().tag, "master-b");
    assert_eq!(v1("master-*").select(images).unwrap().tag, "master-b");
    let regex = v1("regex:^master-[ac]$");
    assert_eq!(regex.select(images).unwrap().tag, "master-c");
    assert_eq!(v1("regexp:^dev").select(images).unwrap().tag, "dev-x");
    // fluxcd/flux TestRegexpPattern_Matches.
    let sha = v1(r"regex:^\w{7}(?:\w)?$");
    let shas = [
        cand("af14eb2", at(1)),
        cand("bb73ed94", at(3)),
        cand("946427ff", at(2)),
        cand("946427ff-foo", at(9)),
        cand("foo", at(9)),
    ];
    assert_eq!(sha.select(shas).unwrap().tag, "bb73ed94");
}

#[test]
fn v1_latest_is_never_chosen_unless_asked_for() {
    let images = [
        cand("latest", at(100)),
        cand("LATEST", at(90)),
        cand("1.0", at(1)),
    ];
    for filter in ["glob:*", "*", "regex:.*", "glob:*t*"] {
        let got = v1(filter).select(images);
        let want = if filter == "glob:*t*" {
            None
        } else {
            Some("1.0")
        };
        assert_eq!(got.as_ref().ok().map(|s| s.tag), want, "{filter}");
    }
    let newest = compile(&PolicyRules::new(Choice::NewestBuild)).unwrap();
    assert_eq!(newest.select(images).unwrap().tag, "1.0");
    assert_eq!(newest.funnel(images).latest, 2);
    // Exactly glob:latest (or latest, glob being the default) picks it.
    assert_eq!(v1("glob:latest").select(images).unwrap().tag, "latest");
    assert_eq!(v1("latest").select(images).unwrap().tag, "latest");
    let err = v1("glob:*t*").select(images).unwrap_err();
    assert!(err.to_string().contains("2 named latest"), "{err}");
}

#[test]
fn newest_build_ties_and_missing_times() {
    let newest = compile(&PolicyRules::new(Choice::NewestBuild)).unwrap();
    assert!(newest.needs_created());
    // Equal times: the tag first in byte order (Flux v1 NewerByCreated).
    let tie = [cand("b", at(5)), cand("a", at(5)), cand("c", at(1))];
    assert_eq!(newest.select(tie).unwrap().tag, "a");
    let tie_reversed = [cand("c", at(1)), cand("a", at(5)), cand("b", at(5))];
    assert_eq!(newest.select(tie_reversed).unwrap().tag, "a");
    // A missing time ranks below any known time.
    let partial = [cand("a", None), cand("b", at(1))];
    assert_eq!(newest.select(partial).unwrap().tag, "b");
    // One candidate needs no time; several without any time are refused.
    assert_eq!(newest.select([cand("only", None)]).unwrap().tag, "only");
    let err = newest
        .select([cand("a", None), cand("b", None)])
        .unwrap_err();
    assert_eq!(err, SelectError::NoCreationTime { candidates: 2 });
    let got = newest.select([cand("x", at(3))]).unwrap();
    assert_eq!(got.created, at(3));
}

#[test]
fn v1_filter_errors() {
    let err = compile(&PolicyRules::new(Choice::FluxV1(V1Filter::parse(
        "semver:~1.x.q",
    ))))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fluxcd.io/tag: invalid range \"~1.x.q\""),
        "{err}"
    );
    let err = compile(&PolicyRules::new(Choice::FluxV1(V1Filter::parse(
        "regex:(",
    ))))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fluxcd.io/tag: invalid regular expression"),
        "{err}"
    );
    let err = compile(&PolicyRules {
        choice: Choice::FluxV1(V1Filter::parse("glob:*")),
        filter_tags: Some(FilterTags {
            pattern: "x".to_string(),
            extract: None,
        }),
        exclusion_list: None,
    })
    .unwrap_err();
    assert_eq!(err, PolicyError::FilterTagsWithV1);
    // An empty filter is a glob matching only the empty tag: nothing.
    assert!(matches!(
        v1("").select([cand("1.0", at(1))]),
        Err(SelectError::NoneQualify { .. })
    ));
}

// ---- API shape ----------------------------------------------------------

#[test]
fn descriptions() {
    assert_eq!(semver(">=1").description(), "semver range \">=1\"");
    assert_eq!(
        alphabetical(Order::Desc).description(),
        "alphabetical order (desc)"
    );
    assert_eq!(numerical(Order::Asc).description(), "numerical order (asc)");
    assert_eq!(v1("regexp:^a").description(), "Flux v1 filter regex:^a");
    assert_eq!(
        compile(&PolicyRules::new(Choice::NewestBuild))
            .unwrap()
            .description(),
        "newest image by creation time"
    );
}

#[test]
fn compiled_policies_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledPolicy>();
}

// ---- robustness ---------------------------------------------------------

/// Deterministic junk from an alphabet of grammar characters, whitespace and
/// multi-byte characters: no parser may panic on it, whatever it makes of it.
#[test]
fn no_input_makes_any_parser_panic() {
    let alphabet: Vec<char> = "0123456789vVxX*.-+_|,<>=!~^ \t\nabcrz$(){}[]?\\éü€😀"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let any_version = semver("*");
    let any_number = numerical(Order::Desc);
    let v1_versions = v1("semver:>=0");
    let extracting = with_filter(
        Choice::Numerical { order: Order::Asc },
        "^(.*)$",
        Some("$1"),
    );
    for round in 0..20_000 {
        let len = next(14);
        let text: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
        // Hand-written parsers: ranges, versions, numbers, globs.
        let _ = compile(&PolicyRules::new(Choice::Semver {
            range: text.clone(),
        }));
        let _ = parse_tag_version(&text);
        for policy in [&any_version, &any_number, &v1_versions, &extracting] {
            let _ = policy.select_tags([text.as_str(), "1.0.0"]);
        }
        let _ = v1(&format!("glob:{text}")).select_tags([text.as_str(), "a"]);
        // Regex compilation is slow in debug builds: fewer rounds.
        if round % 20 == 0 {
            let _ = compile(&PolicyRules::new(Choice::FluxV1(V1Filter::parse(&text))));
            let _ = compile(&PolicyRules {
                choice: Choice::Numerical { order: Order::Asc },
                filter_tags: Some(FilterTags {
                    pattern: "^(.*)$".to_string(),
                    extract: Some(text.clone()),
                }),
                exclusion_list: Some(vec![text.clone()]),
            });
        }
    }
}
