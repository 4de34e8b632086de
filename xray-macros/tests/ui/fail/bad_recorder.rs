use xray_core::capture;

#[capture(recorder = "global")]
fn handler() {}

fn main() {
    handler();
}
