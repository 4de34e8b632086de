//! Filter expressions: each operator, precedence, errors with positions, and evaluation over
//! assembled traces.

use std::path::PathBuf;

use serde_json::{Value, json};
use xray_local::{Filter, Trace};

/// The checked-in multi-service trace: orders-api (500, fault, annotations) calling DynamoDB
/// and payments (503) which calls Stripe (429).
fn fixture() -> Trace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/trace.json");
    let docs: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    xray_local::assemble(docs).unwrap().remove(0)
}

/// A healthy one-segment trace.
fn healthy() -> Trace {
    xray_local::assemble([json!({
        "name": "catalog", "id": "70de5b6f19ff9a0a", "start_time": 100.0, "end_time": 100.25,
        "trace_id": "1-581cf771-a006649127e371903a2de979",
        "http": {"request": {"method": "get", "url": "http://localhost/items?page=2"},
                 "response": {"status": 200}},
        "annotations": {"tier": "gold", "items": 12, "cached": false},
        "subsegments": [{"name": "cache", "id": "70de5b6f19ff9a0b", "start_time": 100.05,
                         "end_time": 100.5, "annotations": {"tier": "silver"}}],
    })])
    .unwrap()
    .remove(0)
}

fn check(expr: &str, fixture_matches: bool, healthy_matches: bool) {
    let filter = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(
        filter.matches(&fixture()),
        fixture_matches,
        "fixture: {expr}"
    );
    assert_eq!(
        filter.matches(&healthy()),
        healthy_matches,
        "healthy: {expr}"
    );
}

