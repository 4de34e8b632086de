//! What the xray-local benches send.

/// One datagram of the A shape, for a fresh trace.
pub(crate) fn datagram(n: u64) -> Vec<u8> {
    let trace = format!("1-5759e988-{:024x}", n + 1);
    let doc = serde_json::json!({
        "name": "orders", "id": format!("{:016x}", n * 2 + 1), "trace_id": trace,
        "start_time": 1_735_689_600.120_511, "end_time": 1_735_689_600.318_204,
        "service": {"runtime": "rust", "runtime_version": "1.95.0"},
        "aws": {"xray": {"sdk": "X-Ray for Rust", "sdk_version": "0.1.0", "package": "xray-sdk"}},
        "subsegments": [{
            "name": "work", "id": format!("{:016x}", n * 2 + 2),
            "start_time": 1_735_689_600.131_002, "end_time": 1_735_689_600.149_877,
            "annotations": {"order_id": 42}, "metadata": {"default": {"basket": 3}}
        }]
    });
    let mut out = b"{\"format\":\"json\",\"version\":1}\n".to_vec();
    out.extend(serde_json::to_vec(&doc).unwrap());
    out
}
