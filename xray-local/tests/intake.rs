//! Datagram framing and validation: every malformed class is counted under its reason, and
//! what the SDKs really send is accepted.

mod support;

use serde_json::json;
use support::{HEADER, Sdk, WAIT, datagram, id, start, trace_id};
use xray_local::{DropReason, XRayLocal};

#[test]
fn each_malformed_datagram_is_counted_under_its_reason() {
    let local = start();
    let sdk = Sdk::new(&local);
    let t = trace_id();
    let valid =
        json!({"name": "api", "id": id(), "trace_id": t, "start_time": 1.0, "end_time": 2.0});
    let with = |key: &str, value: serde_json::Value| {
        let mut doc = valid.clone();
        doc[key] = value;
        datagram(&doc)
    };
    let without = |key: &str| {
        let mut doc = valid.clone();
        doc.as_object_mut().unwrap().remove(key);
        datagram(&doc)
    };
    #[rustfmt::skip]
    let cases: Vec<(String, DropReason)> = vec![
        (valid.to_string(), DropReason::MissingBody),
        (format!("{HEADER}\n"), DropReason::MissingBody),
        (format!("{HEADER}\n  \n"), DropReason::MissingBody),
        (String::new(), DropReason::MissingBody),
        (format!("{{\"format\":\"xml\",\"version\":1}}\n{valid}"), DropReason::InvalidHeader),
        (format!("{{\"format\":\"json\",\"version\":2}}\n{valid}"), DropReason::InvalidHeader),
        (format!("{{\"format\":\"json\",\"version\":\"1\"}}\n{valid}"), DropReason::InvalidHeader),
        (format!("{{\"format\":\"json\"}}\n{valid}"), DropReason::InvalidHeader),
        (format!("not json\n{valid}"), DropReason::InvalidHeader),
        (format!("[1]\n{valid}"), DropReason::InvalidHeader),
        (format!("{HEADER}\n{{\"name\":"), DropReason::InvalidJson),
        (format!("{HEADER}\n{valid}{valid}"), DropReason::InvalidJson),
        (format!("{HEADER}\n[1,2]"), DropReason::NotAnObject),
        (format!("{HEADER}\n\"api\""), DropReason::NotAnObject),
        (without("name"), DropReason::InvalidName),
        (with("name", json!(7)), DropReason::InvalidName),
        (without("id"), DropReason::InvalidId),
        (with("id", json!("70de5b6f19ff9a0")), DropReason::InvalidId),
        (with("id", json!("70de5b6f19ff9a0g")), DropReason::InvalidId),
        (with("id", json!(12)), DropReason::InvalidId),
        (without("trace_id"), DropReason::InvalidTraceId),
        (with("trace_id", json!("1-581cf771-a006649127e371903a2de97")), DropReason::InvalidTraceId),
        (with("trace_id", json!(["1-581cf771-a006649127e371903a2de979"])), DropReason::InvalidTraceId),
        (without("start_time"), DropReason::InvalidStartTime),
        (with("start_time", json!("1.0")), DropReason::InvalidStartTime),
        (with("type", json!("subsegment")), DropReason::InvalidParentId),
        (with("parent_id", json!("xyz")), DropReason::InvalidParentId),
    ];
    let mut bytes: Vec<Vec<u8>> = cases.iter().map(|(d, _)| d.clone().into_bytes()).collect();
    // Not UTF-8.
    bytes.push([HEADER.as_bytes(), b"\n{\"name\":\"\xff\xfe\"}"].concat());
    for b in &bytes {
        sdk.send_raw(b);
    }
    let n = bytes.len() as u64;
    let stats = local.wait_for_stats(WAIT, |s| s.received() >= n);
    assert_eq!(stats.received(), n);
    assert_eq!(stats.accepted(), 0);
    for reason in DropReason::ALL {
        let mut expected = cases.iter().filter(|(_, r)| *r == reason).count() as u64;
        if reason == DropReason::InvalidJson {
            expected += 1;
        }
        assert_eq!(stats.dropped(reason), expected, "{reason:?}");
    }
    assert_eq!(stats.dropped_total(), n);
    assert!(local.traces().is_empty());
}

