//! What the recorder holds and how long the host waits for it are bounded, and every bound is
//! counted: subsegments per segment, segments that end before their subsegments, segments
//! never ended, and shutdown with a network that does not answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use xray_sdk::clock::ManualClock;
use xray_sdk::sampling::{LocalSampler, SamplingRules, SharedSampler};
use xray_sdk::transport::{
    BackgroundEmitter, Datagram, EmitError, Emitter, Finished, Transport, TransportCounters,
    TransportErrorKind, TransportStats,
};
use xray_sdk::{InMemoryEmitter, Recorder, RecorderBuilder, Segment, Subsegment};

/// 2025-01-01T00:00:00Z.
const START: u64 = 1_735_689_600_000_000;

fn checked(docs: Vec<Value>) -> Vec<Value> {
    xray_testkit::checked(docs)
}

fn sample_all() -> SharedSampler {
    Arc::new(LocalSampler::new(
        SamplingRules::builder()
            .with_default(0, 1.0)
            .build()
            .unwrap(),
    ))
}

/// A builder sampling everything into `emitter`, on a clock the test moves.
fn builder(emitter: &InMemoryEmitter, clock: &Arc<ManualClock>) -> RecorderBuilder {
    Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(emitter.clone())
        .with_clock(clock.clone())
}

fn find<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no document named {name}: {docs:?}"))
}

fn id(e: &xray_sdk::Entity) -> String {
    e.id().to_string()
}

// ===== subsegments per segment =====

#[test]
fn subsegments_past_the_per_segment_bound_are_counted_and_still_propagate() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock)
        .with_max_subsegments_per_segment(100)
        .with_streaming_threshold(usize::MAX)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("batch");
    let open: Vec<Subsegment> = (0..150).map(|_| segment.begin_subsegment("item")).collect();
    assert!(open[..100].iter().all(|s| s.is_recording()));
    let refused = &open[100..];
    for s in refused {
        // Not recorded, but still part of the trace downstream.
        assert!(!s.is_recording() && s.is_sampled());
        assert_eq!(
            s.trace_header().to_string(),
            format!("Root={};Parent={};Sampled=1", segment.trace_id(), s.id())
        );
    }
    // What would nest under a refused one is not recorded, and not counted again.
    assert!(!refused[0].begin_subsegment("nested").is_recording());
    assert_eq!(recorder.stats().too_many_subsegments, 50);
    drop(open);

    // Ended and not yet sent (streaming is off) still count: the segment is full.
    assert!(!segment.begin_subsegment("one more").is_recording());
    assert_eq!(recorder.stats().too_many_subsegments, 51);
    segment.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["subsegments"].as_array().unwrap().len(), 100);

    // With streaming, what is sent ahead makes room again.
    let recorder = builder(&emitter, &clock)
        .with_max_subsegments_per_segment(100)
        .with_streaming_threshold(10)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("stream");
    for _ in 0..1_000 {
        let s = segment.begin_subsegment("item");
        assert!(s.is_recording());
    }
    segment.end();
    assert_eq!(recorder.stats().too_many_subsegments, 0);
}

/// Counts the entities of what it is given, and sends nothing: the recorder's own cost.
#[derive(Debug, Default)]
struct Counting {
    counters: TransportCounters,
}

impl Transport for Counting {
    fn export(&self, finished: &Finished<'_>) {
        let n = finished.len() as u64;
        self.counters.queued(n);
        self.counters.sent(n);
    }

    fn flush(&self, _deadline: Instant) -> bool {
        true
    }

    fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }
}

/// Ends `n` subsegments open at once under one segment, and returns how long that took.
fn time_to_end(n: usize, threshold: usize) -> Duration {
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_transport(Counting::default())
        .with_streaming_threshold(threshold)
        .with_max_subsegments_per_segment(usize::MAX)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("batch");
    let open: Vec<Subsegment> = (0..n).map(|_| segment.begin_subsegment("item")).collect();
    let start = Instant::now();
    drop(open);
    segment.end();
    let took = start.elapsed();
    assert_eq!(recorder.stats().transport.sent, n as u64 + 1);
    took
}

