//! The layer under the real `lambda_runtime`, against a stand-in Lambda Runtime API on a
//! loopback port: seven invocations, four in flight at a time in one process (Lambda Managed
//! Instances: `AWS_LAMBDA_MAX_CONCURRENCY=4` and `run_concurrent`), each with its own trace
//! header, each handler awaiting inside its subsegment. Every invocation must be traced under
//! its own header and nothing else: the process-wide `_X_AMZN_TRACE_ID` holds a decoy.
//!
//! This binary holds a single test because it sets process environment variables.

#[path = "support/runtime_api.rs"]
mod stand_in;

use std::collections::HashMap;
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use stand_in::{Answer, AnswerKind, Event, RuntimeApi};
use tower::ServiceBuilder;
use xray_lambda::XRayLambdaLayer;
use xray_sdk::header::Sampled;
use xray_sdk::{InMemoryEmitter, Recorder, TraceHeader};

const FUNCTION_NAME: &str = "orders-fn";
const HANDLER: &str = "## orders-fn";
/// Left in `_X_AMZN_TRACE_ID` to show that it is never read: under concurrency it belongs to
/// no invocation in particular.
const DECOY_ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
/// Long enough for the four workers to take an event each before the first answers.
const HANDLER_SLEEP: Duration = Duration::from_millis(80);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Panic,
}

/// One invocation: its header's fields and what its handler does.
#[derive(Debug)]
struct Case {
    request_id: String,
    root: String,
    parent: String,
    lineage: String,
    sampled: bool,
    outcome: Outcome,
}

impl Case {
    fn header(&self) -> String {
        format!(
            "Root={};Parent={};Sampled={};Lineage={}",
            self.root,
            self.parent,
            u8::from(self.sampled),
            self.lineage
        )
    }

    fn event(&self, n: usize) -> Event {
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Panic => "panic",
        };
        Event {
            request_id: self.request_id.clone(),
            trace_header: Some(self.header()),
            payload: json!({ "n": n, "outcome": outcome }),
        }
    }
}

fn cases() -> Vec<Case> {
    // The first four run together; the unsampled one, the failing one and the panicking one
    // follow as workers come free.
    let plan = [
        (true, Outcome::Ok),
        (true, Outcome::Ok),
        (true, Outcome::Ok),
        (true, Outcome::Ok),
        (false, Outcome::Ok),
        (true, Outcome::Fail),
        (true, Outcome::Panic),
    ];
    plan.into_iter()
        .enumerate()
        .map(|(i, (sampled, outcome))| Case {
            request_id: format!("req-{i}"),
            root: format!("1-67748580-{:024x}", 0x00a1_1ce0 + i),
            parent: format!("{:016x}", 0x5399_5c3f_42cd_8a00_u64 + i as u64),
            lineage: format!("{}:a87bd80c:1", 10 + i),
            sampled,
            outcome,
        })
        .collect()
}

/// The handler: a subsegment with an await inside, another after it, and the header a call
/// made from the first would send downstream, returned for the test to read.
async fn handle(recorder: Recorder, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let n = event.payload["n"].as_u64().unwrap_or(u64::MAX);
    let work = recorder.begin_subsegment("work");
    work.put_annotation("n", n);
    let downstream = work.trace_header().to_string();
    // Meanwhile the other invocations run, on this thread and the other, each in its context.
    tokio::time::sleep(HANDLER_SLEEP).await;
    work.end();
    let after = recorder.begin_subsegment("after-await");
    let current_trace = after.trace_id().to_string();
    after.end();
    match event.payload["outcome"].as_str() {
        Some("fail") => Err("out of stock".into()),
        Some("panic") => panic!("boom"),
        _ => Ok(json!({ "n": n, "downstream": downstream, "current_trace": current_trace })),
    }
}