#[test]
fn annotations_compare_strings_numbers_and_bools() {
    check(r#"annotation.tenant = "blue""#, true, false);
    check(r#"annotation.tier = "gold""#, false, true);
    // Any entity's annotation counts: the subsegment's `silver` too.
    check(r#"annotation.tier = "silver""#, false, true);
    check(r#"annotation.tier != "gold""#, false, true);
    check("annotation.items = 3", true, false);
    check("annotation.items != 3", false, true);
    check("annotation.items > 3", false, true);
    check("annotation.items >= 3", true, true);
    check("annotation.items < 12", true, false);
    check("annotation.items <= 12", true, true);
    check("annotation.items > 1e1", false, true);
    check("annotation.priority_order = true", true, false);
    check("annotation.cached = false", false, true);
    check("annotation.cached = TRUE", false, false);
    check(r#"annotation.tenant CONTAINS "lu""#, true, false);
    check(r#"annotation.tenant BEGINSWITH "bl""#, true, false);
    check(r#"annotation.tenant endswith "ue""#, true, false);
    // A string never equals a number.
    check(r#"annotation.items = "3""#, false, false);
    check("annotation.missing = 1", false, false);
}

#[test]
fn services_flags_and_times() {
    check(r#"service("orders-api")"#, true, false);
    check(r#"service("payments")"#, true, false);
    check(r#"service("DynamoDB")"#, true, false);
    check(r#"service("audit-log")"#, false, false);
    check(r#"service("catalog")"#, false, true);
    check("fault = true", true, false);
    check("fault = false", false, true);
    check("fault != true", false, true);
    // The trace's own response decides, as in X-Ray: orders-api answered 500, a fault, and
    // the 429 that Stripe answered payments is not the trace's error.
    check("error = true", false, false);
    check("throttle = true", true, false);
    check("ok = true", false, true);
    // Bare, a boolean keyword is `= true`; `!` negates it.
    check("fault", true, false);
    check("!fault", false, true);
    check("FAULT AND throttle", true, false);
    check("error", false, false);
    check("ok", false, true);
    check("!ok", true, false);
    check("ok = false", true, false);
    // The fixture holds a subsegment in progress and one whose parent never came.
    check("partial", true, false);
    check("!partial AND responsetime > 0.2", false, true);
    // orders-api took 197.7 ms; catalog 250 ms.
    check("responsetime > 0.2", false, true);
    check("responsetime < 0.2", true, false);
    check("responsetime >= 0.25", false, true);
    // The whole healthy trace runs to its subsegment's end: 500 ms.
    check("duration > 0.4", false, true);
    check("duration <= 0.2", true, false);
}

#[test]
fn http_fields_of_the_root_segment() {
    check(r#"http.url CONTAINS "/v1/orders""#, true, false);
    check(r#"http.url BEGINSWITH "http://localhost""#, false, true);
    check(r#"http.url ENDSWITH "page=2""#, false, true);
    check(
        r#"http.url = "https://orders.example.net/v1/orders""#,
        true,
        false,
    );
    check(r#"http.url != "x""#, true, true);
    // The root's status, not the payments segment's 503.
    check("http.status = 500", true, false);
    check("http.status = 503", false, false);
    check("http.status >= 500", true, false);
    check("http.status < 300", false, true);
    check(r#"http.method = "POST""#, true, false);
    check(r#"http.method = "GET""#, false, true);
    check(r#"http.method != "GET""#, true, false);
}

#[test]
fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
    // OR below AND: true OR (false AND false) is true; (true OR false) AND false would be false.
    check(
        r#"service("orders-api") OR service("x") AND service("y")"#,
        true,
        false,
    );
    check(
        r#"(service("orders-api") OR service("x")) AND service("y")"#,
        false,
        false,
    );
    // NOT below AND: (NOT false) AND true.
    check(r#"NOT service("x") AND fault = true"#, true, false);
    check(
        r#"NOT (service("orders-api") AND fault = true)"#,
        false,
        true,
    );
    check(r#"NOT service("orders-api") OR fault = true"#, true, true);
    check(r#"!fault = true"#, false, true);
    check("NOT NOT fault = true", true, false);
    check(
        r#"annotation.tier = "gold" AND NOT (fault = true OR responsetime > 1)"#,
        false,
        true,
    );
    check("annotation.missing = 1 OR fault = true", true, false);
}

fn error_at(expr: &str) -> (usize, &'static str, String) {
    let err = Filter::parse(expr).expect_err(expr);
    (err.position(), err.expected(), err.found().to_owned())
}

#[test]
fn errors_carry_the_position_and_what_was_expected() {
    assert_eq!(
        error_at("fault = "),
        (8, "`true` or `false`", "end of input".into())
    );
    assert_eq!(
        error_at("fault = yes"),
        (8, "`true` or `false`", "`yes`".into())
    );
    assert_eq!(error_at("fault < true"), (6, "`=` or `!=`", "`<`".into()));
    assert_eq!(
        error_at(r#"responsetime > "slow""#),
        (15, "a number", "`\"slow\"`".into())
    );
    assert_eq!(
        error_at(r#"annotation.tier < "gold""#),
        (18, "a number", "`\"gold\"`".into())
    );
    assert_eq!(
        error_at("annotation.n CONTAINS 3"),
        (22, "a quoted string", "`3`".into())
    );
    assert_eq!(error_at("annotation. = 1").0, 11);
    assert_eq!(
        error_at(r#"service(orders)"#),
        (8, "a quoted name or `id(...)`", "`orders`".into())
    );
    assert_eq!(error_at(r#"edge("a")"#), (8, "`,`", "`)`".into()));
    assert_eq!(
        error_at(r#"service(id(region: "x"))"#),
        (11, "`name`, `type` or `account.id`", "`region`".into())
    );
    assert_eq!(
        error_at(r#"service("a") { fault"#),
        (20, "`}`", "end of input".into())
    );
    assert_eq!(
        error_at(r#"service("a""#),
        (11, "`)`", "end of input".into())
    );
    assert_eq!(
        error_at(r#"(fault = true"#),
        (13, "`)`", "end of input".into())
    );
    assert_eq!(
        error_at("fault = true )"),
        (13, "`AND`, `OR` or end of input", "`)`".into())
    );
    assert_eq!(error_at("fault = true AND").0, 16);
    assert_eq!(error_at("bogus = 1").0, 0);
    assert_eq!(error_at("").0, 0);
    assert_eq!(
        error_at(r#"http.url CONTAINS "open"#),
        (23, "a closing quote", "end of input".into())
    );
    assert_eq!(error_at("fault = true # x").0, 13);
    assert_eq!(
        error_at("http.status = 5..0"),
        (14, "a number", "`5..0`".into())
    );
    let message = Filter::parse("fault = 1").unwrap_err().to_string();
    assert_eq!(message, "at byte 8: expected `true` or `false`, found `1`");
}

#[test]
fn hostile_input_is_refused_not_recursed() {
    let deep = format!("{}fault = true{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Filter::parse(&deep).is_err());
    let nots = format!("{}fault = true", "NOT ".repeat(500));
    assert!(Filter::parse(&nots).is_err());
    let braces = format!("{}fault{}", "service() { ".repeat(100), " }".repeat(100));
    assert_eq!(
        Filter::parse(&braces).unwrap_err().expected(),
        "less nesting"
    );
    let nested = format!("{}fault = true{}", "(".repeat(30), ")".repeat(30));
    assert!(Filter::parse(&nested).unwrap().matches(&fixture()));
    // Escapes and multi-byte text inside strings.
    check(r#"annotation.tenant = "bl\ue""#, true, false);
    assert!(Filter::parse("annotation.é = 1").is_err());
    assert_eq!(
        Filter::parse("annotation.k = \"é\" AND ü")
            .unwrap_err()
            .position(),
        24
    );
}

#[test]
fn partial_is_a_trace_with_an_entity_in_progress_or_a_parent_missing() {
    let open = xray_local::assemble([json!({
        "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 100.0, "in_progress": true,
        "trace_id": "1-581cf771-a006649127e371903a2de979",
    })])
    .unwrap()
    .remove(0);
    assert!(Filter::parse("partial").unwrap().matches(&open));
    assert!(!Filter::parse("!partial").unwrap().matches(&open));
    // A root with an error flag and no status is neither ok nor a fault.
    let failed = xray_local::assemble([json!({
        "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 100.0, "end_time": 100.1,
        "trace_id": "1-581cf771-a006649127e371903a2de979", "error": true,
    })])
    .unwrap()
    .remove(0);
    for (expr, expected) in [("error", true), ("ok", false), ("fault", false)] {
        assert_eq!(
            Filter::parse(expr).unwrap().matches(&failed),
            expected,
            "{expr}"
        );
    }
}

/// A trace from documents written here, for the forms the fixture does not carry.
fn trace_of(docs: Value) -> Trace {
    xray_local::assemble(docs.as_array().unwrap().clone())
        .unwrap()
        .remove(0)
}

#[test]
fn service_and_edge_with_their_sub_filters() {
    // The documentation's forms, over the fixture: orders-api (500) calls DynamoDB and,
    // through a remote call, payments (an EC2 instance, 503), which calls Stripe (429).
    check(
        r#"service("payments") { fault = true OR responsetime > 2 }"#,
        true,
        false,
    );
    check(r#"service("payments") { responsetime > 2 }"#, false, false);
    check(
        r#"service("orders-api") { root = true and fault = true }"#,
        true,
        false,
    );
    check(r#"service("payments") { root }"#, false, false);
    check(r#"service("catalog") { root AND ok }"#, false, true);
    check("service() { fault }", true, false);
    check("service() { throttle }", true, false);
    check(r#"!service("legacy-auth")"#, true, true);
    check(r#"edge("orders-api", "payments") { fault }"#, true, false);
    check(
        r#"edge("orders-api", "payments") { throttle }"#,
        false,
        false,
    );
    check(r#"edge("payments", "Stripe") { throttle }"#, true, false);
    check(r#"edge("payments", "Stripe")"#, true, false);
    check(r#"edge("orders-api", "Stripe")"#, false, false);
    check(
        r#"edge("orders-api", id(name: "DynamoDB", type: "AWS::DynamoDB::Table")) { ok }"#,
        true,
        false,
    );
    check(
        r#"edge("orders-api", id(name: "DynamoDB", type: "AWS::DynamoDB::Table")) { throttle }"#,
        false,
        false,
    );
    // A service's type matches the calls to its resources.
    check(r#"service(id(type: "AWS::DynamoDB"))"#, true, false);
    check(
        r#"service(id(type: "AWS::EC2::Instance")) { fault }"#,
        true,
        false,
    );
    check(
        r#"service(id(name: "payments", type: "AWS::ECS::Container"))"#,
        false,
        false,
    );
    check(
        r#"service("orders-api") { http.clientip = "198.51.100.7" }"#,
        true,
        false,
    );
    check(
        r#"service("orders-api") AND annotation.tenant = "blue""#,
        true,
        false,
    );
    check("inferred", true, false);
    check("!inferred", false, true);
}

#[test]
fn string_keywords_bare_annotations_and_juxtaposition() {
    check("annotation.tenant", true, false);
    check("!annotation.tenant", false, true);
    check("annotation.tier", false, true);
    check("http.url", true, true);
    check(r#"http.clientip = "198.51.100.7""#, true, false);
    check("http.useragent", false, false);
    check(r#"http.method = "POST""#, true, false);
    check(
        r#"http.url BEGINSWITH "https://orders.example.net/v1/" AND !service("legacy-auth")"#,
        true,
        false,
    );
    check(
        "responsetime > 1.5 AND http.method = \"POST\"",
        false,
        false,
    );
    check("fault OR (error AND !throttle)", true, false);
    // Side by side is AND.
    check("ok !partial duration < 3", false, true);
    check("fault throttle", true, false);

    let t0 = 1_735_689_600.0;
    let trace = trace_of(json!([
        {"name": "api", "id": "70de5b6f19ff9a0a", "start_time": t0, "end_time": t0 + 1.0,
         "trace_id": "1-581cf771-a006649127e371903a2de979", "user": "alice",
         "resource_arn": "arn:aws:ecs:us-east-1:111122223333:container/api",
         "http": {"request": {"user_agent": "curl/8.5"}},
         "aws": {"account_id": "111122223333",
                 "ec2": {"instance_id": "i-0abc", "availability_zone": "us-east-1a"}},
         "subsegments": [{"name": "backend", "id": "70de5b6f19ff9a0b", "namespace": "remote",
                          "start_time": t0, "end_time": t0 + 0.5}]},
        {"name": "backend", "id": "70de5b6f19ff9a0c", "parent_id": "70de5b6f19ff9a0b",
         "start_time": t0 + 0.1, "end_time": t0 + 0.4, "user": "bob",
         "trace_id": "1-581cf771-a006649127e371903a2de979", "error": true},
    ]));
    for (expr, expected) in [
        (r#"user = "alice""#, true),
        (r#"user = "bob""#, true),
        (r#"user = "carol""#, false),
        // `!=` on a field with many values: no value is equal.
        (r#"user != "carol""#, true),
        (r#"user != "bob""#, false),
        (r#"user CONTAINS """#, true),
        ("user", true),
        (r#"availabilityzone = "us-east-1a""#, true),
        (r#"instance.id = "i-0abc""#, true),
        (r#"resource.arn ENDSWITH "container/api""#, true),
        (r#"http.useragent BEGINSWITH "curl/""#, true),
        (r#"service(id(account.id: "111122223333"))"#, true),
        (r#"service(id(account.id: "444455556666"))"#, false),
        (
            r#"service(id(account.id: "111122223333")) OR service(id(account.id: "444455556666"))"#,
            true,
        ),
        (r#"edge("api", "backend") { error }"#, false),
        (r#"service("backend") { error }"#, true),
        // The trace's own response: the backend's error is not the trace's.
        ("error", false),
        ("ok", true),
        (r#"service("backend") { user = "bob" }"#, true),
        (r#"service("api") { user = "bob" }"#, false),
    ] {
        let filter = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(filter.matches(&trace), expected, "{expr}");
    }
}

#[test]
fn forms_left_out_say_so() {
    for (expr, word) in [
        (
            r#"group.name = "slow-requests" AND user = "alice""#,
            "`group.name`",
        ),
        (
            r#"group.arn = "arn:aws:xray:us-east-1:1:group/a/b""#,
            "`group.arn`",
        ),
        (r#"rootcause.json = #[{}]"#, "`rootcause.json`"),
    ] {
        let err = Filter::parse(expr).expect_err(expr);
        assert!(err.is_unsupported(), "{expr}: {err}");
        assert_eq!(err.found(), word, "{expr}");
        let message = err.to_string();
        assert!(
            message.contains("is not supported by xray-local"),
            "{message}"
        );
    }
    let group = Filter::parse(r#"group.name = "a""#)
        .unwrap_err()
        .to_string();
    assert!(group.contains("holds no groups"), "{group}");
    assert!(!Filter::parse("bogus").unwrap_err().is_unsupported());
}

/// The root causes, from the docs' examples: the fixture's faults end in `payments` (whose
/// call to Stripe did not fault) and in `render` (a template error); its error in the remote
/// Stripe call, throttled; its slowest path runs orders-api → payments → Stripe.
#[test]
fn root_cause_filters_judge_the_summarys_root_causes() {
    for (expr, fixture, healthy) in [
        ("rootcause.fault.service", true, false),
        (
            r#"rootcause.fault.service { name = "payments" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.fault.service { name = "orders-api" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.fault.service { type = "AWS::EC2::Instance" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.fault.service { type = "AWS::EC2" }"#,
            true,
            false,
        ),
        (r#"rootcause.fault.service { inferred }"#, false, false),
        (
            r#"rootcause.fault.entity { last and name = "render" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.fault.entity { first and name = "render" }"#,
            false,
            false,
        ),
        (
            r#"rootcause.fault.entity { name = "Stripe" }"#,
            false,
            false,
        ),
        (
            r#"rootcause.fault.exception { last and message = "missing field `total`" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.fault.exception { name = "RateLimited" }"#,
            false,
            false,
        ),
        ("rootcause.error.entity { last and remote }", true, false),
        (
            r#"rootcause.error.service { inferred and name = "Stripe" and type = "remote" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.error.exception { name = "RateLimited" AND remote }"#,
            true,
            false,
        ),
        (
            r#"rootcause.error.exception { message CONTAINS "too many" }"#,
            true,
            false,
        ),
        (
            "rootcause.responsetime.entity { last and coverage > 0.5 }",
            true,
            true,
        ),
        (
            "rootcause.responsetime.entity { coverage > 0.9 and !first }",
            false,
            true,
        ),
        (
            r#"rootcause.responsetime.service { index = 1 and name = "payments" }"#,
            true,
            false,
        ),
        (
            r#"rootcause.responsetime.service { name = "catalog" }"#,
            false,
            true,
        ),
        (
            r#"!rootcause.fault.service AND rootcause.responsetime.service"#,
            false,
            true,
        ),
        (
            r#"service("payments") AND rootcause.fault.entity { name = "payments" }"#,
            true,
            false,
        ),
    ] {
        check(expr, fixture, healthy);
    }
    // Their keywords stand inside their braces only, and trace keywords outside them.
    for (expr, expected) in [
        (
            r#"rootcause.fault { name = "x" }"#,
            "`.service`, `.entity` or `.exception`",
        ),
        (
            "rootcause.outage.service",
            "`rootcause.fault`, `rootcause.error` or",
        ),
        ("rootcause.fault.service { fault }", "a root-cause keyword"),
        (
            r#"service("a") { coverage > 0.8 }"#,
            "this one is for root-cause filters",
        ),
        ("rootcause.fault.entity { coverage }", "a comparison"),
    ] {
        let err = Filter::parse(expr).expect_err(expr);
        assert!(!err.is_unsupported(), "{expr}: {err}");
        assert!(err.expected().contains(expected), "{expr}: {err}");
    }
}
