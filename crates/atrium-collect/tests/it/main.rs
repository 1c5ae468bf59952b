use atrium_collect::{
    CollectError, Endpoint, Limits, Normalized, RejectionCode, RequestBody, RequestFacts,
};
use atrium_types::{Channel, SourceConfig, parse_timestamp_ms};
use proptest::prelude::*;
use serde_json::{Value, json};

const RECEIVED: &str = "2026-03-01T12:00:00.000Z";

fn source(channel: Channel) -> SourceConfig {
    SourceConfig {
        name: "website".into(),
        channel,
    }
}

fn run(endpoint: Endpoint, body: &str, channel: Channel) -> Result<Normalized, CollectError> {
    let limits = Limits::default();
    let source = source(channel);
    let facts = RequestFacts {
        source: &source,
        received_at_ms: parse_timestamp_ms(RECEIVED).unwrap(),
        client_ip: Some("203.0.113.9"),
    };
    let parsed = RequestBody::parse(body.as_bytes(), &limits)?;
    parsed.normalize(endpoint, &facts, &limits)
}

fn accepted(endpoint: Endpoint, body: Value) -> Vec<Value> {
    let normalized = run(endpoint, &body.to_string(), Channel::Web).expect("request accepted");
    assert!(
        normalized.rejected.is_empty(),
        "unexpected rejections: {:?}",
        normalized.rejected
    );
    normalized
        .accepted
        .iter()
        .map(|event| serde_json::from_slice(&event.payload).expect("payload is json"))
        .collect()
}

fn rejected_codes(endpoint: Endpoint, body: Value) -> Vec<RejectionCode> {
    run(endpoint, &body.to_string(), Channel::Web)
        .expect("request accepted")
        .rejected
        .iter()
        .map(|r| r.code)
        .collect()
}

#[test]
fn single_track_is_normalized() {
    let events = accepted(
        Endpoint::Track,
        json!({"userId": 42, "event": "Order Completed", "properties": {"revenue": 10.5}, "writeKey": "secret", "messageId": "m-1"}),
    );
    let event = &events[0];
    assert_eq!(event["type"], "track");
    assert_eq!(event["userId"], "42", "numeric ids become strings");
    assert_eq!(event["messageId"], "m-1");
    assert_eq!(event["properties"]["revenue"], 10.5);
    assert_eq!(event["receivedAt"], RECEIVED);
    assert_eq!(event["timestamp"], RECEIVED, "no client time: server time");
    assert_eq!(event["context"]["ip"], "203.0.113.9");
    assert_eq!(event["atrium"]["source"], "website");
    assert_eq!(event["atrium"]["channel"], "web");
    assert_eq!(event["atrium"]["flags"], json!(["timestamp_from_server"]));
    assert!(event.get("writeKey").is_none(), "write keys are not stored");
}

#[test]
fn clock_skew_is_corrected_from_batch_or_event_sent_at() {
    // Client clock 1 h behind: it thinks it sent at 11:00:05 an event made at 11:00:00.
    let events = accepted(
        Endpoint::Batch,
        json!({
            "sentAt": "2026-03-01T11:00:05.000Z",
            "batch": [
                {"type": "track", "event": "A", "anonymousId": "a", "timestamp": "2026-03-01T11:00:00.000Z"},
                {"type": "track", "event": "B", "anonymousId": "a", "timestamp": "2026-03-01T11:00:00.000Z", "sentAt": "2026-03-01T11:00:01.000Z"},
                {"type": "track", "event": "C", "anonymousId": "a", "originalTimestamp": "2026-03-01T11:59:00.000Z", "timestamp": "2000-01-01T00:00:00Z", "sentAt": "2026-03-01T12:00:00.000Z"}
            ]
        }),
    );
    assert_eq!(events[0]["timestamp"], "2026-03-01T11:59:55.000Z");
    assert_eq!(events[0]["originalTimestamp"], "2026-03-01T11:00:00.000Z");
    assert_eq!(
        events[1]["timestamp"], "2026-03-01T11:59:59.000Z",
        "event-level sentAt wins"
    );
    assert_eq!(
        events[2]["timestamp"], "2026-03-01T11:59:00.000Z",
        "originalTimestamp preferred over timestamp"
    );
}

