use xray_sdk::capture;

struct Opaque;

#[capture(metadata(value = Opaque))]
fn handler() {}

fn main() {
    handler();
}
