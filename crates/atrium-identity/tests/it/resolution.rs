//! Resolution scenarios, data-driven: events in, partition of identifiers out.

use std::collections::BTreeMap;

use atrium_identity::{
    IdentityRules, IdentityStore, LimitRule, MemoryIdentityStore, ProfileId, lookup,
};
use serde_json::json;

use crate::support::{check, check_with, feed, id, profile_of};

fn segment_example_rules() -> IdentityRules {
    // Segment's example uses `abc123` as a real user id; drop it from the QA blocklist.
    let mut rules = IdentityRules::default();
    rules.blocked_values[2] = "(?i)^(null|undefined|none|nil|anonymous|unknown|void|test)$".into();
    rules
}

#[test]
fn anonymous_browsing_then_identify_is_stitched() {
    let (store, res) = check(
        &[
            json!({"type": "page", "anonymousId": "a1"}),
            json!({"type": "track", "anonymousId": "a1", "event": "Viewed"}),
            json!({"type": "identify", "anonymousId": "a1", "userId": "u1",
                   "traits": {"email": "ann@x.com"}}),
            json!({"type": "track", "userId": "u1"}),
        ],
        &[&["anonymous_id:a1", "email:ann@x.com", "user_id:u1"]],
    );
    let p = ProfileId::for_new_profile(0);
    assert!(res[0].created);
    assert_eq!(res[0].profile.as_ref(), Some(&p));
    assert!(res.iter().all(|r| r.profile.as_ref() == Some(&p)));
    assert_eq!(res[2].added, [id("user_id:u1"), id("email:ann@x.com")]);
    assert!(res[3].added.is_empty() && !res[3].created);
    assert!(store.merge_log().is_empty());
}

#[test]
fn two_devices_same_user_are_merged() {
    let (store, res) = check(
        &[
            json!({"type": "track", "anonymousId": "laptop"}),
            json!({"type": "track", "anonymousId": "phone",
                   "context": {"device": {"id": "D1", "type": "ios"}}}),
            json!({"type": "identify", "anonymousId": "laptop", "userId": "u1"}),
            json!({"type": "identify", "anonymousId": "phone", "userId": "u1"}),
        ],
        &[&[
            "anonymous_id:laptop",
            "anonymous_id:phone",
            "ios.id:D1",
            "user_id:u1",
        ]],
    );
    let laptop = ProfileId::for_new_profile(0);
    let phone = ProfileId::for_new_profile(1);
    assert_eq!(
        res[3].profile.as_ref(),
        Some(&laptop),
        "oldest profile survives"
    );
    assert_eq!(res[3].merged, std::slice::from_ref(&phone));
    assert_eq!(store.merge_log().len(), 1);
    let entry = &store.merge_log()[0];
    assert_eq!((entry.offset, entry.message_id.as_str()), (3, "m3"));
    assert_eq!(entry.survivor, laptop);
    assert_eq!(entry.merged, std::slice::from_ref(&phone));
    assert_eq!(
        entry.linking_identifiers,
        [id("user_id:u1"), id("anonymous_id:phone")]
    );
    assert_eq!(
        entry.reason,
        format!("event linked user_id:u1 ({laptop}) and anonymous_id:phone ({phone})")
    );
}

#[test]
fn segment_documented_example_is_not_merged() {
    let (store, res) = check_with(
        &segment_example_rules(),
        &[
            json!({"type": "identify", "userId": "abc123", "traits": {"email": "jane@x.com"}}),
            json!({"type": "identify", "userId": "abc456", "traits": {"email": "jane@x.com"}}),
            json!({"type": "track", "userId": "abc456"}),
        ],
        &[&["email:jane@x.com", "user_id:abc123"], &["user_id:abc456"]],
    );
    let first = ProfileId::for_new_profile(0);
    assert!(res[1].created);
    assert_eq!(res[1].profile, Some(ProfileId::for_new_profile(1)));
    assert_eq!(res[1].demoted.len(), 1);
    assert_eq!(res[1].demoted[0].identifier, id("email:jane@x.com"));
    assert_eq!(
        res[1].demoted[0].reason,
        format!("user_id limit 1 reached on {first} (has user_id:abc123)")
    );
    assert_eq!(res[2].profile, Some(ProfileId::for_new_profile(1)));
    assert!(store.merge_log().is_empty());
}

