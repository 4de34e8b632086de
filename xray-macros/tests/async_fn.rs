//! `#[capture]` on async functions: the subsegment covers the whole future, is current on every
//! poll whichever thread polls, and ends when the future completes or is dropped.

mod support;

use std::time::Duration;

use support::{names, only_sub, recorder, single, subs};
use xray_sdk::{FutureExt, capture, current};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[capture(annotate(id))]
async fn fetch(id: u32) -> u32 {
    // Hop threads between polls: the subsegment stays current.
    let before = current().map(|e| e.id());
    tokio::task::yield_now().await;
    tokio::spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
        .await
        .unwrap();
    assert_eq!(current().map(|e| e.id()), before);
    id * 2
}

#[capture(name = "fetch all")]
async fn fetch_all() -> u32 {
    let a = fetch(1).await;
    let b = fetch(2).await;
    a + b
}

#[test]
fn the_subsegment_is_current_across_awaits_and_nests() {
    let rt = runtime();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let entity = segment.entity().clone();
    let out = rt
        .block_on(rt.spawn(fetch_all().with_context(entity)))
        .unwrap();
    assert_eq!(out, 6);
    segment.end();
    let doc = single(&emitter);
    let all = only_sub(&doc);
    assert_eq!(all["name"], "fetch all");
    assert_eq!(names(all), ["fetch", "fetch"]);
    assert_eq!(subs(all)[1]["annotations"]["id"], 2);
    // The subsegment spans the awaited sleep, not just the creation of the future.
    let first = &subs(all)[0];
    let span = first["end_time"].as_f64().unwrap() - first["start_time"].as_f64().unwrap();
    assert!(span > 0.0, "{first}");
}

#[capture]
async fn current_inside() -> Option<xray_sdk::SegmentId> {
    current().map(|e| e.id())
}

#[test]
fn the_function_sees_its_own_subsegment_as_current() {
    let rt = runtime();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let seen = rt
        .block_on(current_inside().with_context(segment.entity().clone()))
        .unwrap();
    assert_ne!(seen, segment.id());
    segment.end();
    let doc = single(&emitter);
    assert_eq!(only_sub(&doc)["id"], seen.to_string());
}

#[capture]
async fn never_finishes() {
    std::future::pending::<()>().await;
}

#[test]
fn a_cancelled_future_ends_its_subsegment() {
    let rt = runtime();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let entity = segment.entity().clone();
    let timed_out = rt.block_on(async move {
        tokio::time::timeout(Duration::from_millis(5), never_finishes())
            .with_context(entity)
            .await
    });
    assert!(timed_out.is_err());
    segment.end();
    // Had the subsegment not ended, the segment would wait for it and nothing would be sent.
    let doc = single(&emitter);
    let sub = only_sub(&doc);
    assert_eq!(sub["name"], "never_finishes");
    assert!(sub["end_time"].is_f64());
    assert!(sub.get("in_progress").is_none());
}

#[test]
fn a_future_dropped_before_its_first_poll_records_nothing() {
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        drop(never_finishes());
    }
    segment.end();
    assert!(subs(&single(&emitter)).is_empty());
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
fn captured_futures_stay_send() {
    let rt = runtime();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let fut = assert_send(fetch(5).with_context(segment.entity().clone()));
    assert_eq!(rt.block_on(rt.spawn(fut)).unwrap(), 10);
    segment.end();
    assert_eq!(names(&single(&emitter)), ["fetch"]);
}

#[test]
fn unsampled_async_functions_run_unwrapped() {
    let rt = runtime();
    let (recorder, emitter) = support::unsampled_recorder();
    let segment = recorder.begin_segment("test");
    let seen = rt.block_on(current_inside().with_context(segment.entity().clone()));
    // The unsampled segment itself stays current: no subsegment was begun.
    assert_eq!(seen, Some(segment.id()));
    segment.end();
    assert!(emitter.take().is_empty());
}

// ===== methods, traits, async-trait, hand-written futures =====

struct Client {
    region: &'static str,
}

impl Client {
    #[capture(annotate(region = self.region))]
    async fn call(&self, op: &str) -> String {
        tokio::task::yield_now().await;
        format!("{}:{op}", self.region)
    }

    #[capture]
    async fn rename(&mut self, region: &'static str) {
        self.region = region;
    }

    #[capture]
    async fn consume(self) -> &'static str {
        self.region
    }

    #[capture]
    async fn generic<T: std::fmt::Display + Send>(&self, value: T) -> String {
        value.to_string()
    }
}

trait Repo {
    /// Native `async fn` in a trait, with a captured default body.
    #[capture]
    async fn count(&self) -> usize {
        self.len()
    }

    fn len(&self) -> usize;
}

struct Rows(Vec<u8>);

impl Repo for Rows {
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[async_trait::async_trait]
trait Cache {
    async fn lookup(&self, key: u32) -> Result<u32, std::fmt::Error>;
}

struct Memory;

#[async_trait::async_trait]
impl Cache for Memory {
    #[capture(annotate(key, offset = self.offset()), name = "cache lookup")]
    async fn lookup(&self, key: u32) -> Result<u32, std::fmt::Error> {
        tokio::task::yield_now().await;
        if key == 0 {
            return Err(std::fmt::Error);
        }
        Ok(key + self.offset())
    }
}

impl Memory {
    fn offset(&self) -> u32 {
        100
    }
}

/// A sync function returning a future: the async block is what gets captured.
#[capture]
fn later(x: u32) -> impl std::future::Future<Output = u32> {
    async move {
        tokio::task::yield_now().await;
        x + 1
    }
}

#[test]
fn methods_traits_async_trait_and_returned_futures() {
    let rt = runtime();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let out = rt.block_on(
        async {
            let mut client = Client { region: "eu" };
            let a = client.call("get").await;
            client.rename("us").await;
            let g = client.generic(7).await;
            let r = client.consume().await;
            let n = Rows(vec![1, 2]).count().await;
            let cache: &dyn Cache = &Memory;
            let hit = cache.lookup(1).await.unwrap();
            let miss = cache.lookup(0).await.is_err();
            let fut = later(1);
            let l = fut.await;
            (a, g, r, n, hit, miss, l)
        }
        .with_context(segment.entity().clone()),
    );
    assert_eq!(out, ("eu:get".into(), "7".into(), "us", 2, 101, true, 2));
    segment.end();
    let doc = single(&emitter);
    assert_eq!(
        names(&doc),
        [
            "call",
            "rename",
            "generic",
            "consume",
            "count",
            "cache lookup",
            "cache lookup",
            "later"
        ]
    );
    let subs = subs(&doc);
    assert_eq!(subs[0]["annotations"]["region"], "eu");
    assert_eq!(subs[5]["annotations"]["key"], 1);
    assert_eq!(subs[5]["annotations"]["offset"], 100);
    assert!(subs[5].get("fault").is_none());
    assert_eq!(subs[6]["fault"], true, "{}", subs[6]);
    assert_eq!(
        subs[6]["cause"]["exceptions"][0]["message"],
        "an error occurred when formatting an argument"
    );
}
