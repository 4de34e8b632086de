//! The sampling API on the TCP side, called as the SDKs call it.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{WAIT, get_json, http, post_json};
use xray_local::{CentralizedRule, CentralizedRulesError, XRayLocal};

fn start_with(rules: &str, page_size: usize) -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .rules_json(rules)
        .unwrap()
        .rules_page_size(page_size)
        .start()
        .unwrap()
}

fn start() -> XRayLocal {
    support::start()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const RULES: &str = r#"[
  {"RuleName": "orders", "Priority": 100, "FixedRate": 0.1, "ReservoirSize": 5,
   "ServiceName": "orders-api", "HTTPMethod": "POST", "URLPath": "/v1/orders*"},
  {"RuleName": "health", "Priority": 1, "FixedRate": 0.0, "ReservoirSize": 0,
   "URLPath": "/health", "SomeFutureField": true},
  {"RuleName": "attrs", "Priority": 50, "FixedRate": 1.0, "ReservoirSize": 1,
   "RuleARN": "arn:aws:xray:eu-west-1:123456789012:sampling-rule/attrs",
   "Attributes": {"tier": "gold"}}
]"#;

#[test]
fn tcp_listens_on_its_own_free_port_beside_udp() {
    let local = start();
    assert_ne!(local.tcp_addr().port(), 0);
    assert_eq!(
        local.daemon_address(),
        format!("tcp:{} udp:{}", local.tcp_addr(), local.udp_addr())
    );
}

#[test]
fn default_rules_are_the_services_default_rule() {
    let local = start();
    for body in ["{}", r#"{"NextToken": null}"#, ""] {
        let (status, reply) = post_json(local.tcp_addr(), "/GetSamplingRules", body);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["NextToken"], Value::Null);
        let records = reply["SamplingRuleRecords"].as_array().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0]["SamplingRule"],
            json!({
                "RuleName": "Default",
                "RuleARN": "arn:aws:xray:local:000000000000:sampling-rule/Default",
                "ResourceARN": "*", "Priority": 10000, "FixedRate": 0.05, "ReservoirSize": 1,
                "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*",
                "URLPath": "*", "Version": 1, "Attributes": {},
            })
        );
        assert!(records[0]["CreatedAt"].as_f64().unwrap() <= now());
        assert!(records[0]["ModifiedAt"].is_f64());
    }
    assert_eq!(local.sampling_calls().get_sampling_rules(), 3);
}