#[test]
fn oversize_datagrams_are_dropped_before_parsing() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .max_datagram_size(1024)
        .start()
        .unwrap();
    let sdk = Sdk::new(&local);
    let t = trace_id();
    let small =
        json!({"name": "api", "id": id(), "trace_id": t, "start_time": 1.0, "end_time": 2.0});
    let mut big = small.clone();
    big["id"] = json!(id());
    big["metadata"] = json!({"default": {"blob": "x".repeat(2000)}});
    let exact = {
        // Pad a document so the whole datagram is exactly the limit.
        let mut doc = small.clone();
        doc["id"] = json!(id());
        doc["metadata"] = json!({"default": {"pad": ""}});
        let pad = 1024 - datagram(&doc).len();
        doc["metadata"]["default"]["pad"] = json!("y".repeat(pad));
        datagram(&doc)
    };
    assert_eq!(exact.len(), 1024);
    sdk.send(&big);
    sdk.send_raw(exact.as_bytes());
    sdk.send(&small);
    let stats = local.wait_for_stats(WAIT, |s| s.received() >= 3);
    assert_eq!(stats.dropped(DropReason::Oversize), 1);
    assert_eq!(stats.accepted(), 2);
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert_eq!(trace.segments().len(), 2);
}

#[test]
fn accepts_what_the_official_sdks_send() {
    let local = start();
    let sdk = Sdk::new(&local);
    let t = trace_id();
    let (root, child, grandchild) = (id(), id(), id());
    // GO and JAVA put spaces in the header; the daemon compares `format` case-insensitively.
    let header_go = r#"{"format": "json", "version": 1}"#;
    let header_upper = r#"{ "format" : "JSON" , "version" : 1 , "extra": true }"#;
    // JAVA: exponent times; PY: `type` and `trace_id` on embedded subsegments; trailing newline.
    let java = json!({"name": "api", "id": root, "trace_id": t, "start_time": 1.735689600123456E9,
                      "end_time": 1.7356896005E9, "parent_id": id(),
                      "aws": {"xray": {"sdk": "X-Ray for Java"}}});
    let py = json!({"type": "subsegment", "name": "db", "id": child, "trace_id": t,
                    "parent_id": root, "start_time": 1735689600.2, "end_time": 1735689600.3,
                    "namespace": "local",
                    "subsegments": [{"type": "subsegment", "name": "q", "id": grandchild,
                                     "trace_id": t, "parent_id": child,
                                     "start_time": 1735689600.21, "end_time": 1735689600.22}]});
    sdk.send_raw(format!("{header_go}\n{java}").as_bytes());
    sdk.send_raw(format!("{header_upper}\n{py}\n").as_bytes());
    // The segment alone already looks complete: wait for both pieces first.
    local.wait_for_stats(WAIT, |s| s.received() >= 2);
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert_eq!(local.stats().dropped_total(), 0);
    assert!(trace.is_complete());
    let q = trace.find("q").unwrap();
    assert_eq!(q.depth(), 2);
    assert_eq!(q.parent().and_then(|p| p.name()), Some("db"));
    assert_eq!(
        trace.segments()[0]["aws"]["xray"]["sdk"],
        json!("X-Ray for Java"),
        "unknown fields pass through"
    );
}

#[test]
fn arbitrary_bytes_never_stop_the_daemon() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let local = start();
    let sdk = Sdk::new(&local);
    let mut runner = TestRunner::default();
    let strategy = (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..600),
        prop::sample::select(vec!["", "{", "[", "\"", "{\"name\":1}", "{\"id\":\"", "\n"]),
    );
    let mut sent = 0u64;
    for _ in 0..256 {
        let (with_header, bytes, prefix) = strategy.new_tree(&mut runner).unwrap().current();
        let mut datagram = Vec::new();
        if with_header {
            datagram.extend_from_slice(HEADER.as_bytes());
            datagram.push(b'\n');
        }
        datagram.extend_from_slice(prefix.as_bytes());
        datagram.extend_from_slice(&bytes);
        sdk.send_raw(&datagram);
        sent += 1;
    }
    let stats = local.wait_for_stats(WAIT, |s| s.received() >= sent);
    assert_eq!(stats.received(), sent);
    assert_eq!(stats.accepted() + stats.dropped_total(), sent);

    // Still reading and assembling.
    let t = trace_id();
    sdk.send(
        &json!({"name": "after", "id": id(), "trace_id": t, "start_time": 1.0, "end_time": 2.0}),
    );
    assert!(local.wait_for_trace(&t, WAIT).is_some());
}