#[test]
fn ending_many_open_subsegments_costs_the_same_with_streaming_as_without() {
    // Streaming used to visit every slot of the tree each time it sent: ending 2 * 10^5 open
    // subsegments was quadratic with it (2 * 10^5 slots, 2 * 10^3 times) and linear without.
    let n = 200_000;
    let without = time_to_end(n, usize::MAX);
    let with = time_to_end(n, RecorderBuilder::DEFAULT_STREAMING_THRESHOLD);
    assert!(
        with < without * 5 + Duration::from_millis(250),
        "ending {n} open subsegments: {with:?} with streaming, {without:?} without"
    );
}

// ===== segments that end before their subsegments =====

#[test]
fn a_segment_whose_subsegment_outlives_it_is_sent_in_progress_after_the_grace_period() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock)
        .with_grace_period(Duration::from_secs(10))
        .build()
        .unwrap();
    let segment = recorder.begin_segment("api");
    segment.begin_subsegment("done").end();
    let slow = segment.begin_subsegment("slow");
    let nested = slow.begin_subsegment("nested");
    nested.put_annotation("step", 1);
    let (segment_id, slow_id) = (id(&segment), id(&slow));
    segment.end();

    // Within the grace period it waits (a segment beginning is when the period is checked).
    clock.advance_micros(9_000_000);
    recorder.begin_segment("other").end();
    assert_eq!(emitter.len(), 1, "only `other` is sent");
    assert_eq!(recorder.stats().sent_in_progress, 0);

    // Past it, the segment is sent as it stands (so is it by `flush`).
    clock.advance_micros(2_000_000);
    assert!(recorder.flush(Duration::from_secs(1)).is_complete());
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 2);
    let api = find(&docs, "api");
    assert!(api["end_time"].is_number());
    assert!(api.get("in_progress").is_none());
    let subs = api["subsegments"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    let done = subs.iter().find(|s| s["name"] == "done").unwrap();
    assert!(done["end_time"].is_number());
    let copy = subs.iter().find(|s| s["name"] == "slow").unwrap();
    assert_eq!(copy["in_progress"], true);
    assert!(copy.get("end_time").is_none());
    assert_eq!(copy["subsegments"][0]["name"], "nested");
    assert_eq!(copy["subsegments"][0]["in_progress"], true);
    assert_eq!(copy["subsegments"][0]["annotations"]["step"], 1);
    assert_eq!(recorder.stats().sent_in_progress, 1);

    // Each one ends later and is sent on its own, complete, under its parent: the service
    // keeps it in place of its in-progress copy.
    nested.end();
    slow.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 4);
    let nested = find(&docs, "nested");
    assert_eq!(nested["type"], "subsegment");
    assert_eq!(nested["parent_id"], slow_id.as_str());
    assert!(nested["end_time"].is_number());
    let slow = docs.iter().rev().find(|d| d["name"] == "slow").unwrap();
    assert_eq!(slow["type"], "subsegment");
    assert_eq!(slow["parent_id"], segment_id.as_str());
    assert!(slow["end_time"].is_number());
    assert!(
        slow.get("subsegments").is_none(),
        "`nested` was sent already"
    );
    let stats = recorder.stats();
    assert_eq!((stats.sent_in_progress, stats.evicted), (1, 0));
}

#[test]
fn a_subsegment_never_ended_holds_its_segment_back_only_for_the_grace_period() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock)
        .with_grace_period(Duration::from_secs(1))
        .with_max_open_segments(3)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("leaky");
    segment.begin_subsegment("fine").end();
    std::mem::forget(segment.begin_subsegment("leaked"));
    segment.end();
    assert!(emitter.is_empty(), "it waits for `leaked`");
    clock.advance_micros(1_000_001);
    recorder.flush(Duration::from_secs(1));
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let leaked = docs[0]["subsegments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "leaked")
        .expect("the open subsegment is in the document");
    assert_eq!(leaked["in_progress"], true);

    // Still waiting for `leaked`, it counts toward the bound, and goes first when that is
    // reached: the open segments are left alone.
    let open: Vec<Segment> = (0..3).map(|_| recorder.begin_segment("open")).collect();
    let stats = recorder.stats();
    assert_eq!((stats.sent_in_progress, stats.evicted), (1, 1));
    drop(open);
    let docs = checked(emitter.documents());
    assert_eq!(docs.iter().filter(|d| d["name"] == "open").count(), 3);
    assert!(
        docs.iter()
            .filter(|d| d["name"] == "open")
            .all(|d| d["end_time"].is_number())
    );
}