#[test]
fn rules_from_json_fill_defaults_and_add_the_default_rule() {
    let local = start_with(RULES, 100);
    let (_, reply) = post_json(local.tcp_addr(), "/GetSamplingRules", "{}");
    let rules: Vec<&Value> = reply["SamplingRuleRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["SamplingRule"])
        .collect();
    let names: Vec<&str> = rules
        .iter()
        .map(|r| r["RuleName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "health", "attrs", "Default"]);
    assert_eq!(rules[0]["Host"], "*");
    assert_eq!(rules[0]["HTTPMethod"], "POST");
    assert_eq!(rules[0]["Version"], 1);
    assert_eq!(
        rules[0]["RuleARN"],
        "arn:aws:xray:local:000000000000:sampling-rule/orders"
    );
    assert_eq!(rules[1].get("SomeFutureField"), None);
    assert_eq!(rules[2]["Attributes"], json!({"tier": "gold"}));
    assert_eq!(
        rules[2]["RuleARN"],
        "arn:aws:xray:eu-west-1:123456789012:sampling-rule/attrs"
    );
}

#[test]
fn rules_are_paged_with_next_token() {
    let local = start_with(RULES, 3);
    let (_, first) = post_json(local.tcp_addr(), "/GetSamplingRules", "{}");
    assert_eq!(first["SamplingRuleRecords"].as_array().unwrap().len(), 3);
    let token = first["NextToken"].as_str().unwrap().to_owned();
    let (status, second) = post_json(
        local.tcp_addr(),
        "/GetSamplingRules",
        &json!({"NextToken": token}).to_string(),
    );
    assert_eq!(status, 200);
    let records = second["SamplingRuleRecords"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["SamplingRule"]["RuleName"], "Default");
    assert_eq!(second["NextToken"], Value::Null);

    let (status, bad) = post_json(
        local.tcp_addr(),
        "/GetSamplingRules",
        r#"{"NextToken": "not-a-token"}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(bad["__type"], "InvalidRequestException");
}

fn stats_doc(rule: &str, client: &str, requests: u64) -> Value {
    json!({"RuleName": rule, "ClientID": client, "Timestamp": 1735689610,
           "RequestCount": requests, "SampledCount": 2, "BorrowCount": 1})
}

#[test]
fn targets_split_the_reservoir_and_statistics_are_recorded() {
    let local = start_with(RULES, 100);
    let a = "59ea0cebf2ac3fca7f86e2f2";
    let b = "ffea0cebf2ac3fca7f86e2f2";
    let before = now();
    let (status, reply) = post_json(
        local.tcp_addr(),
        "/SamplingTargets",
        &json!({"SamplingStatisticsDocuments": [stats_doc("orders", a, 240)]}).to_string(),
    );
    assert_eq!(status, 200, "{reply}");
    let target = &reply["SamplingTargetDocuments"][0];
    assert_eq!(target["RuleName"], "orders");
    assert_eq!(target["FixedRate"], 0.1);
    assert_eq!(
        target["ReservoirQuota"], 5,
        "a lone client gets the whole reservoir"
    );
    assert_eq!(target["Interval"], 10);
    let ttl = target["ReservoirQuotaTTL"].as_f64().unwrap();
    assert!(ttl >= before + 300.0 && ttl <= now() + 300.0, "{ttl}");
    assert_eq!(reply["UnprocessedStatistics"], json!([]));

    let (_, reply) = post_json(
        local.tcp_addr(),
        "/SamplingTargets",
        &json!({"SamplingStatisticsDocuments": [
            stats_doc("orders", b, 7), stats_doc("gone", b, 1)]})
        .to_string(),
    );
    assert_eq!(
        reply["SamplingTargetDocuments"][0]["ReservoirQuota"], 2,
        "the second client by id gets the smaller share of 5"
    );
    assert_eq!(
        reply["UnprocessedStatistics"],
        json!([{"RuleName": "gone", "ErrorCode": "400", "Message": "Rule does not exist"}])
    );
    let (_, reply) = post_json(
        local.tcp_addr(),
        "/SamplingTargets",
        &json!({"SamplingStatisticsDocuments": [stats_doc("orders", a, 1)]}).to_string(),
    );
    assert_eq!(reply["SamplingTargetDocuments"][0]["ReservoirQuota"], 3);

    let (_, rules) = post_json(local.tcp_addr(), "/GetSamplingRules", "{}");
    assert_eq!(
        reply["LastRuleModification"],
        rules["SamplingRuleRecords"][0]["ModifiedAt"]
    );

    let stats = local.sampling_statistics();
    let summary: Vec<(&str, &str, u64, u64, u64)> = stats
        .iter()
        .map(|s| {
            (
                s.rule_name.as_str(),
                s.client_id.as_str(),
                s.request_count,
                s.sampled_count,
                s.borrow_count,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("orders", a, 240, 2, 1),
            ("orders", b, 7, 2, 1),
            ("gone", b, 1, 2, 1),
            ("orders", a, 1, 2, 1),
        ]
    );
    assert_eq!(stats[0].timestamp, 1735689610.0);
    assert_eq!(local.sampling_calls().sampling_targets(), 3);
}

#[test]
fn waiting_for_statistics_returns_once_they_arrive() {
    let local = start();
    let addr = local.tcp_addr();
    let reporter = std::thread::spawn(move || {
        post_json(
            addr,
            "/SamplingTargets",
            &json!({"SamplingStatisticsDocuments": [
                stats_doc("Default", "59ea0cebf2ac3fca7f86e2f2", 3)]})
            .to_string(),
        )
    });
    let stats = local.wait_for_sampling_statistics(WAIT, |s| !s.is_empty());
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].request_count, 3);
    assert_eq!(reporter.join().unwrap().0, 200);
}

#[test]
fn changed_rules_move_last_rule_modification() {
    let local = start();
    let report = json!({"SamplingStatisticsDocuments": [
        stats_doc("Default", "59ea0cebf2ac3fca7f86e2f2", 1)]})
    .to_string();
    let (_, before) = post_json(local.tcp_addr(), "/SamplingTargets", &report);
    local
        .set_sampling_rules(vec![CentralizedRule::new("new", 5, 0.5, 2)])
        .unwrap();
    let (_, after) = post_json(local.tcp_addr(), "/SamplingTargets", &report);
    assert!(
        after["LastRuleModification"].as_f64().unwrap()
            > before["LastRuleModification"].as_f64().unwrap()
    );
    let names: Vec<String> = local
        .sampling_rules()
        .into_iter()
        .map(|r| r.rule_name)
        .collect();
    assert_eq!(names, ["new", "Default"]);
    assert!(matches!(
        local.set_sampling_rules(vec![CentralizedRule::new("x", 1, 2.0, 1)]),
        Err(CentralizedRulesError::FixedRate(_))
    ));
}

#[test]
fn bad_requests_get_an_xray_error_and_the_daemon_keeps_serving() {
    let local = start();
    let addr = local.tcp_addr();
    let too_many: Vec<Value> = (0..26)
        .map(|_| stats_doc("Default", "59ea0cebf2ac3fca7f86e2f2", 1))
        .collect();
    let cases = [
        (
            "POST",
            "/GetSamplingRules",
            "{not json".to_owned(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/GetSamplingRules",
            "[1]".to_owned(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/GetSamplingRules",
            r#"{"NextToken": 3}"#.to_owned(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/SamplingTargets",
            "{}".to_owned(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/SamplingTargets",
            r#"{"SamplingStatisticsDocuments": [{"RuleName": "Default"}]}"#.to_owned(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/SamplingTargets",
            json!({"SamplingStatisticsDocuments": too_many}).to_string(),
            "InvalidRequestException",
        ),
        (
            "POST",
            "/Nope",
            "{}".to_owned(),
            "UnknownOperationException",
        ),
        (
            "GET",
            "/GetSamplingRules",
            String::new(),
            "UnknownOperationException",
        ),
    ];
    for (method, path, body, kind) in cases {
        let (status, text) = http(addr, method, path, &body);
        assert_eq!(status, 400, "{method} {path} {body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["__type"], kind, "{method} {path} {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(local.sampling_statistics().is_empty());
    let (status, _) = get_json(addr, "/stats");
    assert_eq!(status, 200);
}

#[test]
fn invalid_rules_are_refused_with_a_reason() {
    let builder = || XRayLocal::builder().udp_addr("127.0.0.1:0".parse().unwrap());
    assert!(matches!(
        builder().rules_json("{}"),
        Err(CentralizedRulesError::Json(_))
    ));
    assert!(matches!(
        builder().rules_json(r#"[{"RuleName": "a", "Priority": 1, "FixedRate": 0.1}]"#),
        Err(CentralizedRulesError::Json(_))
    ));
    let dup = vec![
        CentralizedRule::new("a", 1, 0.1, 1),
        CentralizedRule::new("a", 2, 0.1, 1),
    ];
    assert!(
        matches!(builder().rules(dup), Err(CentralizedRulesError::DuplicateName(n)) if n == "a")
    );
    assert!(matches!(
        builder().rules(vec![CentralizedRule::new("", 1, 0.1, 1)]),
        Err(CentralizedRulesError::EmptyName)
    ));
    assert!(matches!(
        builder().rules_file("/nonexistent/rules.json"),
        Err(CentralizedRulesError::Read(_))
    ));
}

#[test]
fn an_oversize_body_is_refused_without_reading_it_all() {
    let local = start();
    let body = format!(r#"{{"NextToken": "{}"}}"#, "x".repeat(1024 * 1024 + 1));
    let (status, text) = http(local.tcp_addr(), "POST", "/GetSamplingRules", &body);
    assert_eq!(status, 413, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["__type"], "InvalidRequestException");
    assert_eq!(
        post_json(local.tcp_addr(), "/GetSamplingRules", "{}").0,
        200
    );
}
