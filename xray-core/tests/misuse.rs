//! What the application's mistakes cost it, and what they cost its traces: context guards
//! dropped out of order or held across an `.await`, panics, recording calls made inside
//! `Entity::update`, bad annotations and metadata. Never a hang, never an error returned into
//! the application, never a subsegment in another request's trace.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};
use xray_sdk::{
    Entity, FutureExt, InMemoryEmitter, Recorder, SamplerKind, Segment, Subsegment, current,
};

fn recorder(kind: SamplerKind) -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::with_capacity(1_000);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler_kind(kind)
        .with_emitter(emitter.clone())
        .build()
        .expect("recorder");
    (recorder, emitter)
}

/// Every request sampled.
fn sampled() -> (Recorder, InMemoryEmitter) {
    recorder(SamplerKind::Always)
}

fn documents(emitter: &InMemoryEmitter) -> Vec<Value> {
    xray_testkit::checked(emitter.documents())
}

/// The document of the segment named `name`.
fn segment_named<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no segment {name:?} in {docs:#?}"))
}

fn sub_names(doc: &Value) -> Vec<&str> {
    doc["subsegments"]
        .as_array()
        .map(|subs| subs.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default()
}

fn first_exception(doc: &Value) -> &Value {
    &doc["cause"]["exceptions"][0]
}

/// Runs `f` on a thread of its own and waits at most 10 s for it: a call that hangs fails the
/// test instead of hanging it (the stuck thread is left behind).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after 10 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

// ===== context guards =====

#[test]
fn guards_dropped_out_of_order_leave_the_newest_entity_still_entered_current() {
    let (recorder, _emitter) = sampled();
    let a = recorder.begin_segment("a");
    let b = recorder.begin_segment("b");
    let entered_a = a.enter();
    let entered_b = b.enter();
    drop(entered_a);
    // `b` is still entered; `a` is not.
    assert_eq!(current().map(|e| e.id()), Some(b.id()));
    let again_a = a.enter();
    drop(entered_b);
    assert_eq!(current().map(|e| e.id()), Some(a.id()));
    drop(again_a);
    assert!(current().is_none());
}

#[test]
fn work_after_a_guard_held_across_awaits_in_join_stays_in_its_own_trace() {
    let (recorder, emitter) = sampled();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let a = recorder.begin_segment("a");
    let b = recorder.begin_segment("b");
    // Each branch is polled with its own segment current (`with_context`), and also holds a
    // guard of it across two `.await`s: the misuse that sent each branch's subsegment into the
    // other's trace, since the guards' entries outlived the polls and were popped by the wrong
    // guard.
    let branch = |segment: &Segment, work: &'static str| {
        let entity = segment.entity().clone();
        let recorder = recorder.clone();
        async move {
            {
                let _held = entity.enter();
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            }
            recorder.begin_subsegment(work).end();
        }
        .with_context(segment.entity().clone())
    };
    rt.block_on(async {
        tokio::join!(branch(&a, "a-work"), branch(&b, "b-work"));
        assert!(current().is_none(), "a guard's entry outlived the join");
    });
    a.end();
    b.end();

    let docs = documents(&emitter);
    assert_eq!(sub_names(segment_named(&docs, "a")), ["a-work"]);
    assert_eq!(sub_names(segment_named(&docs, "b")), ["b-work"]);
}

#[test]
fn futures_joined_with_their_own_context_record_into_their_own_traces() {
    let (recorder, emitter) = sampled();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let a = recorder.begin_segment("a");
    let b = recorder.begin_segment("b");
    // What the docs steer to: the context given to each future, entered around each poll.
    let branch = |work: &'static str| {
        let recorder = recorder.clone();
        async move {
            for i in 0..3 {
                recorder.begin_subsegment(&format!("{work}-{i}")).end();
                tokio::task::yield_now().await;
            }
        }
    };
    rt.block_on(async {
        tokio::join!(
            branch("a").with_context(a.entity().clone()),
            branch("b").with_context(b.entity().clone()),
        );
    });
    a.end();
    b.end();

    let docs = documents(&emitter);
    assert_eq!(sub_names(segment_named(&docs, "a")), ["a-0", "a-1", "a-2"]);
    assert_eq!(sub_names(segment_named(&docs, "b")), ["b-0", "b-1", "b-2"]);
}

// ===== panics =====

#[test]
fn a_subsegment_dropped_by_a_panic_is_a_fault() {
    let (recorder, emitter) = sampled();
    let segment = recorder.begin_segment("job");
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _work = segment.begin_subsegment("work");
        panic!("boom");
    }));
    assert!(caught.is_err());
    segment.end();

    let docs = documents(&emitter);
    let doc = &docs[0];
    assert!(
        doc.get("fault").is_none(),
        "the segment did not panic: {doc}"
    );
    let work = &doc["subsegments"][0];
    assert_eq!(work["fault"], true, "{work}");
    assert_eq!(first_exception(work)["message"], "panicked");
    assert_eq!(first_exception(work)["type"], "panic");
}

