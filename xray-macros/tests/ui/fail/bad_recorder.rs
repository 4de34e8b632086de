use xray_sdk::capture;

#[capture(recorder = "global")]
fn handler() {}

fn main() {
    handler();
}
