//! XRayEventFormat under a real tracing-subscriber fmt layer: every line written inside an
//! X-Ray context carries its trace id and entity id, sampled or not, in JSON and in text; every
//! other line is exactly what the inner formatter writes.
//!
//! Each subscriber has two fmt layers over the same events: one wrapped, one plain. A wrapped
//! line must be the plain line plus the ids, and nothing else.

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;
use xray_sdk::sampling::{LocalSampler, SamplingRequest, SamplingRules};
use xray_sdk::{InMemoryEmitter, Recorder, SegmentId, Subsegment, TraceHeader, TraceId};
use xray_tracing_subscriber::{LogFields, XRayEventFormat, XRaySpanLayer, log_fields};

// ===== fixtures =====

/// A recorder whose sampler decides: `rate` 1.0 samples every trace, 0.0 none (reservoir 0).
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

/// An in-memory log: what a fmt layer wrote, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).expect("log lines are UTF-8");
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        text.lines().map(str::to_owned).collect()
    }

    fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Only this test's own events: xray-sdk's diagnostics stay out of the logs compared.
fn ours() -> Targets {
    Targets::new().with_target(module_path!(), LevelFilter::TRACE)
}

type JsonFormat = fmt::format::Format<fmt::format::Json, ()>;
type TextFormat = fmt::format::Format<fmt::format::Full, ()>;

/// JSON lines: (wrapped, plain).
fn json_subscriber(
    wrap: fn(JsonFormat) -> XRayEventFormat<JsonFormat>,
) -> (impl Subscriber + Send + Sync, Log, Log) {
    let (wrapped, plain) = (Log::default(), Log::default());
    let (w, p) = (wrapped.clone(), plain.clone());
    let subscriber = tracing_subscriber::registry()
        .with(XRaySpanLayer::new())
        .with(
            fmt::layer()
                .json()
                .without_time()
                .with_writer(move || w.clone())
                .map_event_format(wrap)
                .with_filter(ours()),
        )
        .with(
            fmt::layer()
                .json()
                .without_time()
                .with_writer(move || p.clone())
                .with_filter(ours()),
        );
    (subscriber, wrapped, plain)
}

/// Text lines without colors: (wrapped, plain). `sanitize: false` turns ANSI sanitization off
/// in both, which puts the ids at the start of the wrapped line.
fn text_subscriber(
    wrap: fn(TextFormat) -> XRayEventFormat<TextFormat>,
    sanitize: bool,
) -> (impl Subscriber + Send + Sync, Log, Log) {
    let (wrapped, plain) = (Log::default(), Log::default());
    let (w, p) = (wrapped.clone(), plain.clone());
    let subscriber = tracing_subscriber::registry()
        .with(XRaySpanLayer::new())
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_ansi_sanitization(sanitize)
                .without_time()
                .with_writer(move || w.clone())
                .map_event_format(wrap)
                .with_filter(ours()),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_ansi_sanitization(sanitize)
                .without_time()
                .with_writer(move || p.clone())
                .with_filter(ours()),
        );
    (subscriber, wrapped, plain)
}

/// The ids an event logged at that moment should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    trace: TraceId,
    entity: SegmentId,
}

fn ids_of(entity: &xray_sdk::Entity) -> Ids {
    Ids {
        trace: entity.trace_id(),
        entity: entity.id(),
    }
}

/// The current context's ids, as the test sees them.
fn current_ids() -> Ids {
    ids_of(&xray_sdk::current().expect("an X-Ray context is current"))
}

/// `wrapped` minus the two default keys, which must hold `ids` (or be absent for `None`).
fn assert_json_line(wrapped: &Value, plain: &Value, ids: Option<Ids>) {
    let mut rest = wrapped.clone();
    let object = rest.as_object_mut().expect("a JSON object");
    let trace = object.remove(LogFields::TRACE_ID_KEY);
    let entity = object.remove(LogFields::ENTITY_ID_KEY);
    match ids {
        Some(ids) => {
            assert_eq!(trace, Some(Value::from(ids.trace.to_string())), "{wrapped}");
            assert_eq!(
                entity,
                Some(Value::from(ids.entity.to_string())),
                "{wrapped}"
            );
        }
        None => assert!(trace.is_none() && entity.is_none(), "{wrapped}"),
    }
    assert_eq!(&rest, plain, "the inner formatter's members, unchanged");
}

