//! Two axum services traced with X-Ray: `frontend` calls `inventory` through hyper-util's
//! client wrapped in `XRayClientLayer`, so both segments land in one trace.
//!
//! Both listen on 127.0.0.1 with a free port; the example makes one request to `frontend` and
//! prints the trace header it answered and the one `inventory` received.
//!
//! Run a local daemon first to see the trace (or any X-Ray daemon on 127.0.0.1:2000):
//!
//! ```text
//! cargo run -p xray-local &
//! cargo run -p xray-examples --example axum_server
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use xray_sdk::Recorder;
use xray_tower::{XRayClient, XRayClientLayer, XRayLayer};

type TracedClient = XRayClient<Client<HttpConnector, Full<Bytes>>>;

#[derive(Clone)]
struct Frontend {
    client: TracedClient,
    inventory: SocketAddr,
}

/// Calls `inventory`; the call is a `remote` subsegment of this request's segment.
async fn front(State(app): State<Frontend>) -> Result<String, String> {
    let request = http::Request::get(format!("http://{}/stock", app.inventory))
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    let response = app
        .client
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Answers with the trace header it received.
async fn stock(headers: HeaderMap) -> String {
    headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
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
    // The global recorder, configured from the environment (AWS_XRAY_DAEMON_ADDRESS, ...).
    // The default sampling rules record the first request each second.
    let recorder = Recorder::global();

    let inventory = Router::new()
        .route("/stock", get(stock))
        .layer(XRayLayer::new("inventory"));
    let inventory = serve(inventory).await?;

    let client = XRayClientLayer::new()
        .with_traced(true)
        .layer(Client::builder(TokioExecutor::new()).build_http());
    let frontend = Router::new()
        .route("/", get(front))
        .with_state(Frontend { client, inventory })
        .layer(XRayLayer::new("frontend"));
    let frontend = serve(frontend).await?;

    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = plain
        .request(http::Request::get(format!("http://{frontend}/")).body(Full::default())?)
        .await?;
    let answered = response
        .headers()
        .get("x-amzn-trace-id")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = response.into_body().collect().await?.to_bytes();

    println!("frontend answered X-Amzn-Trace-Id: {answered:?}");
    println!(
        "inventory received X-Amzn-Trace-Id: {}",
        String::from_utf8_lossy(&body)
    );
    recorder.flush(std::time::Duration::from_secs(1));
    println!("recorder: {:?}", recorder.stats());
    Ok(())
}
