//! `#[capture]` on sync functions: names, nesting, shapes, annotations and metadata.

mod support;

use serde_json::json;
use support::{in_segment, names, only_sub, single, subs};
use xray_sdk::config::ContextMissing;
use xray_sdk::{Recorder, capture};

#[capture]
fn load_basket(id: u64) -> u64 {
    id + 1
}

#[capture("price basket")]
fn price() -> u32 {
    load_basket(1) as u32 * 10
}

#[capture(name = "checkout:submit")]
fn submit() {
    price();
    load_basket(2);
}

#[test]
fn names_default_positional_and_named() {
    let (out, doc) = in_segment(|| load_basket(41));
    assert_eq!(out, 42);
    assert_eq!(names(&doc), ["load_basket"]);

    let (_, doc) = in_segment(submit);
    assert_eq!(names(&doc), ["checkout:submit"]);
    let submit = only_sub(&doc);
    assert_eq!(names(submit), ["price basket", "load_basket"]);
    assert_eq!(names(&subs(submit)[0]), ["load_basket"]);
    for sub in subs(submit) {
        assert!(sub["end_time"].as_f64().unwrap() >= sub["start_time"].as_f64().unwrap());
        assert!(sub.get("in_progress").is_none());
    }
}

#[capture(annotate(order_id, tier = tier.to_uppercase(), vip = order_id > 100, coupon), metadata(basket = items.clone(), count = items.len()))]
fn place(order_id: u64, tier: &str, items: Vec<&str>, coupon: Option<String>) -> usize {
    items.len()
}

#[test]
fn annotations_and_metadata_from_arguments_and_expressions() {
    let (n, doc) = in_segment(|| place(1234, "gold", vec!["a", "b"], None));
    assert_eq!(n, 2);
    let sub = only_sub(&doc);
    assert_eq!(
        sub["annotations"],
        json!({"order_id": 1234, "tier": "GOLD", "vip": true})
    );
    assert_eq!(
        sub["metadata"]["default"],
        json!({"basket": ["a", "b"], "count": 2})
    );

    let (_, doc) = in_segment(|| place(7, "x", vec![], Some("SPRING".into())));
    assert_eq!(only_sub(&doc)["annotations"]["coupon"], "SPRING");
}

struct Cart {
    items: Vec<u32>,
}

impl Cart {
    #[capture(annotate(len = self.items.len()))]
    fn total(&self) -> u32 {
        self.items.iter().sum()
    }

    #[capture]
    fn add(&mut self, item: u32) -> &mut Self {
        self.items.push(item);
        self
    }

    #[capture(annotate(item))]
    fn first_mut(&mut self, item: usize) -> Option<&mut u32> {
        self.items.get_mut(item)
    }

    #[capture]
    fn into_items(self) -> Vec<u32> {
        self.items
    }

    #[allow(clippy::boxed_local)]
    #[capture]
    fn boxed(self: Box<Self>) -> usize {
        self.items.len()
    }
}

#[test]
fn methods_on_every_receiver() {
    let (items, doc) = in_segment(|| {
        let mut cart = Cart { items: vec![1] };
        cart.add(2).add(3);
        *cart.first_mut(0).unwrap() = 10;
        assert_eq!(cart.total(), 15);
        assert_eq!(Box::new(Cart { items: vec![] }).boxed(), 0);
        cart.into_items()
    });
    assert_eq!(items, [10, 2, 3]);
    assert_eq!(
        names(&doc),
        ["add", "add", "first_mut", "total", "boxed", "into_items"]
    );
    assert_eq!(subs(&doc)[2]["annotations"]["item"], 0);
    assert_eq!(subs(&doc)[3]["annotations"]["len"], 3);
}

#[capture(annotate(n = values.len()))]
fn largest<T, const N: usize>(values: [T; N]) -> Option<T>
where
    T: PartialOrd + Copy + std::fmt::Debug,
{
    values.iter().copied().fold(
        None,
        |m, v| if m.is_none_or(|m| v > m) { Some(v) } else { m },
    )
}

#[capture]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[capture]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or(text)
}

#[capture]
fn destructured((a, b): (u32, u32), Wrapper { inner }: Wrapper) -> u32 {
    a + b + inner
}

struct Wrapper {
    inner: u32,
}