#[test]
fn with_no_grace_period_a_segment_is_sent_when_it_ends() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock)
        .with_grace_period(Duration::ZERO)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("api");
    let background = segment.begin_subsegment("background");
    let inner = background.begin_subsegment("inner");
    let background_id = id(&background);
    segment.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["subsegments"][0]["in_progress"], true);
    // Begun after the segment was sent: sent on its own when it ends.
    background.begin_subsegment("later").end();
    inner.end();
    background.end();
    let docs = checked(emitter.documents());
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "later", "inner", "background"]);
    for d in &docs[1..3] {
        assert_eq!(d["parent_id"], background_id.as_str());
    }
    assert_eq!(recorder.stats().sent_in_progress, 1);
}

#[test]
fn a_subsegment_that_outlives_its_lambda_invocation_is_still_sent() {
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .with_env(|k| (k == "LAMBDA_TASK_ROOT").then(|| "/var/task".to_owned()))
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let invocation = recorder.begin_lambda_invocation(Some(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    ));
    let late = invocation.begin_subsegment("late");
    invocation.end();
    late.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["name"], "late");
    assert_eq!(docs[0]["type"], "subsegment");
    assert_eq!(docs[0]["parent_id"], "53995c3f42cd8ad8");
}

#[test]
fn a_handle_dropped_without_end_ends_its_entity_where_it_was_dropped() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock).build().unwrap();
    let segment = recorder.begin_segment("api");
    let sub = segment.begin_subsegment("call");
    clock.advance_micros(2_000_000);
    drop(sub);
    clock.advance_micros(3_000_000);
    drop(segment);
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let start = docs[0]["start_time"].as_f64().unwrap();
    assert_eq!(docs[0]["end_time"].as_f64().unwrap() - start, 5.0);
    let call = &docs[0]["subsegments"][0];
    assert_eq!(call["end_time"].as_f64().unwrap() - start, 2.0);
}

// ===== segments never ended =====

#[test]
fn segments_past_the_open_bound_are_sent_in_progress_and_evicted() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock)
        .with_max_open_segments(10)
        .build()
        .unwrap();
    let kept: Vec<Segment> = (0..25)
        .map(|n| {
            let s = recorder.begin_segment("open");
            s.put_annotation("n", n);
            s.begin_subsegment("call").end();
            s
        })
        .collect();
    let stats = recorder.stats();
    assert_eq!((stats.evicted, stats.sent_in_progress), (15, 15));
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 15);
    for (n, d) in docs.iter().enumerate() {
        assert_eq!(d["annotations"]["n"], n, "the oldest go first");
        assert_eq!(d["in_progress"], true);
        assert!(d.get("end_time").is_none());
        assert!(d["subsegments"][0]["end_time"].is_number());
    }
    // What an evicted segment records afterwards is dropped, its end included; the others are
    // sent whole.
    assert!(
        kept[0].update(|_| ()).is_none(),
        "an evicted segment records nothing more"
    );
    drop(kept);
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 25);
    for (n, d) in docs.iter().enumerate().skip(15) {
        assert_eq!(d["annotations"]["n"], n);
        assert!(d["end_time"].is_number());
    }
}

