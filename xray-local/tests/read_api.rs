//! The read API on the TCP side, as a second process would call it.

mod support;

use serde_json::{Value, json};
use support::{Sdk, WAIT, get_json, http, id, segment, trace_id};

#[test]
fn traces_stats_and_map_are_served_as_json() {
    let local = support::start();
    let sdk = Sdk::new(&local);
    let (gold, plain) = (trace_id(), trace_id());
    let mut gold_doc = segment(&gold, &id(), "checkout", 1.0, 1.5);
    gold_doc["annotations"] = json!({"tier": "gold"});
    gold_doc["fault"] = json!(true);
    gold_doc["subsegments"] = json!([{"name": "DynamoDB", "id": id(), "namespace": "aws",
                                      "start_time": 1.1, "end_time": 1.2}]);
    sdk.send(&gold_doc);
    sdk.send(&segment(&plain, &id(), "catalog", 1.0, 1.2));
    sdk.send_raw(b"not a datagram");
    assert_eq!(local.wait_for_traces(2, WAIT).len(), 2);
    local.wait_for_stats(WAIT, |s| s.received() == 3);
    let addr = local.tcp_addr();

    let (status, all) = get_json(addr, "/traces");
    assert_eq!(status, 200);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [gold.as_str(), plain.as_str()]);
    assert_eq!(all[0]["segments"][0], gold_doc);

    let query = "/traces?filter=annotation.tier+%3D+%22gold%22%20AND%20fault%20=%20true";
    let (status, matching) = get_json(addr, query);
    assert_eq!(status, 200);
    assert_eq!(matching.as_array().unwrap().len(), 1);
    assert_eq!(matching[0]["trace_id"], Value::String(gold.clone()));
    let (_, none) = get_json(addr, "/traces?filter=service(%22nope%22)");
    assert_eq!(none, json!([]));

    let (status, error) = get_json(addr, "/traces?filter=fault%20%3D%20maybe");
    assert_eq!(status, 400);
    assert_eq!(error["__type"], "InvalidRequestException");
    assert!(
        error["message"].as_str().unwrap().contains("at byte 8"),
        "{error}"
    );

    let (status, one) = get_json(addr, &format!("/traces/{plain}"));
    assert_eq!(status, 200);
    assert_eq!(one["segments"][0]["name"], "catalog");
    let (status, _) = http(addr, "GET", &format!("/traces/{}", trace_id()), "");
    assert_eq!(status, 404);
    let (status, _) = http(addr, "GET", "/traces/garbage", "");
    assert_eq!(status, 404);

    let (status, stats) = get_json(addr, "/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["received"], 3);
    assert_eq!(stats["accepted"], 2);
    assert_eq!(stats["dropped"]["missing_body"], 1);

    let (status, map) = get_json(addr, "/map");
    assert_eq!(status, 200);
    let edges = map["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(
        (edges[0]["from"].as_str(), edges[0]["to"].as_str()),
        (Some("checkout"), Some("DynamoDB"))
    );
    assert_eq!(edges[0]["requests"], 1);
    let (_, map) = get_json(addr, "/map?filter=service(%22catalog%22)");
    assert_eq!(map["nodes"].as_array().unwrap().len(), 1);

    let (status, rules) = get_json(addr, "/rules");
    assert_eq!(status, 200);
    assert_eq!(rules[0]["RuleName"], "Default");
}

#[test]
fn a_shut_down_daemon_stops_listening_on_tcp() {
    let local = support::start();
    let addr = local.tcp_addr();
    assert_eq!(get_json(addr, "/stats").0, 200);
    local.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