#[test]
fn generic_impl_trait_borrowing_and_destructuring_functions() {
    let (out, doc) = in_segment(|| {
        (
            largest([3, 9, 2]),
            largest(["b", "a"]),
            evens(7).collect::<Vec<_>>(),
            first_word("hello world").to_owned(),
            destructured((1, 2), Wrapper { inner: 3 }),
        )
    });
    assert_eq!(
        out,
        (Some(9), Some("b"), vec![0, 2, 4, 6], "hello".into(), 6)
    );
    assert_eq!(
        names(&doc),
        ["largest", "largest", "evens", "first_word", "destructured"]
    );
    assert_eq!(subs(&doc)[1]["annotations"]["n"], 2);
}

trait Store {
    #[capture]
    fn get(&self, key: &str) -> Option<u32> {
        self.raw(key)
    }

    fn raw(&self, key: &str) -> Option<u32>;
}

struct MemStore;

impl Store for MemStore {
    fn raw(&self, key: &str) -> Option<u32> {
        key.parse().ok()
    }
}

#[test]
fn trait_default_methods() {
    let (v, doc) = in_segment(|| MemStore.get("7"));
    assert_eq!(v, Some(7));
    assert_eq!(names(&doc), ["get"]);
}

#[capture(name = "early")]
fn early_return(x: u32) -> u32 {
    if x > 5 {
        return 5;
    }
    x
}

#[test]
fn early_returns_end_the_subsegment() {
    let (v, doc) = in_segment(|| early_return(9) + early_return(1));
    assert_eq!(v, 6);
    assert_eq!(names(&doc), ["early", "early"]);
}

/// Counts evaluations of an annotation expression.
static EVALUATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn expensive() -> u64 {
    EVALUATED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    1
}

#[capture(annotate(cost = expensive()), metadata(more = expensive()))]
fn guarded() -> u32 {
    xray_sdk::current().map_or(0, |e| u32::from(e.is_recording()))
}

#[test]
fn nothing_is_recorded_or_evaluated_when_unsampled_or_without_context() {
    use std::sync::atomic::Ordering::SeqCst;
    let (recorder, emitter) = support::unsampled_recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        assert_eq!(guarded(), 0);
    }
    segment.end();
    assert!(emitter.take().is_empty());
    assert_eq!(EVALUATED.load(SeqCst), 0);

    // No segment at all: the function still runs, nothing is evaluated.
    assert_eq!(guarded(), 0);
    assert_eq!(EVALUATED.load(SeqCst), 0);

    // Sampled: evaluated once each.
    let (v, doc) = in_segment(guarded);
    assert_eq!(v, 1);
    assert_eq!(EVALUATED.load(SeqCst), 2);
    assert_eq!(only_sub(&doc)["annotations"]["cost"], 1);
}

#[capture(recorder = recorder)]
fn with_recorder(recorder: &Recorder) -> u32 {
    3
}

#[test]
fn no_context_applies_the_recorders_strategy_and_never_panics() {
    for (strategy, counted) in [
        (ContextMissing::LogError, 1),
        (ContextMissing::RuntimeError, 1),
        (ContextMissing::IgnoreError, 0),
    ] {
        let (recorder, emitter) = support::recorder_with(1.0, strategy);
        assert_eq!(with_recorder(&recorder), 3);
        assert_eq!(recorder.stats().context_missing, counted, "{strategy:?}");
        assert!(emitter.take().is_empty());
    }
}

#[test]
fn with_recorder_inside_a_segment_is_a_child_of_it() {
    let (recorder, emitter) = support::recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        with_recorder(&recorder);
    }
    segment.end();
    assert_eq!(names(&single(&emitter)), ["with_recorder"]);
    assert_eq!(recorder.stats().context_missing, 0);
}

#[capture]
fn r#type() -> u8 {
    1
}

#[test]
fn raw_identifiers_are_named_without_prefix() {
    let (_, doc) = in_segment(r#type);
    assert_eq!(names(&doc), ["type"]);
}

#[capture(err)]
fn unit_with_err() {}

#[capture(err)]
async fn async_unit_with_err() {}

#[capture]
fn unit() {}

#[test]
fn unit_functions_compile_without_lints() {
    let (_, doc) = in_segment(|| {
        unit_with_err();
        unit();
        let _unused = async_unit_with_err();
    });
    assert_eq!(names(&doc), ["unit_with_err", "unit"]);
}