#[test]
fn shutdown_sends_what_is_still_open_in_progress() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(START));
    let recorder = builder(&emitter, &clock).build().unwrap();
    let open = recorder.begin_segment("open");
    let call = open.begin_subsegment("call");
    let ended = recorder.begin_segment("ended");
    let background = ended.begin_subsegment("background");
    ended.end();
    let outcome = recorder.shutdown(Duration::from_secs(1));
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(outcome.sent, 2);
    let docs = checked(emitter.documents());
    let open_doc = find(&docs, "open");
    assert_eq!(open_doc["in_progress"], true);
    assert_eq!(open_doc["subsegments"][0]["in_progress"], true);
    let ended_doc = find(&docs, "ended");
    assert!(ended_doc["end_time"].is_number());
    assert_eq!(ended_doc["subsegments"][0]["in_progress"], true);
    assert_eq!(recorder.stats().evicted, 2);
    drop((call, open, background));
    assert_eq!(emitter.len(), 2, "given up: nothing more is sent");
}

// ===== shutdown with a network that does not answer =====

/// The network as a peer that never answers: every send blocks until the test lets it go. (A
/// real UDP socket does not block; a send that never returns is what a hung peer looks like to
/// the sender thread.)
#[derive(Debug, Default)]
struct HungNetwork {
    state: Mutex<Hang>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Hang {
    entered: usize,
    released: bool,
}

impl HungNetwork {
    fn wait_entered(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = self.state.lock();
        while s.entered < n {
            if self.changed.wait_until(&mut s, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    fn entered(&self) -> usize {
        self.state.lock().entered
    }

    fn release(&self) {
        self.state.lock().released = true;
        self.changed.notify_all();
    }
}

impl Emitter for HungNetwork {
    fn emit(&self, _datagram: Datagram<'_>) -> Result<(), EmitError> {
        let mut s = self.state.lock();
        s.entered += 1;
        self.changed.notify_all();
        while !s.released {
            self.changed.wait(&mut s);
        }
        Ok(())
    }
}

/// A recorder with the background sender over `network`: one segment stuck in the hung send,
/// nine queued behind it.
fn stuck(network: &Arc<HungNetwork>) -> Recorder {
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(network.clone())
        .with_background_sender(true)
        .build()
        .unwrap();
    recorder.begin_segment("first").end();
    assert!(network.wait_entered(1), "the sender never sent");
    for _ in 0..9 {
        recorder.begin_segment("queued").end();
    }
    recorder
}

#[test]
fn shutdown_returns_by_its_deadline_with_a_hung_network_and_says_what_was_lost() {
    let network = Arc::new(HungNetwork::default());
    let recorder = stuck(&network);
    let (tx, rx) = std::sync::mpsc::channel();
    let r = recorder.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(r.shutdown(Duration::from_millis(200)));
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown never returned");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The nine still queued were given up and are counted as lost; the one in the hung send
    // is still pending.
    assert_eq!(
        (outcome.sent, outcome.lost, outcome.pending),
        (0, 9, 1),
        "{outcome:?}"
    );
    let stats = recorder.stats().transport;
    assert_eq!(stats.failed, 9, "{stats:?}");
    assert_eq!(stats.last_error, Some(TransportErrorKind::Closed));
    // After the shutdown what comes is refused and counted, not queued behind the hung send.
    recorder.begin_segment("late").end();
    assert_eq!(recorder.stats().transport.failed, 10);
    network.release();
}

/// Adds up the `given_up` field of every event: what the emitter logs it gave up.
#[derive(Debug, Clone, Default)]
struct GivenUp(Arc<AtomicU64>);

impl tracing::Subscriber for GivenUp {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Field<'a>(&'a AtomicU64);
        impl tracing::field::Visit for Field<'_> {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "given_up" {
                    self.0.fetch_add(value, Ordering::Relaxed);
                }
            }

            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut Field(&self.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn dropping_the_recorder_never_waits_for_a_hung_network() {
    let network = Arc::new(HungNetwork::default());
    let recorder = stuck(&network);
    let given_up = GivenUp::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let subscriber = given_up.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        tracing::subscriber::with_default(subscriber, || drop(recorder));
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("dropping the recorder waited for the hung network");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(
        waited >= BackgroundEmitter::DROP_TIMEOUT,
        "the sender had its chance: {waited:?}"
    );
    // The nine queued were given up, said so, and are never sent, even once the network
    // answers again.
    assert_eq!(given_up.0.load(Ordering::Relaxed), 9);
    network.release();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(network.entered(), 1);
}
