//! XRaySpanLayer under a real tracing-subscriber registry: spans become subsegments, in sync
//! and async code, and the X-Ray context follows the entered span.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::instrument::WithSubscriber;
use tracing::{Instrument, Subscriber};
use tracing_subscriber::prelude::*;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{FutureExt, InMemoryEmitter, Recorder};
use xray_testkit::capture::{Capture, EntityView};
use xray_tracing_subscriber::XRaySpanLayer;

fn recorder(rate: f64) -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::new();
    let rules = SamplingRules::builder()
        .with_default(0, rate)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(Arc::new(LocalSampler::new(rules)))
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    (recorder, emitter)
}

fn subscriber(layer: XRaySpanLayer) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry().with(layer)
}

fn subs(doc: &Value) -> &[Value] {
    doc["subsegments"].as_array().map_or(&[], Vec::as_slice)
}

fn only(emitter: &InMemoryEmitter) -> Value {
    let mut docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 1, "{docs:#?}");
    docs.remove(0)
}

#[test]
fn spans_become_nested_subsegments_with_their_fields() {
    let capture = Capture::new();
    let recorder = capture.recorder();
    let layer = XRaySpanLayer::new().with_annotations(["order_id", "http.method"]);
    tracing::subscriber::with_default(subscriber(layer), || {
        let segment = recorder.begin_segment("checkout");
        let _current = segment.enter();
        let outer = tracing::info_span!(
            "reserve",
            order_id = 42,
            http.method = "POST",
            note = tracing::field::Empty
        );
        outer.in_scope(|| {
            let inner = tracing::debug_span!("load", table = "orders", ratio = 0.5);
            inner.in_scope(|| {
                // The current X-Ray context is the inner span's subsegment.
                recorder.begin_subsegment("query").end();
            });
            // Recorded after creation, through `Span::record`.
            outer.record("note", "late");
        });
        assert_eq!(xray_sdk::current().unwrap().id(), segment.id());
    });

    let checkout = capture.segment("checkout");
    let reserve = checkout.subsegment("reserve");
    reserve
        .assert_parent(&checkout)
        .assert_annotation("order_id", 42)
        .assert_annotation("http_method", "POST")
        .assert_metadata("tracing", "note", "late");
    let times = |e: &EntityView| {
        (
            e.json()["start_time"].as_f64(),
            e.json()["end_time"].as_f64(),
        )
    };
    assert!(matches!(times(&reserve), (Some(start), Some(end)) if end >= start));
    let load = reserve.subsegment("load");
    load.assert_parent(&reserve)
        .assert_metadata("tracing", "table", "orders")
        .assert_metadata("tracing", "ratio", 0.5);
    assert!(load.json().get("annotations").is_none(), "{}", load.json());
    load.subsegment("query").assert_parent(&load);
}

#[test]
fn an_error_event_is_the_cause_and_a_fault() {
    let capture = Capture::new();
    let recorder = capture.recorder();
    tracing::subscriber::with_default(subscriber(XRaySpanLayer::new()), || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info_span!("charge").in_scope(|| {
            tracing::warn!("retrying");
            tracing::error!(error = "card declined", "charge failed");
        });
        tracing::info_span!("refund").in_scope(|| {
            tracing::error!(error = "too late", error.type = "RefundWindowClosed", "refund failed");
        });
        tracing::info_span!("quiet").in_scope(|| tracing::info!("fine"));
    });
    let charge = capture.entity("charge");
    charge.assert_fault(true);
    assert_eq!(
        charge.exception_messages(),
        ["charge failed: card declined"]
    );
    // The event does not know the error's type, and the module path is not one.
    assert!(charge.exception_types().is_empty(), "{}", charge.json());
    assert_eq!(
        capture.entity("refund").exception_types(),
        ["RefundWindowClosed"]
    );
    let quiet = capture.entity("quiet");
    quiet.assert_fault(false);
    assert!(quiet.exception_messages().is_empty(), "{}", quiet.json());
}

#[test]
fn spans_outside_a_trace_or_unsampled_record_nothing() {
    let (recorder, emitter) = recorder(0.0);
    tracing::subscriber::with_default(subscriber(XRaySpanLayer::new()), || {
        // No X-Ray context at all.
        tracing::info_span!("startup").in_scope(|| {
            assert!(xray_sdk::current().is_none());
        });
        // An unsampled segment: the context stays the segment, which records nothing.
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info_span!("work").in_scope(|| {
            assert_eq!(xray_sdk::current().unwrap().id(), segment.id());
        });
    });
    assert!(emitter.documents().is_empty());
}

