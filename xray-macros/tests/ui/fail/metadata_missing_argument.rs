use xray_sdk::capture;

#[capture(metadata(basket))]
fn handler(items: Vec<u32>) -> usize {
    items.len()
}

fn main() {
    handler(vec![]);
}
