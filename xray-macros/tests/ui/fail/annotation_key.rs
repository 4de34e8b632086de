use xray_sdk::capture;

#[capture(annotate(café = 1))]
fn handler() {}

fn main() {
    handler();
}