struct BeginsWorkWhenDropped(Segment);

impl Drop for BeginsWorkWhenDropped {
    fn drop(&mut self) {
        // Runs while a panic unwinds, and returns normally.
        let _clean_up = self.0.begin_subsegment("clean-up");
    }
}

#[test]
fn a_subsegment_begun_and_ended_while_unwinding_is_no_fault() {
    let (recorder, emitter) = sampled();
    let segment = recorder.begin_segment("job");
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _guard = BeginsWorkWhenDropped(segment);
        panic!("unrelated");
    }));
    assert!(caught.is_err());

    let docs = documents(&emitter);
    let doc = &docs[0];
    assert_eq!(sub_names(doc), ["clean-up"]);
    assert!(doc["subsegments"][0].get("fault").is_none(), "{doc}");
    // The segment itself was dropped by the panic.
    assert_eq!(doc["fault"], true);
}

async fn explode_later(message: &'static str) {
    tokio::task::yield_now().await;
    panic!("{message}");
}

async fn explode_now(message: &'static str) {
    panic!("{message}");
}

fn explode(message: &'static str) {
    panic!("{message}");
}

#[test]
fn a_panicking_poll_under_instrument_is_a_fault_with_its_message() {
    let (recorder, emitter) = sampled();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("job");
    let sub: Subsegment = segment.begin_subsegment("work");
    let fut = sub.instrument(explode_later("sub boom"));
    let joined = rt.block_on(async move { tokio::spawn(fut).await });
    assert!(joined.unwrap_err().is_panic());
    // The executor caught the panic; the segment did not panic.
    segment.end();

    let docs = documents(&emitter);
    let doc = &docs[0];
    assert!(doc.get("fault").is_none(), "{doc}");
    let work = &doc["subsegments"][0];
    assert_eq!(work["fault"], true, "{work}");
    assert_eq!(first_exception(work)["message"], "sub boom");
    assert_eq!(first_exception(work)["type"], "panic");
    assert_eq!(
        work["cause"]["exceptions"].as_array().unwrap().len(),
        1,
        "recorded once: {work}"
    );
}

#[test]
fn a_panicking_poll_under_segment_instrument_is_a_fault_with_its_message() {
    let (recorder, emitter) = sampled();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("request");
    let fut = segment.instrument(explode_later("request boom"));
    let joined = rt.block_on(async move { tokio::spawn(fut).await });
    assert!(joined.unwrap_err().is_panic());

    let docs = documents(&emitter);
    let doc = &docs[0];
    assert_eq!(doc["fault"], true, "{doc}");
    assert_eq!(first_exception(doc)["message"], "request boom");
}

#[test]
fn a_panicking_poll_that_nothing_catches_is_recorded_once() {
    let (recorder, emitter) = sampled();
    let segment = recorder.begin_segment("job");
    let sub = segment.begin_subsegment("work");
    let mut fut = std::pin::pin!(sub.instrument(explode_now("bare boom")));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = fut.as_mut().poll(&mut cx);
    }));
    assert!(caught.is_err());
    segment.end();

    let docs = documents(&emitter);
    let work = &docs[0]["subsegments"][0];
    let exceptions = work["cause"]["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 1, "{work}");
    assert_eq!(exceptions[0]["message"], "bare boom");
}

// ===== calls inside `update` =====

#[test]
fn recording_calls_inside_update_on_the_same_segment_are_done_once_it_returns() {
    let docs = within("recording inside update", || {
        let (recorder, emitter) = sampled();
        let segment = recorder.begin_segment("orders");
        let sub = segment.begin_subsegment("load");
        let returned = segment.update(|doc| {
            doc.set_error(true);
            // Each of these takes the segment's lock, which this closure holds.
            segment.put_annotation("inside", 1);
            segment.put_metadata("basket", &json!({"items": 3}));
            segment.add_error(&Boom);
            sub.put_annotation("sub_inside", true);
            sub.set_fault();
            sub.end();
            7
        });
        segment.end();
        (returned, documents(&emitter), recorder.refused())
    });
    let (returned, docs, refused) = docs;
    assert_eq!(returned, Some(7));
    assert_eq!(refused.nested, 0);
    let doc = &docs[0];
    assert_eq!(doc["error"], true);
    assert_eq!(doc["annotations"]["inside"], 1);
    assert_eq!(doc["metadata"]["default"]["basket"]["items"], 3);
    assert_eq!(first_exception(doc)["message"], "boom");
    let load = &doc["subsegments"][0];
    assert_eq!(load["name"], "load");
    assert_eq!(load["annotations"]["sub_inside"], true);
    assert_eq!(load["fault"], true);
    assert!(load["end_time"].is_f64(), "ended: {load}");
}

