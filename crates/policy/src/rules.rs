//! From Flux YAML to the policy engine's rules: the one place that knows
//! both the configuration kinds and the engine, so the engine stays free of
//! configuration types and the service free of ranking details.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tagrelay_proto::config::{ImagePolicySpec, ObjectMeta, FLUX_V1_FILTER_ANNOTATION};
use tagrelay_proto::event::{FailureReason, ImageMetadata, SelectedImage};
use tagrelay_proto::state::HeldBack;

use crate::age::Ages;

use crate::{
    compile, Candidate, Choice, CompiledPolicy, FilterTags, Order, PolicyError, PolicyRules,
    SelectError, V1Filter, ALPHABETICAL_ORDER_FIELD, NUMERICAL_ORDER_FIELD,
};

/// Why a stored ImagePolicy cannot become engine rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The engine refused the rules.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Why [`PolicyCache::select_image`] chose no image: the policy's fault or the tags'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectImageError {
    /// The rules do not compile.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The tags give the policy nothing it can choose.
    #[error(transparent)]
    Select(#[from] SelectError),
}

impl SelectImageError {
    /// The kind of failure a `ResolveFailed` records for this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            SelectImageError::Policy(_) => FailureReason::InvalidSpec,
            SelectImageError::Select(_) => FailureReason::NoTagSelected,
        }
    }
}

/// The engine rules of an ImagePolicy, given its repository's
/// `exclusionList` (`None`: Flux's default).
pub fn policy_rules(
    metadata: &ObjectMeta,
    spec: &ImagePolicySpec,
    exclusion_list: Option<Vec<String>>,
) -> Result<PolicyRules, RulesError> {
    let choice = if let Some(filter) = metadata.annotations.get(FLUX_V1_FILTER_ANNOTATION) {
        if filter.trim().is_empty() {
            Choice::NewestBuild
        } else {
            Choice::FluxV1(V1Filter::parse(filter))
        }
    } else if let Some(semver) = &spec.policy.semver {
        Choice::Semver {
            range: semver.range.clone(),
        }
    } else if let Some(alphabetical) = &spec.policy.alphabetical {
        Choice::Alphabetical {
            order: Order::parse(
                ALPHABETICAL_ORDER_FIELD,
                alphabetical.order.as_deref().unwrap_or(""),
            )?,
        }
    } else if let Some(numerical) = &spec.policy.numerical {
        Choice::Numerical {
            order: Order::parse(
                NUMERICAL_ORDER_FIELD,
                numerical.order.as_deref().unwrap_or(""),
            )?,
        }
    } else {
        // No `spec.policy`: the guides' "most recent" image, the newest by
        // creation time, as Flux v1's automation without a filter chose.
        Choice::NewestBuild
    };
    let filter_tags = spec.filter_tags.as_ref().map(|f| FilterTags {
        pattern: f.pattern.clone().unwrap_or_default(),
        extract: f.extract.clone(),
    });
    Ok(PolicyRules {
        choice,
        filter_tags,
        exclusion_list,
    })
}

/// Compiles an ImagePolicy, as `tagrelay apply` does to refuse a bad range
/// or pattern before storing it.
pub fn compile_policy(
    metadata: &ObjectMeta,
    spec: &ImagePolicySpec,
    exclusion_list: Option<Vec<String>>,
) -> Result<CompiledPolicy, RulesError> {
    Ok(compile(&policy_rules(metadata, spec, exclusion_list)?)?)
}

/// A stable hash of everything that decides a policy's choice, stored with
/// its selection so a changed policy is re-evaluated.
pub fn rules_hash(rules: &PolicyRules, reflects_digest: bool) -> String {
    let text = format!("{rules:?}|digest={reflects_digest}");
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Whether the policy's selection carries the image digest
/// (`digestReflectionPolicy: IfNotPresent` or `Always`).
pub fn reflects_digest(spec: &ImagePolicySpec) -> bool {
    matches!(
        spec.digest_reflection_policy.as_deref(),
        Some("IfNotPresent" | "Always")
    )
}

/// The field path a rules error is about and the reason without it, so
/// `tagrelay apply` can print `file:line: kind/ns/name: field: reason`.
pub fn error_field(error: &RulesError) -> (String, String) {
    let field = match error {
        RulesError::Policy(e) => match e {
            PolicyError::Range { field, .. } | PolicyError::Order { field, .. } => {
                field.to_string()
            }
            PolicyError::Regex { field, .. } => field.clone(),
            PolicyError::Extract { .. } => "spec.filterTags.extract".to_string(),
            PolicyError::FilterTagsWithV1 => "spec.filterTags".to_string(),
        },
    };
    let text = error.to_string();
    let reason = text
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&text)
        .to_string();
    (field, reason)
}

