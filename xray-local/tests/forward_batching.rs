//! When forwarding sends a partial batch: after the idle time, even for a document that
//! arrives after a quiet spell, with no flush asked for. X-Ray is the stand-in of
//! `support/xray_api.rs`.

#[path = "support/xray_api.rs"]
mod xray_api;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use xray_api::Xray;
use xray_local::{ForwardConfig, XrayLocal};

#[test]
fn a_lone_document_after_a_quiet_spell_goes_within_the_idle_time() {
    let xray = Xray::start();
    let daemon = XrayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            ForwardConfig::new("eu-west-3")
                .endpoint(xray.url())
                .credentials(SharedCredentialsProvider::new(Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    None,
                    None,
                    "test",
                )))
                .idle(Duration::from_millis(100))
                .telemetry(None),
        )
        .start()
        .unwrap();
    // Long enough for the batcher to have gone to sleep on an empty queue.
    std::thread::sleep(Duration::from_millis(500));
    let datagram = "{\"format\":\"json\",\"version\":1}\n{\"name\":\"late\",\"id\":\"0000000000000001\",\
                    \"trace_id\":\"1-5759e988-000000000000000000000001\",\"start_time\":1.0,\"end_time\":2.0}";
    let sent = Instant::now();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(datagram.as_bytes(), daemon.udp_addr())
        .unwrap();
    let deadline = sent + Duration::from_secs(10);
    while !xray.received().iter().any(|r| r.path == "/TraceSegments") {
        assert!(Instant::now() < deadline, "the partial batch never left");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(daemon.forward_stats().unwrap().uploaded, 1);
    daemon.shutdown();
}