#[test]
fn calls_inside_update_that_need_an_answer_at_once_are_refused() {
    let (outcome, refused, docs) = within("nested update", || {
        let (recorder, emitter) = sampled();
        let segment = recorder.begin_segment("orders");
        let outcome = segment.update(|_| {
            let nested = segment.update(|doc| doc.set_fault(true));
            let inner = segment.begin_subsegment("inner");
            (nested.is_none(), inner.is_recording(), inner.is_sampled())
        });
        segment.end();
        (outcome, recorder.refused(), documents(&emitter))
    });
    // Refused: the nested closure never ran, the subsegment records nothing but still
    // propagates a sampled trace.
    assert_eq!(outcome, Some((true, false, true)));
    assert_eq!(refused.nested, 2);
    assert!(docs[0].get("fault").is_none());
    assert!(docs[0].get("subsegments").is_none());
}

#[test]
fn two_threads_updating_each_others_segments_do_not_deadlock() {
    let docs = within("crossed updates", || {
        let (recorder, emitter) = sampled();
        let a = Arc::new(recorder.begin_segment("a"));
        let b = Arc::new(recorder.begin_segment("b"));
        let both_inside = Arc::new(Barrier::new(2));
        let cross = |mine: Arc<Segment>, theirs: Arc<Segment>, key: &'static str| {
            let both_inside = both_inside.clone();
            std::thread::spawn(move || {
                mine.update(|_| {
                    // Both locks are held now: waiting for the other would never end.
                    both_inside.wait();
                    theirs.put_annotation(key, true);
                });
            })
        };
        let one = cross(a.clone(), b.clone(), "from_a");
        let two = cross(b.clone(), a.clone(), "from_b");
        one.join().unwrap();
        two.join().unwrap();
        for segment in [a, b] {
            Arc::into_inner(segment).unwrap().end();
        }
        documents(&emitter)
    });
    assert_eq!(segment_named(&docs, "a")["annotations"]["from_b"], true);
    assert_eq!(segment_named(&docs, "b")["annotations"]["from_a"], true);
}

#[test]
fn a_panic_inside_update_still_does_what_was_left_for_later() {
    let docs = within("panic inside update", || {
        let (recorder, emitter) = sampled();
        let segment = recorder.begin_segment("orders");
        let sub = segment.begin_subsegment("load");
        let caught = catch_unwind(AssertUnwindSafe(|| {
            segment.update(|_| {
                sub.end();
                explode("inside update");
            })
        }));
        assert!(caught.is_err());
        segment.end();
        documents(&emitter)
    });
    // The segment was sent, so the subsegment ended inside the closure did end.
    assert_eq!(sub_names(&docs[0]), ["load"]);
}

// ===== bad annotations and metadata =====

#[test]
fn bad_annotations_and_metadata_are_refused_counted_and_never_raised() {
    let (recorder, emitter) = sampled();
    // Nothing is returned, so application code cannot `?` these into a failed request (checked
    // at compile time: the calls fit functions returning `()`).
    let _: fn(&Entity, &str, i64) = |entity, key, value| entity.put_annotation(key, value);
    let _: fn(&Entity, &str, &u8) = |entity, key, value| entity.put_metadata(key, value);
    let segment = recorder.begin_segment("orders");
    segment.put_annotation("not a key!", 1);
    segment.put_annotation("nan", f64::NAN);
    segment.put_metadata_in("AWS.mine", "k", &1);
    let tuple_keys: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    segment.put_metadata("not_json", &tuple_keys);
    segment.put_annotation("good", 1);
    segment.put_metadata("fine", &1);
    segment.end();

    let refused = recorder.refused();
    assert_eq!((refused.annotations, refused.metadata), (2, 2));
    let doc = &documents(&emitter)[0];
    assert_eq!(doc["annotations"], json!({"good": 1}));
    assert_eq!(doc["metadata"], json!({"default": {"fine": 1}}));
}

#[test]
fn unsampled_entities_take_bad_input_the_same_way() {
    let (recorder, emitter) = recorder(SamplerKind::Never);
    let segment = recorder.begin_segment("orders");
    assert!(!segment.is_recording());
    // Checked and logged as when sampled (a recorder to count them is only reachable from a
    // recorded entity); nothing returned, nothing recorded.
    segment.put_annotation("not a key!", 1);
    segment.put_metadata_in("AWS.mine", "k", &1);
    segment.end();
    assert!(emitter.documents().is_empty());
}
