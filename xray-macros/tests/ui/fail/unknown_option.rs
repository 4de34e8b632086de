use xray_core::capture;

#[capture(level = "info")]
fn handler() {}

fn main() {
    handler();
}
