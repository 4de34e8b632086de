use xray_core::capture;

#[capture(annotate())]
fn handler() {}

#[capture(metadata)]
fn bare() {}

fn main() {
    handler();
    bare();
}
