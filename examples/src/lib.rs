//! Examples for the xray-rs crates live in `examples/examples/`.
