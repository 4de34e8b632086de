//! The quickstart: two traced axum services, a local X-Ray daemon, and the traces on screen.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No AWS account is involved. The example starts `xray-local` in process on a free port, then
//! two services on 127.0.0.1: `orders`, which prices an order and calls `inventory` to reserve
//! stock. Both are axum routers with `XRayLayer`; the call between them goes through
//! `XRayClientLayer`, so each order is one trace across both services. The business functions
//! are `#[capture]`d: each call is a subsegment with annotations. Three orders are sent, one of
//! them for an item out of stock,
//! which fails. The example then prints each trace as a timeline, the service map, and exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use xray_local::XRayLocal;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder, capture};
use xray_tower::{XRayClient, XRayClientLayer, XRayLayer};

type TracedClient = XRayClient<Client<HttpConnector, Full<Bytes>>>;

#[derive(Clone)]
struct Orders {
    inventory: TracedClient,
    inventory_addr: SocketAddr,
}

// ===== inventory =====

/// Reserves stock: a subsegment of the `inventory` segment, with the item and quantity as
/// annotations; an `Err` is recorded as the subsegment's cause.
#[capture(annotate(item, quantity))]
fn reserve(item: &str, quantity: u32) -> Result<u32, OutOfStock> {
    let left = match item {
        "unobtainium" => 0,
        _ => 40,
    };
    if left < quantity {
        return Err(OutOfStock(format!("only {left} {item} left")));
    }
    Ok(left - quantity)
}

#[derive(Debug)]
struct OutOfStock(String);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfStock {}

async fn reserve_handler(
    Path((item, quantity)): Path<(String, u32)>,
) -> Result<String, (StatusCode, String)> {
    reserve(&item, quantity)
        .map(|left| format!("{left} left"))
        .map_err(|e| (StatusCode::CONFLICT, e.to_string()))
}

// ===== orders =====

/// Prices an order: a subsegment of the `orders` segment, the total as an annotation.
#[capture(annotate(item, total_cents = price_of(item) * u64::from(quantity)))]
fn price(item: &str, quantity: u32) -> u64 {
    price_of(item) * u64::from(quantity)
}

fn price_of(item: &str) -> u64 {
    match item {
        "widget" => 250,
        "gadget" => 1_200,
        _ => 99_900,
    }
}

async fn order_handler(
    State(app): State<Orders>,
    Path((item, quantity)): Path<(String, u32)>,
) -> Result<String, (StatusCode, String)> {
    let cents = price(&item, quantity);
    let request = http::Request::post(format!(
        "http://{}/reserve/{item}/{quantity}",
        app.inventory_addr
    ))
    .body(Full::default())
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let response = app
        .inventory
        .oneshot(request)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(format!(
            "ordered {quantity} {item} for {cents} cents ({body})"
        ))
    } else {
        Err((StatusCode::SERVICE_UNAVAILABLE, body))
    }
}

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A local daemon on free ports: it assembles what the services send into traces.
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse()?)
        .quiet_period(Duration::from_millis(300))
        .start()?;

    // The process-wide recorder, sending to that daemon and recording every request.
    Recorder::builder()
        .with_daemon_address(DaemonAddress::split(daemon.udp_addr(), daemon.tcp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(
            SamplingRules::builder().with_default(0, 1.0).build()?,
        )))
        .build()?
        .install_global()?;

    let inventory = Router::new()
        .route("/reserve/{item}/{quantity}", post(reserve_handler))
        .layer(XRayLayer::new("inventory"));
    let inventory_addr = serve(inventory).await?;

    let client = XRayClientLayer::new()
        .with_traced(true)
        .layer(Client::builder(TokioExecutor::new()).build_http());
    let orders = Router::new()
        .route("/orders/{item}/{quantity}", post(order_handler))
        .route("/health", get(|| async { "ok" }))
        .with_state(Orders {
            inventory: client,
            inventory_addr,
        })
        .layer(XRayLayer::new("orders"));
    let orders_addr = serve(orders).await?;

    println!(
        "xray-local listening on udp {} tcp {}",
        daemon.udp_addr(),
        daemon.tcp_addr()
    );
    println!("orders on http://{orders_addr}, inventory on http://{inventory_addr}\n");

    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let orders_sent = [("widget", 3), ("gadget", 1), ("unobtainium", 2)];
    for (item, quantity) in orders_sent {
        let response = plain
            .request(
                http::Request::post(format!("http://{orders_addr}/orders/{item}/{quantity}"))
                    .body(Full::default())?,
            )
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "POST /orders/{item}/{quantity} -> {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    let traces = tokio::task::spawn_blocking(move || {
        let traces = daemon.wait_for_traces(orders_sent.len(), Duration::from_secs(10));
        (daemon, traces)
    })
    .await?;
    let (daemon, traces) = traces;
    println!("\n{} traces received by xray-local\n", traces.len());
    for trace in &traces {
        println!("{}", xray_local::render::timeline(trace));
    }
    println!("{}", xray_local::render::service_map(&traces));

    let stats = daemon.stats();
    if traces.len() != orders_sent.len() || stats.dropped_total() > 0 {
        eprintln!("expected {} complete traces: {stats:?}", orders_sent.len());
        std::process::exit(1);
    }
    Ok(())
}
