//! What `XRayLayer` adds to one request, against the same router without it, measured in the
//! same run. The router is called directly with `oneshot` (no network); the handler finishes
//! on its first poll, so a no-op waker drives it.
//!
//! - `baseline`: the router alone.
//! - `unsampled`: with the layer, the sampler saying no (header parsed, response header
//!   written, context entered; nothing recorded).
//! - `sampled`: with the layer, every request recorded: segment, `http` block, serialization,
//!   and an emitter that discards the datagram.
//! - `sampled_with_header`: as `sampled`, continuing an upstream `X-Amzn-Trace-Id`.
//!
//! Run: `cargo bench -p xray-tower --bench layer`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;
use xray_sdk::Recorder;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::transport::{Datagram, EmitError, Emitter};
use xray_tower::XRayLayer;

#[derive(Debug)]
struct Discard;

impl Emitter for Discard {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        black_box(datagram.as_bytes());
        Ok(())
    }
}

fn recorder(rate: f64) -> Recorder {
    let rules = SamplingRules::builder()
        .with_default(0, rate)
        .build()
        .expect("valid rules");
    Recorder::builder()
        .ignore_environment()
        .with_emitter(Discard)
        .with_sampler(Arc::new(LocalSampler::new(rules)))
        .build()
        .expect("recorder builds")
}

fn router() -> Router {
    Router::new().route("/orders/{id}", get(|| async { "ok" }))
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn request(header: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/orders/42?verbose=1")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("x-forwarded-for", "203.0.113.9");
    if let Some(h) = header {
        req = req.header("x-amzn-trace-id", h);
    }
    req.body(Body::empty()).expect("valid request")
}

fn one(app: &Router, header: Option<&str>) {
    let response = block_on(app.clone().oneshot(request(header))).expect("infallible");
    // Dropping the body is what ends the segment.
    drop(black_box(response));
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer");
    let plain = router();
    g.bench_function("baseline", |b| b.iter(|| one(&plain, None)));

    let unsampled = router().layer(XRayLayer::new("api").with_recorder(recorder(0.0)));
    g.bench_function("unsampled", |b| b.iter(|| one(&unsampled, None)));

    let sampled = router().layer(XRayLayer::new("api").with_recorder(recorder(1.0)));
    g.bench_function("sampled", |b| b.iter(|| one(&sampled, None)));

    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    g.bench_function("sampled_with_header", |b| {
        b.iter(|| one(&sampled, Some(header)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
