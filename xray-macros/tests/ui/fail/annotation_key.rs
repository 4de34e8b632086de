use xray_core::capture;

#[capture(annotate(café = 1))]
fn handler() {}

fn main() {
    handler();
}
