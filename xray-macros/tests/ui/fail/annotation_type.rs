use xray_sdk::capture;

#[capture(annotate(items, first = items.first()))]
fn handler(items: Vec<Vec<u8>>) {}

fn main() {
    handler(vec![]);
}