/// A decision behind a release-age gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedImage {
    /// What the policy selects among the tags old enough (`None`: none is).
    pub selected: Option<SelectedImage>,
    /// What it would select without the gate, when that differs.
    pub held_back: Option<HeldBack>,
    /// When the next younger tag comes of age.
    pub recheck_at: Option<DateTime<Utc>>,
}

/// How many compiled policies a [`PolicyCache`] keeps before starting
/// over: far more than a fleet's distinct policies, small in memory.
const POLICY_CACHE_CAPACITY: usize = 4096;

/// Compiled policies keyed by the hash of their rules, so a policy's
/// ranges and regular expressions are compiled once, not on every
/// evaluation, retry and replayed decision. Rules that change hash
/// differently and are compiled afresh; nothing is ever stale.
#[derive(Default)]
pub struct PolicyCache {
    compiled: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
}

impl PolicyCache {
    /// `rules` compiled, from the cache when the same rules were compiled
    /// before.
    pub fn compiled(&self, rules: &PolicyRules) -> Result<Arc<CompiledPolicy>, PolicyError> {
        let key = rules_hash(rules, false);
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(compile(rules)?);
        let mut cache = self.lock();
        if cache.len() >= POLICY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// How many compiled policies are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The image a policy selects from a tag set: the resolver's one
    /// decision, shared by the service and `tagrelay replay`, so a replay
    /// runs exactly the code that made the recorded decisions. The digest
    /// is attached when the policy reflects digests and the scan recorded
    /// one.
    pub fn select_image(
        &self,
        rules: &PolicyRules,
        reflect_digest: bool,
        tags: &[String],
        images: &BTreeMap<String, ImageMetadata>,
    ) -> Result<SelectedImage, SelectImageError> {
        let compiled = self.compiled(rules)?;
        let candidates = tags.iter().map(|tag| Candidate {
            tag,
            created: images.get(tag).and_then(|m| m.created),
        });
        let selected = compiled.select(candidates)?;
        Ok(SelectedImage {
            tag: selected.tag.to_string(),
            digest: reflect_digest
                .then(|| images.get(selected.tag).and_then(|m| m.digest.clone()))
                .flatten(),
        })
    }

    /// [`PolicyCache::select_image`] behind a release-age gate: the policy
    /// chooses among the tags old enough; the tag it would choose among all
    /// of them is reported as held back while it is younger; and the
    /// earliest time a younger tag comes of age is when to decide again.
    pub fn select_image_gated(
        &self,
        rules: &PolicyRules,
        reflect_digest: bool,
        tags: &[String],
        images: &BTreeMap<String, ImageMetadata>,
        ages: &Ages<'_>,
    ) -> Result<GatedImage, SelectImageError> {
        let ungated = self.select_image(rules, reflect_digest, tags, images)?;
        let (ripe, young): (Vec<String>, Vec<String>) =
            tags.iter().cloned().partition(|tag| ages.is_of_age(tag));
        let selected = if ripe.is_empty() {
            None
        } else {
            match self.select_image(rules, reflect_digest, &ripe, images) {
                Ok(selected) => Some(selected),
                Err(SelectImageError::Select(_)) => None,
                Err(e) => return Err(e),
            }
        };
        let held_back = (selected.as_ref() != Some(&ungated)).then(|| HeldBack {
            until: ages.of_age_at(&ungated.tag),
            image: ungated,
        });
        let recheck_at = young.iter().filter_map(|tag| ages.of_age_at(tag)).min();
        Ok(GatedImage {
            selected,
            held_back,
            recheck_at,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CompiledPolicy>>> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::{load_documents, Object};

    #[test]
    fn the_cache_compiles_each_set_of_rules_once_and_tells_rules_apart() {
        let cache = PolicyCache::default();
        let semver = |range: &str| PolicyRules {
            choice: Choice::Semver {
                range: range.to_string(),
            },
            filter_tags: None,
            exclusion_list: None,
        };
        let first = cache.compiled(&semver(">=1.0.0")).unwrap();
        let again = cache.compiled(&semver(">=1.0.0")).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "compiled twice");
        let other = cache.compiled(&semver("<1.0.0")).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(cache.len(), 2);
        let tags = vec!["0.9.0".to_string(), "1.2.0".to_string()];
        let none = BTreeMap::new();
        assert_eq!(
            cache
                .select_image(&semver("<1.0.0"), false, &tags, &none)
                .unwrap()
                .tag,
            "0.9.0",
            "the cached policy for the other range chose for the wrong one"
        );
        assert!(cache.compiled(&semver("not a range")).is_err());
        assert_eq!(cache.len(), 2, "a refused policy is not kept");
    }

    fn policy(yaml: &str) -> (ObjectMeta, ImagePolicySpec) {
        let docs = load_documents(yaml).unwrap();
        match Object::decode(&docs[0].value).unwrap() {
            Object::ImagePolicy(p) => (p.metadata, p.spec),
            other => panic!("not a policy: {other:?}"),
        }
    }

    const HEAD: &str =
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: p\n";

    #[test]
    fn maps_every_flux_choice() {
        let (m, s) = policy(&format!("{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    semver:\n      range: '>=1.0 <2'\n"));
        assert_eq!(
            policy_rules(&m, &s, None).unwrap().choice,
            Choice::Semver {
                range: ">=1.0 <2".into()
            }
        );
        let (m, s) = policy(&format!("{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    numerical:\n      order: desc\n  filterTags:\n    pattern: '^b-(?P<n>[0-9]+)$'\n    extract: '$n'\n"));
        let rules = policy_rules(&m, &s, Some(vec![])).unwrap();
        assert_eq!(rules.choice, Choice::Numerical { order: Order::Desc });
        assert_eq!(rules.filter_tags.unwrap().extract.as_deref(), Some("$n"));
        assert_eq!(rules.exclusion_list, Some(vec![]));
        let (m, s) = policy(&format!(
            "{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    alphabetical: {{}}\n"
        ));
        assert_eq!(
            policy_rules(&m, &s, None).unwrap().choice,
            Choice::Alphabetical { order: Order::Asc }
        );
    }

    #[test]
    fn the_v1_annotation_overrides_the_choice() {
        let (m, s) = policy(&format!("{HEAD}  annotations:\n    tagrelay.io/flux-v1-filter: 'semver:~1.0'\nspec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    alphabetical: {{}}\n"));
        assert!(matches!(
            policy_rules(&m, &s, None).unwrap().choice,
            Choice::FluxV1(_)
        ));
        let (m, s) = policy(&format!("{HEAD}  annotations:\n    tagrelay.io/flux-v1-filter: ''\nspec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    alphabetical: {{}}\n"));
        assert_eq!(
            policy_rules(&m, &s, None).unwrap().choice,
            Choice::NewestBuild
        );
    }

    #[test]
    fn a_policy_without_a_rule_selects_the_newest_image_among_the_filtered_tags() {
        let (m, s) = policy(&format!(
            "{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n  filterTags:\n    pattern: '^main-'\n"
        ));
        let rules = policy_rules(&m, &s, None).unwrap();
        assert_eq!(rules.choice, Choice::NewestBuild);
        let at = |hour: u32| ImageMetadata {
            digest: None,
            created: chrono::DateTime::parse_from_rfc3339(&format!("2026-12-01T{hour:02}:00:00Z"))
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
        };
        let tags: Vec<String> = ["main-a", "main-b", "dev-c", "latest"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let images: BTreeMap<String, ImageMetadata> = [
            ("main-a", at(3)),
            ("main-b", at(2)),
            ("dev-c", at(9)),
            ("latest", at(9)),
        ]
        .into_iter()
        .map(|(t, m)| (t.to_string(), m))
        .collect();
        let cache = PolicyCache::default();
        let selected = cache.select_image(&rules, false, &tags, &images).unwrap();
        assert_eq!(
            selected.tag, "main-a",
            "newest of the tags the filter keeps; never `latest`"
        );
        let (m, s) = policy(&format!("{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n"));
        let rules = policy_rules(&m, &s, None).unwrap();
        let selected = cache.select_image(&rules, false, &tags, &images).unwrap();
        assert_eq!(selected.tag, "dev-c");
    }

    #[test]
    fn a_bad_range_is_refused_with_its_field() {
        let (m, s) = policy(&format!("{HEAD}spec:\n  imageRepositoryRef: {{name: r}}\n  policy:\n    semver:\n      range: '>=1.0 <<2'\n"));
        let err = compile_policy(&m, &s, None).unwrap_err().to_string();
        assert!(err.starts_with("spec.policy.semver.range"), "{err}");
    }

    #[test]
    fn the_hash_changes_with_the_rules() {
        let a = PolicyRules::new(Choice::Semver {
            range: "1.x".into(),
        });
        let b = PolicyRules::new(Choice::Semver {
            range: "2.x".into(),
        });
        assert_ne!(rules_hash(&a, false), rules_hash(&b, false));
        assert_ne!(rules_hash(&a, false), rules_hash(&a, true));
        assert_eq!(rules_hash(&a, false), rules_hash(&a.clone(), false));
    }

    #[test]
    fn a_gate_holds_young_tags_ships_them_of_age_and_restarts_the_age_of_a_repush() {
        use crate::age::{Ages, FirstSeen};
        use tagrelay_proto::config::{AgeClock, AgeGate};
        let t = |minute: i64| chrono::DateTime::UNIX_EPOCH + chrono::Duration::minutes(minute);
        let digest = |d: &str| ImageMetadata {
            digest: Some(format!("sha256:{d}")),
            created: None,
        };
        let rules = PolicyRules::new(Choice::Semver {
            range: ">=1.0.0".into(),
        });
        let gate = AgeGate {
            minimum_age: std::time::Duration::from_secs(600),
            clock: AgeClock::FirstSeen,
        };
        let cache = PolicyCache::default();
        let mut seen = FirstSeen::default();
        let mut tags = vec!["1.0.0".to_string()];
        let mut images: BTreeMap<String, ImageMetadata> =
            [("1.0.0".to_string(), digest("a"))].into();
        seen.observe(&tags, &images, t(0));
        tags.push("1.1.0".into());
        images.insert("1.1.0".into(), digest("b"));
        seen.observe(&tags, &images, t(20));
        let decide = |seen: &FirstSeen, images: &BTreeMap<String, ImageMetadata>, now| {
            let ages = Ages {
                gate,
                first_seen: seen,
                images,
                selected: None,
                now,
            };
            cache
                .select_image_gated(&rules, false, &tags, images, &ages)
                .unwrap()
        };
        let held = decide(&seen, &images, t(25));
        assert_eq!(
            held.selected.unwrap().tag,
            "1.0.0",
            "1.1.0 is 5 minutes old"
        );
        let waiting = held.held_back.unwrap();
        assert_eq!(
            (waiting.image.tag.as_str(), waiting.until),
            ("1.1.0", Some(t(30)))
        );
        assert_eq!(held.recheck_at, Some(t(30)));
        let shipped = decide(&seen, &images, t(30));
        assert_eq!(shipped.selected.unwrap().tag, "1.1.0");
        assert_eq!((shipped.held_back, shipped.recheck_at), (None, None));
        images.insert("1.1.0".into(), digest("c"));
        seen.observe(&tags, &images, t(28));
        let repushed = decide(&seen, &images, t(30));
        assert_eq!(
            repushed.selected.unwrap().tag,
            "1.0.0",
            "a new digest starts the age again"
        );
        assert_eq!(repushed.held_back.unwrap().until, Some(t(38)));
        seen.observe(&tags, &images, t(35));
        assert_eq!(
            seen.get("1.1.0").unwrap().at,
            t(28),
            "the same digest keeps its age"
        );
        let too_young = Ages {
            gate,
            first_seen: &seen,
            images: &images,
            selected: None,
            now: t(5),
        };
        let nothing = cache
            .select_image_gated(&rules, false, &tags, &images, &too_young)
            .unwrap();
        assert_eq!(
            nothing.selected, None,
            "every tag too young: nothing selected"
        );
        let kept = Ages {
            selected: Some("1.1.0"),
            ..too_young
        };
        let kept = cache
            .select_image_gated(&rules, false, &tags, &images, &kept)
            .unwrap();
        assert_eq!(
            kept.selected.unwrap().tag,
            "1.1.0",
            "a gate never takes back what shipped"
        );
        let created_gate = AgeGate {
            clock: AgeClock::Created,
            ..gate
        };
        let built: BTreeMap<String, ImageMetadata> = [
            (
                "1.0.0".to_string(),
                ImageMetadata {
                    digest: None,
                    created: Some(t(0)),
                },
            ),
            (
                "1.1.0".to_string(),
                ImageMetadata {
                    digest: None,
                    created: None,
                },
            ),
        ]
        .into();
        let by_created = Ages {
            gate: created_gate,
            first_seen: &seen,
            images: &built,
            selected: None,
            now: t(100),
        };
        let decided = cache
            .select_image_gated(&rules, false, &tags, &built, &by_created)
            .unwrap();
        assert_eq!(decided.selected.unwrap().tag, "1.0.0");
        assert_eq!(
            decided.held_back.unwrap().until,
            None,
            "no created time: never of age"
        );
    }
}
