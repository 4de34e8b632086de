//! The capture's views and what their failures say.

use std::panic::{AssertUnwindSafe, catch_unwind};

use xray_sdk::clock::ManualClock;
use xray_testkit::capture::Capture;

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion passed");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn recorded() -> Capture {
    let capture = Capture::new();
    let recorder = capture.recorder();
    let segment = recorder.begin_segment("checkout");
    segment.put_annotation("tier", "gold");
    let pricing = segment.begin_subsegment("pricing");
    pricing.put_metadata("basket", &3);
    let db = pricing.begin_subsegment("orders@db");
    db.set_error();
    db.end();
    pricing.end();
    segment.end();
    capture
}

#[test]
fn views_find_entities_by_name_and_read_their_fields() {
    let capture = recorded();
    assert_eq!(capture.documents().len(), 1);
    let checkout = capture.segment("checkout");
    checkout
        .assert_annotation("tier", "gold")
        .assert_fault(false);
    let pricing = checkout.subsegment("pricing");
    pricing
        .assert_parent(&checkout)
        .assert_metadata("default", "basket", 3);
    let db = capture.entity("orders@db");
    db.assert_parent(&pricing).assert_error(true);
    assert_eq!(db.trace_id(), checkout.trace_id());
    assert_eq!(
        capture
            .entities()
            .iter()
            .map(|e| e.name().to_owned())
            .collect::<Vec<_>>(),
        ["checkout", "pricing", "orders@db"]
    );
    capture.clear();
    assert!(capture.documents().is_empty());
}

#[test]
fn failures_say_what_there_is_instead() {
    let capture = recorded();
    let checkout = capture.segment("checkout");

    let missing = panic_message(|| {
        capture.segment("payments");
    });
    assert_eq!(
        missing,
        "no segment named `payments` was sent; there are: [`checkout`]"
    );
    let missing = panic_message(|| {
        checkout.subsegment("DynamoDB");
    });
    assert_eq!(
        missing,
        "`checkout` has no subsegment named `DynamoDB`; its subsegments: [`pricing`]"
    );
    let wrong = panic_message(|| {
        checkout.assert_annotation("tier", "silver");
    });
    assert_eq!(
        wrong,
        "`checkout` has annotation `tier` = \"gold\", expected \"silver\""
    );
    let absent = panic_message(|| {
        checkout.assert_annotation("region", "eu");
    });
    assert_eq!(
        absent,
        "`checkout` has no annotation `region` (expected \"eu\"); it has: [`tier`]"
    );
    let flag = panic_message(|| {
        checkout.assert_fault(true);
    });
    assert_eq!(flag, "`checkout` has `fault` unset, expected set");
    let pricing = checkout.subsegment("pricing");
    let parent = panic_message(|| {
        checkout.assert_parent(&pricing);
    });
    assert!(
        parent.starts_with("`checkout` is under nothing, not under `pricing`"),
        "{parent}"
    );
}

#[test]
fn the_builder_can_be_configured_and_documents_are_checked() {
    let clock = std::sync::Arc::new(ManualClock::new(1_700_000_000_000_000));
    let capture =
        Capture::with_builder(|b| b.with_service_name("billing").with_clock(clock.clone()));
    let segment = capture.recorder().begin_segment("billing");
    clock.advance_micros(1_500);
    segment.end();
    let billing = capture.segment("billing");
    let doc = billing.json();
    assert_eq!(doc["start_time"], 1_700_000_000.0);
    assert_eq!(doc["end_time"], 1_700_000_000.001_5);
}