fn text_suffix(ids: Ids) -> String {
    format!(" xray_trace_id={} xray_entity_id={}", ids.trace, ids.entity)
}

fn only(emitter: &InMemoryEmitter) -> Value {
    let mut docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 1, "{docs:#?}");
    docs.remove(0)
}

// ===== JSON =====

#[test]
fn json_lines_carry_the_ids_of_the_segment_the_subsegment_and_the_span() {
    let (recorder, emitter) = recorder(1.0);
    let (subscriber, wrapped, plain) = json_subscriber(XRayEventFormat::json);
    let expected = tracing::subscriber::with_default(subscriber, || {
        tracing::info!("starting");
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!(order_id = 7, "in the segment");
        let in_segment = current_ids();

        let sub = recorder.begin_subsegment("load");
        let in_sub = {
            let _in_sub = sub.enter();
            tracing::warn!(attempt = 2, "in the subsegment");
            current_ids()
        };
        sub.end();

        // A span becomes a subsegment (XRaySpanLayer), current while it is entered.
        let in_span = tracing::info_span!("reserve", items = 3).in_scope(|| {
            tracing::info!("in the span");
            current_ids()
        });
        (in_segment, in_sub, in_span)
    });
    let (in_segment, in_sub, in_span) = expected;
    assert_ne!(in_sub.entity, in_segment.entity);
    assert_ne!(in_span.entity, in_segment.entity);

    let (wrapped, plain) = (wrapped.json(), plain.json());
    assert_eq!(wrapped.len(), 4, "{wrapped:#?}");
    assert_eq!(plain.len(), 4, "{plain:#?}");
    assert_json_line(&wrapped[0], &plain[0], None);
    assert_json_line(&wrapped[1], &plain[1], Some(in_segment));
    assert_json_line(&wrapped[2], &plain[2], Some(in_sub));
    assert_json_line(&wrapped[3], &plain[3], Some(in_span));
    assert_eq!(wrapped[1]["fields"]["order_id"], 7);
    assert_eq!(wrapped[3]["span"]["name"], "reserve");

    // The ids are the trace's: the sampled trace was sent with them.
    let doc = only(&emitter);
    assert_eq!(doc["trace_id"], in_segment.trace.to_string());
    assert_eq!(doc["id"], in_segment.entity.to_string());
    let subs = doc["subsegments"].as_array().unwrap();
    assert!(subs.iter().any(|s| s["id"] == in_sub.entity.to_string()));
    assert!(subs.iter().any(|s| s["id"] == in_span.entity.to_string()));
}

#[test]
fn unsampled_requests_keep_their_real_ids() {
    // The sampler decides: no reservoir, rate 0.
    let (recorder, emitter) = recorder(0.0);
    let (subscriber, wrapped, plain) = json_subscriber(XRayEventFormat::json);
    let (segment_ids, sub_ids) = tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment("api");
        assert!(!segment.is_sampled() && !segment.is_recording());
        let _current = segment.enter();
        tracing::info!("unsampled segment");

        let sub = recorder.begin_subsegment("load");
        assert!(!sub.is_sampled());
        {
            let _in_sub = sub.enter();
            tracing::info!("unsampled subsegment");
        }
        let ids = log_fields().expect("an unsampled context has ids");
        assert!(!ids.is_sampled());
        (ids_of(&segment), ids_of(&sub))
    });

    // Real ids: the entity's own, not the all-zero no-op ones, one per entity.
    assert_ne!(segment_ids.trace.random(), 0);
    assert_ne!(segment_ids.entity.as_u64(), 0);
    assert_ne!(sub_ids.entity.as_u64(), 0);
    assert_eq!(sub_ids.trace, segment_ids.trace);
    assert_ne!(sub_ids.entity, segment_ids.entity);

    let (wrapped, plain) = (wrapped.json(), plain.json());
    assert_eq!(wrapped.len(), 2, "{wrapped:#?}");
    assert_json_line(&wrapped[0], &plain[0], Some(segment_ids));
    assert_json_line(&wrapped[1], &plain[1], Some(sub_ids));
    assert!(emitter.documents().is_empty());
}