#[test]
fn historical_timestamps_without_sent_at_are_kept_and_future_ones_clamped() {
    let events = accepted(
        Endpoint::Batch,
        json!({"batch": [
            {"type": "identify", "userId": "u", "timestamp": "2024-05-01T00:00:00Z"},
            {"type": "identify", "userId": "u", "timestamp": "2027-05-01T00:00:00Z"}
        ]}),
    );
    assert_eq!(events[0]["timestamp"], "2024-05-01T00:00:00.000Z");
    assert_eq!(events[1]["timestamp"], RECEIVED);
    assert_eq!(events[1]["atrium"]["flags"][0], "future_timestamp_clamped");
}

#[test]
fn batch_context_merges_under_event_context() {
    let events = accepted(
        Endpoint::Batch,
        json!({"context": {"library": {"name": "lib"}, "locale": "en-US"}, "batch": [
            {"type": "page", "anonymousId": "a", "context": {"locale": "de-DE", "ip": "198.51.100.1"}}
        ]}),
    );
    assert_eq!(events[0]["context"]["locale"], "de-DE");
    assert_eq!(events[0]["context"]["library"]["name"], "lib");
    assert_eq!(
        events[0]["context"]["ip"], "198.51.100.1",
        "client ip is kept"
    );
}

#[test]
fn server_sources_do_not_get_the_connection_ip() {
    let normalized = run(
        Endpoint::Track,
        r#"{"userId":"u","event":"E"}"#,
        Channel::Server,
    )
    .unwrap();
    let event: Value = serde_json::from_slice(&normalized.accepted[0].payload).unwrap();
    assert!(event["context"].get("ip").is_none());
    let normalized = run(
        Endpoint::Track,
        r#"{"userId":"u","event":"E","context":{"direct":true}}"#,
        Channel::Server,
    )
    .unwrap();
    let event: Value = serde_json::from_slice(&normalized.accepted[0].payload).unwrap();
    assert_eq!(event["context"]["ip"], "203.0.113.9");
}

#[test]
fn bad_events_are_rejected_alone() {
    let cases: Vec<(Value, RejectionCode)> = vec![
        (
            json!({"type": "track", "event": "E"}),
            RejectionCode::NoUserAnonId,
        ),
        (
            json!({"type": "track", "userId": "", "event": "E"}),
            RejectionCode::NoUserAnonId,
        ),
        (
            json!({"type": "track", "userId": "u"}),
            RejectionCode::MissingEventName,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "  "}),
            RejectionCode::MissingEventName,
        ),
        (
            json!({"type": "alias", "userId": "u"}),
            RejectionCode::MissingPreviousId,
        ),
        (
            json!({"type": "group", "userId": "u"}),
            RejectionCode::MissingGroupId,
        ),
        (
            json!({"type": "launch", "userId": "u"}),
            RejectionCode::InvalidType,
        ),
        (json!({"userId": "u"}), RejectionCode::InvalidType),
        (
            json!({"type": "track", "userId": {"a": 1}, "event": "E"}),
            RejectionCode::InvalidField,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "E", "properties": "x"}),
            RejectionCode::InvalidField,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "E", "timestamp": "soon"}),
            RejectionCode::InvalidTimestamp,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "E", "timestamp": 5}),
            RejectionCode::InvalidTimestamp,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "E", "messageId": "x".repeat(101)}),
            RejectionCode::MessageIdTooLong,
        ),
        (
            json!({"type": "page", "userId": "u", "name": ["x"]}),
            RejectionCode::InvalidField,
        ),
        (json!("just a string"), RejectionCode::NotAnObject),
        (
            json!({"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x".repeat(33 * 1024)}}),
            RejectionCode::EventTooLarge,
        ),
    ];
    for (bad, expected) in cases {
        let good = json!({"type": "track", "userId": "u", "event": "Fine"});
        let body = json!({"batch": [good, bad.clone(), good]});
        let normalized = run(Endpoint::Batch, &body.to_string(), Channel::Web).unwrap();
        assert_eq!(normalized.accepted.len(), 2, "case {bad}");
        assert_eq!(normalized.rejected.len(), 1, "case {bad}");
        assert_eq!(
            normalized.rejected[0].code, expected,
            "case {bad}: {}",
            normalized.rejected[0].message
        );
        assert_eq!(normalized.rejected[0].index, 1);
    }
    assert_eq!(
        rejected_codes(Endpoint::Track, json!({"anonymousId": "a"})),
        vec![RejectionCode::MissingEventName]
    );
}

