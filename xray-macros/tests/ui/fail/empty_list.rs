use xray_sdk::capture;

#[capture(annotate())]
fn handler() {}

#[capture(metadata)]
fn bare() {}

fn main() {
    handler();
    bare();
}
