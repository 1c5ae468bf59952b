//! Property tests: merge order independence, determinism, limits never broken.

use std::collections::{BTreeMap, BTreeSet};

use atrium_identity::{CompiledRules, IdentityRules, LimitRule};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{partition, run};

/// How one ground-truth person shows up in the event stream.
#[derive(Clone, Debug)]
struct PersonSpec {
    anonymous_ids: usize,
    /// Index of the anonymous id whose device sends the device id, if any.
    device_on: Option<usize>,
    /// Per anonymous id: how it gets linked (0 identify with userId, 1 alias, 2 identify
    /// with the email trait; the first anonymous id never relies on the email).
    anon_links: Vec<u8>,
    /// How the email gets linked: 0 identify with userId, 1 identify with the first
    /// anonymous id.
    email_link: u8,
    /// Events that link nothing new: (0 track with an anonymous id, 1 identify with the
    /// user id, 2 page with an anonymous id and the email in context.traits, anon index).
    noise: Vec<(u8, usize)>,
}

fn person() -> impl Strategy<Value = PersonSpec> {
    (
        1usize..=3,
        option::of(0usize..3),
        vec(0u8..3, 3),
        0u8..2,
        vec((0u8..3, 0usize..3), 0..4),
    )
        .prop_map(
            |(anonymous_ids, device_on, anon_links, email_link, noise)| PersonSpec {
                anonymous_ids,
                device_on: device_on.map(|d| d % anonymous_ids),
                anon_links,
                email_link,
                noise,
            },
        )
}

/// The person's events and the set of identifiers that must end up in one profile.
fn person_events(p: usize, spec: &PersonSpec) -> (Vec<Value>, BTreeSet<String>) {
    let user = format!("user-{p}");
    let email = format!("person{p}@example.com");
    let anon = |i: usize| format!("anon-{p}-{i}");
    let mut truth: BTreeSet<String> = [format!("user_id:{user}"), format!("email:{email}")].into();
    let mut events = Vec::new();
    for i in 0..spec.anonymous_ids {
        truth.insert(format!("anonymous_id:{}", anon(i)));
        let link = if i == 0 {
            spec.anon_links[i] % 2
        } else {
            spec.anon_links[i]
        };
        events.push(match link {
            0 => json!({"type": "identify", "userId": user, "anonymousId": anon(i)}),
            1 => json!({"type": "alias", "userId": user, "previousId": anon(i)}),
            _ => json!({"type": "identify", "anonymousId": anon(i), "traits": {"email": email}}),
        });
    }
    events.push(if spec.email_link == 0 {
        json!({"type": "identify", "userId": user, "traits": {"email": email}})
    } else {
        json!({"type": "identify", "anonymousId": anon(0), "traits": {"email": email}})
    });
    if let Some(i) = spec.device_on {
        truth.insert(format!("ios.id:device-{p}"));
        events.push(json!({"type": "track", "anonymousId": anon(i),
            "context": {"device": {"id": format!("device-{p}"), "type": "ios"}}}));
    }
    for &(kind, i) in &spec.noise {
        let i = i % spec.anonymous_ids;
        events.push(match kind {
            0 => json!({"type": "track", "anonymousId": anon(i), "event": "Viewed"}),
            1 => json!({"type": "identify", "userId": user}),
            _ => json!({"type": "page", "anonymousId": anon(i),
                        "context": {"traits": {"email": email}}}),
        });
    }
    (events, truth)
}

type Partition = BTreeSet<BTreeSet<String>>;

fn population() -> impl Strategy<Value = (Partition, Vec<Value>, Vec<Value>)> {
    vec(person(), 1..6).prop_flat_map(|people| {
        let mut events = Vec::new();
        let mut truth = Partition::new();
        for (p, spec) in people.iter().enumerate() {
            let (e, t) = person_events(p, spec);
            events.extend(e);
            truth.insert(t);
        }
        (
            Just(truth),
            Just(events.clone()).prop_shuffle(),
            Just(events).prop_shuffle(),
        )
    })
}