#[test]
fn an_unsampled_request_logs_its_upstream_trace_id_but_not_a_noop_one() {
    let (recorder, _emitter) = recorder(1.0);
    let (subscriber, wrapped, plain) = json_subscriber(XRayEventFormat::json);
    let upstream: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        .parse()
        .unwrap();
    // What the Python and Go SDKs send for an unsampled request by default.
    let noop: TraceHeader = "Root=1-00000000-000000000000000000000000;Sampled=0"
        .parse()
        .unwrap();
    assert_eq!(noop.root().random(), 0);
    let request = SamplingRequest::new();
    let from_upstream = tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment_with("api", Some(&upstream), &request);
        let ids = {
            let _current = segment.enter();
            tracing::info!("continues the upstream trace");
            current_ids()
        };

        let segment = recorder.begin_segment_with("api", Some(&noop), &request);
        let _current = segment.enter();
        tracing::info!("continues a no-op trace");
        assert!(log_fields().is_none());
        ids
    });
    assert_eq!(from_upstream.trace, upstream.root());

    let (wrapped, plain) = (wrapped.json(), plain.json());
    assert_eq!(wrapped.len(), 2, "{wrapped:#?}");
    assert_json_line(&wrapped[0], &plain[0], Some(from_upstream));
    assert_json_line(&wrapped[1], &plain[1], None);
}

#[test]
fn lines_outside_any_context_are_unchanged() {
    let (subscriber, wrapped, plain) = json_subscriber(XRayEventFormat::json);
    tracing::subscriber::with_default(subscriber, || {
        assert!(log_fields().is_none());
        tracing::info!(a = 1, "no context");
        tracing::info_span!("no trace").in_scope(|| tracing::error!("still none"));
        // A subsegment begun with no context records nothing and has the no-op ids.
        let none = Subsegment::none();
        let _current = none.enter();
        tracing::info!("the no-op subsegment");
    });
    assert_eq!(wrapped.lines().len(), 3);
    assert_eq!(wrapped.lines(), plain.lines());
}

#[test]
fn the_combined_key_and_custom_keys() {
    let (recorder, _emitter) = recorder(1.0);
    let (subscriber, wrapped, _) =
        json_subscriber(|f| XRayEventFormat::json(f).with_combined_key(LogFields::COMBINED_KEY));
    let ids = tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!("java style");
        current_ids()
    });
    let line = &wrapped.json()[0];
    assert_eq!(
        line["AWS-XRAY-TRACE-ID"],
        format!("{}@{}", ids.trace, ids.entity)
    );
    assert!(line.get(LogFields::TRACE_ID_KEY).is_none());

    // Keys are escaped in JSON.
    let (subscriber, wrapped, _) =
        json_subscriber(|f| XRayEventFormat::json(f).with_keys("trace \"id\"", "span\\id"));
    let ids = tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!("custom keys");
        current_ids()
    });
    let line = &wrapped.json()[0];
    assert_eq!(line["trace \"id\""], ids.trace.to_string());
    assert_eq!(line["span\\id"], ids.entity.to_string());
}

#[test]
fn a_json_wrapper_around_a_text_formatter_writes_its_lines_unchanged() {
    let (recorder, _emitter) = recorder(1.0);
    let (wrapped, plain) = (Log::default(), Log::default());
    let (w, p) = (wrapped.clone(), plain.clone());
    let subscriber = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(move || w.clone())
                .map_event_format(XRayEventFormat::json)
                .with_filter(ours()),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(move || p.clone())
                .with_filter(ours()),
        );
    tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!("{{\"looks\": \"like JSON\"}}");
        tracing::info!("plain text");
    });
    assert_eq!(wrapped.lines().len(), 2);
    assert_eq!(wrapped.lines(), plain.lines());
}