#[test]
fn spans_exited_out_of_order_restore_the_context() {
    let (recorder, emitter) = recorder(1.0);
    tracing::subscriber::with_default(subscriber(XRaySpanLayer::new()), || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        let a = tracing::info_span!("a");
        let b = tracing::info_span!("b");
        let entered_a = a.enter();
        let entered_b = b.enter();
        let b_id = xray_sdk::current().unwrap().id();
        drop(entered_a);
        // `b` was entered last: it stays current until it exits.
        assert_eq!(xray_sdk::current().unwrap().id(), b_id);
        drop(entered_b);
        assert_eq!(xray_sdk::current().unwrap().id(), segment.id());
    });
    // Both were created before either was entered: siblings under the segment.
    let doc = only(&emitter);
    let mut names: Vec<_> = subs(&doc).iter().map(|s| s["name"].to_string()).collect();
    names.sort();
    assert_eq!(names, ["\"a\"", "\"b\""]);
}

#[test]
fn a_span_with_an_explicit_parent_nests_under_it_from_another_thread() {
    let (recorder, emitter) = recorder(1.0);
    let subscriber = Arc::new(subscriber(XRaySpanLayer::new()));
    tracing::subscriber::with_default(subscriber.clone(), || {
        let segment = recorder.begin_segment("batch");
        let parent = {
            let _current = segment.enter();
            tracing::info_span!("fan-out")
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                tracing::subscriber::with_default(subscriber.clone(), || {
                    assert!(xray_sdk::current().is_none());
                    tracing::info_span!(parent: &parent, "worker").in_scope(|| {
                        recorder.begin_subsegment("step").end();
                    });
                });
            });
        });
        drop(parent);
        drop(segment);
    });
    let doc = only(&emitter);
    let fan_out = &subs(&doc)[0];
    assert_eq!(fan_out["name"], "fan-out");
    let worker = &subs(fan_out)[0];
    assert_eq!(worker["name"], "worker");
    assert_eq!(subs(worker)[0]["name"], "step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumented_futures_carry_their_subsegment_across_awaits_and_tasks() {
    let (recorder, emitter) = recorder(1.0);
    let layer = XRaySpanLayer::new().with_all_annotations(true);
    let segment = recorder.begin_segment("handler");
    let entity = segment.entity().clone();
    let r = recorder.clone();
    async move {
        let span = tracing::info_span!("handle", attempt = 1);
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            r.begin_subsegment("after-await").end();
            // A task spawned inside the span, with its own span.
            let r2 = r.clone();
            tokio::spawn(
                async move {
                    tokio::task::yield_now().await;
                    r2.begin_subsegment("in-task").end();
                }
                .instrument(tracing::info_span!("background"))
                .with_current_subscriber(),
            )
            .await
            .unwrap();
        }
        .instrument(span)
        .await;
    }
    .with_context(entity)
    .with_subscriber(subscriber(layer))
    .await;
    segment.end();

    let doc = only(&emitter);
    let handle = &subs(&doc)[0];
    assert_eq!(handle["name"], "handle");
    assert_eq!(handle["annotations"]["attempt"], 1);
    let names: Vec<_> = subs(handle).iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, ["after-await", "background"]);
    assert_eq!(subs(&subs(handle)[1])[0]["name"], "in-task");
}

#[tracing::instrument(err)]
fn charge(card: &str) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(format!("{card} declined")))
}

#[test]
fn instrument_err_records_the_error_without_a_made_up_type() {
    let (recorder, emitter) = recorder(1.0);
    tracing::subscriber::with_default(subscriber(XRaySpanLayer::new()), || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        assert!(charge("visa").is_err());
    });
    let doc = only(&emitter);
    let sub = &subs(&doc)[0];
    assert_eq!(sub["name"], "charge");
    assert_eq!(sub["fault"], true);
    let exception = &sub["cause"]["exceptions"][0];
    assert_eq!(exception["message"], "visa declined");
    assert!(exception.get("type").is_none(), "{exception}");
}

/// A filter added as a global layer (`registry().with(EnvFilter)`) disables spans for every
/// layer, the X-Ray layer included: the docs say to filter the log output's layer instead.
#[test]
fn a_filter_on_the_log_layer_leaves_the_subsegments_alone() {
    use tracing_subscriber::EnvFilter;
    let (recorder, emitter) = recorder(1.0);
    // As documented: the filter on the fmt layer only.
    let documented = tracing_subscriber::registry()
        .with(XRaySpanLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("warn")),
        );
    tracing::subscriber::with_default(documented, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info_span!("load").in_scope(|| {});
    });
    assert_eq!(subs(&only(&emitter))[0]["name"], "load");
    let _ = emitter.take();

    // The pitfall: a global filter at `warn` drops the `info` span before any layer sees it.
    let global = tracing_subscriber::registry()
        .with(EnvFilter::new("warn"))
        .with(XRaySpanLayer::new());
    tracing::subscriber::with_default(global, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info_span!("load").in_scope(|| {});
    });
    assert!(subs(&only(&emitter)).is_empty());
}
