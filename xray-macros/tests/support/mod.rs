//! Shared by the `#[capture]` tests: a recorder that samples everything and keeps what it
//! sends in memory, and helpers to read the documents back.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use serde_json::Value;
use xray_sdk::config::ContextMissing;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{InMemoryEmitter, Recorder, Segment};

pub fn recorder_with(rate: f64, missing: ContextMissing) -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("captures")
        .with_sampler(Arc::new(LocalSampler::new(
            SamplingRules::builder()
                .with_default(0, rate)
                .build()
                .unwrap(),
        )))
        .with_context_missing(missing)
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    (recorder, emitter)
}

/// Every request sampled.
pub fn recorder() -> (Recorder, InMemoryEmitter) {
    recorder_with(1.0, ContextMissing::LogError)
}

/// No request sampled.
pub fn unsampled_recorder() -> (Recorder, InMemoryEmitter) {
    recorder_with(0.0, ContextMissing::LogError)
}

/// Runs `f` inside a sampled segment named `test` and returns the one document sent.
pub fn in_segment<R>(f: impl FnOnce() -> R) -> (R, Value) {
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let out = {
        let _guard = segment.enter();
        f()
    };
    segment.end();
    (out, single(&emitter))
}

pub fn single(emitter: &InMemoryEmitter) -> Value {
    let mut docs = xray_testkit::checked(emitter.take());
    assert_eq!(docs.len(), 1, "expected one document: {docs:#?}");
    docs.remove(0)
}

/// The subsegments directly under `doc`.
pub fn subs(doc: &Value) -> &[Value] {
    doc["subsegments"].as_array().map_or(&[], Vec::as_slice)
}

/// The names of the subsegments directly under `doc`.
pub fn names(doc: &Value) -> Vec<&str> {
    subs(doc)
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

/// The only subsegment under `doc`.
pub fn only_sub(doc: &Value) -> &Value {
    let subs = subs(doc);
    assert_eq!(subs.len(), 1, "expected one subsegment: {doc:#}");
    &subs[0]
}

/// A segment for async tests, entered by the caller.
pub fn segment(recorder: &Recorder) -> Segment {
    recorder.begin_segment("test")
}
