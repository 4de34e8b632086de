use xray_sdk::capture;

#[capture(level = "info")]
fn handler() {}

fn main() {
    handler();
}
