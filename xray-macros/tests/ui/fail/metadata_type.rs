use xray_core::capture;

struct Opaque;

#[capture(metadata(value = Opaque))]
fn handler() {}

fn main() {
    handler();
}