#[test]
#[allow(unsafe_code)]
fn concurrent_invocations_are_traced_each_under_its_own_header() {
    let cases = cases();
    let api = RuntimeApi::bind(
        cases
            .iter()
            .enumerate()
            .map(|(n, case)| case.event(n))
            .collect(),
    );
    // SAFETY: this is the only test of this binary, and no other thread exists yet: the
    // stand-in has only bound its port, and the tokio runtime is built below.
    unsafe {
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", api.address());
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME);
        std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        std::env::set_var(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]0123456789abcdef",
        );
        std::env::set_var("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders-fn");
        std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", "4");
        std::env::set_var(
            "_X_AMZN_TRACE_ID",
            format!("Root={DECOY_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"),
        );
    }

    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let handler_recorder = recorder.clone();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(move |event: LambdaEvent<Value>| {
            handle(handler_recorder.clone(), event)
        }));

    // Two worker threads for four concurrent invocations: contexts interleave on each thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    api.serve(rt.handle());
    let lambda = rt.spawn(lambda_runtime::run_concurrent(service));

    let answers = api.wait_for_answers(cases.len(), Duration::from_secs(30));
    let sampled = cases.iter().filter(|c| c.sampled).count();
    // Each sampled invocation sends its handler subsegment, "work" and "after-await".
    let arrived = emitter.wait_for(3 * sampled, Duration::from_secs(5));

    // The runtime loop never ends on its own (the stand-in holds `/next` open): stop it.
    lambda.abort();
    rt.shutdown_timeout(Duration::from_secs(1));

    assert!(arrived, "documents: {:#?}", emitter.documents());
    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 3 * sampled, "documents: {docs:#?}");
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    assert!(
        api.max_in_flight() >= 2,
        "the invocations did not overlap (at most {} in flight)",
        api.max_in_flight()
    );
    assert!(
        docs.iter().all(|d| d["trace_id"] != DECOY_ROOT),
        "a document carries _X_AMZN_TRACE_ID's trace: {docs:#?}"
    );

    let answers: HashMap<&str, &Answer> =
        answers.iter().map(|a| (a.request_id.as_str(), a)).collect();
    for (n, case) in cases.iter().enumerate() {
        let answer = answers[case.request_id.as_str()];
        check_answer(n, case, answer);
        let mine: Vec<&Value> = docs.iter().filter(|d| d["trace_id"] == case.root).collect();
        if case.sampled {
            check_documents(n, case, &mine, answer);
        } else {
            assert!(mine.is_empty(), "unsampled invocation {n} sent {mine:#?}");
        }
    }

    // Only the process's first invocation is a cold start (one of the first four, all sampled).
    let cold: Vec<bool> = docs
        .iter()
        .filter(|d| d["name"] == HANDLER)
        .map(|d| {
            d["annotations"]["ColdStart"]
                .as_bool()
                .expect("ColdStart on every handler subsegment")
        })
        .collect();
    assert_eq!(cold.len(), sampled);
    assert_eq!(cold.iter().filter(|c| **c).count(), 1, "{cold:?}");
}

/// What the function posted for invocation `n`.
fn check_answer(n: usize, case: &Case, answer: &Answer) {
    match case.outcome {
        Outcome::Ok => {
            assert_eq!(
                answer.kind,
                AnswerKind::Response,
                "invocation {n}: {answer:?}"
            );
            let body = &answer.body;
            assert_eq!(body["n"], n, "invocation {n}: {body}");
            // After the await the context was still this invocation's.
            assert_eq!(body["current_trace"], case.root.as_str(), "invocation {n}");
            // A call from the handler would carry this invocation's trace and Lineage.
            let downstream: TraceHeader = body["downstream"]
                .as_str()
                .expect("the downstream header")
                .parse()
                .expect("a valid header");
            assert_eq!(downstream.root().to_string(), case.root, "invocation {n}");
            assert_eq!(
                downstream.lineage(),
                Some(case.lineage.as_str()),
                "invocation {n}"
            );
            let sampled = if case.sampled {
                Sampled::Yes
            } else {
                Sampled::No
            };
            assert_eq!(downstream.sampled(), sampled, "invocation {n}");
        }
        Outcome::Fail => {
            assert_eq!(answer.kind, AnswerKind::Error, "invocation {n}: {answer:?}");
            assert_eq!(answer.body["errorMessage"], "out of stock", "{answer:?}");
        }
        Outcome::Panic => {
            assert_eq!(answer.kind, AnswerKind::Error, "invocation {n}: {answer:?}");
            let message = answer.body["errorMessage"].as_str().unwrap_or_default();
            assert!(message.contains("boom"), "{answer:?}");
        }
    }
}

/// The documents of sampled invocation `n`: the handler subsegment under Lambda's segment (the
/// header's `Parent`), "work" and "after-await" under it, all in the invocation's trace.
fn check_documents(n: usize, case: &Case, mine: &[&Value], answer: &Answer) {
    assert_eq!(mine.len(), 3, "invocation {n}: {mine:#?}");
    let handler = named(mine, n, HANDLER);
    let work = named(mine, n, "work");
    let after = named(mine, n, "after-await");
    for doc in [handler, work, after] {
        assert_eq!(doc["type"], "subsegment", "invocation {n}: {doc}");
    }
    assert_eq!(handler["parent_id"], case.parent.as_str(), "invocation {n}");
    assert_eq!(work["parent_id"], handler["id"], "invocation {n}");
    assert_eq!(after["parent_id"], handler["id"], "invocation {n}");
    assert_eq!(work["annotations"]["n"], n, "invocation {n}");
    if case.outcome == Outcome::Ok {
        // The header returned names "work" as the caller.
        let downstream: TraceHeader = answer.body["downstream"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            downstream.parent().map(|p| p.to_string()).as_deref(),
            work["id"].as_str(),
            "invocation {n}"
        );
    }
    match case.outcome {
        Outcome::Ok => assert_ne!(handler["fault"], true, "invocation {n}: {handler}"),
        Outcome::Fail => {
            assert_eq!(handler["fault"], true, "invocation {n}: {handler}");
            assert_eq!(
                handler["cause"]["exceptions"][0]["message"], "out of stock",
                "invocation {n}: {handler}"
            );
        }
        Outcome::Panic => {
            assert_eq!(handler["fault"], true, "invocation {n}: {handler}");
            assert_eq!(
                handler["cause"]["exceptions"][0]["message"], "boom",
                "invocation {n}: {handler}"
            );
        }
    }
}

/// The document named `name` among invocation `n`'s.
fn named<'a>(mine: &[&'a Value], n: usize, name: &str) -> &'a Value {
    mine.iter()
        .copied()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("invocation {n} has no {name:?}: {mine:#?}"))
}