/// Events over a small pool of identifiers, so that conflicts, demotions and merges abound.
fn chaotic_event() -> impl Strategy<Value = Value> {
    (
        0u8..4,
        option::of(0u8..4),
        option::of(0u8..6),
        option::of(0u8..3),
        option::of(0u8..3),
        0u8..10,
    )
        .prop_map(|(kind, user, anon, email, device, prev)| {
            let mut e = serde_json::Map::new();
            let kind = ["identify", "track", "alias", "page"][kind as usize];
            e.insert("type".into(), json!(kind));
            if let Some(u) = user {
                e.insert("userId".into(), json!(format!("u{u}")));
            }
            if let Some(a) = anon {
                e.insert("anonymousId".into(), json!(format!("a{a}")));
            }
            if kind == "alias" {
                let previous = if prev < 4 {
                    format!("u{prev}")
                } else {
                    format!("a{}", prev - 4)
                };
                e.insert("previousId".into(), json!(previous));
            }
            let mut context = serde_json::Map::new();
            if let Some(m) = email {
                context.insert("traits".into(), json!({"email": format!("e{m}@x.com")}));
            }
            if let Some(d) = device {
                context.insert(
                    "device".into(),
                    json!({"id": format!("d{d}"), "type": "android"}),
                );
            }
            if !context.is_empty() {
                e.insert("context".into(), Value::Object(context));
            }
            Value::Object(e)
        })
}

fn strict_rules() -> CompiledRules {
    IdentityRules {
        limits: BTreeMap::from([
            ("user_id".into(), LimitRule::ever(1)),
            ("anonymous_id".into(), LimitRule::ever(2)),
        ]),
        max_merges_per_profile: 3,
        max_identifiers_per_profile: 6,
        ..IdentityRules::default()
    }
    .compile()
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Links only ever join identifiers of one person, so whatever the order, the profiles
    /// are exactly the people.
    #[test]
    fn merge_order_independence((truth, order_a, order_b) in population()) {
        let rules = CompiledRules::default();
        let (store_a, _) = run(&rules, &order_a);
        let (store_b, _) = run(&rules, &order_b);
        prop_assert_eq!(&partition(&store_a), &truth);
        prop_assert_eq!(&partition(&store_b), &truth);
    }

    /// The same sequence into two fresh stores gives identical stores (profile ids, merge
    /// log and first-seen data included) and identical resolutions; limits and caps hold.
    #[test]
    fn determinism_and_limits(events in vec(chaotic_event(), 0..40), strict in any::<bool>()) {
        let rules = if strict { strict_rules() } else { CompiledRules::default() };
        let (store_a, res_a) = run(&rules, &events);
        let (store_b, res_b) = run(&rules, &events);
        prop_assert_eq!(&store_a, &store_b);
        prop_assert_eq!(&res_a, &res_b);
        for graph in store_a.graphs() {
            let mut per_kind: BTreeMap<&str, u32> = BTreeMap::new();
            for id in graph.ids() {
                *per_kind.entry(id.kind.as_str()).or_default() += 1;
            }
            for (kind, count) in per_kind {
                prop_assert!(count <= rules.limit(kind).max, "{} has {} {}", graph.profile, count, kind);
            }
            prop_assert!(graph.merge_count <= rules.rules().max_merges_per_profile);
            prop_assert!(graph.identifiers.len() <= rules.rules().max_identifiers_per_profile as usize);
        }
        for (event, resolution) in events.iter().zip(&res_a) {
            let usable = !atrium_identity::extract_identifiers(event, &rules).identifiers.is_empty();
            prop_assert_eq!(resolution.profile.is_some(), usable);
        }
    }
}

/// Guards the generator above: it must actually produce merges and demotions.
#[test]
fn chaotic_generator_exercises_conflicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut merges, mut demotions, mut limit_demotions, mut cap_demotions) = (0, 0, 0, 0);
    for strict in [false, true] {
        let rules = if strict {
            strict_rules()
        } else {
            CompiledRules::default()
        };
        for _ in 0..20 {
            let events = vec(chaotic_event(), 30..40)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let (store, res) = run(&rules, &events);
            merges += store.merge_log().len();
            for d in res.iter().flat_map(|r| &r.demoted) {
                demotions += 1;
                if d.reason.contains(" limit ") {
                    limit_demotions += 1;
                } else {
                    cap_demotions += 1;
                }
            }
        }
    }
    eprintln!(
        "merges {merges}, demotions {demotions} (limit {limit_demotions}, caps {cap_demotions})"
    );
    assert!(merges > 20 && limit_demotions > 20 && cap_demotions > 0);
}