#[test]
fn whole_request_errors() {
    assert!(matches!(
        run(Endpoint::Batch, "{not json", Channel::Web),
        Err(CollectError::InvalidJson(_))
    ));
    assert!(matches!(
        run(Endpoint::Batch, "[1,2]", Channel::Web),
        Err(CollectError::NotAnObject)
    ));
    assert!(matches!(
        run(Endpoint::Batch, r#"{"batch": 5}"#, Channel::Web),
        Err(CollectError::BatchNotArray)
    ));
    assert!(matches!(
        run(Endpoint::Batch, r#"{"nobatch": []}"#, Channel::Web),
        Err(CollectError::BatchNotArray)
    ));
    let deep_in_a_string = format!(
        r#"{{"userId":"u","event":"E","properties":{{"s":"{}"}}}}"#,
        "[".repeat(300)
    );
    assert!(
        run(Endpoint::Track, &deep_in_a_string, Channel::Web).is_ok(),
        "brackets inside strings do not count"
    );
    let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
    assert!(matches!(
        run(Endpoint::Track, &deep, Channel::Web),
        Err(CollectError::TooDeep { limit: 100 })
    ));
    let too_many: Vec<Value> = (0..2_501).map(|_| json!({})).collect();
    let body = json!({"batch": too_many}).to_string();
    assert!(matches!(
        run(Endpoint::Batch, &body, Channel::Web),
        Err(CollectError::BatchTooLarge { count: 2_501, .. })
    ));
    let huge = format!(r#"{{"batch":[],"pad":"{}"}}"#, "x".repeat(600 * 1024));
    assert!(matches!(
        run(Endpoint::Batch, &huge, Channel::Web),
        Err(CollectError::BodyTooLarge { .. })
    ));
    let limits = Limits::default();
    assert!(matches!(
        RequestBody::parse(b"{\"a\":\"\xff\"}", &limits),
        Err(CollectError::InvalidJson(_))
    ));
}

#[test]
fn write_key_is_read_from_the_body() {
    let limits = Limits::default();
    let body = RequestBody::parse(br#"{"writeKey":"wk_1","batch":[]}"#, &limits).unwrap();
    assert_eq!(body.write_key().as_deref(), Some("wk_1"));
    let body = RequestBody::parse(br#"{"batch":[]}"#, &limits).unwrap();
    assert_eq!(body.write_key(), None);
}

#[test]
fn generated_message_ids_are_flagged() {
    let events = accepted(
        Endpoint::Identify,
        json!({"userId": "u", "traits": {"email": "a@b.c"}}),
    );
    assert!(
        events[0]["messageId"]
            .as_str()
            .unwrap()
            .starts_with("atrium-")
    );
    assert_eq!(events[0]["type"], "identify");
    assert_eq!(events[0]["traits"]["email"], "a@b.c");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let limits = Limits::default();
        let source = source(Channel::Web);
        let facts = RequestFacts { source: &source, received_at_ms: 0, client_ip: None };
        if let Ok(body) = RequestBody::parse(&bytes, &limits) {
            let _ = body.normalize(Endpoint::Batch, &facts, &limits);
            let _ = body.normalize(Endpoint::Track, &facts, &limits);
        }
    }

    #[test]
    fn accepted_payloads_are_json_objects_that_keep_properties(
        name in "[a-zA-Z\\\\\"][a-zA-Z \\\\\"]{0,19}",
        key in "[a-z\"\\\\]{1,8}",
        value in any::<i64>(),
    ) {
        let body = json!({"userId": "u", "event": name, "properties": {key.clone(): value}});
        let events = accepted(Endpoint::Track, body);
        prop_assert_eq!(&events[0]["event"], &json!(name));
        prop_assert_eq!(&events[0]["properties"][&key], &json!(value));
    }
}