// ===== text =====

#[test]
fn text_lines_end_with_the_ids() {
    let (recorder, _emitter) = recorder(0.0);
    let (subscriber, wrapped, plain) = text_subscriber(XRayEventFormat::text, true);
    let (in_segment, in_span) = tracing::subscriber::with_default(subscriber, || {
        tracing::info!("starting");
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!(order_id = 7, "in the segment");
        let in_segment = current_ids();
        let in_span = tracing::info_span!("reserve").in_scope(|| {
            tracing::warn!("in the span");
            current_ids()
        });
        (in_segment, in_span)
    });
    // Unsampled: the span made no subsegment, and its events carry the segment's ids.
    assert_eq!(in_span, in_segment);

    let (wrapped, plain) = (wrapped.lines(), plain.lines());
    assert_eq!(wrapped.len(), 3, "{wrapped:#?}");
    assert_eq!(wrapped[0], plain[0]);
    assert!(
        plain[1].ends_with("in the segment order_id=7"),
        "{}",
        plain[1]
    );
    assert_eq!(
        wrapped[1],
        format!("{}{}", plain[1], text_suffix(in_segment))
    );
    assert_eq!(wrapped[2], format!("{}{}", plain[2], text_suffix(in_span)));
}

#[test]
fn text_lines_take_the_combined_key() {
    let (recorder, _emitter) = recorder(1.0);
    let (subscriber, wrapped, plain) = text_subscriber(
        |f| XRayEventFormat::text(f).with_combined_key(LogFields::COMBINED_KEY),
        true,
    );
    let ids = tracing::subscriber::with_default(subscriber, || {
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        let sub = recorder.begin_subsegment("load");
        let _in_sub = sub.enter();
        tracing::info!("java style");
        current_ids()
    });
    let (wrapped, plain) = (wrapped.lines(), plain.lines());
    assert_eq!(
        wrapped[0],
        format!(
            "{} AWS-XRAY-TRACE-ID={}@{}",
            plain[0], ids.trace, ids.entity
        )
    );
}

#[test]
fn without_ansi_sanitization_text_lines_start_with_the_ids() {
    let (recorder, _emitter) = recorder(1.0);
    let (subscriber, wrapped, plain) = text_subscriber(XRayEventFormat::text, false);
    let ids = tracing::subscriber::with_default(subscriber, || {
        tracing::info!("starting");
        let segment = recorder.begin_segment("api");
        let _current = segment.enter();
        tracing::info!("raw \u{1b}[1mescapes\u{1b}[0m kept");
        current_ids()
    });
    let (wrapped, plain) = (wrapped.lines(), plain.lines());
    assert_eq!(wrapped.len(), 2, "{wrapped:#?}");
    assert_eq!(wrapped[0], plain[0]);
    assert!(plain[1].contains('\u{1b}'), "{}", plain[1]);
    let prefix = format!("xray_trace_id={} xray_entity_id={} ", ids.trace, ids.entity);
    assert_eq!(wrapped[1], format!("{prefix}{}", plain[1]));
}

// ===== log_fields =====

#[test]
fn log_fields_follow_the_context() {
    let (recorder, _emitter) = recorder(1.0);
    assert!(log_fields().is_none());
    let segment = recorder.begin_segment("api");
    let _current = segment.enter();
    let ids = log_fields().unwrap();
    assert_eq!(ids.trace_id(), segment.trace_id());
    assert_eq!(ids.entity_id(), segment.id());
    assert!(ids.is_sampled());
    assert_eq!(
        ids.to_string(),
        format!("{}@{}", segment.trace_id(), segment.id())
    );

    let sub = recorder.begin_subsegment("load");
    {
        let _in_sub = sub.enter();
        assert_eq!(log_fields().unwrap().entity_id(), sub.id());
    }
    assert_eq!(log_fields().unwrap().entity_id(), segment.id());
}
