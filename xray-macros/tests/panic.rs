//! A panic inside a captured function ends its subsegment as a fault, with the panic message
//! as the cause, and keeps unwinding.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;
use support::{names, only_sub, recorder, single};
use xray_sdk::capture;

#[capture]
fn explode(code: u32) -> u32 {
    if code > 0 {
        panic!("boom {code}");
    }
    code
}

#[capture(name = "outer")]
fn outer() -> u32 {
    explode(0) + explode(7)
}

fn first_exception(sub: &Value) -> &Value {
    &sub["cause"]["exceptions"][0]
}

#[test]
fn a_panic_is_a_fault_with_its_message_and_unwinding_continues() {
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let caught = {
        let _g = segment.enter();
        catch_unwind(outer)
    };
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "boom 7");
    // The context stack unwound with the guards.
    assert_eq!(xray_sdk::current().map(|e| e.id()), None);
    segment.end();

    let doc = single(&emitter);
    let outer = only_sub(&doc);
    assert_eq!(outer["name"], "outer");
    assert_eq!(outer["fault"], true);
    assert_eq!(names(outer), ["explode", "explode"]);
    let ok = &outer["subsegments"][0];
    let failed = &outer["subsegments"][1];
    assert!(ok.get("fault").is_none(), "{ok}");
    assert_eq!(failed["fault"], true);
    let ex = first_exception(failed);
    assert_eq!(ex["message"], "boom 7");
    assert_eq!(ex["type"], "panic");
    assert!(
        ex["stack"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("panic.rs"),
        "{ex}"
    );
    assert_eq!(first_exception(outer)["message"], "boom 7");
    for sub in [outer, ok, failed] {
        assert!(sub["end_time"].is_f64(), "{sub}");
    }
}

#[capture]
async fn explode_later(code: u32) -> u32 {
    tokio::task::yield_now().await;
    if code > 0 {
        panic!("async boom {code}");
    }
    code
}

#[test]
fn a_panicking_poll_is_a_fault_even_when_the_executor_catches_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    let entity = segment.entity().clone();
    let joined = rt.block_on(async move {
        use xray_sdk::FutureExt;
        tokio::spawn(explode_later(3).with_context(entity)).await
    });
    assert!(joined.unwrap_err().is_panic());
    segment.end();
    let doc = single(&emitter);
    let sub = only_sub(&doc);
    assert_eq!(sub["name"], "explode_later");
    assert_eq!(sub["fault"], true);
    assert_eq!(first_exception(sub)["message"], "async boom 3");
}

#[test]
fn a_caught_panic_inside_does_not_mark_the_caller() {
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        let r = catch_unwind(AssertUnwindSafe(|| explode(1)));
        assert!(r.is_err());
        assert_eq!(explode(0), 0);
    }
    segment.end();
    let doc = single(&emitter);
    let subs = support::subs(&doc);
    assert_eq!(subs[0]["fault"], true);
    assert!(subs[1].get("fault").is_none());
    assert!(doc.get("fault").is_none());
}

struct CleanUp;

impl Drop for CleanUp {
    fn drop(&mut self) {
        // Runs while the panic below unwinds: the call returns normally.
        assert_eq!(explode(0), 0);
    }
}

#[test]
fn a_call_made_while_unwinding_is_no_fault() {
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        let r = catch_unwind(|| {
            let _clean_up = CleanUp;
            panic!("unrelated");
        });
        assert!(r.is_err());
    }
    segment.end();
    let doc = single(&emitter);
    let sub = only_sub(&doc);
    assert_eq!(sub["name"], "explode");
    assert!(sub.get("fault").is_none(), "{sub}");
}

#[test]
fn the_message_is_the_panics_own_whatever_hook_the_application_sets() {
    // A hook set after a recorded call has run: the message must still come from the panic
    // being recorded, not from a hook of the SDK's (which this one would replace) keeping the
    // last message it saw.
    let (recorder, emitter) = recorder();
    let segment = recorder.begin_segment("test");
    {
        let _g = segment.enter();
        assert!(catch_unwind(|| explode(1)).is_err());
        std::panic::set_hook(Box::new(|_| {}));
        let second = catch_unwind(|| explode(2));
        // Back to the default hook.
        drop(std::panic::take_hook());
        assert!(second.is_err());
    }
    segment.end();
    let doc = single(&emitter);
    let subs = support::subs(&doc);
    assert_eq!(first_exception(&subs[0])["message"], "boom 1");
    assert_eq!(first_exception(&subs[1])["message"], "boom 2");
}