#[test]
fn conflicting_profiles_linked_by_a_low_priority_id_are_not_merged() {
    // The event's user id anchors it; the anonymous id links another user's profile.
    let (store, res) = check(
        &[
            json!({"type": "identify", "userId": "u1", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u2", "anonymousId": "a2"}),
            json!({"type": "track", "userId": "u1", "anonymousId": "a2",
                   "context": {"traits": {"email": "new@x.com"}}}),
        ],
        &[
            &["anonymous_id:a1", "email:new@x.com", "user_id:u1"],
            &["anonymous_id:a2", "user_id:u2"],
        ],
    );
    assert_eq!(res[2].profile, Some(ProfileId::for_new_profile(0)));
    assert_eq!(res[2].demoted.len(), 1);
    assert_eq!(res[2].demoted[0].identifier, id("anonymous_id:a2"));
    assert!(store.merge_log().is_empty());
}

#[test]
fn harmless_links_survive_a_user_id_conflict() {
    // a9 belongs to an anonymous-only profile: it does not contribute to the user_id
    // conflict, so only the email is demoted and a9's profile joins abc456.
    check_with(
        &segment_example_rules(),
        &[
            json!({"type": "identify", "userId": "abc123", "traits": {"email": "jane@x.com"}}),
            json!({"type": "track", "anonymousId": "a9"}),
            json!({"type": "identify", "userId": "abc456", "anonymousId": "a9",
                   "traits": {"email": "jane@x.com"}}),
        ],
        &[
            &["email:jane@x.com", "user_id:abc123"],
            &["anonymous_id:a9", "user_id:abc456"],
        ],
    );
}

#[test]
fn alias_links_anonymous_to_user() {
    let (store, res) = check(
        &[
            json!({"type": "track", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u1"}),
            json!({"type": "alias", "userId": "u1", "previousId": "a1"}),
        ],
        &[&["anonymous_id:a1", "user_id:u1"]],
    );
    assert_eq!(res[2].profile, Some(ProfileId::for_new_profile(0)));
    assert_eq!(res[2].merged, [ProfileId::for_new_profile(1)]);
    assert_eq!(store.merge_log().len(), 1);
}

#[test]
fn alias_of_an_unseen_previous_id_adds_it() {
    let (_, res) = check(
        &[
            json!({"type": "identify", "userId": "u1"}),
            json!({"type": "alias", "userId": "u1", "previousId": "a-old"}),
        ],
        &[&["anonymous_id:a-old", "user_id:u1"]],
    );
    assert_eq!(res[1].added, [id("anonymous_id:a-old")]);
}

#[test]
fn alias_between_two_user_ids_is_refused() {
    // previousId is a known user id: the alias would give one profile two user ids.
    let (_, res) = check(
        &[
            json!({"type": "identify", "userId": "old-user", "anonymousId": "a1"}),
            json!({"type": "alias", "userId": "new-user", "previousId": "old-user"}),
        ],
        &[&["anonymous_id:a1", "user_id:old-user"]],
    );
    let p = ProfileId::for_new_profile(0);
    assert_eq!(res[1].profile.as_ref(), Some(&p));
    assert_eq!(res[1].demoted.len(), 1);
    assert_eq!(res[1].demoted[0].identifier, id("user_id:new-user"));
    assert_eq!(
        res[1].demoted[0].reason,
        format!("user_id limit 1 reached on {p} (has user_id:old-user)")
    );

    // Both user ids already have profiles: they stay apart.
    let (store, res) = check(
        &[
            json!({"type": "identify", "userId": "u1"}),
            json!({"type": "identify", "userId": "u2"}),
            json!({"type": "alias", "userId": "u2", "previousId": "u1"}),
        ],
        &[&["user_id:u1"], &["user_id:u2"]],
    );
    assert!(store.merge_log().is_empty());
    assert_eq!(res[2].demoted.len(), 1);
    assert!(
        res[2].demoted[0]
            .reason
            .starts_with("user_id limit 1 reached on p_")
    );
    assert!(res[2].profile.is_some());
}

#[test]
fn blocked_values_never_bind() {
    let (store, res) = check(
        &[
            json!({"type": "identify", "userId": "anonymous", "anonymousId": "0000"}),
            json!({"type": "track", "anonymousId": "-1"}),
            json!({"type": "track", "userId": "null", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "0000",
                   "traits": {"email": "undefined@x.com"}}),
            json!({"type": "identify", "userId": "u2", "anonymousId": "0000"}),
        ],
        &[
            &["anonymous_id:a1"],
            &["email:undefined@x.com", "user_id:u1"],
            &["user_id:u2"],
        ],
    );
    assert_eq!(res[0].profile, None);
    assert_eq!(
        res[0].blocked,
        [id("user_id:anonymous"), id("anonymous_id:0000")]
    );
    assert_eq!(res[1].profile, None);
    assert_eq!(res[1].blocked, [id("anonymous_id:-1")]);
    assert_eq!(res[2].blocked, [id("user_id:null")]);
    assert!(
        store
            .bindings()
            .all(|(i, _)| i.value != "0000" && i.value != "-1")
    );
}

#[test]
fn email_normalization_links() {
    check(
        &[
            json!({"type": "identify", "anonymousId": "a1", "traits": {"email": " Ann@Example.COM "}}),
            json!({"type": "track", "anonymousId": "a2",
                   "context": {"traits": {"email": "ann@example.com"}}}),
        ],
        &[&[
            "anonymous_id:a1",
            "anonymous_id:a2",
            "email:ann@example.com",
        ]],
    );
}

#[test]
fn phone_normalization_links() {
    check(
        &[
            json!({"type": "identify", "anonymousId": "a1", "traits": {"phone": "+1 (415) 555-0100"}}),
            json!({"type": "identify", "anonymousId": "a2", "traits": {"phone": "001-415-555-0100"}}),
            json!({"type": "identify", "anonymousId": "a3", "traits": {"phone": "555-01"}}),
        ],
        &[
            &["anonymous_id:a1", "anonymous_id:a2", "phone:+14155550100"],
            &["anonymous_id:a3"],
        ],
    );
}

#[test]
fn external_ids_link() {
    check(
        &[
            json!({"type": "track", "anonymousId": "a1", "context": {"externalIds": [
                {"id": "GA1.2.3", "type": "ga_client_id", "collection": "users", "encoding": "none"}]}}),
            json!({"type": "track", "anonymousId": "a2", "context": {"externalIds": [
                {"id": "GA1.2.3", "type": "ga_client_id"}]}}),
            json!({"type": "track", "anonymousId": "a3", "context": {"externalIds": [
                {"id": "GA1.2.3", "type": "ga_client_id", "collection": "accounts"}]}}),
        ],
        &[
            &["anonymous_id:a1", "anonymous_id:a2", "ga_client_id:GA1.2.3"],
            &["anonymous_id:a3"],
        ],
    );
}

#[test]
fn custom_trait_identifiers_link() {
    let rules = IdentityRules {
        custom_traits: BTreeMap::from([("loyalty_number".into(), "loyalty_id".into())]),
        ..IdentityRules::default()
    };
    check_with(
        &rules,
        &[
            json!({"type": "identify", "anonymousId": "a1", "traits": {"loyaltyNumber": "L-7"}}),
            json!({"type": "track", "anonymousId": "a2", "context": {"traits": {"loyalty_number": "L-7"}}}),
        ],
        &[&["anonymous_id:a1", "anonymous_id:a2", "loyalty_id:L-7"]],
    );
}

#[test]
fn sixth_anonymous_id_is_demoted_but_the_event_resolves() {
    let mut events: Vec<_> = (1..=6)
        .map(|i| json!({"type": "identify", "userId": "u1", "anonymousId": format!("a{i}")}))
        .collect();
    events.push(json!({"type": "track", "anonymousId": "a6"}));
    let (_, res) = check(
        &events,
        &[
            &[
                "anonymous_id:a1",
                "anonymous_id:a2",
                "anonymous_id:a3",
                "anonymous_id:a4",
                "anonymous_id:a5",
                "user_id:u1",
            ],
            &["anonymous_id:a6"],
        ],
    );
    let p = ProfileId::for_new_profile(0);
    assert_eq!(res[5].profile.as_ref(), Some(&p));
    assert_eq!(res[5].demoted[0].identifier, id("anonymous_id:a6"));
    assert_eq!(
        res[5].demoted[0].reason,
        format!(
            "anonymous_id limit 5 reached on {p} (has anonymous_id:a1, anonymous_id:a2, \
             anonymous_id:a3, anonymous_id:a4, anonymous_id:a5)"
        )
    );
    // a6 alone is a fresh anonymous visitor.
    assert!(res[6].created);
}

#[test]
fn lower_priority_link_is_demoted_before_a_higher_priority_newcomer() {
    // Documented consequence of "demote the lowest-priority identifier on the event": the
    // profile holds 5 emails; an event links it via an anonymous id and brings a 6th email.
    // anonymous_id ranks below email, so the link is dropped and the email starts fresh.
    let mut events: Vec<_> = (1..=5)
        .map(|i| json!({"type": "identify", "anonymousId": "a1", "traits": {"email": format!("e{i}@x.com")}}))
        .collect();
    events.push(json!({"type": "identify", "anonymousId": "a1", "traits": {"email": "e6@x.com"}}));
    let (_, res) = check(
        &events,
        &[
            &[
                "anonymous_id:a1",
                "email:e1@x.com",
                "email:e2@x.com",
                "email:e3@x.com",
                "email:e4@x.com",
                "email:e5@x.com",
            ],
            &["email:e6@x.com"],
        ],
    );
    assert_eq!(res[5].demoted[0].identifier, id("anonymous_id:a1"));
    assert!(
        res[5].demoted[0]
            .reason
            .starts_with("email limit 5 reached on p_")
    );
}

#[test]
fn an_event_with_too_many_values_of_a_kind_keeps_the_first() {
    let rules = IdentityRules {
        limits: BTreeMap::from([("crm_id".into(), LimitRule::ever(1))]),
        ..IdentityRules::default()
    };
    let (_, res) = check_with(
        &rules,
        &[
            json!({"type": "track", "anonymousId": "a1", "context": {"externalIds": [
            {"id": "c2", "type": "crm_id"}, {"id": "c1", "type": "crm_id"}]}}),
        ],
        &[&["anonymous_id:a1", "crm_id:c1"]],
    );
    assert!(res[0].created);
    assert_eq!(res[0].demoted[0].identifier, id("crm_id:c2"));
    assert_eq!(
        res[0].demoted[0].reason,
        "crm_id limit 1 exceeded by the event itself (crm_id:c1, crm_id:c2)"
    );
}

#[test]
fn limit_windows_count_only_recent_identifiers_in_event_time() {
    let rules = IdentityRules {
        limits: BTreeMap::from([
            ("user_id".into(), LimitRule::ever(1)),
            ("anonymous_id".into(), LimitRule::per_days(2, 7)),
        ]),
        ..IdentityRules::default()
    };
    let (_, res) = check_with(
        &rules,
        &[
            json!({"type": "identify", "userId": "u1", "anonymousId": "a1", "_day": 0}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a2", "_day": 1}),
            // Day 3: a1 and a2 are within the week, a3 would be the third.
            json!({"type": "identify", "userId": "u1", "anonymousId": "a3", "_day": 3}),
            // Day 7 (+3 s): a1 (day 0 + 0 s) has left the window, a2 (day 1 + 1 s) has not.
            json!({"type": "identify", "userId": "u1", "anonymousId": "a4", "_day": 7}),
            // Day 8 (+4 s): a2 has left too; a4 counts.
            json!({"type": "identify", "userId": "u1", "anonymousId": "a5", "_day": 8}),
            // Day 8 (+5 s): a4 and a5 are recent: a6 is refused.
            json!({"type": "identify", "userId": "u1", "anonymousId": "a6", "_day": 8}),
        ],
        &[&[
            "anonymous_id:a1",
            "anonymous_id:a2",
            "anonymous_id:a4",
            "anonymous_id:a5",
            "user_id:u1",
        ]],
    );
    assert_eq!(res[2].demoted[0].identifier, id("anonymous_id:a3"));
    assert!(
        res[2].demoted[0]
            .reason
            .starts_with("anonymous_id limit 2 per 7 days reached on p_")
    );
    assert!(res[3].demoted.is_empty() && res[3].added == [id("anonymous_id:a4")]);
    assert!(res[4].demoted.is_empty() && res[4].added == [id("anonymous_id:a5")]);
    assert_eq!(res[5].demoted[0].identifier, id("anonymous_id:a6"));
    assert!(
        res[5].demoted[0]
            .reason
            .ends_with("(has anonymous_id:a4, anonymous_id:a5)")
    );
}

#[test]
fn merge_cap_refuses_further_merges_but_events_resolve() {
    let rules = IdentityRules {
        max_merges_per_profile: 2,
        ..IdentityRules::default()
    };
    let (store, res) = check_with(
        &rules,
        &[
            json!({"type": "track", "anonymousId": "a1"}),
            json!({"type": "track", "anonymousId": "a2"}),
            json!({"type": "track", "anonymousId": "a3"}),
            json!({"type": "track", "anonymousId": "a4"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a2"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a3"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a4"}),
        ],
        &[
            &[
                "anonymous_id:a1",
                "anonymous_id:a2",
                "anonymous_id:a3",
                "user_id:u1",
            ],
            &["anonymous_id:a4"],
        ],
    );
    let p = ProfileId::for_new_profile(0);
    assert_eq!(store.merge_log().len(), 2);
    assert_eq!(res[7].profile.as_ref(), Some(&p));
    assert!(res[7].merged.is_empty());
    assert_eq!(res[7].demoted[0].identifier, id("anonymous_id:a4"));
    assert_eq!(
        res[7].demoted[0].reason,
        format!(
            "merge cap 2 reached: merging {p}, {} would make 3 merges",
            ProfileId::for_new_profile(3)
        )
    );
    let graph = store.graph(&p).unwrap().unwrap();
    assert_eq!(graph.merge_count, 2);
    assert_eq!(graph.merged_from, {
        let mut v = vec![ProfileId::for_new_profile(1), ProfileId::for_new_profile(2)];
        v.sort();
        v
    });
}

#[test]
fn identifier_cap_stops_adding_mappings() {
    let rules = IdentityRules {
        max_identifiers_per_profile: 3,
        ..IdentityRules::default()
    };
    let (_, res) = check_with(
        &rules,
        &[
            json!({"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"email": "e@x.com"}}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a2"}),
        ],
        &[&["anonymous_id:a1", "email:e@x.com", "user_id:u1"]],
    );
    assert_eq!(res[1].profile, Some(ProfileId::for_new_profile(0)));
    assert_eq!(res[1].demoted[0].identifier, id("anonymous_id:a2"));
    assert!(
        res[1].demoted[0]
            .reason
            .starts_with("identifier cap 3 reached")
    );
}

#[test]
fn redirects_after_merge_and_lookup() {
    let (store, _) = check(
        &[
            json!({"type": "track", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u1", "traits": {"email": "Ann@X.com"}}),
            json!({"type": "track", "anonymousId": "a2"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a2"}),
            // Merges the (a1) profile, created first, with the u1 profile, which already
            // absorbed a2's: redirects must be rewritten to point at the final survivor.
            json!({"type": "alias", "userId": "u1", "previousId": "a1"}),
        ],
        &[&[
            "anonymous_id:a1",
            "anonymous_id:a2",
            "email:ann@x.com",
            "user_id:u1",
        ]],
    );
    let survivor = ProfileId::for_new_profile(0);
    for offset in [1, 2] {
        let old = ProfileId::for_new_profile(offset);
        assert_eq!(
            store.redirect(&old).unwrap(),
            Some(survivor.clone()),
            "one hop"
        );
        assert_eq!(
            lookup(&store, old.as_str()).unwrap(),
            Some(survivor.clone())
        );
    }
    assert_eq!(
        lookup(&store, survivor.as_str()).unwrap(),
        Some(survivor.clone())
    );
    assert_eq!(
        lookup(&store, "email: ANN@x.com").unwrap(),
        Some(survivor.clone())
    );
    assert_eq!(
        lookup(&store, "anonymous_id:a2").unwrap(),
        Some(survivor.clone())
    );
    assert_eq!(lookup(&store, "anonymous_id:nope").unwrap(), None);
    assert_eq!(lookup(&store, "p_0000000000000000").unwrap(), None);
    assert_eq!(profile_of(&store, "anonymous_id:a2"), survivor);
}

#[test]
fn merge_log_explains_and_first_seen_is_kept() {
    let (store, _) = check(
        &[
            json!({"type": "track", "anonymousId": "a1", "context": {"traits": {"email": "e@x.com"}}}),
            json!({"type": "track", "anonymousId": "a2"}),
            json!({"type": "identify", "userId": "u1"}),
            json!({"type": "identify", "userId": "u1", "anonymousId": "a2",
                   "traits": {"email": "e@x.com"}}),
        ],
        &[&[
            "anonymous_id:a1",
            "anonymous_id:a2",
            "email:e@x.com",
            "user_id:u1",
        ]],
    );
    let [p0, p1, p2] = [0, 1, 2].map(ProfileId::for_new_profile);
    let log = store.merge_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].survivor, p0);
    assert_eq!(log[0].merged, [p1.clone(), p2.clone()]);
    assert_eq!(
        log[0].reason,
        format!("event linked email:e@x.com ({p0}), anonymous_id:a2 ({p1}) and user_id:u1 ({p2})")
    );
    assert_eq!(
        log[0].linking_identifiers,
        [id("user_id:u1"), id("email:e@x.com"), id("anonymous_id:a2")]
    );
    let graph = store.graph(&p0).unwrap().unwrap();
    let first: Vec<(String, u64)> = graph
        .identifiers
        .iter()
        .map(|r| (r.id.to_string(), r.first_offset))
        .collect();
    assert_eq!(
        first,
        [
            ("anonymous_id:a1".to_string(), 0),
            ("anonymous_id:a2".to_string(), 1),
            ("email:e@x.com".to_string(), 0),
            ("user_id:u1".to_string(), 2)
        ]
    );
    assert_eq!(graph.merge_count, 2);
}

#[test]
fn replaying_an_event_is_idempotent() {
    let rules = segment_example_rules().compile().unwrap();
    let events = [
        json!({"type": "identify", "userId": "abc123", "traits": {"email": "jane@x.com"}}),
        json!({"type": "identify", "userId": "abc456", "traits": {"email": "jane@x.com"}}),
        json!({"type": "identify", "userId": "abc456", "anonymousId": "a1"}),
    ];
    let mut store = MemoryIdentityStore::new();
    let first = feed(&mut store, &rules, &events, 0);
    let snapshot = store.clone();
    let again = feed(&mut store, &rules, &events, 0);
    assert_eq!(store, snapshot);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.profile, b.profile);
    }
}

#[test]
fn dangling_binding_is_reported_as_corruption() {
    use atrium_identity::{CompiledRules, EventRef, ResolveError, resolve};
    let mut store = MemoryIdentityStore::new();
    store
        .bind(&id("user_id:u1"), &ProfileId("p_missing".into()))
        .unwrap();
    let event = json!({"type": "track", "userId": "u1"});
    let err = resolve(
        &mut store,
        &CompiledRules::default(),
        EventRef {
            offset: 0,
            message_id: "m0",
            event_time_ms: 0,
            event: &event,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Corrupt(m) if m.contains("p_missing")),
        "{err}"
    );
}

#[test]
fn graphs_and_log_entries_serialize() {
    let (store, _) = check(
        &[
            json!({"type": "track", "anonymousId": "a1"}),
            json!({"type": "identify", "userId": "u1"}),
            json!({"type": "alias", "userId": "u1", "previousId": "a1"}),
        ],
        &[&["anonymous_id:a1", "user_id:u1"]],
    );
    for graph in store.graphs() {
        let text = serde_json::to_string(graph).unwrap();
        assert_eq!(
            &serde_json::from_str::<atrium_identity::ProfileGraph>(&text).unwrap(),
            graph
        );
    }
    let entry = &store.merge_log()[0];
    let text = serde_json::to_string(entry).unwrap();
    assert_eq!(
        &serde_json::from_str::<atrium_identity::MergeLogEntry>(&text).unwrap(),
        entry
    );
}
